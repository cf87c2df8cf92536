/* The comparison of normconf.compare in one pass: observed (float64/float32/float16/bfloat16)
 * against expected values held as float64, or as float32 where they are float32 numbers (the
 * expected values of a float32, float16 or bfloat16 output are: converted exactly, they give the
 * same bits, and the pass reads half the bytes).  Bit-identical to the NumPy code of harness/compare.py (its twin):
 * the same IEEE operations in the same order (|o - e|, atol + rtol * |e| as two roundings, the
 * divisions), and the same rules for NaN, infinities and e == 0.
 *
 * Conventions (as harness/compare.py):
 *   finite   both sides finite; metrics are taken over these elements only (others count 0)
 *   bad      finite and |o - e| > atol + rtol * |e|, or NaN positions differ, or an Inf differs
 *   score    |o - e| / lim for finite elements, +inf for NaN/Inf mismatches, 0 for the rest;
 *            the result is the FIRST largest score, NaN first (as np.argmax picks it)
 *   rel      |o - e| / |e|, or (|o - e| > 0 ? inf : 0) where e == 0
 *   ulp      |o - e| / ulp(|e|), ulp as compare.ulp defines it (see ulp_of)
 * The maxima of abs/rel/ulp never see a NaN (|o - e| of finite values is finite or +inf, and
 * every divisor is > 0), so no NaN propagation rule is needed for them; only the score can be
 * NaN (0/0, inf/inf, NaN tolerance) and it follows np.argmax.
 *
 * Vectorised with GCC/Clang vector extensions: the loop is written once (the NC_TEMPLATE part at
 * the end, included twice) for 4 lanes (AVX2, chosen at run time on x86-64) and 2 lanes (SSE2,
 * NEON, any 64-bit ISA).  No FMA (-ffp-contract=off, no "fma" target): every width gives the
 * same bits.  With AVX2, float32 observed and expected values of a float32 output (a worker's large
 * float32 case) first go through a float32 screen of 8 lanes (screen8) that lets the fast pass skip
 * the elements that provably change no count and no maximum: the same bits, about half the
 * arithmetic; inside each chunk, and between chunks once a worst element is known (NC(run)), so a
 * quiet stretch costs no chunk set-up (32x64x56x56: 4.6 -> 1.8 ms, the time NumPy takes to sum
 * both arrays).
 * Reentrant, no global state: callers may run it from several threads.
 */
#ifndef NC_TEMPLATE
#include <stdint.h>
#include <string.h>

#include "dtypes.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define NC_EXPORT __attribute__((visibility("default")))

struct normconf_compare_result {
    int64_t n_bad;      /* mismatched elements */
    int64_t n_nan;      /* NaN on exactly one side */
    int64_t n_inf;      /* an infinity on a side, no NaN, o != e */
    int64_t any_finite; /* 1 when some element is finite on both sides */
    int64_t worst;      /* flat index of the first largest score (0 when n == 0) */
    double max_abs;
    double max_rel;
    double max_ulp;
    double score; /* the score at `worst` */
};

#define EXPM ((int64_t)0x7FF << 52)
#define MANTM (((int64_t)1 << 52) - 1)
#define ABSM (EXPM | MANTM)
#define BAND ((int64_t)1 << 16) /* compare.py's _NEAR */
#define CHUNK 1024              /* elements converted and scored at a time (stays in L1) */

static inline double from_bits(int64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline int64_t to_bits(double d) {
    int64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* For m = 2**K * (1 - j * 2**-53), 1 <= j <= 2**16 (just below a power of two), NumPy's
 * floor(log2(m)) is K, not K - 1, iff j <= band_up(K).  Why: log2(m) = K - t with
 * t = j * 2**-53 / ln 2 * (1 + O(2**-38)); correctly rounded, K - t rounds to K iff t < h, h
 * half the gap between K and the next double towards -inf: h = 2**(q-53) with
 * q = floor(log2 |K|) - (K > 0 and K a power of two).  So j <= floor(2**q * ln 2) (never an
 * integer, and at least 0.1 away from one for every q here, far above the O(2**-38) terms).
 * K = 0: log2(m) < 0, floor -1 = K - 1.  np.log2 is correctly rounded on all these values
 * (tests/test_compare_kernel.py checks every K, j against compare.ulp, the NumPy formula).
 * Just above a power of two (m = 2**k (1 + d), 0 <= d < 2**-37) any faithful log2 lies in
 * [k, k + 1), so the formula's floor is k, the power of two read from the bits. */
static int64_t band_up(int64_t K) {
    static const int16_t up[12] = {0, 0, 1, 2, 5, 11, 22, 44, 88, 177, 354, 709}; /* q = -1..10 */
    if (K == 0) {
        return 0;
    }
    int64_t a = K < 0 ? -K : K;
    int64_t q = 63 - __builtin_clzll((unsigned long long)a);
    if (K > 0 && (a & (a - 1)) == 0) {
        q -= 1;
    }
    return (q + 1 >= 0 && q + 1 < 12) ? up[q + 1] : 0;
}

/* compare.ulp of finite a >= 0: max(2**(floor(log2(max(a, tiny))) - nmant), sub), exact. */
static double ulp_of(double a, int64_t nmant, double tiny, double sub) {
    double m = a < tiny ? tiny : a; /* np.maximum(a, tiny) for a not NaN */
    int64_t b = to_bits(m);
    int64_t k = ((b >> 52) & 0x7FF) - 1023; /* m >= tiny is normal */
    int64_t M = b & MANTM;
    if (M >= ((int64_t)1 << 52) - BAND && ((int64_t)1 << 52) - M <= band_up(k + 1)) {
        k += 1;
    }
    int64_t p = k - nmant;
    double u = p >= -1022 ? from_bits((p + 1023) << 52) : from_bits((int64_t)1 << (p + 1074));
    return u < sub ? sub : u; /* never below sub (tiny * 2**-nmant == sub); as the formula */
}

/* Running totals of the scalar path (vectors with a non-finite element, and the tail). */
struct acc {
    int64_t n_bad, n_nan, n_inf, any_finite;
    double max_abs, max_rel, max_ulp;
};

/* One element by the rules of harness/compare.py's general (non-finite) path; returns its score. */
static double one(double o, double e, double rtol, double atol, int64_t nmant, double tiny, double sub,
                  struct acc* a) {
    int nan_o = o != o, nan_e = e != e;
    int inf_o = __builtin_fabs(o) == __builtin_inf(), inf_e = __builtin_fabs(e) == __builtin_inf();
    int nan_bad = nan_o != nan_e;
    int inf_bad = (inf_o | inf_e) & !(nan_o | nan_e) & (o != e);
    a->n_nan += nan_bad;
    a->n_inf += inf_bad;
    if (nan_o | nan_e | inf_o | inf_e) {
        a->n_bad += nan_bad | inf_bad;
        return (nan_bad | inf_bad) ? __builtin_inf() : 0.0; /* abs, rel, ulp count 0 */
    }
    double ae = __builtin_fabs(e), d = __builtin_fabs(o - e), lim = atol + rtol * ae;
    double rel = e != 0 ? d / ae : (d > 0 ? __builtin_inf() : 0.0);
    double ulp_err = d / ulp_of(ae, nmant, tiny, sub);
    a->any_finite = 1;
    a->n_bad += d > lim;
    a->max_abs = d > a->max_abs ? d : a->max_abs;
    a->max_rel = rel > a->max_rel ? rel : a->max_rel;
    a->max_ulp = ulp_err > a->max_ulp ? ulp_err : a->max_ulp;
    return d / lim;
}

/* Whether the float32 screen (NC(screen8)) may run: float32 observed and expected values of a float32
 * output, tolerances inside the range its proof covers (atol in [2**-60, 1], rtol in [0, 1]); inside a
 * chunk (NC(chunk), whose fast pass it serves) and between chunks (NC(run)). */
static inline int nc_screens(int kind, int ekind, int64_t nmant, double tiny, double rtol, double atol) {
    return kind == NC_F32 && ekind == NC_F32 && nmant == 23 && tiny == 0x1p-126 && atol >= 0x1p-60 && atol <= 1.0 &&
           rtol >= 0 && rtol <= 1.0;
}

#define NC_TEMPLATE
#if NC_AVX2
#define W 4
#define NC_TARGET __attribute__((target("avx2")))
#include "compare.c"
#undef W
#undef NC_TARGET
#endif
#define W 2
#define NC_TARGET
#include "compare.c"
#undef W
#undef NC_TARGET

/* every entry point: (obs, kind, exp, ekind, [lanes,] n, rtol, atol, nmant, tiny, sub, out) */
#define ARGS \
    int64_t n, double rtol, double atol, int64_t nmant, double tiny, double sub, struct normconf_compare_result *out

/* The pass at a chosen vector width: kind (observed) 0..3 = f64, f32, f16 (bits), bf16 (bits),
 * ekind (expected) 0 or 1 = f64, f32; lanes 0 (the widest this CPU runs), 2 (always) or 4 (where
 * AVX2 runs).  Returns 0, or -1 for a kind or a width not available (nothing written). */
NC_EXPORT int normconf_compare_lanes(const void* obs, int64_t kind, const void* exp, int64_t ekind, int64_t lanes,
                                     ARGS) {
    if (kind < NC_F64 || kind > NC_BF16 || (ekind != NC_F64 && ekind != NC_F32)) {
        return -1;
    }
#if NC_AVX2
    if ((lanes == 4 || lanes == 0) && __builtin_cpu_supports("avx2")) {
        return run_4(obs, (int)kind, exp, (int)ekind, n, rtol, atol, nmant, tiny, sub, out);
    }
#endif
    if (lanes == 2 || lanes == 0) {
        return run_2(obs, (int)kind, exp, (int)ekind, n, rtol, atol, nmant, tiny, sub, out);
    }
    return -1;
}

/* The comparison normconf.compare runs: normconf_compare_lanes at the widest width. */
NC_EXPORT int normconf_compare(const void* obs, int64_t kind, const void* exp, int64_t ekind, ARGS) {
    return normconf_compare_lanes(obs, kind, exp, ekind, 0, n, rtol, atol, nmant, tiny, sub, out);
}

/* The float32 screen on its own (for the tests: its soundness, element by element): the number of leading
 * elements of the n (a multiple of 8) float32 pairs at obs, exp that it lets the fast pass skip, given the
 * pass's running maxima of |o - e|, the relative and ULP errors and the score (each >= 0); -1 where it does
 * not run (no AVX2, or a tolerance outside its range: atol in [2**-60, 1], 0 <= rtol <= 1). */
NC_EXPORT int64_t normconf_compare_screen(const float* obs, const float* exp, int64_t n, double rtol, double atol,
                                          double mabs, double mrel, double mulp, double score) {
#if NC_AVX2
    if (__builtin_cpu_supports("avx2") && atol >= 0x1p-60 && atol <= 1.0 && rtol >= 0 && rtol <= 1.0 && n % 8 == 0) {
        return screen_4(obs, exp, n, rtol, atol, mabs, mrel, mulp, score);
    }
#endif
    (void)obs, (void)exp, (void)n, (void)rtol, (void)atol, (void)mabs, (void)mrel, (void)mulp, (void)score;
    return -1;
}

/* compare.ulp of |a| for finite a (for the tests: the ulp rule on its own) */
NC_EXPORT void normconf_compare_ulp(const double* a, int64_t n, int64_t nmant, double tiny, double sub, double* out) {
    for (int64_t i = 0; i < n; i++) {
        double v = a[i] < 0 ? -a[i] : a[i];
        out[i] = ulp_of(v, nmant, tiny, sub);
    }
}

#else /* NC_TEMPLATE: the vector loop for W lanes (included twice above, W = 4 and W = 2) */

#define NC_CAT2(a, b) a##_##b
#define NC_CAT(a, b) NC_CAT2(a, b)
#define NC(name) NC_CAT(name, W)
#define VD NC(vd)
#define VL NC(vl)
#define VUL NC(vul)
#define VF NC(vf)
#define VU NC(vu)
typedef double VD __attribute__((vector_size(8 * W)));
typedef int64_t VL __attribute__((vector_size(8 * W)));
typedef uint64_t VUL __attribute__((vector_size(8 * W)));
typedef float VF __attribute__((vector_size(4 * W)));
typedef uint32_t VU __attribute__((vector_size(4 * W)));

#undef SEL
#undef SPLAT
#undef VMAX
#define SEL(m, a, b) ((VD)(((m) & (VL)(a)) | (~(m) & (VL)(b))))
/* a > b ? a : b lane by lane (b where unordered or equal), as x86's max */
#if defined(__x86_64__) && W == 4
#define VMAX(a, b) ((VD)_mm256_max_pd((__m256d)(a), (__m256d)(b)))
#elif defined(__x86_64__)
#define VMAX(a, b) ((VD)_mm_max_pd((__m128d)(a), (__m128d)(b)))
#else
#define VMAX(a, b) SEL((a) > (b), (a), (b))
#endif
#if W == 4
#define SPLAT(x) {(x), (x), (x), (x)}
#else
#define SPLAT(x) {(x), (x)}
#endif

/* elements i..i+W-1 of obs as doubles (exact) */
static inline __attribute__((always_inline)) NC_TARGET void NC(obsw)(VD* out, const void* obs, int kind, int64_t i) {
    VD v;
    if (kind == NC_F64) {
        memcpy(&v, (const double*)obs + i, sizeof v);
    } else if (kind == NC_F32) {
#if defined(__x86_64__) && W == 4 /* one vcvtps2pd (GCC 12 splits __builtin_convertvector in two) */
        v = (VD)_mm256_cvtps_pd(_mm_loadu_ps((const float*)obs + i));
#elif defined(__x86_64__)
        v = (VD)_mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)((const float*)obs + i))));
#else
        VF f;
        memcpy(&f, (const float*)obs + i, sizeof f);
        v = __builtin_convertvector(f, VD);
#endif
    } else if (kind == NC_BF16) {
        const uint16_t* h = (const uint16_t*)obs + i;
        VU b = SPLAT(0);
        for (int l = 0; l < W; l++) {
            b[l] = (uint32_t)h[l] << 16;
        }
        v = __builtin_convertvector((VF)b, VD);
    } else {
        for (int l = 0; l < W; l++) {
            v[l] = nc_f16_to_f64(((const uint16_t*)obs)[i + l]);
        }
    }
    *out = v;
}

/* 1 if some lane of mask m is set (movemask on x86: one instruction, where a loop over the lanes
 * was a third of the kernel's time) */
static inline __attribute__((always_inline)) NC_TARGET int NC(any)(VL m) {
#if defined(__x86_64__) && W == 4
    return _mm256_movemask_pd((__m256d)m) != 0;
#elif defined(__x86_64__)
    return _mm_movemask_pd((__m128d)m) != 0;
#else
    int64_t a = 0;
    for (int l = 0; l < W; l++) {
        a |= m[l];
    }
    return a != 0;
#endif
}

/* The vector path's arithmetic for W elements of which both sides are finite (compare.py's fast
 * path): updates the count and maxima, writes the scores.  ulp: 2**(E - 1023 - nmant), E the
 * exponent bits of max(|e|, tiny); d * 2**-p is d / 2**p (both the correctly rounded d * 2**-p).
 * Lanes just below a power of two, or whose 2**-p is not a normal double, go through ulp_of and
 * a division, as the formula. */
static inline __attribute__((always_inline)) NC_TARGET void NC(finite)(
    VD vo, VD ve, VL eb, VD vr, VD va, VD vt, VL mantm, VL unit, VL invb, VD band, VD small, int64_t nmant,
    double tiny, double sub, VL* bad, VD* mabs, VD* mrel, VD* mulp, VD* score) {
    const VL absm = SPLAT(ABSM);
    VD ae = (VD)eb;                     /* |e| */
    VD d = (VD)((VL)(vo - ve) & absm); /* |o - e| */
    VD lim = va + vr * ae;               /* atol + rtol * |e| */
    *bad -= d > lim;
    *mabs = SEL(d > *mabs, d, *mabs);
    VD rel = d / ae; /* where e == 0: d > 0 gives inf; 0/0 is NaN, never > mrel (>= 0): as 0 */
    *mrel = SEL(rel > *mrel, rel, *mrel);
    VD m = SEL(ae < vt, vt, ae);
    VL E = (VL)((VUL)m >> 52);
    VD ulp_err = d * (VD)((invb - E) << 52);
    VL sp = ((VD)(((VL)m & mantm) | unit) >= band) | (m < small);
    if (__builtin_expect(NC(any)(sp), 0)) {
        for (int l = 0; l < W; l++) {
            if (sp[l]) {
                ulp_err[l] = d[l] / ulp_of(ae[l], nmant, tiny, sub);
            }
        }
    }
    *mulp = SEL(ulp_err > *mulp, ulp_err, *mulp);
    *score = d / lim;
}

#if defined(__x86_64__) && W == 4
/* The largest float32 number <= x (x >= 0, not NaN; FLT_MAX for x beyond it): rounded down.  Where the
 * nearest float32 f is above x, f > 0 and finite, and the float32 number below it is f's bit pattern
 * minus one (nextafterf(f, 0), without libm's call: this runs for every chunk of the screen). */
static inline float nc_down32(double x) {
    if (!(x <= (double)__FLT_MAX__)) {
        return __FLT_MAX__;
    }
    float f = (float)x;
    if ((double)f > x) {
        uint32_t b;
        memcpy(&b, &f, sizeof b);
        b -= 1;
        memcpy(&f, &b, sizeof f);
    }
    return f;
}

static inline NC_TARGET double NC(hmax)(VD v) {
    double a = v[0] > v[1] ? v[0] : v[1], b = v[2] > v[3] ? v[2] : v[3];
    return a > b ? a : b;
}

/* The float32 screen of the fast pass (float32 observed and expected values of a float32 output, 8 lanes
 * where the pass above takes 4 doubles): the number of elements from the start of [0, nv) before the
 * first vector of 8 in which some element might change a result (at most nv - nv % 8: a last partial
 * vector is the caller's), so that the fast pass's vector steps can skip them.  An element is skipped only if it is certainly finite on both sides, not
 * bad and below every running maximum (abs, rel, ulp and the score, the lane maxima mabs, mrel, mulp, vm
 * of the pass, which are >= 0 and never NaN): then its step would change nothing, the counts and maxima
 * being independent of the order elements are taken in, so the results are the same bits.  Each test
 * compares d32 = |o - e| in float32 (the exact |o - e| correctly rounded: monotonic) with a float32
 * threshold t <= the exact double threshold T (the bound of each maximum times |e| or lim, lim itself):
 * the exact d > T then gives d > t and, t being a float32 number, d32 >= t, so the element is flagged
 * (d32 >= t, or d32 NaN: NOT(d32 < t)).  Each t is made <= T by rounding the maxima down and a margin of
 * 2**-20 for the float32 roundings of lim and of the products (each a relative 2**-24, all operands
 * normal: |e| >= 2**-60 (smaller |e|, zero included, is flagged), atol in [2**-60, 1], a maximum below
 * 2**-30 taken as 0); t is clamped to [2**-149, FLT_MAX] (d32 = 0 changes nothing and is never bad:
 * lim > 0; an overflowed product flags d32 = FLT_MAX and inf).  The ulp threshold uses ulp(|e|) =
 * 2**(floor(log2 |e|) - 23) read from |e|'s exponent bits: a float32 |e| is never within 2**-36 below a
 * power of two (its double mantissa ends in 29 zero bits), and |e| >= 2**-60 is above the float32 tiny. */
static inline __attribute__((always_inline)) NC_TARGET int64_t NC(screen8)(const void* obs, const void* e, int64_t nv,
                                                                      double rtol, double atol, VD mabs, VD mrel,
                                                                      VD mulp, VD vm) {
    const double margin = 1.0 - 0x1p-20;
    double fa = NC(hmax)(mabs), fr = NC(hmax)(mrel), fu = NC(hmax)(mulp), fs = NC(hmax)(vm);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 expm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7F800000));
    const __m256 a8 = _mm256_set1_ps(nc_down32(atol)), r8 = _mm256_set1_ps(nc_down32(rtol));
    const __m256 c8 = _mm256_set1_ps((float)margin), small8 = _mm256_set1_ps(0x1p-60f);
    const __m256 lo8 = _mm256_set1_ps(0x1p-149f);
    const __m256 fa8 = _mm256_set1_ps(nc_down32(fa));
    const __m256 fr8 = _mm256_set1_ps(fr < 0x1p-30 ? 0.0f : nc_down32(fr * margin));
    const __m256 fs8 = _mm256_set1_ps(fs < 0x1p-30 ? 0.0f : nc_down32(fs * margin));
    const __m256 fu8 = _mm256_set1_ps(fu < 0x1p-30 ? 0.0f : nc_down32(fu * margin) * 0x1p-23f);
    const float* o = (const float*)obs;
    const float* x = (const float*)e;
/* f: the flags of the 8 elements at j (some lane might change a result) */
#define NC_SCREEN_FLAG(f, j)                                                                                   \
    __m256 f;                                                                                                  \
    {                                                                                                          \
        __m256 vo = _mm256_loadu_ps(o + (j)), ve = _mm256_loadu_ps(x + (j));                                   \
        __m256 ae = _mm256_and_ps(ve, absm);                                                                   \
        __m256 d = _mm256_and_ps(_mm256_sub_ps(vo, ve), absm);                                                 \
        __m256 lim = _mm256_add_ps(a8, _mm256_mul_ps(r8, ae));                                                 \
        __m256 t = _mm256_min_ps(_mm256_mul_ps(lim, c8), _mm256_mul_ps(fr8, ae));                              \
        t = _mm256_min_ps(t, _mm256_mul_ps(fs8, lim));                                                         \
        t = _mm256_min_ps(t, _mm256_mul_ps(fu8, _mm256_and_ps(ae, expm)));                                     \
        t = _mm256_max_ps(_mm256_min_ps(t, fa8), lo8);                                                         \
        f = _mm256_or_ps(_mm256_cmp_ps(d, t, _CMP_NLT_UQ), _mm256_cmp_ps(ae, small8, _CMP_LT_OQ));             \
    }
    int64_t i = 0;
    for (; i + 16 <= nv; i += 16) { /* two vectors per test of the flags; the first flagged one is returned */
        NC_SCREEN_FLAG(f0, i)
        NC_SCREEN_FLAG(f1, i + 8)
        if (_mm256_movemask_ps(_mm256_or_ps(f0, f1))) {
            return _mm256_movemask_ps(f0) ? i : i + 8;
        }
    }
    if (i + 8 <= nv) {
        NC_SCREEN_FLAG(f0, i)
        if (!_mm256_movemask_ps(f0)) {
            i += 8;
        }
    }
#undef NC_SCREEN_FLAG
    return i;
}

/* screen8 with the maxima as numbers (normconf_compare_screen, for the tests) */
static NC_TARGET int64_t NC(screen)(const float* obs, const float* e, int64_t nv, double rtol, double atol,
                                    double mabs, double mrel, double mulp, double score) {
    VD a = SPLAT(mabs), r = SPLAT(mrel), u = SPLAT(mulp), v = SPLAT(score);
    return NC(screen8)(obs, e, nv, rtol, atol, a, r, u, v);
}
#endif

/* a chunk whose largest score is cm replaces the worst element found so far (best, have: one was
 * found): np.argmax's rule, the first NaN if any, else the first of the largest (a tie keeps the
 * earlier element) */
static inline NC_TARGET int NC(takes_over)(int have, double best, double cm) {
    return !have || (best == best && (cm != cm || cm > best));
}

/* The counts and maxima of the n (<= CHUNK) elements at obs, e.  Returns 1 if the chunk holds a
 * new worst element (takes_over the best so far): then s holds the n scores and *cmax the
 * largest (NaN if any); 0 otherwise (s and *cmax undefined).
 *
 * The fast pass (atol > 0 and rtol finite >= 0, so every lim > 0: the default tolerances): the
 * chunk's whole vectors assuming |o - e| finite (so both sides are, and no score is 0/0 or
 * inf/inf) and no ulp lane special, one horizontal test of those at the end.  It
 * divides only where a quotient can raise a maximum: a rounded d / q exceeds the double m >= 0
 * only if the exact d / q does, so d > m * q and, d being a double, d >= RN(m * q) (rounding is
 * monotonic); lanes with d == 0 have quotient 0 (or NaN) and never raise one.  The score's maximum
 * starts at the best score so far (a chunk must exceed it to take over), and the scores are
 * computed again for a chunk that does.  Kept only if its assumptions held; otherwise the chunk
 * is done again vector by vector: vectors whose 2W values are finite take the vector path with
 * the special lanes fixed, the others go element by element.  Each element's values come from
 * the same operations either way, and counts and maxima do not depend on the order they are
 * taken in, so the results are the same bits.  The tail goes element by element. */
static inline __attribute__((always_inline)) NC_TARGET int NC(chunk)(
    const void* obs, int kind, const void* e, int ekind, int64_t n, double rtol, double atol, int64_t nmant,
    double tiny, double sub, int have, double best, double* s, VL* cnt_bad, VD* mx_abs, VD* mx_rel, VD* mx_ulp,
    struct acc* a, double* cmax) {
    /* only FP compares and 64-bit add/shift/logic: cheap in every ISA's vectors (SSE2 has no
     * 64-bit integer compare) */
    const VL absm = SPLAT(ABSM), mantm = SPLAT(MANTM), unit = SPLAT((int64_t)1023 << 52);
    const VL invb = SPLAT(2046 + nmant);
    const VD vr = SPLAT(rtol), va = SPLAT(atol), vt = SPLAT(tiny), dmax = SPLAT(__DBL_MAX__);
    const VD band = SPLAT(2.0 - 0x1p-36);          /* mantissa field >= 2**52 - 2**16 */
    const VD small = SPLAT(from_bits(nmant << 52)); /* exponent field < nmant */
    const VD zero = SPLAT(0.0);
    const int64_t nv = n - n % W;
    VD vm = SPLAT(-__builtin_inf());
    VL bad = *cnt_bad;
    VD mabs = *mx_abs, mrel = *mx_rel, mulp = *mx_ulp;
    int64_t i = 0;
    int scored = 1; /* s[0, nv) holds the scores */
    if (atol > 0 && rtol >= 0 && rtol <= __DBL_MAX__ && nv > 0) { /* so lim > 0 */
        VL ok = SPLAT(-1), flag = SPLAT(0), fbad = bad;
        VD fabs_ = mabs, frel = mrel, fulp = mulp;
        const double floor = !have ? 0.0 : best == best ? best : __builtin_inf(); /* NaN best: nothing takes over */
        const VD small_f = tiny < small[0] ? small : zero; /* m >= tiny >= small: never special */
        VD fvm = SPLAT(floor);
/* the fast pass over the W elements at j (the vector step of both loops below) */
#define NC_FAST_STEP(j)                                                                                          \
    do {                                                                                                         \
        VD vo, ve;                                                                                               \
        NC(obsw)(&vo, obs, kind, (j));                                                                           \
        NC(obsw)(&ve, e, ekind, (j));                                                                            \
        VD ae = (VD)((VL)ve & absm);       /* |e| */                                                             \
        VD d = (VD)((VL)(vo - ve) & absm); /* |o - e|: NaN or inf where a side is not finite */                  \
        VD lim = va + vr * ae;             /* atol + rtol * |e| > 0 */                                           \
        ok &= d <= dmax;                   /* so both sides finite, and no score is NaN */                       \
        fbad -= d > lim;                                                                                         \
        fabs_ = VMAX(d, fabs_);                                                                                  \
        VD m = VMAX(ae, vt);                                                                                     \
        VL E = (VL)((VUL)m >> 52);                                                                               \
        /* The shortcut's ulp error.  Where 2**-p is not a normal double (m < small) it is garbage: those        \
         * lanes always fall back.  Just below a power of two the formula's ulp is the shortcut's or twice      \
         * it, so the formula's error is at most the shortcut's (rounding is monotonic): a special lane         \
         * matters only if its shortcut raises the maximum. */                                                   \
        VD ulp_err = d * (VD)((invb - E) << 52);                                                                 \
        flag |= m < small_f;                                                                                     \
        /* a NaN product compares false: frel * ae for frel = inf, fvm * lim for lim = inf */                   \
        if (NC(any)((ulp_err > fulp) | (((d >= frel * ae) | (d >= fvm * lim)) & (d > zero)))) {                  \
            flag |= (VD)(((VL)m & mantm) | unit) >= band; /* just below a power of two */                        \
            fulp = VMAX(ulp_err, fulp);                                                                          \
            VD rel = d / ae;                                                                                     \
            frel = VMAX(rel, frel);                                                                              \
            VD score = d / lim;                                                                                  \
            fvm = VMAX(score, fvm);                                                                              \
        }                                                                                                        \
    } while (0)
#if defined(__x86_64__) && W == 4
        if (nc_screens(kind, ekind, nmant, tiny, rtol, atol) && nv >= 8) {
            i = NC(screen8)(obs, e, nv, rtol, atol, fabs_, frel, fulp, fvm); /* elements [0, i) need no step */
            /* ... but a flagged vector of 8 does: the screen returns at the first one (see screen8) */
            while (i < nv) {
                if (i + 8 <= nv) {
                    NC_FAST_STEP(i);
                    NC_FAST_STEP(i + 4);
                    i += 8;
                    i += NC(screen8)((const float*)obs + i, (const float*)e + i, nv - i, rtol, atol, fabs_, frel,
                                     fulp, fvm);
                } else {
                    NC_FAST_STEP(i);
                    i += 4;
                }
            }
        }
#endif
        for (; i < nv; i += W) {
            NC_FAST_STEP(i);
        }
#undef NC_FAST_STEP
        flag |= ~ok;
        if (!NC(any)(flag)) {
            bad = fbad;
            mabs = fabs_;
            mrel = frel;
            mulp = fulp;
            vm = fvm;
            a->any_finite = 1;
            scored = 0;
        } else {
            i = 0;
        }
    }
    for (; i < nv; i += W) {
        VD vo, ve, score = SPLAT(0.0);
        NC(obsw)(&vo, obs, kind, i);
        NC(obsw)(&ve, e, ekind, i);
        VL eb = (VL)ve & absm;
        VL fin = ((VD)((VL)vo & absm) <= dmax) & ((VD)eb <= dmax);
        if (!NC(any)(~fin)) {
            NC(finite)(vo, ve, eb, vr, va, vt, mantm, unit, invb, band, small, nmant, tiny, sub, &bad, &mabs, &mrel, &mulp,
                       &score);
            a->any_finite = 1;
        } else {
            for (int l = 0; l < W; l++) {
                score[l] = one(vo[l], ve[l], rtol, atol, nmant, tiny, sub, a);
            }
        }
        memcpy(s + i, &score, sizeof score);
        vm = SEL((score > vm) | (score != score), score, vm);
    }
    double cm = vm[0];
    for (int l = 1; l < W; l++) {
        cm = (cm != cm || vm[l] <= cm) ? cm : vm[l]; /* NaN wins and stays */
    }
    for (; i < n; i++) {
        s[i] = one(nc_load(obs, kind, i), nc_load(e, ekind, i), rtol, atol, nmant, tiny, sub, a);
        cm = (cm != cm || s[i] <= cm) ? cm : s[i];
    }
    *cnt_bad = bad;
    *mx_abs = mabs;
    *mx_rel = mrel;
    *mx_ulp = mulp;
    *cmax = cm;
    if (!NC(takes_over)(have, best, cm)) {
        return 0;
    }
    for (i = 0; !scored && i < nv; i += W) { /* the fast pass's scores: all finite, as the vector path */
        VD vo, ve;
        NC(obsw)(&vo, obs, kind, i);
        NC(obsw)(&ve, e, ekind, i);
        VD score = (VD)((VL)(vo - ve) & absm) / (va + vr * (VD)((VL)ve & absm));
        memcpy(s + i, &score, sizeof score);
    }
    return 1;
}

#define CHUNK_OF(k, ek)                                                                                 \
    takes = NC(chunk)((const char*)obs + s0 * isz, k, (const char*)exp + s0 * esz, ek, c, rtol, atol, nmant, tiny, \
                      sub, have, best, sbuf, &cnt_bad, &mx_abs, &mx_rel, &mx_ulp, &a, &cm)
/* one specialised copy of the loop per observed type (and expected type ek) */
#define CHUNK_OF_KIND(ek)         \
    switch (kind) {               \
    case NC_F64:                  \
        CHUNK_OF(NC_F64, ek);     \
        break;                    \
    case NC_F32:                  \
        CHUNK_OF(NC_F32, ek);     \
        break;                    \
    case NC_F16:                  \
        CHUNK_OF(NC_F16, ek);     \
        break;                    \
    default:                      \
        CHUNK_OF(NC_BF16, ek);    \
        break;                    \
    }

NC_TARGET static int NC(run)(
    const void* obs, int kind, const void* exp, int ekind, int64_t n, double rtol, double atol, int64_t nmant, double tiny,
    double sub, struct normconf_compare_result* out) {
    double sbuf[CHUNK] __attribute__((aligned(32)));
    VL cnt_bad = SPLAT(0);
    VD mx_abs = SPLAT(0.0), mx_rel = SPLAT(0.0), mx_ulp = SPLAT(0.0);
    struct acc a = {0, 0, 0, 0, 0.0, 0.0, 0.0};
    int64_t worst = 0;
    double best = 0.0, cm = 0.0;
    int have = 0, takes = 0;
    const int64_t isz = kind == NC_F64 ? 8 : kind == NC_F32 ? 4 : 2, esz = ekind == NC_F64 ? 8 : 4;
#if defined(__x86_64__) && W == 4
    const int screens = nc_screens(kind, ekind, nmant, tiny, rtol, atol);
#endif
    for (int64_t s0 = 0; s0 < n;) {
#if defined(__x86_64__) && W == 4
        if (screens && have) {
            /* Between chunks, the screen skips what it can of the rest (whole vectors of 8) with the running
             * maxima, the score's being the best so far (as NC(chunk) starts it): a skipped element is finite
             * on both sides and changes no count and no maximum, and with a worst element already found (have)
             * it cannot become the worst (its score is below the best), so the next chunk may start at the
             * first flagged vector: the same bits, without a chunk's set-up per 1024 quiet elements. */
            const int64_t left = n - s0 - (n - s0) % 8;
            const VD vbest = SPLAT(best == best ? best : __builtin_inf());
            int64_t j = left >= 8 ? NC(screen8)((const float*)obs + s0, (const float*)exp + s0, left, rtol, atol,
                                                mx_abs, mx_rel, mx_ulp, vbest)
                                  : 0;
            if (j > 0) {
                a.any_finite = 1;
                s0 += j;
                if (s0 >= n) {
                    break;
                }
            }
        }
#endif
        int64_t c = n - s0 < CHUNK ? n - s0 : CHUNK;
        if (ekind == NC_F64) {
            CHUNK_OF_KIND(NC_F64)
        } else {
            CHUNK_OF_KIND(NC_F32)
        }
        if (takes) { /* the chunk's first element of score cm (NaN: its first NaN) */
            for (int64_t i = 0; i < c; i++) {
                if (cm != cm ? sbuf[i] != sbuf[i] : sbuf[i] == cm) {
                    worst = s0 + i;
                    best = sbuf[i]; /* the element's own value (a -0.0 stays -0.0) */
                    break;
                }
            }
            have = 1;
        }
        s0 += c;
    }
    out->n_bad = a.n_bad;
    out->n_nan = a.n_nan;
    out->n_inf = a.n_inf;
    out->any_finite = a.any_finite;
    out->max_abs = a.max_abs;
    out->max_rel = a.max_rel;
    out->max_ulp = a.max_ulp;
    for (int l = 0; l < W; l++) {
        out->n_bad += cnt_bad[l];
        out->max_abs = mx_abs[l] > out->max_abs ? mx_abs[l] : out->max_abs;
        out->max_rel = mx_rel[l] > out->max_rel ? mx_rel[l] : out->max_rel;
        out->max_ulp = mx_ulp[l] > out->max_ulp ? mx_ulp[l] : out->max_ulp;
    }
    out->worst = worst;
    out->score = best;
    return 0;
}

#undef CHUNK_OF
#undef CHUNK_OF_KIND
#undef VD
#undef VL
#undef VUL
#undef VF
#undef VU
#endif /* NC_TEMPLATE */
