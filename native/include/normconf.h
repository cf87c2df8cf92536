/*
 * normconf.h — the normconf C ABI, version 2: one entry point for every
 * normalization op (BatchNorm and LayerNorm now; GroupNorm, InstanceNorm and
 * RMSNorm reserved), four element types, and (reserved) gradients.
 *
 * A shared library that exports the functions below can be checked by normconf:
 *
 *     normconf run cases/ --native path/to/libmine.so
 *
 * normconf loads the library with ctypes in a worker process of its own (a crash
 * or a hang becomes an `error` result and the run goes on) and calls
 * normconf_run() once per training step / input batch.  Libraries written for
 * ABI version 1 (normconf_bn.h, BatchNorm only) keep working: normconf looks for
 * normconf_abi_version() first and falls back to normconf_bn_abi_version().
 *
 * Exports
 * -------
 *   required  int32_t normconf_abi_version(void)        return NORMCONF_ABI_VERSION
 *   required  int32_t normconf_supports(int32_t op, int32_t direction)
 *                                                       1 if normconf_run() implements it, else 0
 *   required  int32_t normconf_run(normconf_call* call) NORMCONF_OK or an error code; never abort
 *   optional  const char* normconf_last_error(void)     message of this thread's last error ("" if none)
 *   optional  const char* normconf_name(void)           "name version" for reports
 *
 * normconf asks normconf_supports() once per op at load time: an op the library
 * does not report becomes an `unsupported` result without a call.  normconf_run()
 * must still check `op` and `direction` itself.
 *
 * The call struct
 * ---------------
 * Layout: the offsets below hold on every LP64/LLP64 64-bit platform (8-byte
 * pointers, natural alignment, no implicit padding: every field sits at a
 * multiple of its size); the struct is 328 bytes.  The layout does not depend on
 * `abi_version`: later versions only give meaning to the `reserved` words at the
 * end (or append after them, with a larger struct_size), never move a field.
 * A library rejects a struct_size smaller than its own sizeof(normconf_call)
 * (EINVAL) and ignores bytes past it.
 *
 * Tensors are dense and C-contiguous (row-major).  `dtype` is the element type
 * of x and y (and of dy, dx); `param_dtype` that of every other array (gamma,
 * beta, running and batch statistics, mean, inv_std, dgamma, dbeta).  16-bit
 * types are passed as their raw uint16_t storage: FLOAT16 is IEEE 754 binary16,
 * BFLOAT16 the upper half of a binary32.  A library rounds every result it
 * writes once, round-to-nearest-even, from its own internal precision.
 *
 * Ops
 * ---
 * NORMCONF_OP_BATCH_NORM (1) — as ABI v1 (normconf_bn.h): x is channels-first
 *   (N, C, S1, ..., Sk), rank 2..8 (a library may refuse ranks above 5 with
 *   EUNSUPPORTED); N may be 0.  Per-channel arrays (gamma, beta, running_mean,
 *   running_var, batch_mean, batch_var) hold C values.
 *     train: mean_c, biased var_c over N x spatial; y = gamma*(x-mean)/sqrt(var+eps)+beta;
 *            running = (1 - w) * running + w * batch  (w = `momentum`, the batch
 *            weight; w = 1/step when `cumulative`); running_* are updated in place.
 *     eval:  the same with running_mean/running_var; nothing is updated.
 *   Uses: mode, momentum, cumulative, step.  Ignores: axes_mask, groups, mean, inv_std.
 *   Writes: y; NORMCONF_WROTE_RUNNING (train), NORMCONF_WROTE_BATCH_MEAN/_VAR
 *   when batch_mean/batch_var are not NULL.
 *
 * NORMCONF_OP_LAYER_NORM (2) — rank 1..8, any shape (no layout, no channel axis);
 *   dims may be 0 except on normalized axes.  Bit i of `axes_mask` set = axis i is
 *   normalized (any non-empty set of axes below `rank`, not only trailing ones).
 *   Let R = the normalized axes, K = the others, M = product of dims over R.
 *   For every index k over K (a "row"):
 *     mean_k = (1/M) * sum over R of x;   var_k = (1/M) * sum over R of (x - mean_k)^2  (biased)
 *     y      = gamma[r] * (x - mean_k) / sqrt(var_k + eps) + beta[r]
 *   gamma and beta have the shape of the dims at R, in order (normalized_shape),
 *   C-contiguous: element r is the C-order index of x's coordinates on R.  NULL
 *   gamma = scale 1, NULL beta = shift 0.  Optional outputs `mean` and `inv_std`
 *   (= 1/sqrt(var_k + eps)) have x's shape with the dims at R set to 1 (keepdims),
 *   C-contiguous, one value per row.  RMS scaling (no mean subtraction) is not
 *   LayerNorm here: it will be NORMCONF_OP_RMS_NORM.
 *   Uses: axes_mask, eps.  Ignores: mode, momentum, cumulative, step, groups,
 *   running_*, batch_*.  Writes: y; NORMCONF_WROTE_MEAN / _INV_STD when
 *   mean/inv_std are not NULL.
 *
 * NORMCONF_OP_GROUP_NORM (3), NORMCONF_OP_INSTANCE_NORM (4), NORMCONF_OP_RMS_NORM (5):
 *   reserved; their contracts will be added in this header.  `groups` is reserved
 *   for group_norm.  Return EUNSUPPORTED for them until then.
 *
 * Directions
 * ----------
 * NORMCONF_FORWARD (0) is the only direction defined.  NORMCONF_BACKWARD (1) is
 * reserved for gradients: dy in (x's shape, dtype), dx out (x's shape, dtype),
 * dgamma/dbeta out (gamma's shape, param_dtype); the pointers are in the struct
 * already and are NULL today.  Libraries return EUNSUPPORTED for it.
 *
 * Errors
 * ------
 * NORMCONF_EUNSUPPORTED means "a valid request this implementation cannot do"
 * (an op, a dtype, a rank, a flag bit it does not know ...) and becomes an
 * `unsupported` result; EINVAL (malformed request) and EINTERNAL become `error`
 * results, with normconf_last_error()'s message.
 *
 * Threading: normconf calls a library from one thread at a time.
 */
#ifndef NORMCONF_H
#define NORMCONF_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NORMCONF_ABI_VERSION 2
#define NORMCONF_MAX_RANK 8

/* the functions below are exported even when built with -fvisibility=hidden */
#if defined(_WIN32)
#define NORMCONF_EXPORT __declspec(dllexport)
#else
#define NORMCONF_EXPORT __attribute__((visibility("default")))
#endif

/* ops (`op`) */
#define NORMCONF_OP_BATCH_NORM 1
#define NORMCONF_OP_LAYER_NORM 2
#define NORMCONF_OP_GROUP_NORM 3    /* reserved */
#define NORMCONF_OP_INSTANCE_NORM 4 /* reserved */
#define NORMCONF_OP_RMS_NORM 5      /* reserved */

/* directions (`direction`) */
#define NORMCONF_FORWARD 0
#define NORMCONF_BACKWARD 1 /* reserved: gradients */

/* element types (`dtype`, `param_dtype`) */
#define NORMCONF_FLOAT32 1  /* float */
#define NORMCONF_FLOAT64 2  /* double */
#define NORMCONF_FLOAT16 3  /* IEEE 754 binary16, stored as uint16_t */
#define NORMCONF_BFLOAT16 4 /* bfloat16 (upper 16 bits of a binary32), stored as uint16_t */

/* batch_norm modes (`mode`) */
#define NORMCONF_TRAIN 0 /* batch statistics; running statistics updated */
#define NORMCONF_EVAL 1  /* running statistics used; nothing updated */

/* return codes of normconf_run() (the same values as ABI v1) */
#define NORMCONF_OK 0
#define NORMCONF_EINVAL 1       /* malformed request: dims, x_len, eps, NULL pointer, unknown code ... */
#define NORMCONF_EUNSUPPORTED 2 /* valid, but not implemented (op, dtype, rank, direction, flag ...) */
#define NORMCONF_EINTERNAL 3    /* anything else (out of memory, ...) */

/* bits the library sets in `written` for the optional outputs it filled */
#define NORMCONF_WROTE_BATCH_MEAN 1u /* batch_norm: batch_mean */
#define NORMCONF_WROTE_BATCH_VAR 2u  /* batch_norm: batch_var (biased) */
#define NORMCONF_WROTE_RUNNING 4u    /* batch_norm: running_mean/running_var updated (train) */
#define NORMCONF_WROTE_MEAN 8u       /* layer_norm: mean */
#define NORMCONF_WROTE_INV_STD 16u   /* layer_norm: inv_std */
#define NORMCONF_WROTE_DX 32u        /* reserved: backward */
#define NORMCONF_WROTE_DGAMMA 64u    /* reserved: backward */
#define NORMCONF_WROTE_DBETA 128u    /* reserved: backward */

/* `flags`: no bit is defined yet; a library returns EUNSUPPORTED for any bit it does not know */

/* One call: one step of one op.  Offsets (64-bit platforms) in the comments. */
typedef struct normconf_call {
    uint32_t struct_size;    /*   0 in: sizeof(normconf_call) as compiled by the caller */
    uint32_t abi_version;    /*   4 in: NORMCONF_ABI_VERSION the caller was built with */
    int32_t op;              /*   8 in: NORMCONF_OP_* */
    int32_t direction;       /*  12 in: NORMCONF_FORWARD (NORMCONF_BACKWARD reserved) */
    int32_t dtype;           /*  16 in: element type of x, y (dy, dx) */
    int32_t param_dtype;     /*  20 in: element type of every other array */
    int32_t rank;            /*  24 in: 1..NORMCONF_MAX_RANK (batch_norm: >= 2) */
    uint32_t axes_mask;      /*  28 in: layer_norm: bit i set = axis i normalized */
    int64_t dims[8];         /*  32 in: x's shape; entries past `rank` are 0 */
    int64_t x_len;           /*  96 in: elements of x (and y): the product of dims[0..rank) */
    double eps;              /* 104 in: finite, > 0, added to the variance inside the square root */
    double momentum;         /* 112 in: batch_norm train: batch weight w in [0, 1]; ignored if cumulative */
    int64_t step;            /* 120 in: batch_norm train: 1-based step (batches seen, this one included) */
    int32_t mode;            /* 128 in: batch_norm: NORMCONF_TRAIN or NORMCONF_EVAL */
    int32_t cumulative;      /* 132 in: batch_norm train: 0 = exponential, 1 = cumulative average (w = 1/step) */
    int32_t groups;          /* 136 in: reserved (group_norm); 0 */
    uint32_t flags;          /* 140 in: 0 (no bit defined yet) */
    uint32_t written;        /* 144 out: NORMCONF_WROTE_* bits (the caller sets 0 before the call) */
    uint32_t reserved0;      /* 148 0 */
    const void* x;           /* 152 in: x_len elements (dtype) */
    const void* gamma;       /* 160 in: scale (param_dtype), or NULL = 1 */
    const void* beta;        /* 168 in: shift (param_dtype), or NULL = 0 */
    void* running_mean;      /* 176 batch_norm: in (eval) / in-out (train), C elements */
    void* running_var;       /* 184 batch_norm: in (eval) / in-out (train), C elements */
    void* y;                 /* 192 out: x_len elements (dtype) */
    void* batch_mean;        /* 200 batch_norm, out, optional: C elements, or NULL */
    void* batch_var;         /* 208 batch_norm, out, optional: C elements (biased), or NULL */
    void* mean;              /* 216 layer_norm, out, optional: one per row, or NULL */
    void* inv_std;           /* 224 layer_norm, out, optional: 1/sqrt(var + eps) per row, or NULL */
    const void* dy;          /* 232 reserved (backward): in, x's shape (dtype); NULL */
    void* dx;                /* 240 reserved (backward): out, x's shape (dtype); NULL */
    void* dgamma;            /* 248 reserved (backward): out, gamma's shape (param_dtype); NULL */
    void* dbeta;             /* 256 reserved (backward): out, beta's shape (param_dtype); NULL */
    uint64_t reserved[8];    /* 264 0: room for later versions */
} normconf_call;             /* 328 bytes */

/* Required: return NORMCONF_ABI_VERSION. */
NORMCONF_EXPORT int32_t normconf_abi_version(void);

/* Required: 1 if normconf_run() implements `op` in `direction`, else 0. */
NORMCONF_EXPORT int32_t normconf_supports(int32_t op, int32_t direction);

/* Required: run one call; return NORMCONF_OK or an error code.  Never abort. */
NORMCONF_EXPORT int32_t normconf_run(normconf_call* call);

/* Optional: a message for the last error of this thread ("" if none). */
NORMCONF_EXPORT const char* normconf_last_error(void);

/* Optional: a short name and version of the implementation, e.g. "myln 0.1". */
NORMCONF_EXPORT const char* normconf_name(void);

#ifdef __cplusplus
}
#endif

#endif /* NORMCONF_H */
