/* myln.c — a complete, minimal LayerNorm for normconf's C ABI v2 (normconf.h), in plain C.
 *
 * Build and check it:
 *     cc -std=c99 -O2 -shared -fPIC -I native/include native/examples/myln.c -o libmyln.so -lm
 *     normconf run cases/ --native ./libmyln.so
 *
 * It implements one op (NORMCONF_OP_LAYER_NORM), forward only, for float32 and float64
 * with gamma/beta in the same type as x; everything else is NORMCONF_EUNSUPPORTED, which
 * normconf reports as `unsupported` (batch_norm cases never reach it: normconf_supports()
 * says no).  For every row (an index over the axes NOT in axes_mask):
 *   mean = sum(x) / M,  var = sum((x - mean)^2) / M   (biased; M = elements per row)
 *   y = gamma[r] * (x - mean) / sqrt(var + eps) + beta[r]
 * and, when asked for, mean and inv_std = 1 / sqrt(var + eps) per row.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "normconf.h"

static char last_error[256];

int32_t normconf_abi_version(void) { return NORMCONF_ABI_VERSION; }
const char* normconf_name(void) { return "myln 1.0"; }
const char* normconf_last_error(void) { return last_error; }
int32_t normconf_supports(int32_t op, int32_t direction) {
    return op == NORMCONF_OP_LAYER_NORM && direction == NORMCONF_FORWARD;
}

static int32_t fail(int32_t code, const char* message) {
    snprintf(last_error, sizeof last_error, "%s", message);
    return code;
}

/* element i of a float or double array */
static double get(const void* p, int f64, int64_t i) {
    return f64 ? ((const double*)p)[i] : (double)((const float*)p)[i];
}
static void put(void* p, int f64, int64_t i, double v) {
    if (f64) ((double*)p)[i] = v;
    else ((float*)p)[i] = (float)v;
}

/* offset in x of the i-th element (C order) of the index space over the axes selected by `mask` */
static int64_t offset(const normconf_call* a, uint32_t mask, int64_t i) {
    int64_t off = 0, stride = 1;
    for (int d = a->rank - 1; d >= 0; --d) {
        if (mask & (1u << d)) {
            off += (i % a->dims[d]) * stride;
            i /= a->dims[d];
        }
        stride *= a->dims[d];
    }
    return off;
}

int32_t normconf_run(normconf_call* a) {
    if (a == NULL || a->struct_size < sizeof(normconf_call)) return fail(NORMCONF_EINVAL, "bad call struct");
    if (a->op != NORMCONF_OP_LAYER_NORM) return fail(NORMCONF_EUNSUPPORTED, "myln does layer_norm only");
    if (a->direction != NORMCONF_FORWARD) return fail(NORMCONF_EUNSUPPORTED, "no gradients");
    if (a->flags != 0) return fail(NORMCONF_EUNSUPPORTED, "unknown flags");
    if ((a->dtype != NORMCONF_FLOAT32 && a->dtype != NORMCONF_FLOAT64) || a->param_dtype != a->dtype)
        return fail(NORMCONF_EUNSUPPORTED, "float32 or float64 only, with gamma/beta in x's type");
    if (a->rank < 1 || a->rank > NORMCONF_MAX_RANK) return fail(NORMCONF_EINVAL, "rank must be 1..8");
    if (!(a->eps > 0)) return fail(NORMCONF_EINVAL, "eps must be > 0");
    const uint32_t all = (1u << a->rank) - 1u, norm = a->axes_mask, kept = all & ~norm;
    if (norm == 0 || (norm & ~all) != 0) return fail(NORMCONF_EINVAL, "bad axes_mask");
    int64_t M = 1, rows = 1;
    for (int d = 0; d < a->rank; ++d) {
        if (a->dims[d] < 0) return fail(NORMCONF_EINVAL, "negative dim");
        if (norm & (1u << d)) M *= a->dims[d];
        else rows *= a->dims[d];
    }
    if (M == 0) return fail(NORMCONF_EINVAL, "a normalized axis has size 0");
    if (a->x_len != M * rows) return fail(NORMCONF_EINVAL, "x_len is not the product of dims");
    const int f64 = a->dtype == NORMCONF_FLOAT64;

    for (int64_t k = 0; k < rows; ++k) {
        const int64_t base = offset(a, kept, k);
        double sum = 0, sq = 0;
        for (int64_t r = 0; r < M; ++r) sum += get(a->x, f64, base + offset(a, norm, r));
        const double mean = sum / (double)M;
        for (int64_t r = 0; r < M; ++r) {
            const double d = get(a->x, f64, base + offset(a, norm, r)) - mean;
            sq += d * d;
        }
        const double std = sqrt(sq / (double)M + a->eps);
        for (int64_t r = 0; r < M; ++r) {
            const int64_t i = base + offset(a, norm, r);
            const double g = a->gamma ? get(a->gamma, f64, r) : 1.0;
            const double b = a->beta ? get(a->beta, f64, r) : 0.0;
            put(a->y, f64, i, g * ((get(a->x, f64, i) - mean) / std) + b);
        }
        if (a->mean) put(a->mean, f64, k, mean);
        if (a->inv_std) put(a->inv_std, f64, k, 1.0 / std);
    }
    if (a->mean) a->written |= NORMCONF_WROTE_MEAN;
    if (a->inv_std) a->written |= NORMCONF_WROTE_INV_STD;
    return NORMCONF_OK;
}
