"""The harness's own compiled kernels: ``libnormconf_kernels.so`` (``native/src/kernels/*.c``).

Built with the package like the ``cpp`` backend (native/CMakeLists.txt: plain C, ``-O2
-ffp-contract=off``, no fast-math), so every floating-point result is the IEEE result of the
operations as written.  Each kernel has a NumPy twin in the module that uses it:

* the comparison (``compare.c``, :mod:`normconf.compare`): bit-identical to its twin
  (tests/test_compare_kernel.py), so a missing library changes speed, never a number;
* the BatchNorm reference for cases of at least 2**20 elements (``reference_bn.c``,
  :mod:`normconf.references.batchnorm`): the normalization is bit-identical given the statistics;
  the statistics use a documented, deterministic summation order of their own (lanes and blocks,
  then a pairwise tree), so they agree with NumPy's pairwise sums within the derived bounds that
  tests/test_reference_kernel.py checks, not bit for bit (the same on every run, thread count and
  ``-j``).

``NORMCONF_KERNELS=0`` in the environment makes :func:`library` return ``None`` (the NumPy code
runs): for the tests that compare the two paths, and for debugging.

ctypes releases the GIL during a call, so kernels run in parallel with the harness's threads.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

NAME = "kernels"


#: the library's path: next to the bundled backends' (``normconf.native.LIB_DIR``; not imported from
#: there, which would make this leaf module of the reference depend on the native backends' driver)
LIBRARY_PATH = Path(__file__).resolve().parent / "native" / "_lib" / f"libnormconf_{NAME}.so"


@lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str]:
    path = LIBRARY_PATH
    if not path.exists():
        return None, f"{path} was not built (reinstall normconf: `make install`)"
    try:
        return ctypes.CDLL(str(path)), ""
    except OSError as e:
        return None, f"{path} cannot be loaded: {e}"


def library() -> ctypes.CDLL | None:
    """The loaded kernels library, or ``None`` (not built, unloadable, or ``NORMCONF_KERNELS=0``)."""
    if os.environ.get("NORMCONF_KERNELS", "1") == "0":
        return None
    return _load()[0]


def status() -> str:
    """One line for the run's metadata: ``compiled`` or why the NumPy code runs."""
    if os.environ.get("NORMCONF_KERNELS", "1") == "0":
        return "numpy (NORMCONF_KERNELS=0)"
    lib, why = _load()
    return "compiled" if lib is not None else f"numpy ({why})"
