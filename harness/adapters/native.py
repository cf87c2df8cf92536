"""Native backends through the C ABI (``native/include/normconf_bn.h``).

* ``cpp`` — normconf's bundled C++ BatchNorm (``native/include/normconf/batch_norm.hpp``),
  compiled by the package build into ``harness/native/_lib/libnormconf_cpp.so``.
* ``tiny-dnn`` — the real ``tiny_dnn::batch_normalization_layer`` from Debian's
  ``tiny-dnn`` headers, through a shim (``native/tinydnn/tinydnn_shim.cpp``) built
  by the package build when the headers are installed.
* ``native:<name>`` — a user's library named with ``normconf run --native LIB.so``
  (:func:`native_adapter_class`), in a worker process of its own.

All run in worker processes (``worker = "native"`` / ``"native:<path>"``), so a
segfault or a hang in native code becomes an ``error`` result.  Libraries are
loaded inside ``available()``/``run()``, never at import.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import ClassVar

import numpy as np

from harness.adapters.base import Adapter, Observed, Unsupported
from harness.cases import Case
from harness.inputs import Inputs
from harness.profiles import convention

_CPP_SRC = "native/include/normconf/batch_norm.hpp (Semantics: the biased variance over N x spatial)"
_TINY = "/usr/include/tiny_dnn/util/math_functions.h (moments: vector_div(*variance, max(1, m - 1)))"

#: Debian packages the tiny-dnn backend needs at build time
TINYDNN_APT = "tiny-dnn libcereal-dev libstb-dev libgemmlowp-dev"
#: the header whose presence means "tiny-dnn is installed"
TINYDNN_HEADER = "/usr/include/tiny_dnn/tiny_dnn.h"
_REBUILD = ("reinstall normconf to compile native/: `pip install -e .` in the clone "
            "(or `touch native/CMakeLists.txt && make install`)")


class NativeAdapter(Adapter):
    """Common driver: load the library, check the case, run it step by step via the ABI."""

    worker = "native"
    dtypes = ("float32", "float64")
    #: resolved library path; subclasses set it or override :meth:`library_path`
    library: ClassVar[str] = ""

    def library_path(self, case: Case | None = None) -> Path:
        return Path(self.library)

    def _load(self, case: Case | None = None):
        from harness.native import NativeLibraryError, load

        try:
            return load(str(self.library_path(case)))
        except NativeLibraryError as e:
            raise RuntimeError(str(e)) from None

    def unsupported(self, case: Case) -> str | None:
        why = super().unsupported(case)
        if why:
            return why
        if case.params_dtype != case.dtype:
            return (f"the C ABI passes gamma/beta/running statistics in the data dtype ({case.dtype}); "
                    f"param_dtype {case.params_dtype} cannot be expressed")
        return None

    def affine(self, case: Case, inputs: Inputs, notes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """gamma/beta to pass (None = NULL)."""
        return inputs.gamma, inputs.beta

    def run(self, case: Case, inputs: Inputs) -> Observed:
        from harness.native import NativeUnsupported, run_case

        lib = self._load(case)
        notes: list[str] = []
        gamma, beta = self.affine(case, inputs, notes)
        try:
            outputs, more = run_case(lib, case, inputs, gamma=gamma, beta=beta, label=self.id)
        except NativeUnsupported as e:
            raise Unsupported(f"{self.id}: {e}") from None
        return Observed(outputs, notes + more)


class CppAdapter(NativeAdapter):
    id = "cpp"
    framework = "normconf C++ (bundled)"
    description = ("normconf's own C++ BatchNorm (the seed article's design: biased variance, eps inside sqrt, "
                   "batch-weight momentum) through the C ABI")
    conventions = (
        convention("normalize_variance", "biased", "normalizes with the biased variance (its design)", _CPP_SRC),
        convention("running_variance", "biased", "blends the biased variance into the running variance", _CPP_SRC),
    )

    def library_path(self, case: Case | None = None) -> Path:
        from harness.native import bundled_library

        return bundled_library("cpp")

    def available(self) -> str | None:
        p = self.library_path()
        if not p.exists():
            return f"{p.name} is not built: {_REBUILD}"
        return None

    def version(self) -> str:
        from harness.native import ABI_VERSION

        return f"{self._load().name or 'cpp'} (ABI {ABI_VERSION})"


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
    dtype float16/bfloat16    unsupported
    ========================  ============================================================
    """

    id = "tiny-dnn"
    framework = "tiny-dnn"
    conventions = (
        convention("normalize_variance", "unbiased",
                   "moments() divides the sum of squared deviations by m - 1 (at least 1)", _TINY),
        convention("running_variance", "unbiased",
                   "the running variance is blended with the same moments() variance", _TINY),
    )
    description = "the real tiny_dnn::batch_normalization_layer (Debian headers) through a C ABI shim"

    def library_path(self, case: Case | None = None) -> Path:
        from harness.native import bundled_library

        return bundled_library("tinydnn_f64" if case is not None and case.dtype == "float64" else "tinydnn")

    def available(self) -> str | None:
        p = self.library_path()
        if p.exists():
            return None
        if not Path(TINYDNN_HEADER).exists():
            return (f"tiny-dnn's headers are not installed: apt-get install {TINYDNN_APT}, then {_REBUILD}")
        return f"the tiny-dnn shim ({p.name}) is not built although the headers are installed: {_REBUILD}"

    def version(self) -> str:
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "tiny-dnn"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            v = ""
        return f"{v} (Debian)" if v else "headers"

    def unsupported(self, case: Case) -> str | None:
        why = super().unsupported(case)
        if why:
            return why
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
        raise Unsupported("tiny_dnn::batch_normalization_layer has no gamma/beta (scale/shift); "
                          "the case's are not the identity")

    def run(self, case: Case, inputs: Inputs) -> Observed:
        obs = super().run(case, inputs)
        if case.mode == "train":
            w = case.momentum_weight
            obs.notes.append(f"tiny-dnn: momentum = 1 - w = {1 - w:g} (tiny-dnn weights the running value)")
        if case.dtype == "float64":
            obs.notes.append("tiny-dnn: float64 runs the same headers compiled with CNN_USE_DOUBLE")
        return obs


class UserNativeAdapter(NativeAdapter):
    """Base of the classes made by :func:`native_adapter_class` (one per ``--native`` library).

    A library the user named is not an optional framework: one that cannot be loaded (no such
    file, not a shared library, missing symbols, another ABI version) makes every task an
    ``error`` with the reason (issue 17: a run that tested nothing is not green), never
    "backend unavailable".
    """

    def available(self) -> str | None:
        return None  # loading is tried by version()/run(): a failure is an error, not unavailability

    def _load(self, case: Case | None = None):
        from harness.native import load

        return load(str(self.library_path(case)))  # NativeLibraryError: the row says which kind and why

    def version(self) -> str:
        from harness.native import file_digest

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
            "description": f"user library {p} through the normconf C ABI (normconf_bn.h)",
            "__module__": __name__,
        },
    )


ADAPTERS = [CppAdapter, TinyDnnAdapter]
