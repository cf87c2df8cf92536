"""Observed vs expected arrays: tolerances, metrics and the pass/mismatch verdict.

Default tolerances are ``torch.testing.assert_close``'s, chosen by the dtype of
the output (``y`` in the case dtype, statistics in the parameter dtype):

=========  ========  ========
dtype      rtol      atol
=========  ========  ========
float16    1e-3      1e-5
bfloat16   1.6e-2    1e-5
float32    1.3e-6    1e-5
float64    1e-7      1e-7
=========  ========  ========

An element is close when ``|obs - exp| <= atol + rtol * |exp|``.  NaN positions
must agree, and so must infinities (position and sign).  Metrics are computed
over the elements where both sides are finite.

The pass over the arrays runs in the compiled kernel (native/src/kernels/compare.c,
:mod:`normconf.kernels`) where it is built and the observed dtype is float64/32/16 or
bfloat16; the NumPy code here is its twin, bit-identical (tests/test_compare_kernel.py),
used otherwise and under ``NORMCONF_KERNELS=0``.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from normconf import kernels
from normconf.inputs import np_dtype

DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float16": (1e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
    "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7),
}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str = ""  # non-empty when the case overrides the default


def default_tolerance(dtype: str) -> Tolerance:
    rtol, atol = DEFAULT_TOLERANCES[dtype]
    return Tolerance(rtol, atol)


@dataclass
class Comparison:
    """The verdict and metrics of one output (one step)."""

    close: bool
    max_abs_err: float = float("nan")
    max_rel_err: float = float("nan")
    max_ulp: float = float("nan")
    mismatched: int = 0
    total: int = 0
    worst_index: tuple[int, ...] | None = None
    worst_observed: float = float("nan")
    worst_expected: float = float("nan")
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mismatched_frac(self) -> float:
        return self.mismatched / self.total if self.total else 0.0


_EXP_MASK = 0x7FF << 52
_MANT_MASK = (1 << 52) - 1
_NEAR = 1 << 16


@lru_cache(maxsize=None)
def _finfo(dtype: str) -> tuple[int, float, float]:
    """(nmant, smallest normal, smallest subnormal) of a normconf dtype."""
    fi: np.finfo[Any]
    if dtype == "bfloat16":
        import ml_dtypes

        fi = ml_dtypes.finfo(ml_dtypes.bfloat16)
    else:
        fi = np.finfo(np_dtype(dtype))
    return int(fi.nmant), float(fi.smallest_normal), float(fi.smallest_subnormal)


def ulp(values: np.ndarray, dtype: str) -> npt.NDArray[np.float64]:
    """Size of one unit in the last place of ``dtype`` at each of ``values`` (float64).

    Defined as ``max(2**(floor(log2(max(|v|, tiny))) - nmant), smallest_subnormal)``.
    The power of two is read from the float64 bits (exact, several times faster
    than ``log2``/``exp2``); non-finite elements and those within 2**-36 of a power
    of two go through the ``log2``/``exp2`` formula itself, so the result is
    bit-identical to it wherever ``log2`` is accurate to better than 2**-36.
    """
    v = np.asarray(values)
    a = np.abs(v) if v.dtype == np.float64 else np.abs(v.astype(np.float64))
    return _ulp_of_abs(a, dtype, all_finite=False)


def _ulp_of_abs(a: np.ndarray, dtype: str, all_finite: bool) -> npt.NDArray[np.float64]:
    """:func:`ulp` of float64 ``a >= 0`` (``all_finite``: the caller knows there is no NaN/Inf)."""
    nmant, tiny, sub = _finfo(dtype)
    m = np.maximum(a, tiny).reshape(-1)
    bits = m.view(np.int64)
    # 2**floor(log2(m)) for finite m > 0, times 2**-nmant (exact).  It is never below ``sub``
    # (tiny * 2**-nmant == sub in every IEEE format), so the formula's max(., sub) is a no-op here.
    out: npt.NDArray[np.float64] = (bits & _EXP_MASK).view(np.float64)
    out *= 2.0**-nmant
    near = bits + _NEAR
    near &= _MANT_MASK
    slow = near < (_NEAR + (_NEAR >> 1))  # mantissa field < 2**15 or >= 2**52 - 2**16
    if not all_finite and not np.isfinite(m).all():
        slow |= ~np.isfinite(m)
    idx = np.flatnonzero(slow)
    if idx.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.floor(np.log2(m[idx]))
        out[idx] = np.maximum(np.exp2(e - nmant), sub)
    return out.reshape(a.shape)


#: elements per block of the comparison: the temporaries of a block stay in cache and the memory
#: held is bounded, whatever the array's size (every metric is combined exactly across blocks)
BLOCK = 1 << 16


def _block(
    o: np.ndarray, exp: np.ndarray, tol: Tolerance, dtype: str
) -> tuple[int, int, int, bool, float, float, float, int, float]:
    """Metrics of one block: (n_bad, n_nan_bad, n_inf_bad, any_finite, max abs, max rel, max ulp, argmax, max score)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if np.isfinite(o).all() and np.isfinite(exp).all():
            # the common case, without the NaN/Inf bookkeeping (np.where(True, a, b) is a)
            ae = np.abs(exp)
            abs_err = o - exp
            np.abs(abs_err, out=abs_err)
            lim = tol.atol + tol.rtol * ae
            nz = exp != 0
            rel_err = abs_err / ae if nz.all() else np.where(nz, abs_err / ae, np.where(abs_err > 0, np.inf, 0.0))
            ulp_err = abs_err / _ulp_of_abs(ae, dtype, all_finite=True)
            score = abs_err / lim
            i = int(np.argmax(score))
            return (
                int(np.count_nonzero(abs_err > lim)),
                0,
                0,
                True,
                float(abs_err.max()),
                float(rel_err.max()),
                float(ulp_err.max()),
                i,
                float(score[i]),
            )
    nan_o, nan_e = np.isnan(o), np.isnan(exp)
    inf_bad = (np.isinf(o) | np.isinf(exp)) & ~(nan_o | nan_e) & (o != exp)
    nan_bad = nan_o != nan_e
    finite = np.isfinite(o) & np.isfinite(exp)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        abs_err = np.where(finite, np.abs(o - exp), 0.0)
        rel_err = np.where(finite & (exp != 0), abs_err / np.abs(exp), np.where(abs_err > 0, np.inf, 0.0))
        ulp_err = np.where(finite, abs_err / ulp(exp, dtype), 0.0)
        bad = finite & (abs_err > tol.atol + tol.rtol * np.abs(exp))
        score = np.where(finite, abs_err / (tol.atol + tol.rtol * np.abs(exp)), 0.0)
    odd = nan_bad | inf_bad
    bad |= odd
    score = np.where(odd, np.inf, score)
    i = int(np.argmax(score))
    return (
        int(bad.sum()),
        int(nan_bad.sum()),
        int(inf_bad.sum()),
        bool(finite.any()),
        float(abs_err.max()),
        float(rel_err.max()),
        float(ulp_err.max()),
        i,
        float(score[i]),
    )


Metrics = tuple[int, int, int, bool, float, float, float, int, float]


def _numpy_metrics(of: np.ndarray, ef: np.ndarray, tol: Tolerance, dtype: str) -> Metrics:
    """(n_bad, n_nan_bad, n_inf_bad, any_finite, max abs, max rel, max ulp, worst flat index, its score)
    of flat non-empty ``of`` against flat float64 (or float32) ``ef``, block by block (the kernel's twin)."""
    total = int(ef.size)
    n_bad = n_nan = n_inf = 0
    any_finite = False
    max_abs = max_rel = max_ulp = 0.0
    flat, best = 0, None
    for s in range(0, total, BLOCK):
        o = of[s : s + BLOCK].astype(np.float64)
        b = _block(o, np.asarray(ef[s : s + BLOCK], np.float64), tol, dtype)
        n_bad += b[0]
        n_nan += b[1]
        n_inf += b[2]
        any_finite |= b[3]
        max_abs, max_rel, max_ulp = max(max_abs, b[4]), max(max_rel, b[5]), max(max_ulp, b[6])
        if best is None or (not math.isnan(best) and (math.isnan(b[8]) or b[8] > best)):
            flat, best = s + b[7], b[8]
    assert best is not None
    return n_bad, n_nan, n_inf, any_finite, max_abs, max_rel, max_ulp, flat, best


class _Result(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in ("n_bad", "n_nan", "n_inf", "any_finite", "worst")] + [
        (n, ctypes.c_double) for n in ("max_abs", "max_rel", "max_ulp", "score")
    ]


#: normconf_compare(obs, kind, exp, ekind, n, rtol, atol, nmant, tiny, sub, out)
_ARGTYPES: list[Any] = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
_ARGTYPES += [ctypes.c_double, ctypes.c_double, ctypes.c_int64, ctypes.c_double, ctypes.c_double]
_ARGTYPES += [ctypes.POINTER(_Result)]
#: the kernel's dtype codes (native/src/kernels/dtypes.h); expected values only float64 and float32
KIND = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3}


@lru_cache(maxsize=4)
def _kernel_fn(lib: ctypes.CDLL) -> Any:
    fn = lib.normconf_compare
    fn.argtypes = _ARGTYPES
    fn.restype = ctypes.c_int
    return fn


@lru_cache(maxsize=32)
def _kernel_kind(dt: np.dtype[Any]) -> int | None:
    """The kernel's code for dtype ``dt`` (native float64/32/16 or ml_dtypes' bfloat16), else None."""
    name = dt.name
    if name not in KIND or not dt.isnative:
        return None
    if name == "bfloat16":
        import ml_dtypes

        if dt != np.dtype(ml_dtypes.bfloat16):
            return None
    return KIND[name]


def _kernel_metrics(of: np.ndarray, ef: np.ndarray, tol: Tolerance, dtype: str) -> Metrics | None:
    """:func:`_numpy_metrics` by the compiled kernel (native/src/kernels/compare.c, bit-identical),
    or None where the library is missing or the observed dtype is not one it reads."""
    lib = kernels.library()
    kind, ekind = _kernel_kind(of.dtype), _kernel_kind(ef.dtype)
    if lib is None or kind is None or ekind not in (KIND["float64"], KIND["float32"]):
        return None
    o = of if of.flags.c_contiguous else np.ascontiguousarray(of)
    e = ef if ef.flags.c_contiguous else np.ascontiguousarray(ef)
    nmant, tiny, sub = _finfo(dtype)
    r = _Result()
    args = (o.ctypes.data, kind, e.ctypes.data, ekind, int(e.size), float(tol.rtol), float(tol.atol), nmant, tiny, sub)
    if _kernel_fn(lib)(*args, ctypes.byref(r)) != 0:
        return None
    return (
        int(r.n_bad),
        int(r.n_nan),
        int(r.n_inf),
        bool(r.any_finite),
        float(r.max_abs),
        float(r.max_rel),
        float(r.max_ulp),
        int(r.worst),
        float(r.score),
    )


def compare(observed: np.ndarray, expected: np.ndarray, tol: Tolerance, dtype: str) -> Comparison:
    """Compare one observed array against the expected array: float64, or float32 where the expected
    values are float32 numbers (:func:`normconf.oracle.expected_outputs` with ``compact``; either is read
    exactly, so the result is the same, and the pass reads half the bytes).

    One pass of the compiled kernel, or NumPy blocks of :data:`BLOCK` elements; the
    result is exactly the whole-array computation's either way (counts add, maxima
    combine, the worst element is the first of the largest score, as ``np.argmax``
    picks it).
    """
    obs = np.asarray(observed)
    exp = np.asarray(expected)
    if exp.dtype not in (np.float64, np.float32):
        exp = exp.astype(np.float64)
    if obs.shape != exp.shape:
        if obs.size == exp.size and obs.squeeze().shape == exp.squeeze().shape:
            obs = obs.reshape(exp.shape)
        else:
            return Comparison(
                False,
                total=int(exp.size),
                mismatched=int(exp.size),
                message=f"shape {tuple(obs.shape)} != expected {tuple(exp.shape)}",
            )
    total = int(exp.size)
    of, ef = obs.reshape(-1), exp.reshape(-1)
    try:
        if total == 0:
            of.astype(np.float64)
            return Comparison(True, 0.0, 0.0, 0.0, 0, 0)
        m = _kernel_metrics(of, ef, tol, dtype)
        if m is None:
            m = _numpy_metrics(of, ef, tol, dtype)
    except (TypeError, ValueError):
        return Comparison(
            False, total=total, mismatched=total, message=f"cannot read observed dtype {obs.dtype} as numbers"
        )
    n_bad, n_nan, n_inf, any_finite, max_abs, max_rel, max_ulp, flat, _ = m
    worst = tuple(int(i) for i in np.unravel_index(flat, exp.shape)) if exp.ndim else ()
    c = Comparison(
        close=n_bad == 0,
        max_abs_err=max_abs if any_finite else 0.0,
        max_rel_err=max_rel if any_finite else 0.0,
        max_ulp=max_ulp if any_finite else 0.0,
        mismatched=n_bad,
        total=total,
        worst_index=worst if n_bad else None,
        worst_observed=float(np.asarray(of[flat]).astype(np.float64)),
        worst_expected=float(ef[flat]),
    )
    if n_bad:
        parts = [f"{n_bad}/{total} elements differ ({100 * n_bad / total:.3g}%)"]
        if n_nan:
            parts.append(f"NaN positions differ at {n_nan} elements")
        if n_inf:
            parts.append(f"Inf positions/signs differ at {n_inf} elements")
        parts.append(
            f"worst at {list(worst)}: observed {c.worst_observed:.9g}, expected {c.worst_expected:.9g}; "
            f"max abs err {c.max_abs_err:.3g}, max rel err {c.max_rel_err:.3g}, {c.max_ulp:.3g} ULP "
            f"(rtol {tol.rtol:g}, atol {tol.atol:g})"
        )
        c.message = "; ".join(parts)
    return c


def fmt_float(v: float | None) -> str:
    """Compact representation for messages and tables."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.3g}"


def close_blockwise(observed: Any, expected: Any, tol: Tolerance, dtype: str, block: int = 1 << 17) -> bool:
    """``compare(observed, expected, tol, dtype).close``, reading a block of elements at a time where either
    side is computed on demand (:class:`normconf.explain.deferred.DeferredOutput`: it is then never one whole
    array).  The same answer: an element's closeness depends on that element alone, and ``close`` is "no
    element is not close"."""
    if not (getattr(observed, "deferred", False) or getattr(expected, "deferred", False)):
        return compare(observed, expected, tol, dtype).close
    if tuple(observed.shape) != tuple(expected.shape):
        return compare(np.asarray(observed), np.asarray(expected), tol, dtype).close
    of, ef = observed.reshape(-1), expected.reshape(-1)
    for s in range(0, int(np.prod(observed.shape, dtype=np.int64)), block):
        if not compare(np.asarray(of[s : s + block]), np.asarray(ef[s : s + block]), tol, dtype).close:
            return False
    return True
