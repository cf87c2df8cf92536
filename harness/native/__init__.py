"""ctypes side of normconf's C ABI (``native/include/normconf_bn.h``).

:class:`NativeLibrary` loads a shared library that implements the ABI and
:func:`run_case` drives it through a case: one ``normconf_bn_forward`` call per
training step (running statistics carried from call to call by the harness), an
eval call for ``eval_after``, one call per batch in eval mode.

Layout: the ABI takes channels-first data; channels-last cases are transposed
to channels-first before the call and ``y`` is transposed back (a note says so).
Element types: the ABI carries float32 and float64; every array of a call has
the case dtype.  Cases in other dtypes, or whose ``param_dtype`` differs from
``dtype``, are ``unsupported`` — nothing is converted behind the user's back.

Nothing here loads a library at import; the adapters call it inside the worker
process, so a crashing or hanging library is contained by the runner.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

#: the ABI version this harness speaks (NORMCONF_BN_ABI_VERSION in normconf_bn.h)
ABI_VERSION = 1
FLOAT32, FLOAT64 = 1, 2
TRAIN, EVAL = 0, 1
OK, EINVAL, EUNSUPPORTED, EINTERNAL = 0, 1, 2, 3
WROTE_BATCH_MEAN, WROTE_BATCH_VAR, WROTE_RUNNING = 1, 2, 4
CODE_NAMES = {OK: "OK", EINVAL: "EINVAL", EUNSUPPORTED: "EUNSUPPORTED", EINTERNAL: "EINTERNAL"}
DTYPE_CODES = {"float32": FLOAT32, "float64": FLOAT64}

#: folder of the bundled libraries (written by the package build)
LIB_DIR = Path(__file__).resolve().parent / "_lib"


def include_dir() -> Path:
    """Folder holding ``normconf_bn.h``: the source tree's ``native/include`` (editable
    install, clone) or the copy a wheel install puts in ``harness/native/include``."""
    here = Path(__file__).resolve().parent
    for d in (here.parents[1] / "native" / "include", here / "include"):
        if (d / "normconf_bn.h").exists():
            return d
    return here.parents[1] / "native" / "include"


class NormconfCall(ctypes.Structure):
    """``normconf_bn_call`` (must match the header field by field)."""

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


class NativeLibraryError(Exception):
    """The library cannot be used; ``kind`` says why: ``missing`` (no such file), ``unloadable``
    (the dynamic loader refused it: not a shared library, wrong architecture, unresolved
    dependencies), ``symbols`` (it does not export the ABI's functions) or ``abi`` (another ABI
    version).  Each is an ``error`` of a ``--native`` backend (issue 17), never "unavailable"."""

    KINDS = ("missing", "unloadable", "symbols", "abi")

    def __init__(self, message: str, kind: str = "unloadable"):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # picklable with its kind
        return (type(self), (str(self), self.kind))


class NativeCallError(Exception):
    """``normconf_bn_forward`` returned an error code other than EUNSUPPORTED."""


class NativeUnsupported(Exception):
    """``normconf_bn_forward`` returned EUNSUPPORTED; the message is the library's."""


def bundled_library(name: str) -> Path:
    """Path of a bundled library (``cpp`` → ``_lib/libnormconf_cpp.so``); may not exist."""
    return LIB_DIR / f"libnormconf_{name}.so"


def file_digest(path: str | os.PathLike[str]) -> str:
    """Short SHA-256 of a file (identifies a user's build in reports)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


class NativeLibrary:
    """A loaded library implementing ``normconf_bn.h``; use :func:`load`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise NativeLibraryError(f"{self.path}: no such file", "missing")
        try:
            self._dll = ctypes.CDLL(self.path)
        except OSError as e:
            raise NativeLibraryError(f"cannot load {self.path}: {e}", "unloadable") from None
        for sym in ("normconf_bn_abi_version", "normconf_bn_forward"):
            if not hasattr(self._dll, sym):
                raise NativeLibraryError(f"{self.path} does not export {sym}() (build it against normconf_bn.h)", "symbols")
        self._dll.normconf_bn_abi_version.restype = ctypes.c_int32
        self._dll.normconf_bn_abi_version.argtypes = []
        version = int(self._dll.normconf_bn_abi_version())
        if version != ABI_VERSION:
            raise NativeLibraryError(
                f"{self.path} implements normconf ABI version {version}; this normconf speaks version {ABI_VERSION}",
                "abi")
        self._forward = self._dll.normconf_bn_forward
        self._forward.restype = ctypes.c_int32
        self._forward.argtypes = [ctypes.POINTER(NormconfCall)]
        self._last_error = getattr(self._dll, "normconf_bn_last_error", None)
        if self._last_error is not None:
            self._last_error.restype = ctypes.c_char_p
            self._last_error.argtypes = []
        name_fn = getattr(self._dll, "normconf_bn_name", None)
        self.name = ""
        if name_fn is not None:
            name_fn.restype = ctypes.c_char_p
            name_fn.argtypes = []
            raw = name_fn()
            self.name = raw.decode("utf-8", "replace") if raw else ""

    def last_error(self) -> str:
        if self._last_error is None:
            return "(the library exports no normconf_bn_last_error)"
        raw = self._last_error()
        return raw.decode("utf-8", "replace") if raw else ""

    def forward(self, call: NormconfCall) -> int:
        call.struct_size = ctypes.sizeof(NormconfCall)
        call.written = 0
        return int(self._forward(ctypes.byref(call)))


@lru_cache(maxsize=None)
def load(path: str) -> NativeLibrary:
    """The library at ``path``, loaded once per process."""
    return NativeLibrary(path)


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


@dataclass
class StepResult:
    y: np.ndarray
    batch_mean: np.ndarray | None
    batch_var: np.ndarray | None
    running_updated: bool


def call_forward(lib: NativeLibrary, x: np.ndarray, *, mode: int, eps: float, momentum: float | None,
                 step: int, gamma: np.ndarray | None, beta: np.ndarray | None,
                 running_mean: np.ndarray, running_var: np.ndarray) -> StepResult:
    """One ABI call on channels-first ``x``; ``running_*`` are updated in place (train).

    ``momentum`` is the batch weight (``None`` = cumulative average).  Raises
    :class:`NativeUnsupported` (EUNSUPPORTED) or :class:`NativeCallError`.
    """
    dt = x.dtype
    if dt.name not in DTYPE_CODES:
        raise NativeUnsupported(f"the C ABI carries float32 and float64, not {dt.name}")
    x = np.ascontiguousarray(x)
    C = x.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if a is not None and (a.dtype != dt or a.shape != (C,) or not a.flags.c_contiguous):
            raise ValueError(f"{name} must be a contiguous ({C},) {dt.name} array")
    y = np.empty_like(x)
    bmean = np.zeros(C, dt)
    bvar = np.zeros(C, dt)
    call = NormconfCall()
    call.dtype = DTYPE_CODES[dt.name]
    call.rank = x.ndim
    call.mode = mode
    for i, d in enumerate(x.shape):
        call.dims[i] = d
    call.x_len = x.size
    call.eps = float(eps)
    call.cumulative = 1 if momentum is None else 0
    call.momentum = 0.0 if momentum is None else float(momentum)
    call.step = int(step)
    call.x, call.gamma, call.beta = _ptr(x), _ptr(gamma), _ptr(beta)
    call.running_mean, call.running_var = _ptr(running_mean), _ptr(running_var)
    call.y, call.batch_mean, call.batch_var = _ptr(y), _ptr(bmean), _ptr(bvar)
    rc = lib.forward(call)
    if rc == EUNSUPPORTED:
        raise NativeUnsupported(lib.last_error() or "EUNSUPPORTED")
    if rc != OK:
        raise NativeCallError(f"normconf_bn_forward returned {rc} ({CODE_NAMES.get(rc, 'unknown code')}): "
                              f"{lib.last_error()}")
    w = call.written
    return StepResult(y, bmean if w & WROTE_BATCH_MEAN else None, bvar if w & WROTE_BATCH_VAR else None,
                      bool(w & WROTE_RUNNING))


def run_case(lib: NativeLibrary, case, inputs, *, gamma: np.ndarray | None, beta: np.ndarray | None,
             label: str) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """Drive ``lib`` through ``case``: ``({output: [array per step]}, notes)``.

    ``gamma``/``beta`` are what the adapter decided to pass (``None`` = NULL).
    Outputs the library did not report (``written`` bits) are left out.
    """
    from harness.inputs import np_dtype

    if case.dtype not in DTYPE_CODES:
        raise NativeUnsupported(f"the C ABI carries float32 and float64, not {case.dtype}")
    if case.params_dtype != case.dtype:
        raise NativeUnsupported(
            f"the C ABI passes gamma/beta/running statistics in the data dtype ({case.dtype}); "
            f"the case's param_dtype is {case.params_dtype}")
    dt = np_dtype(case.dtype)
    notes: list[str] = []
    last = case.layout == "channels_last"
    if last:
        notes.append(f"{label}: channels-last input transposed to channels-first (N, C, *spatial) for the C ABI; "
                     "y transposed back")

    def to_cf(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(a, -1, 1) if last else a, dtype=dt)

    def from_cf(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if last else a

    def vec(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a, dtype=dt).copy()

    g, b = vec(gamma), vec(beta)
    rm, rv = vec(inputs.running_mean), vec(inputs.running_var)
    out: dict[str, list[np.ndarray]] = {}
    if case.mode == "eval":
        ys = []
        for k, x in enumerate(inputs.x):
            r = call_forward(lib, to_cf(x), mode=EVAL, eps=case.eps, momentum=case.momentum_weight, step=k + 1,
                             gamma=g, beta=b, running_mean=rm.copy(), running_var=rv.copy())
            ys.append(from_cf(r.y))
        out["y"] = ys
        return out, notes

    ys, bms, bvs, rms, rvs = [], [], [], [], []
    all_bm = all_bv = all_run = True
    for k, x in enumerate(inputs.x):
        r = call_forward(lib, to_cf(x), mode=TRAIN, eps=case.eps, momentum=case.momentum_weight, step=k + 1,
                         gamma=g, beta=b, running_mean=rm, running_var=rv)
        ys.append(from_cf(r.y))
        all_bm &= r.batch_mean is not None
        all_bv &= r.batch_var is not None
        all_run &= r.running_updated
        if r.batch_mean is not None:
            bms.append(r.batch_mean)
        if r.batch_var is not None:
            bvs.append(r.batch_var)
        rms.append(rm.copy())
        rvs.append(rv.copy())
    out["y"] = ys
    if all_bm:
        out["batch_mean"] = bms
    if all_bv:
        out["batch_var"] = bvs
    if all_run:
        out["running_mean"] = rms
        out["running_var"] = rvs
    else:
        notes.append(f"{label}: the library did not report updating the running statistics (WROTE_RUNNING)")
    if case.eval_after:
        r = call_forward(lib, to_cf(inputs.x[-1]), mode=EVAL, eps=case.eps, momentum=case.momentum_weight,
                         step=len(inputs.x), gamma=g, beta=b, running_mean=rm.copy(), running_var=rv.copy())
        out["eval_y"] = [from_cf(r.y)]
    return out, notes
