"""The C ABI's constants and call structs, as ctypes mirrors of the headers.

* ABI v2 — ``native/include/normconf.h``: :class:`NormconfCallV2` (``normconf_call``), every op,
  four element types, entry points ``normconf_abi_version`` / ``normconf_supports`` /
  ``normconf_run``.
* ABI v1 — ``native/include/normconf_bn.h``: :class:`NormconfCall` (``normconf_bn_call``),
  BatchNorm in float32/float64, entry points ``normconf_bn_abi_version`` / ``normconf_bn_forward``.

The numeric codes shared by both versions (float32 = 1, float64 = 2, train = 0, eval = 1, the
return codes, the BatchNorm ``written`` bits) have one name here.  Both structs are checked
field by field against the headers by tests (``tests/test_native_abi*.py`` compile a C program
that prints the offsets).
"""

from __future__ import annotations

import ctypes

import numpy as np

#: ABI versions: v1 (normconf_bn.h) and v2 (normconf.h); the harness speaks both
ABI_V1, ABI_V2 = 1, 2
#: the newest ABI version this harness speaks (NORMCONF_ABI_VERSION in normconf.h)
ABI_VERSION = ABI_V2

# element types (`dtype`, `param_dtype`): float16/bfloat16 travel as their uint16 storage
FLOAT32, FLOAT64, FLOAT16, BFLOAT16 = 1, 2, 3, 4
DTYPE_CODES = {"float32": FLOAT32, "float64": FLOAT64, "float16": FLOAT16, "bfloat16": BFLOAT16}
#: the element types ABI v1 carries
V1_DTYPES = ("float32", "float64")

# ops (`op`, v2) — 3..5 reserved
OP_BATCH_NORM, OP_LAYER_NORM, OP_GROUP_NORM, OP_INSTANCE_NORM, OP_RMS_NORM = 1, 2, 3, 4, 5
OP_CODES = {
    "batch_norm": OP_BATCH_NORM,
    "layer_norm": OP_LAYER_NORM,
    "group_norm": OP_GROUP_NORM,
    "instance_norm": OP_INSTANCE_NORM,
    "rms_norm": OP_RMS_NORM,
}
#: the ops this harness drives through the ABI (the others have codes but no contract yet)
HARNESS_OPS = ("batch_norm", "layer_norm")

# directions (`direction`, v2)
FORWARD, BACKWARD = 0, 1
DIRECTION_CODES = {"forward": FORWARD, "backward": BACKWARD}

# batch_norm modes (`mode`)
TRAIN, EVAL = 0, 1

# return codes (both versions)
OK, EINVAL, EUNSUPPORTED, EINTERNAL = 0, 1, 2, 3
CODE_NAMES = {OK: "OK", EINVAL: "EINVAL", EUNSUPPORTED: "EUNSUPPORTED", EINTERNAL: "EINTERNAL"}

# `written` bits (1, 2, 4 are v1's too)
WROTE_BATCH_MEAN, WROTE_BATCH_VAR, WROTE_RUNNING = 1, 2, 4
WROTE_MEAN, WROTE_INV_STD, WROTE_DX, WROTE_DGAMMA, WROTE_DBETA = 8, 16, 32, 64, 128

MAX_RANK = 8


class NormconfCall(ctypes.Structure):
    """ABI v1 ``normconf_bn_call`` (normconf_bn.h; must match the header field by field)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("dtype", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("mode", ctypes.c_int32),
        ("dims", ctypes.c_int64 * 5),
        ("x_len", ctypes.c_int64),
        ("eps", ctypes.c_double),
        ("momentum", ctypes.c_double),
        ("cumulative", ctypes.c_int32),
        ("reserved0", ctypes.c_int32),
        ("step", ctypes.c_int64),
        ("x", ctypes.c_void_p),
        ("gamma", ctypes.c_void_p),
        ("beta", ctypes.c_void_p),
        ("running_mean", ctypes.c_void_p),
        ("running_var", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("batch_mean", ctypes.c_void_p),
        ("batch_var", ctypes.c_void_p),
        ("written", ctypes.c_uint32),
        ("reserved1", ctypes.c_uint32),
    ]


class NormconfCallV2(ctypes.Structure):
    """ABI v2 ``normconf_call`` (normconf.h; 328 bytes on 64-bit platforms, must match the header)."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("abi_version", ctypes.c_uint32),
        ("op", ctypes.c_int32),
        ("direction", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("param_dtype", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("axes_mask", ctypes.c_uint32),
        ("dims", ctypes.c_int64 * MAX_RANK),
        ("x_len", ctypes.c_int64),
        ("eps", ctypes.c_double),
        ("momentum", ctypes.c_double),
        ("step", ctypes.c_int64),
        ("mode", ctypes.c_int32),
        ("cumulative", ctypes.c_int32),
        ("groups", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("written", ctypes.c_uint32),
        ("reserved0", ctypes.c_uint32),
        ("x", ctypes.c_void_p),
        ("gamma", ctypes.c_void_p),
        ("beta", ctypes.c_void_p),
        ("running_mean", ctypes.c_void_p),
        ("running_var", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("batch_mean", ctypes.c_void_p),
        ("batch_var", ctypes.c_void_p),
        ("mean", ctypes.c_void_p),
        ("inv_std", ctypes.c_void_p),
        ("dy", ctypes.c_void_p),
        ("dx", ctypes.c_void_p),
        ("dgamma", ctypes.c_void_p),
        ("dbeta", ctypes.c_void_p),
        ("reserved", ctypes.c_uint64 * 8),
    ]


def new_call_v2(op: str, x: np.ndarray, param_dtype: np.dtype) -> NormconfCallV2:
    """A zeroed v2 call for ``op`` on ``x`` (C-contiguous): codes, rank, dims, x_len, x set."""
    call = NormconfCallV2()
    call.abi_version = ABI_V2
    call.op = OP_CODES[op]
    call.direction = FORWARD
    call.dtype = dtype_code(x.dtype)
    call.param_dtype = dtype_code(param_dtype)
    call.rank = x.ndim
    for i, d in enumerate(x.shape):
        call.dims[i] = d
    call.x_len = x.size
    call.x = ptr(x)
    return call


def dtype_code(dt: np.dtype) -> int:
    """The ABI code of a NumPy dtype (``ml_dtypes.bfloat16`` included); KeyError if none."""
    return DTYPE_CODES[np.dtype(dt).name]


def ptr(a: np.ndarray | None) -> int | None:
    """The data address of ``a`` (``None`` → NULL); 16-bit types pass their raw storage."""
    return None if a is None else a.ctypes.data
