/* The large-case BatchNorm reference of normconf.references.batchnorm: per-channel statistics
 * (mean, two-pass sum of squared deviations) and the elementwise normalization, in float64.
 *
 * Layout: x is C-contiguous, viewed as (outer, C, inner): channels-first NC... has outer = N,
 * inner = spatial; channels-last N...C has inner = 1.  Channel c's elements, in memory order,
 * are x[o, c, i] for o = 0..outer-1, i = 0..inner-1; j = o * inner + i is the element's index in
 * that sequence (m = outer * inner elements).  Input dtypes: float64, float32, float16 and
 * bfloat16 (raw uint16 bits); every element is converted to double exactly.
 *
 * Summation order (documented, deterministic, the same for every layout of the same data):
 *   - the sequence is cut into blocks of BLOCK = 128 consecutive elements (the last may be short);
 *   - inside a block, element j goes to lane j mod 8; each lane is a sequential sum starting
 *     from -0.0 (the exact additive identity); the block sum is
 *     ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7));
 *   - block sums are combined by a binary counter: block k is pushed as a tree of level 0; while
 *     the newest tree on the stack has the same level, the two merge as (older + newer) one level
 *     up.  At the end the stack (levels decreasing) is folded from the newest:
 *     S = T1 + (T2 + (... + Tr)).  With K blocks every element sees at most
 *     15 + 3 + 2 * ceil(log2 K) roundings: |S - sum| <= gamma_d * sum |x_j|, d that count.
 *   The second pass sums (x_j - mean)^2, mean = S / m, in the same order.
 * Channels-first data are processed one channel at a time (both passes over that channel's
 * N runs, the second one from cache); channels-last data row by row, all channels in lockstep.
 *
 * Normalization, standard arithmetic: x_hat = (x - mean) * inv_std, y = x_hat * gamma + beta;
 * folded: y = x * a + shift (a, shift given).  Every result is the IEEE result of those
 * operations (-O2 -ffp-contract=off, no fast-math): the same bits as NumPy's elementwise code.
 * Single-threaded, no BLAS, no global state.
 *
 * Vector width: the code below the NC_TEMPLATE line is compiled twice, for 4 lanes of doubles
 * (AVX2, chosen at run time on x86-64) and 2 lanes (SSE2, NEON).  The width changes only how
 * many of the 8 lanes one instruction advances, never which lane an element goes to or the order
 * of any addition: both copies give the same bits (normconf_bn_stats_lanes and
 * normconf_bn_normalize_lanes run a chosen width, for the tests).  No FMA at either width.
 */
#ifndef NC_TEMPLATE
#if defined(__GNUC__) && !defined(__clang__)
/* -O2's "very cheap" vectorizer refuses loops that need a scalar epilogue; the elementwise loops
 * and the 8 independent lanes are exact under vectorization (no reassociation: no fast-math) */
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dtypes.h"

#define NC_EXPORT __attribute__((visibility("default")))
#define NC_INLINE static inline __attribute__((always_inline))
#define LANES 8
#define BLOCK 128 /* a multiple of LANES */
#define MAXLEVEL 64

#if NC_AVX2 /* dtypes.h: a 4-lane AVX2 copy, chosen at run time; else 2 lanes */
#include <immintrin.h>
#endif

/* y of at least this many bytes is written with non-temporal (streaming) stores in the AVX2 copy
 * when x_hat is not stored, for channels-first data (inner > 1): larger than a last-level cache, it
 * would not be read back from cache anyway, and streaming saves reading every line of y before
 * writing it.  The values are the same. */
#define NT_MIN_BYTES ((int64_t)32 << 20)

#define NC_TEMPLATE
#if NC_AVX2
#define W 4
#define NC_TARGET __attribute__((target("avx2")))
#include "reference_bn.c"
#undef W
#undef NC_TARGET
#endif
#define W 2
#define NC_TARGET
#include "reference_bn.c"
#undef W
#undef NC_TARGET

static int valid(int dtype, int64_t outer, int64_t C, int64_t inner) {
    return dtype >= NC_F64 && dtype <= NC_BF16 && outer >= 0 && C >= 0 && inner >= 0;
}

/* the widest copy this CPU runs */
static int lanes_here(void) {
#if NC_AVX2
    if (__builtin_cpu_supports("avx2")) {
        return 4;
    }
#endif
    return 2;
}

static int stats_at(int lanes, const void *x, int dtype, int64_t outer, int64_t C, int64_t inner, double *mean,
                    double *ss) {
#if NC_AVX2
    if (lanes == 4) {
        return stats_4(x, dtype, outer, C, inner, mean, ss);
    }
#endif
    (void)lanes;
    return stats_2(x, dtype, outer, C, inner, mean, ss);
}

static void normalize_at(int lanes, const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                         const double *mu, const double *inv, const double *p, const double *q, int folded,
                         double *y, double *xh) {
#if NC_AVX2
    if (lanes == 4) {
        normalize_4(x, dtype, outer, C, inner, mu, inv, p, q, folded, y, xh);
        return;
    }
#endif
    (void)lanes;
    normalize_2(x, dtype, outer, C, inner, mu, inv, p, q, folded, y, xh);
}

/* Per-channel mean (S / m) and two-pass sum of squared deviations, in the order above.  m = 0
 * gives mean = NaN (0/0) and ss = 0.  Returns 0, -1 (unknown dtype), -2 (out of memory). */
NC_EXPORT int normconf_bn_stats(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner, double *mean,
                                double *ss) {
    if (!valid(dtype, outer, C, inner)) {
        return -1;
    }
    return stats_at(lanes_here(), x, dtype, outer, C, inner, mean, ss);
}

/* x_hat = (x - mu) * inv; y = x_hat * p + q (folded = 0: p = gamma, q = beta) or
 * y = x * p + q (folded = 1: p = a, q = shift).  xh may be NULL: x_hat is then not stored (y's
 * bits are the same).  Returns 0 or -1 (unknown dtype). */
NC_EXPORT int normconf_bn_normalize(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                                    const double *mu, const double *inv, const double *p, const double *q,
                                    int folded, double *y, double *xh) {
    if (!valid(dtype, outer, C, inner)) {
        return -1;
    }
    normalize_at(lanes_here(), x, dtype, outer, C, inner, mu, inv, p, q, folded, y, xh);
    return 0;
}

/* for the tests: the same at a chosen vector width, lanes 2 (always) or 4 (where AVX2 runs);
 * -3 where that width is not available here */
NC_EXPORT int normconf_bn_stats_lanes(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                                      double *mean, double *ss, int64_t lanes) {
    if (!valid(dtype, outer, C, inner)) {
        return -1;
    }
    if (lanes != 2 && !(lanes == 4 && lanes_here() == 4)) {
        return -3;
    }
    return stats_at((int)lanes, x, dtype, outer, C, inner, mean, ss);
}

NC_EXPORT int normconf_bn_normalize_lanes(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                                          const double *mu, const double *inv, const double *p, const double *q,
                                          int folded, double *y, double *xh, int64_t lanes) {
    if (!valid(dtype, outer, C, inner)) {
        return -1;
    }
    if (lanes != 2 && !(lanes == 4 && lanes_here() == 4)) {
        return -3;
    }
    normalize_at((int)lanes, x, dtype, outer, C, inner, mu, inv, p, q, folded, y, xh);
    return 0;
}

#else /* NC_TEMPLATE: everything that runs on the data, for W lanes (included twice above) */

#define NC_CAT2(a, b) a##_##b
#define NC_CAT(a, b) NC_CAT2(a, b)
#define NC(name) NC_CAT(name, W)
#define VD NC(vd)
#define VF NC(vf)
typedef double VD __attribute__((vector_size(8 * W)));
typedef float VF __attribute__((vector_size(4 * W)));

/* --- the binary-counter tree over block sums, TW channels wide (levels shared: every channel
 * has pushed the same number of blocks) --- */
typedef struct {
    double *val; /* MAXLEVEL * TW */
    int lvl[MAXLEVEL];
    int depth;
    int64_t TW;
} NC(tree_t);

NC_TARGET static void NC(tree_push)(NC(tree_t) *t, double *cur) { /* cur: TW block sums, clobbered */
    int level = 0;
    while (t->depth > 0 && t->lvl[t->depth - 1] == level) {
        const double *older = t->val + (int64_t)(t->depth - 1) * t->TW;
        for (int64_t w = 0; w < t->TW; w++) {
            cur[w] = older[w] + cur[w];
        }
        t->depth--;
        level++;
    }
    memcpy(t->val + (int64_t)t->depth * t->TW, cur, (size_t)t->TW * sizeof(double));
    t->lvl[t->depth++] = level;
}

NC_TARGET static void NC(tree_total)(const NC(tree_t) *t, double *out) {
    if (t->depth == 0) {
        for (int64_t w = 0; w < t->TW; w++) {
            out[w] = 0.0;
        }
        return;
    }
    memcpy(out, t->val + (int64_t)(t->depth - 1) * t->TW, (size_t)t->TW * sizeof(double));
    for (int d = t->depth - 2; d >= 0; d--) {
        const double *v = t->val + (int64_t)d * t->TW;
        for (int64_t w = 0; w < t->TW; w++) {
            out[w] = v[w] + out[w];
        }
    }
}

NC_INLINE NC_TARGET double NC(lanes_sum)(const double *l) {
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* elements k..k+W-1 of x as doubles (exact) */
NC_INLINE NC_TARGET VD NC(loadw)(const void *x, int dtype, int64_t k) {
    VD v;
    if (dtype == NC_F64) {
        memcpy(&v, (const double *)x + k, sizeof v);
    } else if (dtype == NC_F32) {
        VF f;
        memcpy(&f, (const float *)x + k, sizeof f);
        v = __builtin_convertvector(f, VD);
    } else {
        for (int l = 0; l < W; l++) {
            v[l] = nc_load(x, dtype, k + l);
        }
    }
    return v;
}

/* --- one channel at a time (inner > 1); its tree is the one above for one channel, kept inline
 * (a flush every BLOCK elements: the same additions without the calls) --- */
typedef struct {
    double lane[LANES];
    int64_t k; /* position in the current block */
    int depth;
    int lvl[MAXLEVEL];
    double val[MAXLEVEL];
} NC(chan_t);

NC_INLINE NC_TARGET void NC(chan_init)(NC(chan_t) *s) {
    for (int l = 0; l < LANES; l++) {
        s->lane[l] = -0.0;
    }
    s->k = 0;
    s->depth = 0;
}

NC_INLINE NC_TARGET void NC(chan_flush)(NC(chan_t) *s) {
    double b = NC(lanes_sum)(s->lane); /* tree_push for one channel */
    int level = 0;
    while (s->depth > 0 && s->lvl[s->depth - 1] == level) {
        b = s->val[s->depth - 1] + b;
        s->depth--;
        level++;
    }
    s->val[s->depth] = b;
    s->lvl[s->depth++] = level;
    for (int l = 0; l < LANES; l++) {
        s->lane[l] = -0.0;
    }
    s->k = 0;
}

NC_TARGET static double NC(chan_total)(NC(chan_t) *s) { /* tree_total for one channel */
    if (s->k > 0) {
        NC(chan_flush)(s);
    }
    if (s->depth == 0) {
        return 0.0;
    }
    double t = s->val[s->depth - 1];
    for (int d = s->depth - 2; d >= 0; d--) {
        t = s->val[d] + t;
    }
    return t;
}

/* feed n contiguous elements (values, or squared deviations from mean when sq) */
NC_INLINE NC_TARGET void NC(chan_feed)(NC(chan_t) *s, const void *x, int dtype, int64_t off, int64_t n, int sq,
                                       double mean) {
    while (n > 0) {
        if ((s->k & (LANES - 1)) == 0 && n >= LANES) {
            int64_t take = BLOCK - s->k;
            if (take > n) {
                take = n & ~(int64_t)(LANES - 1);
            }
            /* lanes 0..7 as LANES / W vectors of W: element t + j goes to lane j, each lane still
             * a sequential sum */
            VD l[LANES / W];
            memcpy(l, s->lane, sizeof l);
            VD mv;
            for (int w = 0; w < W; w++) {
                mv[w] = mean;
            }
            for (int64_t t = 0; t < take; t += LANES) {
                for (int q = 0; q < LANES / W; q++) {
                    VD v = NC(loadw)(x, dtype, off + t + W * q);
                    if (sq) {
                        v -= mv;
                        v *= v;
                    }
                    l[q] += v;
                }
            }
            memcpy(s->lane, l, sizeof l);
            s->k += take;
            off += take;
            n -= take;
        } else {
            double v = nc_load(x, dtype, off);
            if (sq) {
                v -= mean;
                v *= v;
            }
            s->lane[s->k & (LANES - 1)] += v;
            s->k++;
            off++;
            n--;
        }
        if (s->k == BLOCK) {
            NC(chan_flush)(s);
        }
    }
}

NC_INLINE NC_TARGET void NC(stats_by_channel)(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                                              double *mean, double *ss) {
    const int64_t m = outer * inner;
    for (int64_t c = 0; c < C; c++) {
        NC(chan_t) s;
        NC(chan_init)(&s);
        for (int64_t o = 0; o < outer; o++) {
            NC(chan_feed)(&s, x, dtype, (o * C + c) * inner, inner, 0, 0.0);
        }
        const double mu = NC(chan_total)(&s) / (double)m;
        NC(chan_init)(&s);
        for (int64_t o = 0; o < outer; o++) {
            NC(chan_feed)(&s, x, dtype, (o * C + c) * inner, inner, 1, mu);
        }
        mean[c] = mu;
        ss[c] = NC(chan_total)(&s);
    }
}

/* --- all channels in lockstep (inner == 1): element j of every channel is row j --- */
NC_INLINE NC_TARGET void NC(rows_pass)(const void *x, int dtype, int64_t outer, int64_t C, double *lane,
                                       NC(tree_t) *t, double *cur, int sq, const double *mean) {
    int64_t k = 0;
    for (int64_t i = 0; i < LANES * C; i++) {
        lane[i] = -0.0;
    }
    for (int64_t o = 0; o < outer; o++) {
        double *restrict L = lane + (o & (LANES - 1)) * C;
        for (int64_t c = 0; c < C; c++) {
            double v = nc_load(x, dtype, o * C + c);
            if (sq) {
                v -= mean[c];
                v *= v;
            }
            L[c] += v;
        }
        if (++k == BLOCK || o == outer - 1) {
            for (int64_t c = 0; c < C; c++) {
                double l[LANES];
                for (int q = 0; q < LANES; q++) {
                    l[q] = lane[q * C + c];
                }
                cur[c] = NC(lanes_sum)(l);
            }
            NC(tree_push)(t, cur);
            for (int64_t i = 0; i < LANES * C; i++) {
                lane[i] = -0.0;
            }
            k = 0;
        }
    }
}

NC_TARGET static int NC(stats_by_rows)(const void *x, int dtype, int64_t outer, int64_t C, double *mean,
                                       double *ss) {
    double *buf = malloc(sizeof(double) * (size_t)C * (LANES + MAXLEVEL + 1));
    if (buf == NULL) {
        return -2;
    }
    double *lane = buf, *cur = buf + LANES * C;
    NC(tree_t) t = {.val = buf + (LANES + 1) * C, .depth = 0, .TW = C};
    switch (dtype) { /* one specialised copy per dtype */
#define PASS(D, SQ, MEAN) NC(rows_pass)(x, D, outer, C, lane, &t, cur, SQ, MEAN)
    case NC_F64:
        PASS(NC_F64, 0, NULL);
        break;
    case NC_F32:
        PASS(NC_F32, 0, NULL);
        break;
    case NC_F16:
        PASS(NC_F16, 0, NULL);
        break;
    default:
        PASS(NC_BF16, 0, NULL);
    }
    NC(tree_total)(&t, mean);
    for (int64_t c = 0; c < C; c++) {
        mean[c] = mean[c] / (double)outer;
    }
    t.depth = 0;
    switch (dtype) {
    case NC_F64:
        PASS(NC_F64, 1, mean);
        break;
    case NC_F32:
        PASS(NC_F32, 1, mean);
        break;
    case NC_F16:
        PASS(NC_F16, 1, mean);
        break;
    default:
        PASS(NC_BF16, 1, mean);
    }
#undef PASS
    NC(tree_total)(&t, ss);
    free(buf);
    return 0;
}

/* arguments checked by the caller */
NC_TARGET static int NC(stats)(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner, double *mean,
                               double *ss) {
    if (inner == 1 && outer > 0) {
        return NC(stats_by_rows)(x, dtype, outer, C, mean, ss);
    }
    switch (dtype) {
    case NC_F64:
        NC(stats_by_channel)(x, NC_F64, outer, C, inner, mean, ss);
        break;
    case NC_F32:
        NC(stats_by_channel)(x, NC_F32, outer, C, inner, mean, ss);
        break;
    case NC_F16:
        NC(stats_by_channel)(x, NC_F16, outer, C, inner, mean, ss);
        break;
    default:
        NC(stats_by_channel)(x, NC_BF16, outer, C, inner, mean, ss);
    }
    return 0;
}

/* --- normalization --- */
#if W == 4 && NC_AVX2
#define NC_STREAMS 1
/* y[k..k+3] = v by a non-temporal store; y + k is 32-byte aligned */
NC_INLINE NC_TARGET void NC(stream)(double *y, int64_t k, VD v) { _mm256_stream_pd(y + k, (__m256d)v); }
#else
#define NC_STREAMS 0
#endif

/* one element, as every path computes it */
NC_INLINE NC_TARGET double NC(norm1)(double v, double mc, double ic, double pc, double qc, int folded, double *h) {
    *h = (v - mc) * ic;
    return folded ? v * pc + qc : *h * pc + qc;
}

NC_INLINE NC_TARGET void NC(norm_pass)(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                                       const double *mu, const double *inv, const double *p, const double *q,
                                       int folded, int store_xh, int stream, double *restrict y,
                                       double *restrict xh) {
    int64_t k = 0;
    (void)stream;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t c = 0; c < C; c++) {
            const double mc = mu[c], ic = inv[c], pc = p[c], qc = q[c];
            const int64_t end = k + inner;
            double h;
#if NC_STREAMS
            if (stream) { /* the same arithmetic, W elements at a time, from y's first aligned element */
                for (; k < end && ((uintptr_t)(y + k) & 31); k++) {
                    y[k] = NC(norm1)(nc_load(x, dtype, k), mc, ic, pc, qc, folded, &h);
                }
                const VD mv = {mc, mc, mc, mc}, iv = {ic, ic, ic, ic}, pv = {pc, pc, pc, pc}, qv = {qc, qc, qc, qc};
                for (; k + W <= end; k += W) {
                    const VD v = NC(loadw)(x, dtype, k);
                    NC(stream)(y, k, folded ? v * pv + qv : ((v - mv) * iv) * pv + qv);
                }
            }
#endif
            for (; k < end; k++) {
                y[k] = NC(norm1)(nc_load(x, dtype, k), mc, ic, pc, qc, folded, &h);
                if (store_xh) {
                    xh[k] = h;
                }
            }
        }
    }
}

NC_INLINE NC_TARGET void NC(norm_rows)(const void *x, int dtype, int64_t outer, int64_t C, const double *mu,
                                       const double *inv, const double *p, const double *q, int folded,
                                       int store_xh, double *restrict y, double *restrict xh) {
    double h; /* plain stores: the channels of a row cycle within a vector */
    for (int64_t o = 0; o < outer; o++) {
        const int64_t r = o * C;
        for (int64_t c = 0; c < C; c++) {
            y[r + c] = NC(norm1)(nc_load(x, dtype, r + c), mu[c], inv[c], p[c], q[c], folded, &h);
            if (store_xh) {
                xh[r + c] = h;
            }
        }
    }
}

/* arguments checked by the caller */
NC_TARGET static void NC(normalize)(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                                    const double *mu, const double *inv, const double *p, const double *q,
                                    int folded, double *y, double *xh) {
    const int stream = NC_STREAMS && xh == NULL && outer * C * inner >= NT_MIN_BYTES / (int64_t)sizeof(double);
#define NORM_XH(D, F, XH)                                                                                              \
    do {                                                                                                               \
        if (inner == 1) {                                                                                              \
            NC(norm_rows)(x, D, outer, C, mu, inv, p, q, F, XH, y, xh);                                                    \
        } else {                                                                                                       \
            NC(norm_pass)(x, D, outer, C, inner, mu, inv, p, q, F, XH, stream, y, xh);                                        \
        }                                                                                                              \
    } while (0)
#define NORM(D, F)                                                                                                     \
    do {                                                                                                               \
        if (xh != NULL) {                                                                                              \
            NORM_XH(D, F, 1);                                                                                          \
        } else {                                                                                                       \
            NORM_XH(D, F, 0);                                                                                          \
        }                                                                                                              \
    } while (0)
#define NORM_DT(F)                                                                                                     \
    switch (dtype) {                                                                                                   \
    case NC_F64:                                                                                                       \
        NORM(NC_F64, F);                                                                                               \
        break;                                                                                                         \
    case NC_F32:                                                                                                       \
        NORM(NC_F32, F);                                                                                               \
        break;                                                                                                         \
    case NC_F16:                                                                                                       \
        NORM(NC_F16, F);                                                                                               \
        break;                                                                                                         \
    default:                                                                                                           \
        NORM(NC_BF16, F);                                                                                              \
    }
    if (folded) {
        NORM_DT(1)
    } else {
        NORM_DT(0)
    }
#undef NORM_DT
#undef NORM
#undef NORM_XH
#if NC_STREAMS
    if (stream) {
        _mm_sfence(); /* the streamed stores ordered before anything after the call */
    }
#endif
}

#undef NC_STREAMS
#undef VD
#undef VF
#undef NC
#undef NC_CAT
#undef NC_CAT2
#endif /* NC_TEMPLATE */
