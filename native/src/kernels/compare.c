/* The comparison of normconf.compare in one pass: observed (float64/float32/float16/bfloat16)
 * against float64 expected.  Bit-identical to the NumPy code of harness/compare.py (its twin):
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
 * same bits.  Reentrant, no global state: callers may run it from several threads.
 */
#ifndef NC_TEMPLATE
#include <stdint.h>
#include <string.h>

#include "dtypes.h"

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

static int run(
    const void* obs, int kind, const double* exp, int64_t n, double rtol, double atol, int64_t nmant, double tiny,
    double sub, struct normconf_compare_result* out) {
#if NC_AVX2
    if (__builtin_cpu_supports("avx2")) {
        return run_4(obs, kind, exp, n, rtol, atol, nmant, tiny, sub, out);
    }
#endif
    return run_2(obs, kind, exp, n, rtol, atol, nmant, tiny, sub, out);
}

/* every entry point: (obs, exp, n, rtol, atol, nmant, tiny, sub, out); returns 0 */
#define ARGS \
    const double *exp, int64_t n, double rtol, double atol, int64_t nmant, double tiny, double sub, \
        struct normconf_compare_result *out

NC_EXPORT int normconf_compare_f64(const double* obs, ARGS) {
    return run(obs, NC_F64, exp, n, rtol, atol, nmant, tiny, sub, out);
}

NC_EXPORT int normconf_compare_f32(const float* obs, ARGS) {
    return run(obs, NC_F32, exp, n, rtol, atol, nmant, tiny, sub, out);
}

/* float16 and bfloat16 as their raw bits, converted exactly */
NC_EXPORT int normconf_compare_f16(const uint16_t* obs, ARGS) {
    return run(obs, NC_F16, exp, n, rtol, atol, nmant, tiny, sub, out);
}

NC_EXPORT int normconf_compare_bf16(const uint16_t* obs, ARGS) {
    return run(obs, NC_BF16, exp, n, rtol, atol, nmant, tiny, sub, out);
}

/* for the tests: the same pass at a chosen vector width, kind 0..3 = f64, f32, f16 (bits), bf16
 * (bits); lanes 2 (always) or 4 (where AVX2 runs); returns -1 where that width is not available */
NC_EXPORT int normconf_compare_lanes(const void* obs, int64_t kind, int64_t lanes, ARGS) {
    if (kind < NC_F64 || kind > NC_BF16) {
        return -1;
    }
    if (lanes == 2) {
        return run_2(obs, (int)kind, exp, n, rtol, atol, nmant, tiny, sub, out);
    }
#if NC_AVX2
    if (lanes == 4 && __builtin_cpu_supports("avx2")) {
        return run_4(obs, (int)kind, exp, n, rtol, atol, nmant, tiny, sub, out);
    }
#endif
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
#undef LOADW
#undef SPLAT
#define SEL(m, a, b) ((VD)(((m) & (VL)(a)) | (~(m) & (VL)(b))))
#define LOADW(v, p) memcpy(&(v), (p), sizeof(VD))
#if W == 4
#define SPLAT(x) {(x), (x), (x), (x)}
#else
#define SPLAT(x) {(x), (x)}
#endif

/* elements i..i+W-1 of obs as doubles (exact) */
static inline __attribute__((always_inline)) void NC(obsw)(VD* out, const void* obs, int kind, int64_t i) {
    VD v;
    if (kind == NC_F64) {
        memcpy(&v, (const double*)obs + i, sizeof v);
    } else if (kind == NC_F32) {
        VF f;
        memcpy(&f, (const float*)obs + i, sizeof f);
        v = __builtin_convertvector(f, VD);
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

/* The counts and maxima of the n (<= CHUNK) elements at obs, e; their scores written to s and
 * their largest score (NaN if any, sticky) to *cmax.  Vectors whose 2W values are finite take
 * the vector path (compare.py's fast path), the others and the tail go element by element. */
static inline __attribute__((always_inline)) void NC(chunk)(
    const void* obs, int kind, const double* e, int64_t n, double rtol, double atol, int64_t nmant, double tiny,
    double sub, double* s, VL* cnt_bad, VD* mx_abs, VD* mx_rel, VD* mx_ulp, struct acc* a, double* cmax) {
    /* only FP compares and 64-bit add/shift/logic: cheap in every ISA's vectors (SSE2 has no
     * 64-bit integer compare) */
    const VL absm = SPLAT(ABSM), mantm = SPLAT(MANTM), unit = SPLAT((int64_t)1023 << 52);
    const VL invb = SPLAT(2046 + nmant);
    const VD vr = SPLAT(rtol), va = SPLAT(atol), vt = SPLAT(tiny), dmax = SPLAT(__DBL_MAX__);
    const VD band = SPLAT(2.0 - 0x1p-36);          /* mantissa field >= 2**52 - 2**16 */
    const VD small = SPLAT(from_bits(nmant << 52)); /* exponent field < nmant */
    VD vm = SPLAT(-__builtin_inf());
    VL bad = *cnt_bad;
    VD mabs = *mx_abs, mrel = *mx_rel, mulp = *mx_ulp;
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        VD vo, ve, score = SPLAT(0.0);
        NC(obsw)(&vo, obs, kind, i);
        LOADW(ve, e + i);
        VL eb = (VL)ve & absm;
        VL fin = ((VD)((VL)vo & absm) <= dmax) & ((VD)eb <= dmax);
        int64_t all_fin = -1, any_special = 0;
        for (int l = 0; l < W; l++) {
            all_fin &= fin[l];
        }
        if (__builtin_expect(all_fin != 0, 1)) {
            VD ae = (VD)eb;                           /* |e| */
            VD d = (VD)((VL)(vo - ve) & absm);       /* |o - e| */
            VD lim = va + vr * ae;                     /* atol + rtol * |e| */
            bad -= d > lim;
            mabs = SEL(d > mabs, d, mabs);
            VD rel = d / ae; /* where e == 0: d > 0 gives inf; 0/0 is NaN, never > mrel (>= 0): as 0 */
            mrel = SEL(rel > mrel, rel, mrel);
            /* ulp: 2**(E - 1023 - nmant), E the exponent bits of max(|e|, tiny); d * 2**-p is
             * d / 2**p (both the correctly rounded d * 2**-p).  Lanes just below a power of two, or
             * whose 2**-p is not a normal double, go through ulp_of and a division, as the formula. */
            VD m = SEL(ae < vt, vt, ae);
            VL E = (VL)((VUL)m >> 52);
            VD ulp_err = d * (VD)((invb - E) << 52);
            VL special = ((VD)(((VL)m & mantm) | unit) >= band) | (m < small);
            for (int l = 0; l < W; l++) {
                any_special |= special[l];
            }
            if (__builtin_expect(any_special != 0, 0)) {
                for (int l = 0; l < W; l++) {
                    if (special[l]) {
                        ulp_err[l] = d[l] / ulp_of(ae[l], nmant, tiny, sub);
                    }
                }
            }
            mulp = SEL(ulp_err > mulp, ulp_err, mulp);
            score = d / lim;
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
        s[i] = one(nc_load(obs, kind, i), e[i], rtol, atol, nmant, tiny, sub, a);
        cm = (cm != cm || s[i] <= cm) ? cm : s[i];
    }
    *cnt_bad = bad;
    *mx_abs = mabs;
    *mx_rel = mrel;
    *mx_ulp = mulp;
    *cmax = cm;
}

#define CHUNK_OF(k)                                                                                      \
    NC(chunk)((const char*)obs + s0 * isz, k, exp + s0, c, rtol, atol, nmant, tiny, sub, sbuf, &cnt_bad, &mx_abs, \
          &mx_rel, &mx_ulp, &a, &cm)

NC_TARGET static int NC(run)(
    const void* obs, int kind, const double* exp, int64_t n, double rtol, double atol, int64_t nmant, double tiny,
    double sub, struct normconf_compare_result* out) {
    double sbuf[CHUNK] __attribute__((aligned(32)));
    VL cnt_bad = SPLAT(0);
    VD mx_abs = SPLAT(0.0), mx_rel = SPLAT(0.0), mx_ulp = SPLAT(0.0);
    struct acc a = {0, 0, 0, 0, 0.0, 0.0, 0.0};
    int64_t worst = 0;
    double best = 0.0, cm = 0.0;
    int have = 0;
    const int64_t isz = kind == NC_F64 ? 8 : kind == NC_F32 ? 4 : 2;
    for (int64_t s0 = 0; s0 < n; s0 += CHUNK) {
        int64_t c = n - s0 < CHUNK ? n - s0 : CHUNK;
        switch (kind) { /* one specialised copy of the loop per observed type */
        case NC_F64:
            CHUNK_OF(NC_F64);
            break;
        case NC_F32:
            CHUNK_OF(NC_F32);
            break;
        case NC_F16:
            CHUNK_OF(NC_F16);
            break;
        default:
            CHUNK_OF(NC_BF16);
            break;
        }
        /* np.argmax over all: the first NaN if any, else the first of the largest; a chunk takes
         * over only with a NaN or a strictly larger maximum (ties: the earlier element stays) */
        if (have && best != best) {
            continue;
        }
        if (!have || cm != cm || cm > best) {
            for (int64_t i = 0; i < c; i++) {
                if (cm != cm ? sbuf[i] != sbuf[i] : sbuf[i] == cm) {
                    worst = s0 + i;
                    best = sbuf[i]; /* the element's own value (a -0.0 stays -0.0) */
                    break;
                }
            }
            have = 1;
        }
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

#undef VD
#undef VL
#undef VUL
#undef VF
#undef VU
#endif /* NC_TEMPLATE */
