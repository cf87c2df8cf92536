// Unit test of normconf::LayerNorm, the float16/bfloat16 conversions and the C ABI v2 layer
// (op layer_norm).  No framework; exit code 0 = pass.  Built and run by
// tests/test_native_abi_v2.py (or: cmake -DNORMCONF_BUILD_TESTS=ON, ctest).
//
// Expected values are computed here by brute force in double from the definition
// (normconf/layer_norm.hpp), independently of the class's offset tables.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "normconf.h"
#include "normconf/half.hpp"
#include "normconf/layer_norm.hpp"

static int failures = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                                    \
        }                                                                                  \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                                 \
    do {                                                                                                      \
        double _a = (a), _b = (b);                                                                            \
        if (!(std::fabs(_a - _b) <= (tol))) {                                                                 \
            std::fprintf(stderr, "%s:%d: %s = %.17g, expected %.17g (tol %g)\n", __FILE__, __LINE__, #a, _a, _b, \
                         (double)(tol));                                                                      \
            ++failures;                                                                                       \
        }                                                                                                     \
    } while (0)

template <typename F>
static bool throws_invalid(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument&) {
        return true;
    }
    return false;
}

static void test_hand_computed_rows() {
    // x (2, 4), last axis: row 0 = 1 2 3 6 (mean 3, biased var 3.5), row 1 = constant 5 (var 0)
    normconf::LayerNorm<double> ln({2, 4}, {1});
    const std::vector<double> x = {1, 2, 3, 6, 5, 5, 5, 5};
    ln.SetEpsilon(0.5);
    ln.SetGamma({1, 2, 3, 4});
    ln.SetBeta({0, 0, 0, 1});
    ln.LoadData(x.data(), x.size());
    const std::vector<double> y = ln.Run();
    CHECK(ln.RowCount() == 2 && ln.NormalizedSize() == 4);
    CHECK_NEAR(y[0], 1 * (1 - 3) / 2.0, 1e-15);  // sqrt(3.5 + 0.5) = 2
    CHECK_NEAR(y[3], 4 * (6 - 3) / 2.0 + 1, 1e-15);
    CHECK_NEAR(y[4], 0.0, 0.0);
    CHECK_NEAR(y[7], 1.0, 0.0);  // beta only
    CHECK_NEAR(ln.GetMean()[0], 3.0, 0.0);
    CHECK_NEAR(ln.GetInvStd()[0], 0.5, 0.0);
    CHECK_NEAR(ln.GetInvStd()[1], 1 / std::sqrt(0.5), 1e-15);
}

/// Brute force: for each element, find its row (coordinates off the normalized axes) by scanning all of x.
static void reference(const std::vector<std::int64_t>& dims, unsigned mask, const std::vector<double>& x,
                      const std::vector<double>& gamma, double eps, std::vector<double>& y,
                      std::vector<double>& mean) {
    const std::size_t rank = dims.size(), n = x.size();
    auto coords = [&](std::size_t i) {
        std::vector<std::int64_t> c(rank);
        for (std::size_t d = rank; d-- > 0;) {
            c[d] = static_cast<std::int64_t>(i % static_cast<std::size_t>(dims[d]));
            i /= static_cast<std::size_t>(dims[d]);
        }
        return c;
    };
    auto index_over = [&](const std::vector<std::int64_t>& c, bool normalized) {
        std::size_t k = 0;
        for (std::size_t d = 0; d < rank; ++d)
            if (((mask >> d) & 1u) == (normalized ? 1u : 0u)) k = k * static_cast<std::size_t>(dims[d]) + c[d];
        return k;
    };
    std::size_t rows = 1;
    for (std::size_t d = 0; d < rank; ++d)
        if (!((mask >> d) & 1u)) rows *= static_cast<std::size_t>(dims[d]);
    std::vector<double> sum(rows, 0), sq(rows, 0), cnt(rows, 0);
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t k = index_over(coords(i), false);
        sum[k] += x[i];
        cnt[k] += 1;
    }
    mean.assign(rows, 0);
    for (std::size_t k = 0; k < rows; ++k) mean[k] = sum[k] / cnt[k];
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t k = index_over(coords(i), false);
        sq[k] += (x[i] - mean[k]) * (x[i] - mean[k]);
    }
    y.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = coords(i);
        const std::size_t k = index_over(c, false), r = index_over(c, true);
        y[i] = gamma[r] * (x[i] - mean[k]) / std::sqrt(sq[k] / cnt[k] + eps);
    }
}

static void test_any_axes_against_brute_force() {
    const std::vector<std::int64_t> dims = {2, 3, 4, 5};
    std::vector<double> x(120);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.7 * static_cast<double>(i)) * 3 + 0.01 * i;
    for (unsigned mask = 1; mask < 16; ++mask) {
        std::vector<int> axes;
        std::size_t m = 1;
        for (int d = 0; d < 4; ++d)
            if (mask & (1u << d)) {
                axes.push_back(d);
                m *= static_cast<std::size_t>(dims[d]);
            }
        std::vector<double> gamma(m);
        for (std::size_t r = 0; r < m; ++r) gamma[r] = 0.5 + 0.1 * static_cast<double>(r);
        normconf::LayerNorm<double> ln(dims, axes);
        ln.SetGamma(gamma);
        ln.LoadData(x.data(), x.size());
        const std::vector<double> y = ln.Run();
        std::vector<double> ry, rmean;
        reference(dims, mask, x, gamma, 1e-5, ry, rmean);
        for (std::size_t i = 0; i < x.size(); ++i) CHECK_NEAR(y[i], ry[i], 1e-12);
        CHECK(ln.GetMean().size() == rmean.size());
        for (std::size_t k = 0; k < rmean.size(); ++k) CHECK_NEAR(ln.GetMean()[k], rmean[k], 1e-13);
    }
}

static void test_arguments() {
    CHECK(throws_invalid([] { normconf::LayerNorm<float>({2, 3}, {}); }));
    CHECK(throws_invalid([] { normconf::LayerNorm<float>({2, 3}, {2}); }));
    CHECK(throws_invalid([] { normconf::LayerNorm<float>({2, 3}, {1, 0}); }));  // unsorted
    CHECK(throws_invalid([] { normconf::LayerNorm<float>({2, 0}, {1}); }));     // empty rows
    CHECK(throws_invalid([] { normconf::LayerNorm<float>({1, 1, 1, 1, 1, 1, 1, 1, 1}, {0}); }));
    normconf::LayerNorm<float> ok({0, 3}, {1});  // no rows: valid, nothing to do
    ok.LoadData(nullptr, 0);
    CHECK(ok.Run().empty() && ok.RowCount() == 0);
    normconf::LayerNorm<float> ln({2, 3}, {1});
    CHECK(throws_invalid([&] { ln.SetGamma({1.f, 2.f}); }));
    CHECK(throws_invalid([&] { ln.SetEpsilon(0.0); }));
    std::vector<float> x(5);
    CHECK(throws_invalid([&] { ln.LoadData(x.data(), x.size()); }));
}

template <typename Fmt>
static void check_format(const char* name, double max_finite) {
    int bad = 0;
    for (unsigned b = 0; b < 65536; ++b) {  // every value survives the round trip
        const auto bits = static_cast<std::uint16_t>(b);
        const double v = Fmt::to_double(bits);
        if (std::isnan(v)) {
            if (!std::isnan(Fmt::to_double(Fmt::from_double(v)))) ++bad;
            continue;
        }
        if (Fmt::from_double(v) != bits) ++bad;
    }
    for (unsigned b = 0; b < 0x7fffu; ++b) {  // midpoints of neighbours go to the even one, off-midpoints to the nearer
        const auto lo = static_cast<std::uint16_t>(b), hi = static_cast<std::uint16_t>(b + 1);
        const double a = Fmt::to_double(lo), c = Fmt::to_double(hi);
        if (std::isinf(c) || std::isnan(c)) break;
        const double mid = a + (c - a) / 2;  // exact in double
        const std::uint16_t even = (lo & 1u) ? hi : lo;
        if (Fmt::from_double(mid) != even || Fmt::from_double(-mid) != (even | 0x8000u)) ++bad;
        if (Fmt::from_double(std::nextafter(mid, 0.0)) != lo || Fmt::from_double(std::nextafter(mid, INFINITY)) != hi)
            ++bad;
    }
    const double top_mid = max_finite + (max_finite - Fmt::to_double(static_cast<std::uint16_t>(Fmt::kExpMask - 2))) / 2;
    const std::uint16_t inf_bits = Fmt::kExpMask;
    if (Fmt::to_double(static_cast<std::uint16_t>(Fmt::kExpMask - 1)) != max_finite) ++bad;
    if (Fmt::from_double(top_mid) != inf_bits || Fmt::from_double(std::nextafter(top_mid, 0.0)) != Fmt::kExpMask - 1)
        ++bad;  // overflow: half an ulp above the largest finite value rounds to infinity (tie to even)
    if (Fmt::from_double(1e300) != inf_bits || Fmt::from_double(-0.0) != 0x8000u || Fmt::from_double(1e-300) != 0)
        ++bad;
    if (bad) std::fprintf(stderr, "%s: %d conversion checks failed\n", name, bad);
    failures += bad;
}

static void test_half_conversions() {
    check_format<normconf::half::Float16>("float16", 65504.0);
    check_format<normconf::half::BFloat16>("bfloat16", std::ldexp(255.0, 120));  // (2 - 2^-7) * 2^127
    CHECK(normconf::half::Float16::from_double(1.0) == 0x3c00);
    CHECK(normconf::half::BFloat16::from_double(1.0) == 0x3f80);
    CHECK(normconf::half::Float16::from_double(std::ldexp(1.0, -24)) == 0x0001);  // smallest subnormal
    CHECK(normconf::half::Float16::from_double(std::ldexp(1.0, -25)) == 0x0000);  // its half: tie to even (0)
    // not via float: 1 + 2^-11 + 2^-40 rounds up in float16 but would tie (and go down) after a float rounding
    CHECK(normconf::half::Float16::from_double(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)) == 0x3c01);
}

static normconf_call ln_call(const std::vector<float>& x, std::vector<float>& y) {
    normconf_call c{};
    c.struct_size = sizeof c;
    c.abi_version = NORMCONF_ABI_VERSION;
    c.op = NORMCONF_OP_LAYER_NORM;
    c.dtype = c.param_dtype = NORMCONF_FLOAT32;
    c.rank = 2;
    c.dims[0] = 2;
    c.dims[1] = 4;
    c.axes_mask = 2u;
    c.x_len = 8;
    c.eps = 0.5;
    c.x = x.data();
    c.y = y.data();
    return c;
}

static void test_c_abi() {
    CHECK(normconf_supports(NORMCONF_OP_LAYER_NORM, NORMCONF_FORWARD) == 1);
    CHECK(normconf_supports(NORMCONF_OP_LAYER_NORM, NORMCONF_BACKWARD) == 0);
    CHECK(normconf_supports(NORMCONF_OP_RMS_NORM, NORMCONF_FORWARD) == 0);
    const std::vector<float> x = {1, 2, 3, 6, 5, 5, 5, 5};
    std::vector<float> y(8), mean(2), inv_std(2);
    normconf_call c = ln_call(x, y);
    c.mean = mean.data();
    c.inv_std = inv_std.data();
    CHECK(normconf_run(&c) == NORMCONF_OK);
    CHECK(c.written == (NORMCONF_WROTE_MEAN | NORMCONF_WROTE_INV_STD));
    CHECK_NEAR(y[0], -1.0, 0.0);
    CHECK_NEAR(y[3], 1.5, 0.0);
    CHECK_NEAR(mean[0], 3.0, 0.0);
    CHECK_NEAR(inv_std[0], 0.5, 0.0);

    // float16 data with float32 parameters: y rounded once to binary16
    std::vector<std::uint16_t> xh(8), yh(8);
    for (int i = 0; i < 8; ++i) xh[i] = normconf::half::Float16::from_double(x[i]);
    c = ln_call(x, y);
    c.dtype = NORMCONF_FLOAT16;
    c.x = xh.data();
    c.y = yh.data();
    c.mean = mean.data();
    CHECK(normconf_run(&c) == NORMCONF_OK);
    CHECK(yh[0] == normconf::half::Float16::from_double(-1.0));
    CHECK(yh[1] == normconf::half::Float16::from_double(-0.5));
    CHECK_NEAR(mean[1], 5.0, 0.0);

    // errors: return codes with messages
    c = ln_call(x, y);
    c.axes_mask = 0;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    CHECK(std::string(normconf_last_error()).find("axes_mask") != std::string::npos);
    c = ln_call(x, y);
    c.axes_mask = 4u;  // axis 2 of a rank-2 x
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = ln_call(x, y);
    c.direction = NORMCONF_BACKWARD;
    CHECK(normconf_run(&c) == NORMCONF_EUNSUPPORTED);
    c = ln_call(x, y);
    c.param_dtype = 0;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = ln_call(x, y);
    c.abi_version = 1;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = ln_call(x, y);
    c.rank = 1;  // dims[1] = 4 beyond rank
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
}

int main() {
    test_hand_computed_rows();
    test_any_axes_against_brute_force();
    test_arguments();
    test_half_conversions();
    test_c_abi();
    if (failures) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("test_layer_norm: all checks passed\n");
    return 0;
}
