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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from harness.inputs import np_dtype

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
    extra: dict = field(default_factory=dict)

    @property
    def mismatched_frac(self) -> float:
        return self.mismatched / self.total if self.total else 0.0


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """Size of one unit in the last place of ``dtype`` at each of ``values`` (float64)."""
    if dtype == "bfloat16":
        import ml_dtypes

        fi = ml_dtypes.finfo(ml_dtypes.bfloat16)
    else:
        fi = np.finfo(np_dtype(dtype))
    nmant = int(fi.nmant)
    tiny = float(fi.smallest_normal)
    sub = float(fi.smallest_subnormal)
    a = np.abs(values.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log2(np.maximum(a, tiny)))
    return np.maximum(np.exp2(e - nmant), sub)


def compare(observed: np.ndarray, expected: np.ndarray, tol: Tolerance, dtype: str) -> Comparison:
    """Compare one observed array against the float64 expected array."""
    obs = np.asarray(observed)
    exp = np.asarray(expected, np.float64)
    if obs.shape != exp.shape:
        if obs.size == exp.size and obs.squeeze().shape == exp.squeeze().shape:
            obs = obs.reshape(exp.shape)
        else:
            return Comparison(False, total=int(exp.size), mismatched=int(exp.size),
                              message=f"shape {tuple(obs.shape)} != expected {tuple(exp.shape)}")
    try:
        o = obs.astype(np.float64)
    except (TypeError, ValueError):
        return Comparison(False, total=int(exp.size), mismatched=int(exp.size),
                          message=f"cannot read observed dtype {obs.dtype} as numbers")
    total = int(exp.size)
    if total == 0:
        return Comparison(True, 0.0, 0.0, 0.0, 0, 0)
    nan_o, nan_e = np.isnan(o), np.isnan(exp)
    inf_bad = (np.isinf(o) | np.isinf(exp)) & ~(nan_o | nan_e) & (o != exp)
    nan_bad = nan_o != nan_e
    finite = np.isfinite(o) & np.isfinite(exp)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        abs_err = np.where(finite, np.abs(o - exp), 0.0)
        rel_err = np.where(finite & (exp != 0), abs_err / np.abs(exp), np.where(abs_err > 0, np.inf, 0.0))
        ulp_err = np.where(finite, abs_err / ulp(exp, dtype), 0.0)
        bad = finite & (abs_err > tol.atol + tol.rtol * np.abs(exp))
    bad |= nan_bad | inf_bad
    n_bad = int(bad.sum())
    # the worst element: a NaN/Inf disagreement first, else the largest error relative to the tolerance
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        score = np.where(finite, abs_err / (tol.atol + tol.rtol * np.abs(exp)), 0.0)
    score = np.where(nan_bad | inf_bad, np.inf, score)
    flat = int(np.argmax(score)) if score.size else 0
    worst = tuple(int(i) for i in np.unravel_index(flat, exp.shape)) if exp.ndim else ()
    c = Comparison(
        close=n_bad == 0,
        max_abs_err=float(abs_err.max()) if finite.any() else 0.0,
        max_rel_err=float(rel_err.max()) if finite.any() else 0.0,
        max_ulp=float(ulp_err.max()) if finite.any() else 0.0,
        mismatched=n_bad,
        total=total,
        worst_index=worst if n_bad else None,
        worst_observed=float(o.reshape(-1)[flat]),
        worst_expected=float(exp.reshape(-1)[flat]),
    )
    if n_bad:
        parts = [f"{n_bad}/{total} elements differ ({100 * n_bad / total:.3g}%)"]
        if nan_bad.any():
            parts.append(f"NaN positions differ at {int(nan_bad.sum())} elements")
        if inf_bad.any():
            parts.append(f"Inf positions/signs differ at {int(inf_bad.sum())} elements")
        parts.append(
            f"worst at {list(worst)}: observed {c.worst_observed:.9g}, expected {c.worst_expected:.9g}; "
            f"max abs err {c.max_abs_err:.3g}, max rel err {c.max_rel_err:.3g}, {c.max_ulp:.3g} ULP "
            f"(rtol {tol.rtol:g}, atol {tol.atol:g})"
        )
        c.message = "; ".join(parts)
    return c


def fmt_float(v: float) -> str:
    """Compact representation for messages and tables."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.3g}"
