"""Native backends through the C ABI: v2 (``native/include/normconf.h``: every op, four
dtypes) and v1 (``native/include/normconf_bn.h``: BatchNorm, float32/float64) — see docs/native.md.

* ``cpp`` — normconf's bundled C++ BatchNorm and LayerNorm (``native/include/normconf/batch_norm.hpp``,
  ``layer_norm.hpp``), compiled by the package build into ``harness/native/_lib/libnormconf_cpp.so``
  (ABI v2).
* ``tiny-dnn`` — the real ``tiny_dnn::batch_normalization_layer`` from Debian's
  ``tiny-dnn`` headers, through a shim (``native/tinydnn/tinydnn_shim.cpp``) built
  by the package build when the headers are installed (ABI v1: BatchNorm only).
* ``native:<name>`` — a user's library named with ``normconf run --native LIB.so``
  (:func:`native_adapter_class`), in a worker process of its own; its ops are what the library
  reports (v1: batch_norm; v2: ``normconf_supports``).

Each adapter declares ``ops``; the worker calls :meth:`NativeAdapter.run` for batch_norm cases
and :meth:`NativeAdapter.run_layer_norm` for layer_norm cases.  All run in worker processes
(``worker = "native"`` / ``"native:<path>"``), so a segfault or a hang in native code becomes an
``error`` result.  Libraries are loaded inside ``available()``/``run()``, never at import.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np

from normconf.adapters.base import Adapter, Observed, Unsupported
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

_CPP_SRC = "native/include/normconf/batch_norm.hpp (Semantics: the biased variance over N x spatial)"
_CPP_LN_SRC = "native/include/normconf/layer_norm.hpp (Semantics: var_k = (1/M) * sum_R (x - mean_k)^2)"
#: the ops the harness drives through the C ABI (what a v2 library may implement)
ABI_OPS = ("batch_norm", "layer_norm")
ALL_DTYPES = ("float16", "bfloat16", "float32", "float64")
_TINY = "/usr/include/tiny_dnn/util/math_functions.h (moments: vector_div(*variance, max(1, m - 1)))"

#: Debian packages the tiny-dnn backend needs at build time
TINYDNN_APT = "tiny-dnn libcereal-dev libstb-dev libgemmlowp-dev"
#: the header whose presence means "tiny-dnn is installed"
TINYDNN_HEADER = "/usr/include/tiny_dnn/tiny_dnn.h"
_REBUILD = (
    "reinstall normconf to compile native/: `pip install -e .` in the clone "
    "(or `touch native/CMakeLists.txt && make install`)"
)


class NativeAdapter(Adapter):
    """Common driver: load the library, check the case, run it step by step via the ABI.

    ``ops`` lists what the adapter implements (batch_norm through :meth:`run`, layer_norm through
    :meth:`run_layer_norm`).  Which dtypes travel is the ABI's business: v2 carries all four (and a
    parameter dtype of its own), v1 float32/float64 with every array in the data dtype; what the
    library refuses (EUNSUPPORTED) is ``unsupported`` with its message.
    """

    worker = "native"
    cpu_estimate = (0.45, 9.5)
    dtypes = ("float32", "float64")
    ops: ClassVar[tuple[str, ...]] = ("batch_norm",)
    #: resolved library path; subclasses set it or override :meth:`library_path`
    library: ClassVar[str] = ""

    def library_path(self, case: Case | None = None) -> Path:
        return Path(self.library)

    def _load(self, case: Case | None = None):
        from normconf.native import NativeLibraryError, load

        try:
            return load(str(self.library_path(case)))
        except NativeLibraryError as e:
            raise RuntimeError(str(e)) from None

    def unsupported(self, case) -> str | None:
        op = getattr(case, "op", "batch_norm")
        ops = self.ops  # a user library's: what it reports once loaded (see _LibraryOps)
        if op not in ops:
            return f"op {op} not implemented by {self.id} (implements {', '.join(ops) or 'nothing'})"
        if op == "layer_norm":
            return self.unsupported_layer_norm(case)
        return super().unsupported(case)

    def unsupported_layer_norm(self, case) -> str | None:
        """What the ABI itself cannot carry in a LayerNorm case (the library decides the rest)."""
        dtypes = dict(getattr(self, "op_dtypes", {}) or {}).get("layer_norm", self.dtypes)
        for what, dt in (("dtype", case.dtype), ("param_dtype", case.params_dtype)):
            if dt not in dtypes:
                return f"{what} {dt} not supported by {self.id} (supports {', '.join(dtypes)})"
        if getattr(case, "rms_scaling", False):
            return (
                "the C ABI's layer_norm centers and divides by the standard deviation; RMS scaling "
                "(op rms_norm) is reserved in normconf.h, not carried yet"
            )
        if len(case.shape) > 8:
            return f"the C ABI carries ranks 1..8, not {len(case.shape)}"
        return None

    def affine(self, case: Case, inputs: Inputs, notes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """gamma/beta to pass (None = NULL)."""
        return inputs.gamma, inputs.beta

    def run(self, case: Case, inputs: Inputs) -> Observed:
        """A batch_norm case (channels-first through the ABI; see :func:`normconf.native.run_case`)."""
        from normconf.native import NativeUnsupported, run_case

        lib = self._load(case)
        notes: list[str] = []
        gamma, beta = self.affine(case, inputs, notes)
        try:
            outputs, more = run_case(lib, case, inputs, gamma=gamma, beta=beta, label=self.id)
        except NativeUnsupported as e:
            raise Unsupported(f"{self.id}: {e}") from None
        return Observed(outputs, notes + more)

    def run_layer_norm(self, case, inputs) -> Observed:
        """A layer_norm case: one v2 call per step (see :mod:`normconf.native.layer_norm`)."""
        from normconf.native import NativeUnsupported
        from normconf.native.layer_norm import run_case

        lib = self._load(case)
        try:
            outputs, notes = run_case(lib, case, inputs, label=self.id)
        except NativeUnsupported as e:
            raise Unsupported(f"{self.id}: {e}") from None
        return Observed(outputs, notes)


class CppAdapter(NativeAdapter):
    id = "cpp"
    framework = "normconf C++ (bundled)"
    description = (
        "normconf's own C++ BatchNorm (the seed article's design: biased variance, eps inside sqrt, "
        "batch-weight momentum) and LayerNorm (any axes, biased variance) through the C ABI v2"
    )
    ops = ("batch_norm", "layer_norm")
    dtypes = ALL_DTYPES
    conventions = (
        convention("normalize_variance", "biased", "normalizes with the biased variance (its design)", _CPP_SRC),
        convention("running_variance", "biased", "blends the biased variance into the running variance", _CPP_SRC),
        convention(
            "normalize_variance",
            "biased",
            "normalizes each row with the biased variance (divides by M)",
            _CPP_LN_SRC,
            op="layer_norm",
        ),
    )

    def library_path(self, case: Case | None = None) -> Path:
        from normconf.native import bundled_library

        return bundled_library("cpp")

    def available(self) -> str | None:
        p = self.library_path()
        if not p.exists():
            return f"{p.name} is not built: {_REBUILD}"
        return None

    def version(self) -> str:
        lib = self._load()
        return f"{lib.name or 'cpp'} (ABI {lib.abi})"


class TinyDnnAdapter(NativeAdapter):
    """The real tiny-dnn layer.  Translation (see also native/tinydnn/tinydnn_shim.cpp):

    ========================  ============================================================
    case field                tiny_dnn::batch_normalization_layer
    ========================  ============================================================
    shape (N, C, *spatial)    tensor_t of N samples, each [C][spatial], in_spatial_size = prod(spatial)
    layout channels_last      transposed to channels-first (note)
    eps                       ``epsilon`` (inside sqrt)
    momentum (batch weight w) ``momentum`` = 1 - w (tiny-dnn weights the old value)
    momentum: cumulative      unsupported
    mode train / eval         ``net_phase::train`` / ``net_phase::test``
    running_mean/var          ``set_mean()`` / ``set_variance()``
    affine identity or false  nothing to pass (the layer has no gamma/beta)
    affine other values       unsupported
    dtype float32             Debian's build (``float_t`` = float)
    dtype float64             the same headers with ``CNN_USE_DOUBLE`` (``float_t`` = double)
    dtype float16/bfloat16    unsupported (ABI v1 carries float32/float64)
    param_dtype != dtype      unsupported (ABI v1 passes every array in the data dtype)
    op layer_norm             unsupported (tiny-dnn has no LayerNorm; ``ops`` = batch_norm)
    ========================  ============================================================
    """

    id = "tiny-dnn"
    framework = "tiny-dnn"
    conventions = (
        convention(
            "normalize_variance",
            "unbiased",
            "moments() divides the sum of squared deviations by m - 1 (at least 1)",
            _TINY,
        ),
        convention(
            "running_variance", "unbiased", "the running variance is blended with the same moments() variance", _TINY
        ),
    )
    description = "the real tiny_dnn::batch_normalization_layer (Debian headers) through a C ABI v1 shim"
    ops = ("batch_norm",)

    def library_path(self, case: Case | None = None) -> Path:
        from normconf.native import bundled_library

        return bundled_library("tinydnn_f64" if case is not None and case.dtype == "float64" else "tinydnn")

    def available(self) -> str | None:
        p = self.library_path()
        if p.exists():
            return None
        if not Path(TINYDNN_HEADER).exists():
            return f"tiny-dnn's headers are not installed: apt-get install {TINYDNN_APT}, then {_REBUILD}"
        return f"the tiny-dnn shim ({p.name}) is not built although the headers are installed: {_REBUILD}"

    def version(self) -> str:
        try:
            v = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", "tiny-dnn"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            v = ""
        return f"{v} (Debian)" if v else "headers"

    def unsupported(self, case: Case) -> str | None:
        why = super().unsupported(case)
        if why:
            return why
        if case.params_dtype != case.dtype:
            return (
                f"the shim speaks ABI v1, which passes gamma/beta/running statistics in the data dtype "
                f"({case.dtype}); param_dtype {case.params_dtype} cannot be expressed"
            )
        if case.dtype == "float64" and not self.library_path(case).exists():
            return f"the float64 (CNN_USE_DOUBLE) tiny-dnn shim is not built: {_REBUILD}"
        if case.mode == "train" and case.momentum_weight is None:
            return "tiny-dnn has no cumulative moving average (only an exponential one with momentum)"
        if case.mode == "train" and case.shape[0] == 0:
            return "tiny-dnn's moments() needs at least one sample"
        return None

    def affine(self, case: Case, inputs: Inputs, notes: list[str]):
        if inputs.gamma is None:
            return None, None
        if np.all(inputs.gamma == 1) and np.all(inputs.beta == 0):
            notes.append("tiny-dnn: identity gamma/beta; the layer has no scale/shift, nothing passed")
            return None, None
        raise Unsupported(
            "tiny_dnn::batch_normalization_layer has no gamma/beta (scale/shift); the case's are not the identity"
        )

    def run(self, case: Case, inputs: Inputs) -> Observed:
        obs = super().run(case, inputs)
        if case.mode == "train":
            w = case.momentum_weight
            obs.notes.append(f"tiny-dnn: momentum = 1 - w = {1 - w:g} (tiny-dnn weights the running value)")
        if case.dtype == "float64":
            obs.notes.append("tiny-dnn: float64 runs the same headers compiled with CNN_USE_DOUBLE")
        return obs


class _LibraryOps:
    """``ops`` of a user library.  On the class (what the harness plans with, nothing loaded): every
    op the ABI carries, so each case reaches the library's worker.  On an instance (inside that
    worker): what the loaded library implements — v1: ``("batch_norm",)``, v2: the ops
    ``normconf_supports()`` reports; a case of another op is then ``unsupported``.  A library that
    cannot be loaded answers the class value: the load error is the task's ``error``."""

    def __get__(self, obj, owner):
        if obj is None:
            return ABI_OPS
        try:
            return tuple(op for op in obj._load().ops if op in ABI_OPS)
        except Exception:
            return ABI_OPS


class UserNativeAdapter(NativeAdapter):
    """Base of the classes made by :func:`native_adapter_class` (one per ``--native`` library).

    A library the user named is not an optional framework: one that cannot be loaded (no such
    file, not a shared library, missing symbols, another ABI version) makes every task an
    ``error`` with the reason (issue 17: a run that tested nothing is not green), never
    "backend unavailable".  Dtypes: all four are offered; the ABI version and the library decide
    (v1 float16/bfloat16 → unsupported; EUNSUPPORTED → unsupported with the library's message).
    """

    ops = _LibraryOps()
    dtypes = ALL_DTYPES

    def available(self) -> str | None:
        return None  # loading is tried by version()/run(): a failure is an error, not unavailability

    def _load(self, case: Case | None = None):
        from normconf.native import load

        return load(str(self.library_path(case)))  # NativeLibraryError: the row says which kind and why

    def version(self) -> str:
        from normconf.native import file_digest

        name = self._load().name
        return f"{name + ' ' if name else ''}sha256:{file_digest(self.library_path())}"


def _short_name(path: Path) -> str:
    name = path.name.split(".")[0]
    if name.startswith("lib") and len(name) > 3:
        name = name[3:]
    return "".join(c if c.isalnum() or c in "_.+-" else "_" for c in name) or "lib"


def native_adapter_class(path: str) -> type[Adapter]:
    """An adapter class for the user library at ``path`` (``--native``): id ``native:<name>``.

    ``libmine.so`` → ``native:mine``.  Its worker group is ``native:<absolute path>``,
    so each user library runs in a process of its own.  Nothing is loaded here.
    """
    p = Path(path).expanduser().resolve()
    short = _short_name(p)
    return type(
        f"NativeLibraryAdapter_{short}",
        (UserNativeAdapter,),
        {
            "id": f"native:{short}",
            "framework": f"native library {p.name}",
            "worker": f"native:{p}",
            "library": str(p),
            "description": f"user library {p} through the normconf C ABI (normconf.h v2 or normconf_bn.h v1)",
            "__module__": __name__,
        },
    )


ADAPTERS = [CppAdapter, TinyDnnAdapter]
