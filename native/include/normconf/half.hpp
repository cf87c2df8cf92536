// normconf::half — IEEE binary16 (float16) and bfloat16 as uint16_t storage, converted
// to and from double without any intermediate type.
//
// to_double(): exact (every 16-bit value is a double).
// from_double(): one rounding, round-to-nearest-even, directly from the double (never via
// float, which would round twice); overflow gives +-infinity exactly as IEEE 754 says
// (a magnitude >= max + half an ulp at the top binade rounds to infinity), subnormals
// are kept, the sign of zero is kept, NaN gives the quiet NaN with the input's sign.
// Independent of the floating-point rounding mode.
#pragma once

#include <cmath>
#include <cstdint>

namespace normconf::half {

/// A 16-bit binary floating-point format: `Mant` stored mantissa bits, `Bias` exponent bias
/// (exponent field width = 15 - Mant).
template <int Mant, int Bias>
struct Format {
    static constexpr int kMant = Mant;
    static constexpr int kBias = Bias;
    static constexpr std::uint16_t kExpMask = static_cast<std::uint16_t>(0x7fff & ~((1u << Mant) - 1u));

    static double to_double(std::uint16_t bits) {
        const bool neg = (bits & 0x8000u) != 0;
        const unsigned field = (bits & 0x7fffu) >> Mant;
        const unsigned frac = bits & ((1u << Mant) - 1u);
        double v;
        if (field == (kExpMask >> Mant))
            v = frac ? std::nan("") : INFINITY;
        else if (field == 0)
            v = std::ldexp(static_cast<double>(frac), 1 - Bias - Mant);  // subnormal (or zero)
        else
            v = std::ldexp(static_cast<double>(frac | (1u << Mant)), static_cast<int>(field) - Bias - Mant);
        return neg ? -v : v;
    }

    static std::uint16_t from_double(double v) {
        const std::uint16_t sign = std::signbit(v) ? 0x8000u : 0u;
        if (std::isnan(v)) return static_cast<std::uint16_t>(sign | kExpMask | (1u << (Mant - 1)));
        const double a = std::fabs(v);
        if (std::isinf(a)) return static_cast<std::uint16_t>(sign | kExpMask);
        if (a == 0.0) return sign;
        int ex = 0;
        std::frexp(a, &ex);  // a = f * 2^ex, f in [0.5, 1)
        int e = ex - 1;      // a in [2^e, 2^(e+1))
        const int emin = 1 - Bias;
        if (e < emin) e = emin;                        // subnormal range: the quantum of the smallest binade
        const double q = std::ldexp(a, Mant - e);      // exact: a in units of the target's ulp
        double r = std::floor(q);
        const double rest = q - r;                     // exact (q has at most 53 significant bits)
        if (rest > 0.5 || (rest == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;  // nearest, ties to even
        auto m = static_cast<std::uint32_t>(r);        // <= 2^(Mant+1)
        if (m >= (2u << Mant)) {                       // rounded up into the next binade
            m >>= 1;
            ++e;
        }
        if (m < (1u << Mant)) return static_cast<std::uint16_t>(sign | m);  // subnormal (or rounded to 0)
        const int field = e + Bias;
        if (field >= static_cast<int>(kExpMask >> Mant)) return static_cast<std::uint16_t>(sign | kExpMask);
        return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(field) << Mant) | (m - (1u << Mant)));
    }
};

using Float16 = Format<10, 15>;  // IEEE 754 binary16
using BFloat16 = Format<7, 127>; // bfloat16: binary32's exponent, 7 mantissa bits

}  // namespace normconf::half
