"""NumPy reference LayerNorm: every convention is a parameter (``LayerNormSemantics``).

Runs in float64 on inputs already rounded to the case dtype, unless the semantics ask it to
emulate another working precision (``stats_dtype``, ``compute_dtype``: for mutant backends).

Outputs, each a list with one array per step:

``y``
    the normalized, affine-transformed output, shaped like ``x``;
``mean``
    the row means, shaped like ``x`` with the normalized axes kept as 1 (ONNX's ``Mean``);
``inv_std``
    ``1/sqrt(var + eps)`` per row (ONNX's ``InvStdDev``); under RMS scaling ``1/sqrt(mean(x²) + eps)``;
``x_hat``
    ``(x − mean)·inv_std`` before the affine transform (intermediate stage).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

#: every output, in stage order
OUTPUT_NAMES = ("y", "mean", "inv_std", "x_hat")


def _working(choice: str, input_dtype: np.dtype[Any]) -> np.dtype[Any]:
    return input_dtype if choice == "input" else np.dtype(choice)


def row_moments(
    x: np.ndarray, axes: tuple[int, ...], dtype: np.dtype[Any], algorithm: str, unbiased: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, variance, mean of x²) per row in ``dtype`` (keepdims), with ``algorithm``'s variance."""
    xs = x.astype(dtype, copy=False)
    m = 1
    for a in axes:
        m *= x.shape[a]
    with np.errstate(all="ignore"):
        mean = xs.mean(axis=axes, keepdims=True, dtype=dtype)
        ms = (xs * xs).mean(axis=axes, keepdims=True, dtype=dtype)
        if algorithm == "two_pass":
            d = xs - mean
            var = (d * d).mean(axis=axes, keepdims=True, dtype=dtype)
        else:
            var = ms - mean * mean
            if algorithm == "one_pass_clamped":
                var = np.maximum(var, dtype.type(0))
        if unbiased:
            var = var * dtype.type(m / (m - 1) if m > 1 else np.nan)
    return mean, var, ms


def layer_norm_reference(
    xs: Sequence[np.ndarray],
    *,
    axes: tuple[int, ...],
    eps: float,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    semantics: Any,
    input_dtype: np.dtype[Any],
    statistics_only: bool = False,
    with_x_hat: bool = True,
) -> dict[str, list[npt.NDArray[np.float64]]]:
    """Reference outputs for the steps ``xs`` (each normalized on its own) under ``semantics``
    (``with_x_hat=False``: all but ``x_hat``).

    ``gamma``/``beta`` have the shape of the normalized dimensions (``None``: 1 and 0); they are
    broadcast over the other axes.  ``statistics_only``: just ``mean`` and ``inv_std``.
    """
    sem = semantics
    sd = _working(sem.stats_dtype, input_dtype)
    cd = _working(sem.compute_dtype, input_dtype)
    out: dict[str, list[npt.NDArray[np.float64]]] = {n: [] for n in OUTPUT_NAMES}
    eps_v = sem.eps_used(eps)
    for x in xs:
        shape = [1] * x.ndim
        for a in axes:
            shape[a] = x.shape[a]
        mean, var, ms = row_moments(x, axes, sd, sem.variance_algorithm, sem.normalize_variance == "unbiased")
        stat = var if sem.scale_statistic == "variance" else ms
        with np.errstate(all="ignore"):
            st = stat.astype(cd)
            e = cd.type(eps_v)
            if sem.eps_placement == "inside_sqrt":
                inv = cd.type(1) / np.sqrt(st + e)
            elif sem.eps_placement == "outside_sqrt":
                inv = cd.type(1) / (np.sqrt(st) + e)
            else:
                inv = cd.type(1) / np.sqrt(st)
        out["mean"].append(mean.astype(np.float64))
        out["inv_std"].append(inv.astype(np.float64))
        if statistics_only:
            continue
        with np.errstate(all="ignore"):
            xc = x.astype(cd)
            center = mean.astype(cd) if sem.centered else cd.type(0)
            g = (
                np.ones(shape, cd)
                if gamma is None or sem.affine in ("none", "beta_only")
                else np.asarray(gamma).astype(cd).reshape(shape)
            )
            b = (
                np.zeros(shape, cd)
                if beta is None or sem.affine in ("none", "gamma_only")
                else np.asarray(beta).astype(cd).reshape(shape)
            )
            x_hat = (xc - center) * inv
            if sem.arithmetic == "unfolded":
                y = g * x_hat + b
            else:
                a = g * inv
                y = xc * a + (b - center * a)
        if with_x_hat:
            out["x_hat"].append(x_hat.astype(np.float64))
        out["y"].append(y.astype(np.float64))
        del x_hat
    if statistics_only:
        del out["y"], out["x_hat"]
    elif not with_x_hat:
        del out["x_hat"]
    return out
