/* mybn.c — a complete, minimal BatchNorm for normconf's C ABI (float32 and float64).
 *
 * Build and check it:
 *     cc -O2 -shared -fPIC -I native/include native/examples/mybn.c -o libmybn.so -lm
 *     normconf run cases/ --native ./libmybn.so
 *
 * Training: per-channel mean and biased variance over N x spatial,
 * y = gamma * (x - mean) / sqrt(var + eps) + beta, and
 * running = (1 - w) * running + w * batch (w = 1/step for a cumulative average).
 * Inference: the same with the running statistics.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "normconf_bn.h"

static char last_error[256];

int32_t normconf_bn_abi_version(void) { return NORMCONF_BN_ABI_VERSION; }
const char* normconf_bn_name(void) { return "mybn 1.0"; }
const char* normconf_bn_last_error(void) { return last_error; }

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

int32_t normconf_bn_forward(normconf_bn_call* a) {
    if (a == NULL || a->struct_size < sizeof(normconf_bn_call)) return fail(NORMCONF_BN_EINVAL, "bad call struct");
    if (a->dtype != NORMCONF_BN_FLOAT32 && a->dtype != NORMCONF_BN_FLOAT64)
        return fail(NORMCONF_BN_EUNSUPPORTED, "only float32 and float64");
    if (a->rank < 2 || a->rank > 5) return fail(NORMCONF_BN_EINVAL, "rank must be 2..5");
    if (!(a->eps > 0)) return fail(NORMCONF_BN_EINVAL, "eps must be > 0");
    const int f64 = a->dtype == NORMCONF_BN_FLOAT64;
    const int64_t N = a->dims[0], C = a->dims[1];
    int64_t S = 1;
    for (int i = 2; i < a->rank; ++i) S *= a->dims[i];
    if (N < 0 || C <= 0 || S <= 0 || a->x_len != N * C * S) return fail(NORMCONF_BN_EINVAL, "bad dims or x_len");
    const int train = a->mode == NORMCONF_BN_TRAIN;
    if (train && N == 0) return fail(NORMCONF_BN_EUNSUPPORTED, "empty batch");
    const double w = a->cumulative ? 1.0 / (double)a->step : a->momentum;

    for (int64_t c = 0; c < C; ++c) {
        double mean, var;
        if (train) {
            double sum = 0, sq = 0;
            for (int64_t n = 0; n < N; ++n)
                for (int64_t s = 0; s < S; ++s) sum += get(a->x, f64, (n * C + c) * S + s);
            mean = sum / (double)(N * S);
            for (int64_t n = 0; n < N; ++n)
                for (int64_t s = 0; s < S; ++s) {
                    double d = get(a->x, f64, (n * C + c) * S + s) - mean;
                    sq += d * d;
                }
            var = sq / (double)(N * S); /* biased */
        } else {
            mean = get(a->running_mean, f64, c);
            var = get(a->running_var, f64, c);
        }
        const double g = a->gamma ? get(a->gamma, f64, c) : 1.0;
        const double b = a->beta ? get(a->beta, f64, c) : 0.0;
        const double inv_std = 1.0 / sqrt(var + a->eps);
        for (int64_t n = 0; n < N; ++n)
            for (int64_t s = 0; s < S; ++s) {
                const int64_t i = (n * C + c) * S + s;
                put(a->y, f64, i, g * (get(a->x, f64, i) - mean) * inv_std + b);
            }
        if (train) {
            put(a->running_mean, f64, c, (1 - w) * get(a->running_mean, f64, c) + w * mean);
            put(a->running_var, f64, c, (1 - w) * get(a->running_var, f64, c) + w * var);
            if (a->batch_mean) put(a->batch_mean, f64, c, mean);
            if (a->batch_var) put(a->batch_var, f64, c, var);
        }
    }
    if (train) {
        a->written |= NORMCONF_BN_WROTE_RUNNING;
        if (a->batch_mean) a->written |= NORMCONF_BN_WROTE_BATCH_MEAN;
        if (a->batch_var) a->written |= NORMCONF_BN_WROTE_BATCH_VAR;
    }
    return NORMCONF_BN_OK;
}
