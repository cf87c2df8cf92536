"""Forward-error bounds of LayerNorm's outputs, per row (the analysis of :mod:`normconf.explain.bounds`).

The statistics of one row (``m`` elements) have the bounds BatchNorm's channels have
(:func:`normconf.explain.bounds._stat_bounds`: the mean's summation error ``g(m)·S1``, the
two-pass variance after Chan, Golub & LeVeque, the one-pass variance's cancellation ∝ E[x²]);
RMS scaling's ``mean(x²)`` is a sum of non-negative terms, ``δ ≤ (g(m) + u)·E[x²]``.  The
normalization carries them elementwise with gamma and beta of the normalized shape:
unfolded ``γ·(x − μ)·inv + β`` or folded ``x·a + b`` (``a = γ·inv``, ``b = β − μ·a``; inv's error
is shared by both uses of ``a`` and cancels with the offset: it is carried by ``|x − μ|``, only the
roundings of ``a``, the products and the sums by ``|x|`` and ``|μ|``).  The bound
never depends on a summation order, so the verdict is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeAlias

import numpy as np

from normconf.explain.bounds import Verdict
from normconf.explain.channel_shape import affine
from normconf.explain.precision import _TINY, SHAPE_MARGIN, UNIT_ROUNDOFF, Model, coarser, sum_factor
from normconf.explain.stat_bounds import _ChannelData, _stat_bounds

if TYPE_CHECKING:
    import numpy.typing as npt

    from normconf.compare import Tolerance
    from normconf.ops.layer_norm.case import LayerNormCase
    from normconf.ops.layer_norm.inputs import LayerNormInputs
    from normconf.ops.layer_norm.semantics import LayerNormSemantics

    #: a float64 array of per-row (keepdims) or per-element values
    F64: TypeAlias = npt.NDArray[np.float64]


def row_data(x: np.ndarray, axes: tuple[int, ...]) -> _ChannelData:
    """Per-row mean, biased variance, E[x²] and mean |x| in float64 (keepdims arrays)."""
    x = np.asarray(x)
    m = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    with np.errstate(all="ignore"):
        mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
        s1 = np.abs(x).mean(axis=axes, keepdims=True, dtype=np.float64)
        d = x - mean
        var_b = (d * d).mean(axis=axes, keepdims=True)
        e2 = var_b + mean * mean
    return _ChannelData(mean, var_b, e2, s1, m)


@dataclass
class RowBounds:
    """Bounds of one case × inputs × semantics (``sem``: the conventions assumed)."""

    case: LayerNormCase
    inputs: LayerNormInputs
    sem: LayerNormSemantics

    def __post_init__(self) -> None:
        self._rd: dict[int, _ChannelData] = {}

    def data(self, step: int) -> _ChannelData:
        if step not in self._rd:
            self._rd[step] = row_data(self.inputs.x[step - 1], self.case.norm_axes)
        return self._rd[step]

    def statistic(self, model: Model, step: int) -> tuple[F64, F64, F64, F64]:
        """(value, δ) of the statistic under the square root, and (mean, δmean) per row."""
        cd = self.data(step)
        d_mu, d_v, var = _stat_bounds(cd, model, self.case.dtype, self.sem.normalize_variance == "unbiased")
        if self.sem.scale_statistic == "mean_square":
            u = UNIT_ROUNDOFF[model.stats]
            g = sum_factor(cd.m, u)
            var = cd.e2
            d_v = (g + u) * cd.e2 + 2 * _TINY[model.stats]
            if coarser(model.stats, self.case.dtype):
                d_v = d_v + 2 * u * cd.e2
        return var, d_v, cd.mean, d_mu

    def inv(self, model: Model, step: int) -> tuple[F64, F64, npt.NDArray[np.bool_]]:
        """(inv_std, δinv_std) per row: the exact image of the statistic's interval, plus three roundings."""
        var, d_v, _, _ = self.statistic(model, step)
        u_c = UNIT_ROUNDOFF[model.compute]
        if coarser(model.compute, model.stats):
            d_v = d_v + u_c * np.abs(var) + _TINY[model.compute]
        eps = self.sem.eps_used(self.case.eps)
        place = self.sem.eps_placement
        f: Callable[[np.ndarray], np.ndarray]
        with np.errstate(all="ignore"):
            if place == "inside_sqrt":
                f = lambda v: 1.0 / np.sqrt(v + eps)  # noqa: E731
            elif place == "outside_sqrt":
                f = lambda v: 1.0 / (np.sqrt(v) + eps)  # noqa: E731
            else:
                f = lambda v: 1.0 / np.sqrt(v)  # noqa: E731
            lo, hi = np.maximum(var - d_v, 0.0), var + d_v
            inv = f(np.maximum(var, 0.0))
            d_inv = np.maximum(np.abs(f(lo) - inv), np.abs(inv - f(hi))) + 3 * u_c * np.abs(f(lo))
            # a statistic that may have overflowed (δ infinite) bounds inv_std by nothing: keep it infinite
            d_inv = np.where(np.isnan(d_inv) | np.isinf(d_v), np.inf, d_inv)
            nan_possible = (model.variance == "one_pass") & (var - d_v < 0)
        return inv, d_inv, nan_possible

    def group_bound(self, model: Model, output: str, step: int) -> np.ndarray | None:
        """δ of ``mean`` or ``inv_std`` per row (with the output's rounding)."""
        u_o = UNIT_ROUNDOFF[self.case.params_dtype]
        if output == "mean":
            _, _, mean, d = self.statistic(model, step)
            val = mean
        elif output == "inv_std":
            val, d, _ = self.inv(model, step)
        else:
            return None
        # the output's rounding applies to any value within the bound, the largest one included
        return d + 2 * u_o * (np.abs(val) + d) + _TINY[self.case.params_dtype]

    def signed_params(self, output: str, step: int) -> tuple[F64, F64]:
        """(gamma, beta) as they act on ``output`` (1 and 0 where the conventions leave them out),
        in the normalized shape broadcastable against ``x``, with their signs."""
        x = self.inputs.x[step - 1]
        shape = [1] * np.ndim(x)
        for a in self.case.norm_axes:
            shape[a] = np.shape(x)[a]
        gamma, beta = affine(self, output, int(np.prod(shape)))
        return gamma.reshape(shape), beta.reshape(shape)

    def element_bound(
        self,
        model: Model,
        output: str,
        step: int,
        ref: np.ndarray,
        rounding_only: bool = False,
        used: tuple[F64, F64] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(per-element bound of ``y``/``x_hat`` around ``ref``, where NaN is possible).

        ``rounding_only``: leave out the first-order effect of the statistics' errors (δμ, δinv), which
        is ``γ·(x − μ)·δinv − γ·inv̂·δμ``: two constants per row (:func:`shape_fraction` fits them);
        what is left is the rounding of the normalization and the affine step with the backend's
        statistics (inv̂ up to ``inv + δinv``, |μ̂| up to ``|μ| + δμ``; ``used``: per-row (|inv̂|, |δμ|)
        estimated from the output instead of those worst cases)."""
        case, sem = self.case, self.sem
        x = np.asarray(self.inputs.x[step - 1], np.float64)
        _, _, mean, d_mu = self.statistic(model, step)
        inv, d_inv, nan_possible = self.inv(model, step)
        u = UNIT_ROUNDOFF[model.compute]
        gamma, beta = (np.abs(v) for v in self.signed_params(output, step))
        if not sem.centered:
            mean, d_mu = np.zeros_like(mean), np.zeros_like(d_mu)
        first = 0.0 if rounding_only else 1.0  # the weight of the statistics' first-order terms
        in_coarse = coarser(model.compute, case.dtype)
        u_o, tiny = UNIT_ROUNDOFF[case.dtype], _TINY[case.dtype]
        with np.errstate(all="ignore"):
            inv_hi = inv + d_inv
            if rounding_only and used is not None:
                inv_hi, d_mu = used
            if model.arithmetic == "unfolded":
                k = (1 + u) ** 2 * inv_hi
                b = gamma * (
                    (first * d_inv + ((1 + u) ** 2 - 1) * inv_hi + u * k) * np.abs(x - mean)
                    + first * d_mu * k * (1 + u)
                    + (u * k * np.abs(x) if in_coarse else 0.0)
                )
            else:
                # y = x·â + b̂, â = γ·inv̂ (rounded), b̂ = β − μ̂·â: x·â + β − μ̂·â = (x − μ̂)·â + β, so inv̂'s
                # error (shared by both uses of â) is carried by |x − μ|, not by |x| and |μ| separately; only
                # the roundings of â (counted once per use: b may round its own copy), of the two products
                # and of the sums carry |x| and |μ|
                a_hi = gamma * inv_hi
                mu = np.abs(mean) + d_mu  # |μ̂|, the mean the backend used
                b = (
                    first * gamma * d_inv * np.abs(x - mean)
                    + first * d_mu * a_hi * (1 + u)
                    + (2 * u * a_hi + (u * a_hi if in_coarse else 0.0)) * (1 + u) * np.abs(x)
                    + 2 * u * mu * a_hi * (1 + u)
                    + u * (mu * a_hi + beta)
                    + u * beta
                )
            b = b + (u + 2 * u_o) * np.abs(ref) + tiny
            b = np.where(np.isnan(b), np.inf, b)
        return b, np.broadcast_to(nan_possible, b.shape)


def judge(
    rb: RowBounds, model: Model, output: str, step: int, obs: np.ndarray, ref: np.ndarray, tol: Tolerance
) -> Verdict | None:
    """Does ``obs`` lie within ``model``'s bound (plus the tolerance) around ``ref``?"""
    b: np.ndarray | None
    if output in ("y", "x_hat"):
        b, nan_ok = rb.element_bound(model, output, step, ref)
    else:
        b = rb.group_bound(model, output, step)
        if b is None:
            return None
        nan_ok = np.zeros(b.shape, bool)
    o = np.asarray(obs, np.float64)
    e = np.asarray(ref, np.float64)
    if o.shape != e.shape or b.shape != e.shape:
        return None
    with np.errstate(all="ignore"):
        lim = b + tol.atol + tol.rtol * np.abs(e)
        err = np.abs(o - e)
        err = np.where((o == e) | (np.isnan(o) & np.isnan(e)), 0.0, err)
        err = np.where(np.isnan(o) & nan_ok, 0.0, err)
        err = np.where(np.isnan(err), np.inf, err)
        frac = np.where(np.isinf(lim), 0.0, err / lim)
        frac = np.where(np.isinf(err) & ~np.isinf(lim), np.inf, frac)
    if not frac.size:
        return None
    k = np.unravel_index(int(np.argmax(frac)), frac.shape)
    f = float(frac[k])
    kappa = _kappa(rb, step)
    vacuous = bool(np.isinf(b).any())  # the model allows any value somewhere (e.g. a sum that may overflow)
    shape = None
    if f <= 1.0 and not vacuous and output in ("y", "x_hat"):
        shape = shape_fraction(rb, model, output, step, o, e, tol)
    covered = f <= 1.0 and (shape is None or shape <= SHAPE_MARGIN)
    idx = tuple(int(i) for i in k)
    return Verdict(model, covered, max(f, 0.0), float(err[k]), float(b[k]), idx, vacuous, kappa, shape)


def shape_fraction(
    rb: RowBounds, model: Model, output: str, step: int, obs: np.ndarray, ref: np.ndarray, tol: Tolerance
) -> float:
    """Is the error shaped like a precision error?  Any error of the row statistics (μ̂ = μ + δμ,
    inv̂ = inv + δinv) changes ``y`` by exactly ``γ·(x − μ)·δinv − γ·inv̂·δμ``: per row, a multiple of
    ``z = γ·(x − μ)`` plus a multiple of ``γ`` (``x_hat``: γ = 1).  Fit the two per row (weighted least
    squares, weights 1/(rounding-only bound + tolerance)²) and return the worst residual as a fraction
    of the rounding-only bound + tolerance (:meth:`RowBounds.element_bound` with ``rounding_only``).
    Two passes: the first fit weighs by the bound under the worst-case statistics (inv̂ up to
    ``inv + δinv``, which a nearly lost one-pass variance makes huge); the rounding-only bound is then
    recomputed with the statistics that fit found (|inv̂| = |inv + δinv|, |δμ| = |the offset| / |inv̂|),
    the second fit weighs by it, and its residual is judged against it.
    An error that the statistics' bound allows in size but not in shape (statistics over the wrong
    elements) is not a precision effect."""
    axes = rb.case.norm_axes
    gamma, _ = rb.signed_params(output, step)
    x = np.asarray(rb.inputs.x[step - 1], np.float64)
    mean = rb.data(step).mean if rb.sem.centered else 0.0
    inv = rb.inv(model, step)[0]
    with np.errstate(all="ignore"):
        e_all = np.where(obs == ref, 0.0, obs - ref)
        z = np.broadcast_to(gamma * (x - mean), e_all.shape)
        g = np.broadcast_to(gamma, e_all.shape)

    def fit(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(per-row δinv, per-row −inv̂·δμ, residual / c, the elements used), weights 1/c²."""
        with np.errstate(all="ignore"):
            use = np.isfinite(e_all) & np.isfinite(c) & (c > 0)
            safe_c = np.where(use, c, 1.0)
            w = np.where(use, 1.0 / safe_c**2, 0.0)
            e = np.where(use, e_all, 0.0)

            def total(v: np.ndarray) -> np.ndarray:
                return np.asarray(np.sum(w * v, axis=axes, keepdims=True))

            szz, szg, sgg, sze, sge = total(z * z), total(z * g), total(g * g), total(z * e), total(g * e)
            det = szz * sgg - szg * szg
            ok = np.isfinite(det) & (np.abs(det) > 1e-12 * np.abs(szz * sgg))
            det = np.where(ok, det, 1.0)
            a = np.where(ok, (sze * sgg - sge * szg) / det, 0.0)
            only_b = np.where(sgg > 0, sge / np.where(sgg > 0, sgg, 1.0), 0.0)  # degenerate row: one constant
            b0 = np.where(ok, (szz * sge - szg * sze) / det, only_b)
            r = np.where(use, np.abs(e - a * z - b0 * g) / safe_c, 0.0)
        return a, b0, np.where(np.isfinite(r), r, np.inf), use

    def allowance(used: tuple[F64, F64] | None) -> np.ndarray:
        lb, _ = rb.element_bound(model, output, step, ref, rounding_only=True, used=used)
        return np.asarray(lb + tol.atol + tol.rtol * np.abs(ref), np.float64)

    # 1. fit under the worst-case statistics; 2. the rounding bound with the statistics the fit found
    # (inv̂ = inv + δinv, δμ = −(−inv̂·δμ)/inv̂), refit, judge the residual against that bound
    a, b0, _, _ = fit(allowance(None))
    with np.errstate(all="ignore"):
        inv_hat = np.abs(inv + a)
        d_mu = np.where(inv_hat > 0, np.abs(b0) / np.where(inv_hat > 0, inv_hat, 1.0), 0.0)
    _, _, r, _ = fit(allowance((inv_hat, d_mu)))
    return float(r.max()) if r.size else 0.0


def _kappa(rb: RowBounds, step: int) -> float | None:
    cd = rb.data(step)
    with np.errstate(all="ignore"):
        k = np.sqrt(cd.e2 / cd.var_b)
    k = k[np.isfinite(k)]
    return float(k.max()) if k.size else None


def models(case: LayerNormCase, output: str) -> list[Model]:
    """The precision hypotheses for ``output``, cheapest first (statistics: no arithmetic variants)."""
    from normconf.explain.precision import models_for

    out: list[Model] = []
    for m in models_for(case.dtype):
        if output == "mean":
            m = Model(m.stats, m.stats, "two_pass", "unfolded")
        elif output == "inv_std":
            m = Model(m.stats, m.compute, m.variance, "unfolded")
        if m not in out:
            out.append(m)
    return out
