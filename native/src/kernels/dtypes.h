/* The element types the harness's kernels read (compare.c, reference_bn.c) and their exact
 * conversion to double.  float16 and bfloat16 arrive as their raw uint16 storage; every value of
 * every type is exactly representable in double, so the conversion is exact (NaN stays NaN). */
#ifndef NORMCONF_KERNELS_DTYPES_H
#define NORMCONF_KERNELS_DTYPES_H

#include <stdint.h>
#include <string.h>

enum { NC_F64 = 0, NC_F32 = 1, NC_F16 = 2, NC_BF16 = 3 };

/* x86-64 with GCC/Clang: the kernels also build a 4-lane AVX2 copy of their loops, chosen at run
 * time; else only 2 lanes (SSE2, NEON: the width every 64-bit ISA has natively) */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NC_AVX2 1
#else
#define NC_AVX2 0
#endif

static inline double nc_f16_to_f64(uint16_t h) {
    uint64_t sign = (uint64_t)(h >> 15) << 63;
    unsigned e = (h >> 10) & 0x1fu;
    uint64_t m = h & 0x3ffu, bits;
    double d;
    if (e == 0) { /* zero or subnormal: m * 2**-24, exact */
        d = (double)m * 0x1p-24;
        return sign ? -d : d;
    }
    if (e == 31) { /* inf, or NaN (made quiet) */
        bits = sign | 0x7ff0000000000000ull | (m ? (1ull << 51) | (m << 42) : 0);
    } else {
        bits = sign | ((uint64_t)(e - 15 + 1023) << 52) | (m << 42);
    }
    memcpy(&d, &bits, sizeof d);
    return d;
}

static inline double nc_bf16_to_f64(uint16_t h) {
    uint32_t b = (uint32_t)h << 16; /* bfloat16 is the upper half of a float32 */
    float f;
    memcpy(&f, &b, sizeof f);
    return (double)f;
}

/* element k of x (of type dtype) as a double, exactly */
static inline __attribute__((always_inline)) double nc_load(const void *x, int dtype, int64_t k) {
    switch (dtype) {
    case NC_F64:
        return ((const double *)x)[k];
    case NC_F32:
        return (double)((const float *)x)[k];
    case NC_F16:
        return nc_f16_to_f64(((const uint16_t *)x)[k]);
    default:
        return nc_bf16_to_f64(((const uint16_t *)x)[k]);
    }
}

#endif
