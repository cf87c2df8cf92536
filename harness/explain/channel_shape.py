"""BatchNorm's shape check: is an error that a precision bound allows in *size* also shaped like one?

Any error of a channel's statistics (μ̂ = μ + δμ, inv̂ = inv + δinv; batch, running or given) changes
a normalized output by exactly ``γ·(x − μ)·δinv − γ·inv̂·δμ`` (folded arithmetic included: its two
uses of ``â`` share inv̂'s error): per channel and step, a multiple of ``z = γ·(x − μ)`` plus a
constant.  Whatever the working precision and summation order, what is left after removing the best
such pair is rounding.  Where the statistics' bound allows almost anything (a one-pass float32
variance at κ² ≈ 1e6 may lose every digit), statistics taken over the wrong elements (per sample,
per position, half the batch) fit inside the bound in size, never in shape.

:func:`shape_fraction` fits the two constants per channel (weighted least squares, weights
1/(rounding-only bound + tolerance)², two passes as in LayerNorm's ``shape_fraction``: the second
weighs by the rounding bound under the statistics the first fit found) and returns the worst
residual as a fraction of the rounding-only bound + tolerance.  :data:`SHAPE_MARGIN` is the
allowance.  The arrays are read in blocks of the leading axis, so the check's temporaries are
bounded like :func:`normconf.explain.bounds.judge`'s; on a large output the fits read a
sample of columns (:data:`FIT_SAMPLE` per channel), the residual every element.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from normconf.explain.arrays import SAMPLE_ABOVE, blocks_of, columns, sample_columns
from normconf.explain.precision import _TINY, SHAPE_MARGIN, UNIT_ROUNDOFF, coarser

__all__ = ["SHAPE_MARGIN", "affine", "rounding_coefficients", "shape_fraction"]

_CHUNK = 1 << 18
#: elements per block of the residual pass over an output larger than _CHUNK (its temporaries: about ten
#: float64 arrays of this size)
RESIDUAL_BLOCK = 1 << 16
#: elements per channel the fits read on a large output (the residual reads all of them)
FIT_SAMPLE = 4096


def affine(bounds: Any, output: str, C: int) -> tuple[np.ndarray, np.ndarray]:
    """(γ, β) per channel, signed, as they act on ``output`` (1 and 0 where the conventions leave them out)."""
    sem, inputs = bounds.sem, bounds.inputs
    gamma = np.ones(C) if inputs.gamma is None else np.asarray(inputs.gamma, np.float64).reshape(-1)
    beta = np.zeros(C) if inputs.beta is None else np.asarray(inputs.beta, np.float64).reshape(-1)
    if output == "x_hat" or sem.affine in ("none", "beta_only"):
        gamma = np.ones(C)
    if output == "x_hat" or sem.affine in ("none", "gamma_only"):
        beta = np.zeros(C)
    return gamma, beta


def rounding_coefficients(
    bounds: Any, model: Any, output: str, step: int, used: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Per-channel (p, r, q, mean, signed γ) of the *rounding-only* bound ``p·|x−μ| + r·|x| + q``
    (the output's own ``s·|y|`` term is added by the caller): :meth:`Bounds.elementwise` without the
    first-order effect of the statistics' errors, which the fit removes.  The roundings are taken at
    the statistics the backend used: inv̂ up to ``inv + δinv`` and |δμ| up to the bound, or, with
    ``used``, the per-channel (|inv̂|, |δμ|) that a first fit estimated from the output."""
    ns = bounds._norm_stats(model, output, step)
    if ns is None:
        return None
    case = bounds.case
    inv, d_inv = bounds._inv_interval(ns, model, bounds.sem.eps_used(case.eps))
    C = inv.shape[0]
    gamma_s, beta_s = affine(bounds, output, C)
    gamma, beta = np.abs(gamma_s), np.abs(beta_s)
    u = UNIT_ROUNDOFF[model.compute]
    in_coarse = coarser(model.compute, case.dtype)
    with np.errstate(all="ignore"):
        inv_hi, d_mu = (inv + d_inv, ns.d_mean) if used is None else used
        if model.arithmetic == "unfolded":
            # (x − μ̂)·inv̂·γ + β: the roundings of the difference (relative to |x − μ̂| ≤ |x − μ| + |δμ|),
            # of the two products and of x to the working dtype
            k = (1 + u) ** 2 * inv_hi
            p = gamma * (((1 + u) ** 2 - 1) * inv_hi + u * k)
            q = gamma * ((1 + u) ** 2 - 1) * d_mu * k
            r = gamma * u * k if in_coarse else np.zeros(C)
        else:
            # â = γ·inv̂ rounded (once per use: b may round its own copy), b̂ = β − μ̂·â, y = x·â + b̂
            a_hi = gamma * inv_hi
            mu = np.abs(ns.mean) + d_mu
            p = np.zeros(C)
            r = (2 * u * a_hi + (u * a_hi if in_coarse else 0.0)) * (1 + u)
            q = 2 * u * mu * a_hi * (1 + u) + u * (mu * a_hi + beta) + u * beta
    return p, r, q, np.asarray(ns.mean, np.float64), gamma_s


def _blocks(arrays: tuple[np.ndarray, ...], axn: int) -> Iterator[tuple[np.ndarray, ...]]:
    """The arrays in blocks of the leading axis (per-channel factors broadcast along ``axn``)."""
    x = arrays[0]
    n0 = x.shape[0]
    if axn == 0 or n0 == 0:
        yield tuple(np.asarray(a, np.float64) for a in arrays)
        return
    per = max(1, _CHUNK // max(1, x.size // n0))
    for s0 in range(0, n0, per):
        yield tuple(np.asarray(a[s0 : s0 + per], np.float64) for a in arrays)


def shape_fraction(
    bounds: Any, model: Any, output: str, step: int, obs: np.ndarray, ref: np.ndarray, tol: Any
) -> float | None:
    """Worst residual, after removing the best per-channel ``a·γ(x − μ) + b``, as a fraction of the
    rounding-only bound + tolerance (≤ :data:`SHAPE_MARGIN`: shaped like a precision error), or
    :data:`SHAPE_MARGIN` × the fitted mean or inv_std error's fraction of what the model allows for
    that statistic, if larger (statistics the model cannot produce are not a precision effect,
    whatever the shape).
    None where the model does not apply or the shapes differ."""
    case = bounds.case
    x = np.asarray(bounds.inputs.x[(case.steps if output == "eval_y" else step) - 1])
    if x.shape != np.shape(ref) or x.shape != np.shape(obs) or not x.size:
        return None
    axn = bounds.channel_axis % x.ndim
    axes = tuple(a for a in range(x.ndim) if a != axn)
    shape = [1] * x.ndim
    shape[axn] = -1
    u_o, tiny = UNIT_ROUNDOFF[case.dtype], _TINY[case.dtype]
    s = UNIT_ROUNDOFF[model.compute]

    # the fits read a deterministic sample of about FIT_SAMPLE elements per channel when the output is
    # large (a least-squares estimate of two constants needs no more); the residual and the mean check
    # read every element
    if x.size > SAMPLE_ABOVE and x.ndim >= 2:
        cols = sample_columns(x.shape, axn, FIT_SAMPLE * x.shape[axn])
        sample = [columns(arr, axn, cols) for arr in (x, obs, ref)]  # (C, k) each, in the arrays' dtypes
        per = max(1, RESIDUAL_BLOCK // max(1, x.shape[axn]))  # the fits' float64 temporaries a block at a time
        fit_blocks = [tuple(v[:, j : j + per] for v in sample) for j in range(0, sample[0].shape[1], per)]
        fit_shape, fit_axes = [-1, 1], (1,)
    else:
        fit_blocks, fit_shape, fit_axes = None, shape, axes

    def coefficients(used, shp):
        co = rounding_coefficients(bounds, model, output, step, used)
        if co is None:
            return None
        return tuple(np.asarray(v, np.float64).reshape(shp) for v in co)

    def per_block(co, xc, oc, ec):
        """(e, z, g, c, use) of one block."""
        P, R, Q, M, G = co
        with np.errstate(all="ignore"):
            e = np.where(oc == ec, 0.0, oc - ec)
            z = G * (xc - M)
            c = P * np.abs(xc - M) + R * np.abs(xc) + Q + (s + 2 * u_o) * np.abs(ec) + tiny
            c = c + tol.atol + tol.rtol * np.abs(ec)
            use = np.isfinite(e) & np.isfinite(c) & (c > 0) & np.isfinite(z)
            return np.where(use, e, 0.0), np.where(use, z, 0.0), np.broadcast_to(G, e.shape), c, use

    def fit(co) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-channel (a, b, se_b) of the weighted least-squares fit e ≈ a·z + b·γ, weights 1/c²; ``se_b``
        is b's standard error for residuals of the size of c (the rounding-only allowance, an upper bound
        of the rounding), infinite where z and γ are proportional (constant inputs: a and b not told apart).
        Where z varies little around a large offset (x − μ ≈ 50 ± 0.01: eval with running statistics) b
        is poorly determined, and its error says so."""
        sums = np.zeros((5, x.shape[axn]))
        with np.errstate(all="ignore"):
            for block in fit_blocks if fit_blocks is not None else _blocks((x, obs, ref), axn):
                xc, oc, ec = (np.asarray(v, np.float64) for v in block)
                e, z, g, c, use = per_block(co, xc, oc, ec)
                w = np.where(use, 1.0 / np.where(use, c, 1.0) ** 2, 0.0)
                for i, v in enumerate((z * z, z * g, g * g, z * e, g * e)):
                    sums[i] += np.sum(w * v, axis=fit_axes)
            szz, szg, sgg, sze, sge = sums
            det = szz * sgg - szg * szg
            ok = np.isfinite(det) & (np.abs(det) > 1e-12 * np.abs(szz * sgg))
            det = np.where(ok, det, 1.0)
            a = np.where(ok, (sze * sgg - sge * szg) / det, 0.0)
            only_b = np.where(sgg > 0, sge / np.where(sgg > 0, sgg, 1.0), 0.0)  # a degenerate channel
            b = np.where(ok, (szz * sge - szg * sze) / det, only_b)
            se_b = np.where(ok, np.sqrt(np.abs(szz / det)), np.inf)
            se_a = np.where(ok, np.sqrt(np.abs(sgg / det)), np.inf)
        fit_se[0] = se_a
        return np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(b), b, 0.0), se_b

    fit_se: list[np.ndarray] = [np.zeros(0)]  # se_a of the last fit
    first = coefficients(None, fit_shape)
    if first is None:
        return None
    a, b, _ = fit(first)
    # 2. the rounding bound with the statistics the first fit found (inv̂ = inv + δinv, |δμ| = |b|/|inv̂|)
    inv = rounding_inv(bounds, model, output, step)
    with np.errstate(all="ignore"):
        inv_hat = np.abs(inv + a)
        d_mu = np.where(inv_hat > 0, np.abs(b) / np.where(inv_hat > 0, inv_hat, 1.0), 0.0)
    a, b, se_b = fit(coefficients((inv_hat, d_mu), fit_shape))
    fit_blocks = sample = None  # the fits' sample is not read again
    second = coefficients((inv_hat, d_mu), shape)
    assert second is not None
    A, B = a.reshape(shape), b.reshape(shape)
    worst = 0.0
    c_sum, c_n, z_sum = np.zeros(x.shape[axn]), np.zeros(x.shape[axn]), np.zeros(x.shape[axn])
    # a large output in blocks of at most RESIDUAL_BLOCK elements (the coefficients sliced to each block's
    # channels); up to _CHUNK elements one block, as the fits read it
    limit = _CHUNK if x.size <= _CHUNK else RESIDUAL_BLOCK
    with np.errstate(all="ignore"):
        for index, ch in blocks_of(x.shape, axn, limit):
            at_ch = (slice(None),) * axn + (ch,)
            co = tuple(v[at_ch] for v in second)
            xc, oc, ec = (np.asarray(arr[index], np.float64) for arr in (x, obs, ref))
            e, z, g, c, use = per_block(co, xc, oc, ec)
            r = np.where(use, np.abs(e - A[at_ch] * z - B[at_ch] * g) / np.where(use, c, 1.0), 0.0)
            if r.size:
                m = float(np.max(np.where(np.isfinite(r), r, np.inf)))
                worst = max(worst, m)
            c_sum[ch] += np.sum(np.where(use, c, 0.0), axis=axes)
            c_n[ch] += np.sum(use, axis=axes)
            z_sum[ch] += np.sum(np.abs(z), axis=axes)
        del xc, oc, ec, e, z, g, c, use, r, co
    # 3. where the fit tells the two apart, the mean it found must be one the model allows: |γ·inv̂·δμ|
    # within γ·inv̂·(the mean's bound) + the typical rounding-only allowance (which holds the constant
    # roundings and the tolerance).
    # The element bound allows the mean's error times the *worst* inv̂ (1/√eps where a one-pass variance
    # may be lost), so without this a mean of the wrong elements would fit in size and shape.
    ns = bounds._norm_stats(model, output, step)
    d_mean = np.asarray(ns.d_mean, np.float64)
    # where a sum may have overflowed, inv_std = 0 (y = β) is a statistic the model allows too: the inv_std
    # check does not apply to a channel whose fitted inv̂ is that (≤ 1e-3 of inv_std)
    over = np.asarray(ns.overflow) if ns.overflow is not None else np.zeros(d_mean.shape, bool)
    checked = ~(over & (inv_hat <= 1e-3 * np.abs(inv)))
    gamma_s = affine(bounds, output, x.shape[axn])[0]
    u = UNIT_ROUNDOFF[model.compute]
    with np.errstate(all="ignore"):
        allowed = np.abs(gamma_s) * inv_hat * d_mean * (1 + u) ** 2 + np.where(c_n > 0, c_sum / c_n, np.inf)
        # the fit's own uncertainty is allowed too (SHAPE_MARGIN standard errors): a channel whose
        # z = γ(x − μ) is constant cannot tell a mean error from a scale error at all (se_b = inf), so
        # only the residual judges it
        allowed = allowed + SHAPE_MARGIN * np.abs(gamma_s) * se_b
        implied = np.abs(b * gamma_s)
        mean_f = np.where(implied == 0, 0.0, implied / allowed)
        mean_f = mean_f[np.isfinite(allowed)]
    mean_fraction = float(np.max(np.where(np.isfinite(mean_f), mean_f, np.inf))) if mean_f.size else 0.0
    # 4. likewise the inv_std error the fit found (a = δinv) must be one the model allows: the element bound
    # lets a large mean allowance (offsets) hide an inv_std error of several times its own bound
    _, d_inv = bounds._inv_interval(ns, model, bounds.sem.eps_used(bounds.case.eps))
    with np.errstate(all="ignore"):
        typical_c = np.where(c_n > 0, c_sum / c_n, np.inf)
        typical_z = np.where(c_n > 0, z_sum / c_n, 0.0)
        slack = np.where(typical_z > 0, typical_c / np.where(typical_z > 0, typical_z, 1.0), np.inf)
        allowed_a = np.asarray(d_inv, np.float64) * (1 + u) ** 2 + SHAPE_MARGIN * fit_se[0] + slack
        inv_f = np.where(a == 0, 0.0, np.abs(a) / allowed_a)
        inv_f = inv_f[np.isfinite(allowed_a) & checked]
    inv_fraction = float(np.max(np.where(np.isfinite(inv_f), inv_f, np.inf))) if inv_f.size else 0.0
    return max(worst, SHAPE_MARGIN * mean_fraction, SHAPE_MARGIN * inv_fraction)


def rounding_inv(bounds: Any, model: Any, output: str, step: int) -> np.ndarray:
    """inv_std per channel of the statistics ``model``'s normalization uses (float64)."""
    ns = bounds._norm_stats(model, output, step)
    inv, _ = bounds._inv_interval(ns, model, bounds.sem.eps_used(bounds.case.eps))
    return np.asarray(inv, np.float64)
