"""ctypes side of normconf's C ABI: ABI v2 (``native/include/normconf.h``, every op) and
ABI v1 (``native/include/normconf_bn.h``, BatchNorm only), both loaded.

:func:`load` returns a :class:`NativeLibrary`.  Detection: a library exporting
``normconf_abi_version`` is v2 (it must return 2, and export ``normconf_supports`` and
``normconf_run``); otherwise one exporting ``normconf_bn_abi_version`` is v1 (it must return 1
and export ``normconf_bn_forward``).  A v1 library implements op ``batch_norm`` only; a v2
library reports its ops through ``normconf_supports(op, NORMCONF_FORWARD)``.  Anything else is
a :class:`NativeLibraryError` whose ``kind`` says why.

BatchNorm (:func:`run_case`): one call per training step (running statistics carried from call
to call by the harness), an eval call for ``eval_after``, one call per batch in eval mode.  The
ABI takes channels-first data: channels-last cases are transposed before the call and ``y``
back (a note says so).  LayerNorm: :mod:`normconf.native.layer_norm` (v2 libraries only).

Element types: v2 carries float32, float64, float16 and bfloat16 (the 16-bit types as their raw
uint16 storage), x/y in the case dtype and every other array in the parameter dtype.  v1
carries float32 and float64 with every array in the case dtype; other cases are
``unsupported`` there — nothing is converted behind the user's back.

Nothing here loads a library at import; the adapters call it inside the worker process, so a
crashing or hanging library is contained by the runner.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from normconf.native.abi import (  # noqa: F401
    ABI_V1,
    ABI_V2,
    ABI_VERSION,
    BACKWARD,
    BFLOAT16,
    CODE_NAMES,
    DIRECTION_CODES,
    DTYPE_CODES,
    EINTERNAL,
    EINVAL,
    EUNSUPPORTED,
    EVAL,
    FLOAT16,
    FLOAT32,
    FLOAT64,
    FORWARD,
    HARNESS_OPS,
    MAX_RANK,
    OK,
    OP_BATCH_NORM,
    OP_CODES,
    OP_LAYER_NORM,
    TRAIN,
    V1_DTYPES,
    WROTE_BATCH_MEAN,
    WROTE_BATCH_VAR,
    WROTE_INV_STD,
    WROTE_MEAN,
    WROTE_RUNNING,
    NormconfCall,
    NormconfCallV2,
    new_call_v2,
    ptr,
)

#: folder of the bundled libraries (written by the package build)
LIB_DIR = Path(__file__).resolve().parent / "_lib"

_SPEAKS = "this normconf speaks version 2 (normconf.h, normconf_abi_version) and version 1 (normconf_bn.h)"


def include_dir() -> Path:
    """Folder holding ``normconf.h`` and ``normconf_bn.h``: the source tree's ``native/include``
    (editable install, clone) or the copy a wheel install puts in ``harness/native/include``."""
    here = Path(__file__).resolve().parent
    for d in (here.parents[1] / "native" / "include", here / "include"):
        if (d / "normconf_bn.h").exists():
            return d
    return here.parents[1] / "native" / "include"


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
    """The library's entry point returned an error code other than EUNSUPPORTED."""


class NativeUnsupported(Exception):
    """The library returned EUNSUPPORTED (the message is the library's), or the ABI it speaks
    cannot carry the case."""


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


def _fn(dll, name: str, restype, argtypes):
    f = getattr(dll, name)
    f.restype, f.argtypes = restype, argtypes
    return f


def _optional_text(dll, name: str):
    if not hasattr(dll, name):
        return None
    return _fn(dll, name, ctypes.c_char_p, [])


class NativeLibrary:
    """A loaded library implementing ABI v2 or v1; use :func:`load`.

    ``abi``: 1 or 2; ``ops``: the op names it implements (forward); ``name``: its
    ``normconf_name()`` / ``normconf_bn_name()`` or "".
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise NativeLibraryError(f"{self.path}: no such file", "missing")
        try:
            self._dll = ctypes.CDLL(self.path)
        except OSError as e:
            raise NativeLibraryError(f"cannot load {self.path}: {e}", "unloadable") from None
        if hasattr(self._dll, "normconf_abi_version"):
            self._init_v2()
        elif hasattr(self._dll, "normconf_bn_abi_version"):
            self._init_v1()
        else:
            raise NativeLibraryError(
                f"{self.path} exports neither normconf_abi_version() (build it against normconf.h, ABI v2) nor "
                "normconf_bn_abi_version() (normconf_bn.h, ABI v1)",
                "symbols",
            )
        raw = self._name() if self._name is not None else None
        self.name = raw.decode("utf-8", "replace") if raw else ""

    def _init_v2(self) -> None:
        version = int(_fn(self._dll, "normconf_abi_version", ctypes.c_int32, [])())
        if version != ABI_V2:
            raise NativeLibraryError(
                f"{self.path} implements normconf ABI version {version} (normconf_abi_version); {_SPEAKS}", "abi"
            )
        for sym in ("normconf_supports", "normconf_run"):
            if not hasattr(self._dll, sym):
                raise NativeLibraryError(
                    f"{self.path} exports normconf_abi_version() but not {sym}() (see normconf.h)", "symbols"
                )
        self.abi = ABI_V2
        self._forward = _fn(self._dll, "normconf_run", ctypes.c_int32, [ctypes.POINTER(NormconfCallV2)])
        self._supports = _fn(self._dll, "normconf_supports", ctypes.c_int32, [ctypes.c_int32, ctypes.c_int32])
        self._last_error = _optional_text(self._dll, "normconf_last_error")
        self._name = _optional_text(self._dll, "normconf_name")
        self.ops = tuple(op for op, code in OP_CODES.items() if self._supports(code, FORWARD))

    def _init_v1(self) -> None:
        if not hasattr(self._dll, "normconf_bn_forward"):
            raise NativeLibraryError(
                f"{self.path} does not export normconf_bn_forward() (build it against normconf_bn.h)", "symbols"
            )
        version = int(_fn(self._dll, "normconf_bn_abi_version", ctypes.c_int32, [])())
        if version != ABI_V1:
            raise NativeLibraryError(
                f"{self.path} implements normconf ABI version {version} through normconf_bn_abi_version(), which "
                f"must return 1 (an ABI v2 library exports normconf_abi_version() from normconf.h instead); {_SPEAKS}",
                "abi",
            )
        self.abi = ABI_V1
        self._forward = _fn(self._dll, "normconf_bn_forward", ctypes.c_int32, [ctypes.POINTER(NormconfCall)])
        self._supports = None
        self._last_error = _optional_text(self._dll, "normconf_bn_last_error")
        self._name = _optional_text(self._dll, "normconf_bn_name")
        self.ops = ("batch_norm",)

    @property
    def abi_label(self) -> str:
        return "ABI 2 (normconf.h)" if self.abi == ABI_V2 else "ABI 1 (normconf_bn.h)"

    def supports(self, op: str, direction: str = "forward") -> bool:
        """Whether the library implements ``op`` in ``direction`` (v1: forward batch_norm only)."""
        if self.abi == ABI_V1:
            return op == "batch_norm" and direction == "forward"
        if op not in OP_CODES or direction not in DIRECTION_CODES:
            return False
        return bool(self._supports(OP_CODES[op], DIRECTION_CODES[direction]))

    def last_error(self) -> str:
        if self._last_error is None:
            fn = "normconf_last_error" if self.abi == ABI_V2 else "normconf_bn_last_error"
            return f"(the library exports no {fn})"
        raw = self._last_error()
        return raw.decode("utf-8", "replace") if raw else ""

    def forward(self, call: NormconfCall | NormconfCallV2) -> int:
        """One raw call: sets ``struct_size`` (and v2 ``abi_version``), clears ``written``, returns the code."""
        want = NormconfCallV2 if self.abi == ABI_V2 else NormconfCall
        if not isinstance(call, want):
            raise TypeError(f"{self.path} speaks {self.abi_label}: pass a {want.__name__}, not {type(call).__name__}")
        call.struct_size = ctypes.sizeof(want)
        if self.abi == ABI_V2:
            call.abi_version = ABI_V2
        call.written = 0
        return int(self._forward(ctypes.byref(call)))

    def check(self, rc: int, what: str) -> None:
        """Raise for a return code: :class:`NativeUnsupported` (EUNSUPPORTED) or :class:`NativeCallError`."""
        if rc == EUNSUPPORTED:
            raise NativeUnsupported(self.last_error() or "EUNSUPPORTED")
        if rc != OK:
            entry = "normconf_run" if self.abi == ABI_V2 else "normconf_bn_forward"
            raise NativeCallError(
                f"{entry} ({what}) returned {rc} ({CODE_NAMES.get(rc, 'unknown code')}): {self.last_error()}"
            )


@lru_cache(maxsize=None)
def load(path: str) -> NativeLibrary:
    """The library at ``path``, loaded once per process."""
    return NativeLibrary(path)


_ptr = ptr  # the name older callers used


@dataclass
class StepResult:
    y: np.ndarray
    batch_mean: np.ndarray | None
    batch_var: np.ndarray | None
    running_updated: bool


def call_forward(
    lib: NativeLibrary,
    x: np.ndarray,
    *,
    mode: int,
    eps: float,
    momentum: float | None,
    step: int,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
) -> StepResult:
    """One BatchNorm call on channels-first ``x``; ``running_*`` are updated in place (train).

    ``momentum`` is the batch weight (``None`` = cumulative average).  The parameter dtype is
    ``running_mean``'s (gamma, beta and running_var must share it; v1: it must be x's dtype).
    Raises :class:`NativeUnsupported` (EUNSUPPORTED, or what the ABI cannot carry) or
    :class:`NativeCallError`.
    """
    dt, pdt = x.dtype, running_mean.dtype
    if dt.name not in DTYPE_CODES or pdt.name not in DTYPE_CODES:
        raise NativeUnsupported(f"the C ABI carries {', '.join(DTYPE_CODES)}, not {dt.name}/{pdt.name}")
    if lib.abi == ABI_V1 and (dt.name not in V1_DTYPES or pdt != dt):
        raise NativeUnsupported(
            f"the library speaks {lib.abi_label}, which carries float32 and float64 with every "
            f"array in the data dtype, not {dt.name} data with {pdt.name} parameters"
        )
    x = np.ascontiguousarray(x)
    C = x.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if a is not None and (a.dtype != pdt or a.shape != (C,) or not a.flags.c_contiguous):
            raise ValueError(f"{name} must be a contiguous ({C},) {pdt.name} array")
    y = np.empty_like(x)
    bmean = np.zeros(C, pdt)
    bvar = np.zeros(C, pdt)
    if lib.abi == ABI_V2:
        call = new_call_v2("batch_norm", x, pdt)
    else:
        call = NormconfCall()
        call.dtype = DTYPE_CODES[dt.name]
        call.rank = x.ndim
        for i, d in enumerate(x.shape):
            call.dims[i] = d
        call.x_len = x.size
        call.x = ptr(x)
    call.mode = mode
    call.eps = float(eps)
    call.cumulative = 1 if momentum is None else 0
    call.momentum = 0.0 if momentum is None else float(momentum)
    call.step = int(step)
    call.gamma, call.beta = ptr(gamma), ptr(beta)
    call.running_mean, call.running_var = ptr(running_mean), ptr(running_var)
    call.y, call.batch_mean, call.batch_var = ptr(y), ptr(bmean), ptr(bvar)
    lib.check(lib.forward(call), "batch_norm")
    w = call.written
    return StepResult(
        y, bmean if w & WROTE_BATCH_MEAN else None, bvar if w & WROTE_BATCH_VAR else None, bool(w & WROTE_RUNNING)
    )


def run_case(
    lib: NativeLibrary, case, inputs, *, gamma: np.ndarray | None, beta: np.ndarray | None, label: str
) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """Drive ``lib`` through a BatchNorm ``case``: ``({output: [array per step]}, notes)``.

    ``gamma``/``beta`` are what the adapter decided to pass (``None`` = NULL).
    Outputs the library did not report (``written`` bits) are left out.
    """
    from normconf.inputs import np_dtype

    if not lib.supports("batch_norm"):
        raise NativeUnsupported(
            f"the library does not implement batch_norm (it reports {', '.join(lib.ops) or 'no op'})"
        )
    carried = DTYPE_CODES if lib.abi == ABI_V2 else V1_DTYPES
    if case.dtype not in carried:
        raise NativeUnsupported(f"{lib.abi_label} carries {', '.join(carried)}, not {case.dtype}")
    if lib.abi == ABI_V1 and case.params_dtype != case.dtype:
        raise NativeUnsupported(
            f"{lib.abi_label} passes gamma/beta/running statistics in the data dtype ({case.dtype}); "
            f"the case's param_dtype is {case.params_dtype}"
        )
    if case.params_dtype not in carried:
        raise NativeUnsupported(f"{lib.abi_label} carries {', '.join(carried)}, not param_dtype {case.params_dtype}")
    dt, pdt = np_dtype(case.dtype), np_dtype(case.params_dtype)
    notes: list[str] = []
    last = case.layout == "channels_last"
    if last:
        notes.append(
            f"{label}: channels-last input transposed to channels-first (N, C, *spatial) for the C ABI; "
            "y transposed back"
        )

    def to_cf(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(a, -1, 1) if last else a, dtype=dt)

    def from_cf(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if last else a

    def vec(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a, dtype=pdt).copy()

    g, b = vec(gamma), vec(beta)
    rm, rv = vec(inputs.running_mean), vec(inputs.running_var)
    out: dict[str, list[np.ndarray]] = {}
    if case.mode == "eval":
        ys = []
        for k, x in enumerate(inputs.x):
            r = call_forward(
                lib,
                to_cf(x),
                mode=EVAL,
                eps=case.eps,
                momentum=case.momentum_weight,
                step=k + 1,
                gamma=g,
                beta=b,
                running_mean=rm.copy(),
                running_var=rv.copy(),
            )
            ys.append(from_cf(r.y))
        out["y"] = ys
        return out, notes

    ys, bms, bvs, rms, rvs = [], [], [], [], []
    all_bm = all_bv = all_run = True
    for k, x in enumerate(inputs.x):
        r = call_forward(
            lib,
            to_cf(x),
            mode=TRAIN,
            eps=case.eps,
            momentum=case.momentum_weight,
            step=k + 1,
            gamma=g,
            beta=b,
            running_mean=rm,
            running_var=rv,
        )
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
        r = call_forward(
            lib,
            to_cf(inputs.x[-1]),
            mode=EVAL,
            eps=case.eps,
            momentum=case.momentum_weight,
            step=len(inputs.x),
            gamma=g,
            beta=b,
            running_mean=rm.copy(),
            running_var=rv.copy(),
        )
        out["eval_y"] = [from_cf(r.y)]
    return out, notes
