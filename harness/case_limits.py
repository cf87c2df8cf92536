"""Limits and sizes of case files and cases: file bytes, aliases, nesting, int64, memory per element."""

from __future__ import annotations

import os
import sys

#: largest number of input elements a case may hold unless raised (``--max-elements``)
DEFAULT_MAX_ELEMENTS = 50_000_000
#: case files larger than this are refused before parsing
MAX_FILE_BYTES = 10 * 1024 * 1024
#: YAML aliases allowed in one file (alias bombs are refused)
MAX_ALIASES = 100
#: nodes that aliases may add to a file when expanded (a "billion laughs" bomb with few aliases
#: still expands exponentially; it is refused before anything walks the expanded document)
MAX_ALIAS_EXPANSION = 1_000_000
#: deepest nesting of YAML collections accepted (a case needs 4)
MAX_DEPTH = 32
#: float64 copies of every input element while a case runs: the float64 draw of the input, and the
#: float64 reference y and x_hat (see :func:`bytes_per_element`)
FLOAT64_COPIES = 3
#: copies in the case dtype: the input handed to backends and a backend's output
DTYPE_COPIES = 2
#: bytes of one element in each case dtype
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
#: largest finite float64; every number in a case file must lie within ±this
FLOAT64_MAX = sys.float_info.max
#: largest shape entry and seed: a signed 64-bit integer (NumPy, PyTorch and ONNX sizes are int64)
MAX_INT64 = 2**63 - 1
#: integer literals longer than this many characters are refused while reading (far beyond float64,
#: and below Python's 4300-digit limit on converting decimal text to int)
MAX_INT_LITERAL_CHARS = 1000
#: problems of one kind listed for one file before the rest are counted (control characters)
MAX_LISTED = 20
#: folders visited when a case folder is searched (symbolic links are followed; loops are refused)
MAX_FOLDERS = 10_000


def bytes_per_element(dtype: str) -> int:
    """Estimated bytes of memory per input element while a case of ``dtype`` runs."""
    return FLOAT64_COPIES * 8 + DTYPE_COPIES * DTYPE_BYTES[dtype]


#: the estimate for float32, the default dtype (32 bytes)
BYTES_PER_ELEMENT = bytes_per_element("float32")


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (``None`` where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
