"""Per-channel statistics of the data and the error bounds of the statistics (mean, variance) for
one precision model: the summation and variance-algorithm part of :mod:`normconf.explain.bounds`
(whose docstring states the bounds and their sources), shared with LayerNorm's row bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normconf.explain.precision import _MAX, _TINY, UNIT_ROUNDOFF, Model, coarser, sum_factor

# ----------------------------------------------------------------------------------------
# per-channel statistics of the data (float64, from the inputs the reference used)


@dataclass
class _ChannelData:
    mean: np.ndarray
    var_b: np.ndarray
    e2: np.ndarray
    s1: np.ndarray
    m: int


#: from this many elements the statistics are computed a block at a time (no full-size float64 temporary;
#: a large case's search held 2× its float32 input for them); below, whole-array NumPy reductions
BLOCKWISE_ABOVE = 1 << 18
#: elements per block of the blockwise path
_STAT_BLOCK = 1 << 17


def _channel_data(x: np.ndarray, channel_axis: int) -> _ChannelData:
    """Per-channel float64 mean, biased variance (two-pass), E[x²] and mean |x| of ``x``.  From
    :data:`BLOCKWISE_ABOVE` elements on, sums over C-order blocks added in order: float64 sums of the
    case's numbers, whose rounding (~1e-16 relative) is far below every bound built on them; the same on
    every machine."""
    x = np.asarray(x)
    ch = channel_axis % x.ndim
    axes = tuple(a for a in range(x.ndim) if a != ch)  # reductions in the array's own layout (no copy)
    C = x.shape[ch]
    m = x.size // C if C else 0
    if not m:
        nan = np.full(C, np.nan)
        return _ChannelData(nan, nan, nan, nan, 0)
    shape = [1] * x.ndim
    shape[ch] = -1
    if x.size >= BLOCKWISE_ABOVE and x.ndim >= 2:
        return _channel_data_blockwise(x, ch, axes, C, m, shape)
    return _channel_data_whole(x, axes, shape, m)


def _channel_data_blockwise(x: np.ndarray, ch: int, axes: tuple, C: int, m: int, shape: list) -> _ChannelData:
    """:func:`_channel_data` over C-order blocks of at most :data:`_STAT_BLOCK` elements
    (:func:`normconf.blocks.blocks_of`; a few MiB of temporaries, whatever the batch size), each
    block's per-channel sums added in order into its channels' totals (a few float64 roundings from
    the whole-array path's sums, tested to 1e-13 relative)."""
    from normconf.blocks import blocks_of

    blocks = list(blocks_of(x.shape, ch, _STAT_BLOCK))
    total, total_abs, squares = np.zeros(C), np.zeros(C), np.zeros(C)
    with np.errstate(all="ignore"):
        for index, chs in blocks:
            xb = x[index]
            total[chs] += xb.sum(axis=axes, dtype=np.float64)
            total_abs[chs] += np.abs(xb).sum(axis=axes, dtype=np.float64)
        mean, s1 = total / m, total_abs / m
        mb = mean.reshape(shape)
        for index, chs in blocks:
            d = x[index] - mb[(slice(None),) * ch + (chs,)]
            np.multiply(d, d, out=d)
            squares[chs] += d.sum(axis=axes)
        var_b = squares / m
        e2 = var_b + mean * mean
    return _ChannelData(mean, var_b, e2, s1, m)


def _channel_data_whole(x: np.ndarray, axes: tuple, shape: list, m: int) -> _ChannelData:
    """Whole-array NumPy reductions (below :data:`BLOCKWISE_ABOVE` elements)."""
    with np.errstate(all="ignore"):
        mean = x.mean(axis=axes, dtype=np.float64)
        s1 = np.abs(x).mean(axis=axes, dtype=np.float64)
        d = x - mean.reshape(shape)  # float64 (mean is)
        np.multiply(d, d, out=d)  # squared in place: one full-size float64 temporary, not two
        var_b = d.mean(axis=axes)
        del d
        e2 = var_b + mean * mean  # E[x²] = var + mean² (exact in real arithmetic; float64 here)
    return _ChannelData(mean, var_b, e2, s1, m)


def _stat_bounds(
    cd: _ChannelData, model: Model, input_dtype: str, unbiased: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(δmean, δvar of the chosen estimator, the estimator's float64 value) per channel; infinite bounds
    where a sum may overflow (any value possible: :func:`_stat_bounds_overflow` keeps them apart)."""
    d_mu, d_v, v, over_mu, over_v = _stat_bounds_overflow(cd, model, input_dtype, unbiased)
    over = over_mu | over_v
    return np.where(over, np.inf, d_mu), np.where(over, np.inf, d_v), v


def _stat_bounds_overflow(
    cd: _ChannelData, model: Model, input_dtype: str, unbiased: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(δmean, δvar, the estimator's float64 value, the mean's sum may overflow, the variance's may)
    per channel.  The bounds are those of a summation that stays in range; where it may not, the
    statistic may instead be non-finite (an overflowed sum stays ±inf, or becomes NaN as inf − inf),
    which is all an overflow can produce."""
    u = UNIT_ROUNDOFF[model.stats]
    g = sum_factor(cd.m, u)
    tiny = _TINY[model.stats]  # the absolute floor of a rounding (subnormal spacing)
    with np.errstate(all="ignore"):
        d_mu = g * cd.s1 + u * np.abs(cd.mean) + tiny
        if coarser(model.stats, input_dtype):
            d_mu = d_mu + u * cd.s1
        v = cd.var_b
        if model.variance == "two_pass":
            d_v = (g + 3 * u) * (v + d_mu**2) + d_mu**2 + 2 * tiny
        else:
            d_v = (g + 2 * u) * cd.e2 + 2 * np.abs(cd.mean) * d_mu + d_mu**2 + u * (cd.mean**2 + v) + 2 * tiny
        if coarser(model.stats, input_dtype):
            d_v = d_v + 2 * u * cd.e2
        if unbiased:
            f = cd.m / (cd.m - 1) if cd.m > 1 else np.nan
            v = v * f
            d_v = d_v * f + u * np.abs(v)
        # a sum that may leave the working dtype's range (some summation orders overflow, others not): of
        # |x| (the mean), and of x² (one-pass) or of the squared deviations from the computed mean (two-pass)
        squares = cd.e2 if model.variance == "one_pass" else cd.var_b + d_mu**2
        over_mu = np.asarray(cd.m * cd.s1 >= _MAX[model.stats] / 2)
        over_v = np.asarray(cd.m * squares >= _MAX[model.stats] / 2) | over_mu
    return d_mu, d_v, v, over_mu, over_v


def condition_number(x: np.ndarray, channel_axis: int) -> float:
    """Chan–Golub–LeVeque condition number of the variance, κ = √(E[x²]/var), worst channel."""
    return condition_number_of(_channel_data(x, channel_axis))


def condition_number_of(cd: _ChannelData) -> float:
    """:func:`condition_number` from the channel statistics already computed (``Bounds.data``)."""
    with np.errstate(all="ignore"):
        k = np.sqrt(cd.e2 / cd.var_b)
    k = k[np.isfinite(k)]
    return float(k.max()) if k.size else math.inf
