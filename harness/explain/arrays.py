"""Array helpers of the explanation engine: residuals in tolerance units, fingerprints, views."""

from __future__ import annotations

import hashlib
import math

import numpy as np

from normconf.blocks import blocks_of as blocks_of  # re-exported: the engine's readers import it from here


def _in_shape(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` as an array of ``shape``: itself, or reshaped where only axes of length 1 differ; else None."""
    a = np.asarray(a)
    if a.shape == shape:
        return a
    if a.size == int(np.prod(shape)) and a.squeeze().shape == tuple(d for d in shape if d != 1):
        return a.reshape(shape)
    return None


def as_f64(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    a = _in_shape(a, shape)
    if a is None:
        return None
    try:
        return a.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        return None


#: dtypes whose every value float64 holds exactly (bfloat16 by name: ml_dtypes' type)
_EXACT_IN_F64 = ("float64", "float32", "float16", "bfloat16")


def exact_held(a: np.ndarray) -> np.ndarray:
    """``a`` as it is where float64 holds its values exactly (float32, float16, bfloat16, float64), else
    as float64 (integers, say): no full-size copy of a compactly held output."""
    a = np.asarray(a)
    return a if a.dtype.name in _EXACT_IN_F64 else a.astype(np.float64)


def as_exact(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` in ``shape`` (as :func:`as_f64` reshapes it), in its own dtype where float64 holds its values
    exactly (float32, float16, bfloat16): no full-size float64 copy.  Whoever computes with it converts
    (every helper of the engine does, a block at a time, as :func:`residual`); other dtypes as float64."""
    a = np.asarray(a)
    if a.dtype.name not in _EXACT_IN_F64:
        return as_f64(a, shape)
    return _in_shape(a, shape)


#: elements per chunk of the passes below (order-free: maxima and equality, so the chunk size changes no
#: result): 1 MiB float64 temporaries, a few alive at once, stay in cache and add nothing to a large case's peak
_CHUNK = 1 << 17


def residual(obs: np.ndarray, alt: np.ndarray, atol: float, rtol: float) -> tuple[float, float]:
    """(worst error in units of the tolerance, max abs error) of ``obs`` against ``alt``.

    Same closeness rule as :func:`normconf.compare.compare`: ``|o - a| <= atol + rtol*|a|``,
    NaN positions and infinities must agree (a disagreement is ``inf``).  Works in
    chunks so a large array never needs more than a few MiB of temporaries; a chunk
    without NaN/Inf takes the fast path (a handful of passes).
    """
    o = obs.reshape(-1)
    a = alt.reshape(-1)
    worst = 0.0
    max_abs = 0.0
    with np.errstate(all="ignore"):
        for s in range(0, o.size, _CHUNK):
            oc = o[s : s + _CHUNK].astype(np.float64, copy=False)
            ac = a[s : s + _CHUNK].astype(np.float64, copy=False)  # either side may be held compactly
            d = np.subtract(oc, ac)
            np.abs(d, out=d)
            bound = np.abs(ac)
            bound *= rtol
            bound += atol
            m_abs = float(d.max()) if d.size else 0.0
            if math.isfinite(m_abs) and atol > 0:
                d /= bound
                worst = max(worst, float(d.max()))
                max_abs = max(max_abs, m_abs)
                continue
            # slow path: NaN/Inf somewhere in this chunk (or atol == 0)
            no, na = np.isnan(oc), np.isnan(ac)
            if (no != na).any():
                return math.inf, math.inf
            fin = np.isfinite(oc) & np.isfinite(ac)
            nonfin = ~fin & ~(no | na)
            if nonfin.any() and (oc[nonfin] != ac[nonfin]).any():
                return math.inf, math.inf
            dd = np.abs(oc[fin] - ac[fin])
            bb = bound[fin]
            if dd.size:
                r = np.where(bb > 0, dd / np.where(bb > 0, bb, 1.0), np.where(dd > 0, np.inf, 0.0))
                worst = max(worst, float(r.max()))
                max_abs = max(max_abs, float(dd.max()))
    return worst, max_abs


def _digest(a: np.ndarray) -> str:
    """Exact fingerprint of a small array ("" for large ones: their sampled elements are compared instead)."""
    if a.size > 65536:
        return ""
    return hashlib.blake2b(np.ascontiguousarray(a).view(np.uint8), digest_size=16).hexdigest()


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit the same numbers (NaN = NaN); sampled elements first, so a difference exits early."""
    if a.shape != b.shape:
        return False
    fa, fb = a.reshape(-1), b.reshape(-1)
    if fa.size <= _CHUNK:  # one comparison (the sketch's early exit saves nothing there)
        return bool(np.array_equal(fa, fb, equal_nan=True))
    if not np.array_equal(_sketch(a, 1024), _sketch(b, 1024), equal_nan=True):
        return False
    for s in range(0, fa.size, _CHUNK):
        if not np.array_equal(fa[s : s + _CHUNK], fb[s : s + _CHUNK], equal_nan=True):
            return False
    return True


def _sketch(a: np.ndarray, n: int = 4096) -> np.ndarray:
    """Evenly spaced elements of ``a`` (all of them when small): to recognise equivalent alternatives."""
    flat = a.reshape(-1)
    if flat.size <= n:
        return flat.astype(np.float64, copy=True)
    return flat[np.linspace(0, flat.size - 1, n).astype(np.int64)].astype(np.float64)


#: bit-for-bit the same numbers (NaN = NaN), a chunk at a time: :func:`_identical`
identical = _identical


def identical_rounded(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> bool:
    """:func:`_identical` of ``a`` rounded to ``dtype`` (and back to float64) and ``b``, rounding one
    chunk at a time (no full-size rounded copy of ``a``)."""
    if dtype == np.float64:
        return _identical(a, b)
    if a.shape != b.shape:
        return False
    fa, fb = a.reshape(-1), b.reshape(-1)
    with np.errstate(all="ignore"):
        for s in range(0, fa.size, _CHUNK):
            if not np.array_equal(
                fa[s : s + _CHUNK].astype(dtype).astype(np.float64), fb[s : s + _CHUNK], equal_nan=True
            ):
                return False
    return True


def _same_numbers(a: np.ndarray, b: np.ndarray, tol) -> bool:
    """Two alternatives' outputs agree far inside the tolerance (1/1000 of it): one explanation."""
    if a.shape != b.shape:
        return False
    with np.errstate(all="ignore"):
        na, nb = np.isnan(a), np.isnan(b)
        if (na != nb).any():
            return False
        m = ~na
        return bool(np.all(np.abs(a[m] - b[m]) <= 1e-3 * (tol.atol + tol.rtol * np.abs(a[m]))))


def close(o: np.ndarray, e: np.ndarray, tol) -> bool:
    with np.errstate(all="ignore"):
        return bool(np.all(np.abs(o - e) <= tol.atol + tol.rtol * np.abs(e)))


def channel_view(a: np.ndarray, channel_axis: int) -> np.ndarray:
    """(C, rest) view of an array in the case layout."""
    return np.moveaxis(a, channel_axis % a.ndim, 0).reshape(a.shape[channel_axis % a.ndim], -1)


#: normalized outputs above this many elements are screened / solved on a sample of columns first
SAMPLE_ABOVE = 1 << 18
#: about this many sampled elements (spread evenly over every channel)
SAMPLE_SIZE = 1 << 15


def sample_columns(shape, channel_axis: int, n: int = SAMPLE_SIZE) -> np.ndarray:
    """Evenly spaced columns of the (C, rest) channel view, about ``n`` elements in all (deterministic)."""
    c = shape[channel_axis % len(shape)]
    rest = int(np.prod(shape)) // max(c, 1)
    return np.unique(np.linspace(0, max(rest - 1, 0), min(rest, max(64, n // max(c, 1)))).astype(np.int64))


def columns(a: np.ndarray, ax: int, cols: np.ndarray) -> np.ndarray:
    """(C, len(cols)): columns ``cols`` of ``a``'s (C, rest) channel view, by index (no full copy)."""
    rest = [d for i, d in enumerate(a.shape) if i != ax]
    pos = list(np.unravel_index(cols, rest)) if rest else []
    index = [p[None, :] for p in pos]
    index.insert(ax, np.arange(a.shape[ax])[:, None])
    # a deferred output (normconf.explain.deferred) computes only the gathered elements
    return (a if getattr(a, "deferred", False) else np.asarray(a))[tuple(index)]
