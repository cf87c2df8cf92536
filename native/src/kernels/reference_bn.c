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
 */
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
#define LANES 8
#define BLOCK 128 /* a multiple of LANES */
#define MAXLEVEL 64

typedef double v2d __attribute__((vector_size(16)));

/* --- the binary-counter tree over block sums, W channels wide (levels shared: every channel
 * has pushed the same number of blocks) --- */
typedef struct {
    double *val; /* MAXLEVEL * W */
    int lvl[MAXLEVEL];
    int depth;
    int64_t W;
} tree_t;

static void tree_push(tree_t *t, double *cur) { /* cur: W block sums, clobbered */
    int level = 0;
    while (t->depth > 0 && t->lvl[t->depth - 1] == level) {
        const double *older = t->val + (int64_t)(t->depth - 1) * t->W;
        for (int64_t w = 0; w < t->W; w++) {
            cur[w] = older[w] + cur[w];
        }
        t->depth--;
        level++;
    }
    memcpy(t->val + (int64_t)t->depth * t->W, cur, (size_t)t->W * sizeof(double));
    t->lvl[t->depth++] = level;
}

static void tree_total(const tree_t *t, double *out) {
    if (t->depth == 0) {
        for (int64_t w = 0; w < t->W; w++) {
            out[w] = 0.0;
        }
        return;
    }
    memcpy(out, t->val + (int64_t)(t->depth - 1) * t->W, (size_t)t->W * sizeof(double));
    for (int d = t->depth - 2; d >= 0; d--) {
        const double *v = t->val + (int64_t)d * t->W;
        for (int64_t w = 0; w < t->W; w++) {
            out[w] = v[w] + out[w];
        }
    }
}

static inline double lanes_sum(const double *l) {
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* --- one channel at a time (inner > 1) --- */
typedef struct {
    double lane[LANES];
    int64_t k; /* position in the current block */
    tree_t tree;
    double val[MAXLEVEL];
} chan_t;

static void chan_init(chan_t *s) {
    for (int l = 0; l < LANES; l++) {
        s->lane[l] = -0.0;
    }
    s->k = 0;
    s->tree.val = s->val;
    s->tree.depth = 0;
    s->tree.W = 1;
}

static void chan_flush(chan_t *s) {
    double b = lanes_sum(s->lane);
    tree_push(&s->tree, &b);
    for (int l = 0; l < LANES; l++) {
        s->lane[l] = -0.0;
    }
    s->k = 0;
}

static double chan_total(chan_t *s) {
    double t;
    if (s->k > 0) {
        chan_flush(s);
    }
    tree_total(&s->tree, &t);
    return t;
}

/* feed n contiguous elements (values, or squared deviations from mean when sq) */
static inline __attribute__((always_inline)) void chan_feed(chan_t *s, const void *x, int dtype, int64_t off,
                                                            int64_t n, int sq, double mean) {
    while (n > 0) {
        if ((s->k & (LANES - 1)) == 0 && n >= LANES) {
            int64_t take = BLOCK - s->k;
            if (take > n) {
                take = n & ~(int64_t)(LANES - 1);
            }
            /* lanes (0,1) (2,3) (4,5) (6,7) as 2-wide vectors: each lane still a sequential sum */
            v2d l[LANES / 2];
            memcpy(l, s->lane, sizeof l);
            const v2d mv = {mean, mean};
            for (int64_t t = 0; t < take; t += LANES) {
                for (int q = 0; q < LANES / 2; q++) {
                    v2d v = {nc_load(x, dtype, off + t + 2 * q), nc_load(x, dtype, off + t + 2 * q + 1)};
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
            chan_flush(s);
        }
    }
}

static inline __attribute__((always_inline)) void stats_by_channel(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner, double *mean,
                             double *ss) {
    const int64_t m = outer * inner;
    for (int64_t c = 0; c < C; c++) {
        chan_t s;
        chan_init(&s);
        for (int64_t o = 0; o < outer; o++) {
            chan_feed(&s, x, dtype, (o * C + c) * inner, inner, 0, 0.0);
        }
        const double mu = chan_total(&s) / (double)m;
        chan_init(&s);
        for (int64_t o = 0; o < outer; o++) {
            chan_feed(&s, x, dtype, (o * C + c) * inner, inner, 1, mu);
        }
        mean[c] = mu;
        ss[c] = chan_total(&s);
    }
}

/* --- all channels in lockstep (inner == 1): element j of every channel is row j --- */
static inline __attribute__((always_inline)) void rows_pass(const void *x, int dtype, int64_t outer, int64_t C,
                                                            double *lane, tree_t *t, double *cur, int sq,
                                                            const double *mean) {
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
                cur[c] = lanes_sum(l);
            }
            tree_push(t, cur);
            for (int64_t i = 0; i < LANES * C; i++) {
                lane[i] = -0.0;
            }
            k = 0;
        }
    }
}

static int stats_by_rows(const void *x, int dtype, int64_t outer, int64_t C, double *mean, double *ss) {
    double *buf = malloc(sizeof(double) * (size_t)C * (LANES + MAXLEVEL + 1));
    if (buf == NULL) {
        return -2;
    }
    double *lane = buf, *cur = buf + LANES * C;
    tree_t t = {.val = buf + (LANES + 1) * C, .depth = 0, .W = C};
    switch (dtype) { /* one specialised copy per dtype */
#define PASS(D, SQ, MEAN) rows_pass(x, D, outer, C, lane, &t, cur, SQ, MEAN)
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
    tree_total(&t, mean);
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
    tree_total(&t, ss);
    free(buf);
    return 0;
}

/* Per-channel mean (S / m) and two-pass sum of squared deviations, in the order above.  m = 0
 * gives mean = NaN (0/0) and ss = 0.  Returns 0, -1 (unknown dtype), -2 (out of memory). */
NC_EXPORT int normconf_bn_stats(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner, double *mean,
                                double *ss) {
    if (dtype < NC_F64 || dtype > NC_BF16 || outer < 0 || C < 0 || inner < 0) {
        return -1;
    }
    if (inner == 1 && outer > 0) {
        return stats_by_rows(x, dtype, outer, C, mean, ss);
    }
    switch (dtype) {
    case NC_F64:
        stats_by_channel(x, NC_F64, outer, C, inner, mean, ss);
        break;
    case NC_F32:
        stats_by_channel(x, NC_F32, outer, C, inner, mean, ss);
        break;
    case NC_F16:
        stats_by_channel(x, NC_F16, outer, C, inner, mean, ss);
        break;
    default:
        stats_by_channel(x, NC_BF16, outer, C, inner, mean, ss);
    }
    return 0;
}

/* --- normalization --- */
static inline __attribute__((always_inline)) void norm_pass(const void *x, int dtype, int64_t outer, int64_t C,
                                                            int64_t inner, const double *mu, const double *inv,
                                                            const double *p, const double *q, int folded,
                                                            int store_xh, double *restrict y, double *restrict xh) {
    int64_t k = 0;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t c = 0; c < C; c++) {
            const double mc = mu[c], ic = inv[c], pc = p[c], qc = q[c];
            for (int64_t i = 0; i < inner; i++, k++) {
                const double v = nc_load(x, dtype, k);
                const double h = (v - mc) * ic;
                if (store_xh) {
                    xh[k] = h;
                }
                y[k] = folded ? v * pc + qc : h * pc + qc;
            }
        }
    }
}

static inline __attribute__((always_inline)) void norm_rows(const void *x, int dtype, int64_t outer, int64_t C,
                                                            const double *mu, const double *inv, const double *p,
                                                            const double *q, int folded, int store_xh,
                                                            double *restrict y, double *restrict xh) {
    for (int64_t o = 0; o < outer; o++) {
        const int64_t r = o * C;
        for (int64_t c = 0; c < C; c++) {
            const double v = nc_load(x, dtype, r + c);
            const double h = (v - mu[c]) * inv[c];
            if (store_xh) {
                xh[r + c] = h;
            }
            y[r + c] = folded ? v * p[c] + q[c] : h * p[c] + q[c];
        }
    }
}

/* x_hat = (x - mu) * inv; y = x_hat * p + q (folded = 0: p = gamma, q = beta) or
 * y = x * p + q (folded = 1: p = a, q = shift).  xh may be NULL: x_hat is then not stored (y's
 * bits are the same).  Returns 0 or -1 (unknown dtype). */
NC_EXPORT int normconf_bn_normalize(const void *x, int dtype, int64_t outer, int64_t C, int64_t inner,
                                    const double *mu, const double *inv, const double *p, const double *q,
                                    int folded, double *y, double *xh) {
    if (dtype < NC_F64 || dtype > NC_BF16 || outer < 0 || C < 0 || inner < 0) {
        return -1;
    }
#define NORM_XH(D, F, XH)                                                                                              \
    do {                                                                                                               \
        if (inner == 1) {                                                                                              \
            norm_rows(x, D, outer, C, mu, inv, p, q, F, XH, y, xh);                                                   \
        } else {                                                                                                       \
            norm_pass(x, D, outer, C, inner, mu, inv, p, q, F, XH, y, xh);                                            \
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
    return 0;
}
