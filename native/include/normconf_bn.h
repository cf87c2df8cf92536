/*
 * normconf_bn.h — the normconf C ABI for a native BatchNorm implementation.
 *
 * A shared library that exports the functions below can be checked by normconf:
 *
 *     normconf run cases/ --native path/to/libmine.so
 *
 * normconf loads the library with ctypes (in a worker process of its own, so a
 * crash or a hang becomes an `error` result and the run goes on) and calls
 * normconf_bn_forward() once per training step (or once per eval batch).
 *
 * ABI version 1.  A library returns NORMCONF_BN_ABI_VERSION from
 * normconf_bn_abi_version(); normconf refuses a library whose version differs.
 *
 * Data layout
 * -----------
 * All tensors are dense, C-contiguous (row-major) and **channels-first**:
 * x and y have shape (N, C, S1, ..., Sk) with rank = 2 + k, 2 <= rank <= 5.
 * Element (n, c, s) of x is x[(n * C + c) * S + s], where S = S1 * ... * Sk is
 * the spatial size (S = 1 for rank 2).  normconf transposes channels-last cases
 * to this layout before the call, transposes y back, and says so in the result
 * notes.  Per-channel vectors (gamma, beta, running and batch statistics) hold C
 * values.  Every array of one call has the same element type (`dtype`).
 *
 * Semantics asked for (what a conforming implementation computes)
 * ----------------------------------------------------------------
 *   train:  mean_c = mean of x over N x spatial for channel c
 *           var_c  = biased (population) variance over the same elements
 *           y      = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c
 *           running = (1 - w) * running + w * batch      (w = `momentum`,
 *                     the *batch weight*, PyTorch's convention; w = 1/step when
 *                     `cumulative` is set)
 *   eval:   y = gamma_c * (x - running_mean_c) / sqrt(running_var_c + eps) + beta_c
 * A case may ask for other conventions (e.g. an unbiased running variance); the
 * implementation does whatever it does, and normconf reports the differences.
 * The arguments say what the *case* asks for; an implementation that does
 * something else simply computes that — it is never told to "fix" anything.
 *
 * Errors
 * ------
 * normconf_bn_forward() never aborts: it returns NORMCONF_BN_OK or an error code
 * and (optionally) makes a message available through normconf_bn_last_error().
 * NORMCONF_BN_EUNSUPPORTED means "a valid request this implementation cannot
 * do" (e.g. float64, cumulative averaging) and becomes an `unsupported` result;
 * the other codes become `error` results.
 *
 * Threading: normconf calls a library from one thread at a time.
 */
#ifndef NORMCONF_BN_H
#define NORMCONF_BN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NORMCONF_BN_ABI_VERSION 1

/* the functions below are exported even when built with -fvisibility=hidden */
#if defined(_WIN32)
#define NORMCONF_BN_EXPORT __declspec(dllexport)
#else
#define NORMCONF_BN_EXPORT __attribute__((visibility("default")))
#endif

/* element types (`dtype`) */
#define NORMCONF_BN_FLOAT32 1 /* float  */
#define NORMCONF_BN_FLOAT64 2 /* double */

/* modes (`mode`) */
#define NORMCONF_BN_TRAIN 0 /* batch statistics; running statistics updated */
#define NORMCONF_BN_EVAL 1  /* running statistics used; nothing updated */

/* return codes of normconf_bn_forward() */
#define NORMCONF_BN_OK 0
#define NORMCONF_BN_EINVAL 1       /* invalid argument: dims, length, eps, NULL pointer ... */
#define NORMCONF_BN_EUNSUPPORTED 2 /* valid, but not implemented (dtype, rank, cumulative ...) */
#define NORMCONF_BN_EINTERNAL 3    /* anything else (out of memory, ...) */

/* bits the implementation sets in `written` for the optional outputs it filled */
#define NORMCONF_BN_WROTE_BATCH_MEAN 1u /* batch_mean holds the batch mean */
#define NORMCONF_BN_WROTE_BATCH_VAR 2u  /* batch_var holds the batch variance */
#define NORMCONF_BN_WROTE_RUNNING 4u    /* running_mean/running_var were updated (train) */

/* One call: one step of training, or one batch of inference. */
typedef struct normconf_bn_call {
    uint32_t struct_size; /* in: sizeof(normconf_bn_call) as compiled by the caller */
    int32_t dtype;        /* in: NORMCONF_BN_FLOAT32 or NORMCONF_BN_FLOAT64 */
    int32_t rank;         /* in: 2..5 */
    int32_t mode;         /* in: NORMCONF_BN_TRAIN or NORMCONF_BN_EVAL */
    int64_t dims[5];      /* in: N, C, spatial dims; entries past `rank` are 0. N may be 0 */
    int64_t x_len;        /* in: number of elements in x (and y); must be the product of dims */
    double eps;           /* in: > 0, added to the variance inside the square root */
    double momentum;      /* in: batch weight w in [0, 1] (see above); ignored if cumulative */
    int32_t cumulative;   /* in: train: 0 = exponential average, 1 = cumulative average (w = 1/step) */
    int32_t reserved0;    /* in: 0 */
    int64_t step;         /* in: 1-based training step (the number of batches seen, this one included) */
    const void* x;        /* in: x_len elements */
    const void* gamma;    /* in: C elements, or NULL = no scale (1) */
    const void* beta;     /* in: C elements, or NULL = no shift (0) */
    void* running_mean;   /* in (eval) / in-out (train): C elements */
    void* running_var;    /* in (eval) / in-out (train): C elements */
    void* y;              /* out: x_len elements */
    void* batch_mean;     /* out, optional: C elements, or NULL */
    void* batch_var;      /* out, optional: C elements, or NULL */
    uint32_t written;     /* out: NORMCONF_BN_WROTE_* bits (normconf sets it to 0 before the call) */
    uint32_t reserved1;   /* 0 */
} normconf_bn_call;

/* Required: return NORMCONF_BN_ABI_VERSION. */
NORMCONF_BN_EXPORT int32_t normconf_bn_abi_version(void);

/* Required: run one call; return NORMCONF_BN_OK or an error code. Never abort. */
NORMCONF_BN_EXPORT int32_t normconf_bn_forward(normconf_bn_call* call);

/* Optional: a message for the last error of this thread ("" if none). */
NORMCONF_BN_EXPORT const char* normconf_bn_last_error(void);

/* Optional: a short name and version of the implementation, e.g. "mybn 0.1". */
NORMCONF_BN_EXPORT const char* normconf_bn_name(void);

#ifdef __cplusplus
}
#endif

#endif /* NORMCONF_BN_H */
