"""Plots for the HTML report, rendered here (server side) as inline SVG.

* :func:`heatmap_svg` — the error heatmap across cases × backends (matplotlib;
  the cell grid is one embedded raster image, so hundreds of cases × dozens of
  backends stay a few tens of kilobytes).
* per-mismatch plots (the distribution of ``|observed - expected|`` and the
  largest error per channel) are drawn as SVG by the report's own script from
  the ~100 numbers :func:`plot_data` keeps: a pre-rendered SVG per mismatch
  costs 2–4 KB, which at full-suite scale (thousands of non-close rows) would
  break the report's 5 MB budget; the numbers cost ~0.1 KB.

The per-mismatch plots need the arrays, which only the runner has.
:func:`plot_data` boils one comparison down to a few hundred numbers that travel
in ``results.json`` (``meta["plot_data"]``, see :func:`plot_key` and
docs/reports.md); the report renders whatever it finds there.
"""

from __future__ import annotations

import io
import math
from typing import Any, Iterable, Sequence

import numpy as np

#: most channels kept in ``channel_max_abs_err`` (the rest are summarized by ``channels``)
MAX_CHANNELS = 256
#: histogram resolution in decades of |error|
BINS_PER_DECADE = 2
#: widest histogram span in decades (smaller errors go to the first bin)
MAX_DECADES = 16


# ----------------------------------------------------------------------------------------
# data: what the runner keeps of each mismatch


def plot_key(case: str, backend: str, output: str, step: int | None) -> str:
    """The key of one result row in ``meta["plot_data"]``."""
    return f"{case}|{backend}|{output}|{'' if step is None else int(step)}"


def plot_data(observed: Any, expected: Any, channel_axis: int = 1) -> dict[str, Any] | None:
    """A small, JSON-able summary of ``|observed - expected|`` for the report's plots, or ``None``
    when the pair cannot be summarized (different shapes, values that are not real numbers, any
    failure): a strange array costs its plot, never the report.

    ``channel_axis`` is the channel axis of ``y``-like outputs (the case's
    ``channel_axis``); 1-D outputs (per-channel statistics) use axis 0.  Returns::

        {"abs_err_hist": {"log10_edges": [...], "counts": [...], "zeros": int, "nonfinite": int},
         "channel_max_abs_err": [...],   # at most MAX_CHANNELS values (None where no finite pair)
         "channels": C}

    Non-finite positions on either side are counted in ``nonfinite`` and left out
    of the histogram and the per-channel maxima.
    """
    try:
        with np.errstate(all="ignore"):
            return _plot_data(observed, expected, channel_axis)
    except Exception:  # noqa: BLE001 - no plot rather than no report
        return None


def _real(a: Any) -> np.ndarray | None:
    """``a`` as an array of real numbers (not converted), or ``None`` when it is not one."""
    if not isinstance(a, np.ndarray) or a.dtype.kind in "cOUSVMmb" and a.dtype.name != "bfloat16":
        return None
    return a


#: elements per block of the summary's passes over a large output (their float64 temporaries are
#: a few MB; the whole array is never converted or differenced at once)
PLOT_BLOCK = 1 << 18


def _errors(o: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|o - e| in float64 with NaN where a side is not finite, the finite mask)."""
    of, ef = o.astype(np.float64), e.astype(np.float64, copy=False)
    finite = np.isfinite(of) & np.isfinite(ef)
    return np.where(finite, np.abs(of - ef), np.nan), finite


def _plot_data(observed: Any, expected: Any, channel_axis: int) -> dict[str, Any] | None:
    o = _real(np.asarray(observed) if isinstance(observed, (list, tuple)) else observed)
    e = _real(np.asarray(expected) if isinstance(expected, (list, tuple)) else expected)
    if o is None or e is None or o.shape != e.shape:
        return None
    axis = None if o.ndim == 0 else (0 if o.ndim == 1 else channel_axis % o.ndim)
    # blocks along the channel axis when it leads, else along axis 0 (never the channel axis): each
    # summary below is a count, a sum of histogram counts, a minimum or a maximum, the same whatever
    # the blocks
    lead = 0 if o.ndim == 0 else o.shape[0]
    step = max(1, PLOT_BLOCK // max(1, o.size // max(1, lead))) if o.ndim else 1
    blocks = [slice(i, i + step) for i in range(0, lead, step)] if o.ndim and o.size > PLOT_BLOCK else [slice(None)]
    zeros = nonfinite = 0
    lo_v, hi_v = math.inf, -math.inf
    maxima: list[np.ndarray] = []
    for b in blocks:
        err, finite = _errors(o[b], e[b]) if o.ndim else _errors(o, e)
        vals = err[finite]
        zeros += int(np.count_nonzero(vals == 0))
        nonfinite += int(finite.size - np.count_nonzero(finite))
        nz = vals[vals > 0]
        if nz.size:
            lo_v, hi_v = min(lo_v, float(nz.min())), max(hi_v, float(nz.max()))
        maxima.append(_channel_maxima(err, axis))
    if axis == 0 or axis is None:
        per_channel = np.concatenate(maxima)
    else:
        per_channel = maxima[0]
        for m in maxima[1:]:  # NaN only where no block had a finite pair for that channel
            per_channel = np.where(
                np.isnan(per_channel), m, np.where(np.isnan(m), per_channel, np.maximum(per_channel, m))
            )
    if hi_v > 0:
        hi = math.ceil(math.log10(hi_v) * BINS_PER_DECADE) / BINS_PER_DECADE
        lo = math.floor(math.log10(lo_v) * BINS_PER_DECADE) / BINS_PER_DECADE
        lo = max(lo, hi - MAX_DECADES)
        if hi <= lo:
            hi = lo + 1.0 / BINS_PER_DECADE
        n = int(round((hi - lo) * BINS_PER_DECADE))
        edges = [round(lo + i / BINS_PER_DECADE, 6) for i in range(n + 1)]
        counts = np.zeros(n, np.int64)
        for b in blocks:
            err, finite = _errors(o[b], e[b]) if o.ndim else _errors(o, e)
            vals = err[finite]
            nz = vals[vals > 0]
            counts += np.histogram(np.clip(np.log10(nz), lo, hi), bins=np.asarray(edges))[0]
        counts_l = [int(c) for c in counts]
    else:
        edges, counts_l = [], []
    ch = [None if not math.isfinite(v) else float(f"{v:.4g}") for v in per_channel[:MAX_CHANNELS].tolist()]
    return {
        "abs_err_hist": {
            "log10_edges": edges,
            "counts": counts_l,
            "zeros": zeros,
            "nonfinite": nonfinite,
        },
        "channel_max_abs_err": ch,
        "channels": int(per_channel.size),
    }


def _channel_maxima(err: np.ndarray, axis: int | None) -> np.ndarray:
    """The largest finite |error| per channel of one block (NaN for a channel with none)."""
    if axis is None:
        return err.reshape(1)
    moved = np.moveaxis(err, axis, 0).reshape(err.shape[axis], -1)
    has = np.isfinite(moved).any(axis=1)
    return np.where(has, np.nanmax(np.where(np.isfinite(moved), moved, -np.inf), axis=1), np.nan)


# ----------------------------------------------------------------------------------------
# the heatmap (matplotlib)


def heatmap_svg(
    cases: Sequence[str], backends: Sequence[str], values: np.ndarray, failed: np.ndarray | None = None
) -> str:
    """log10 of the largest |error| per (case, backend) as an SVG (matplotlib, Agg).

    ``values``: shape (len(cases), len(backends)), NaN where nothing was compared
    (unsupported, error); ``failed`` marks mismatches with a dot.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    nc, nb = len(cases), len(backends)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(values > 0, np.log10(values), np.where(values == 0, -17.0, np.nan))
    finite = logs[np.isfinite(logs)]
    # robust colour range: a few huge errors (overflow traps) must not flatten everything else
    vmin, vmax = (float(np.percentile(finite, 1)), float(np.percentile(finite, 99))) if finite.size else (-8.0, 0.0)
    vmin, vmax = max(np.floor(vmin), -17.0), max(np.ceil(vmax), np.floor(vmin) + 1)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool(finite.size and finite.min() < vmin), bool(finite.size and finite.max() > vmax))
    ]
    # fixed layout in inches (constrained layout measures every label: seconds for hundreds of cases)
    fs_y = 7 if nc > 60 else 8
    row_h, col_w = (0.15 if nc > 60 else 0.22), 0.26
    left = 0.25 + max((len(c) for c in cases), default=4) * fs_y * 0.0085
    top = 0.3 + max((len(b) for b in backends), default=4) * 8 * 0.0085 * 0.87
    right, bottom = 1.2, 0.25
    grid_w, grid_h = col_w * nb, row_h * nc
    width, height = left + grid_w + right, top + grid_h + bottom
    fig = Figure(figsize=(width, height), dpi=72)
    ax = fig.add_axes((left / width, bottom / height, grid_w / width, grid_h / height))
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(logs), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(
        range(nb), labels=[_plain(b) for b in backends], rotation=60, fontsize=8, ha="left", rotation_mode="anchor"
    )
    # case labels as plain texts: hundreds of matplotlib Ticks (lines + texts each) take seconds
    ax.set_yticks([])
    for i, c in enumerate(cases):
        ax.text(-0.6, i, _plain(c), fontsize=fs_y, ha="right", va="center", clip_on=False)
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", labelbottom=False, labeltop=True, bottom=False)
    if failed is not None and failed.any():
        ys, xs = np.nonzero(failed)
        ax.scatter(xs, ys, s=8, c="#ff2d55", marker="o", linewidths=0)
    cb_h = min(grid_h, 3.0)
    cax = fig.add_axes(((left + grid_w + 0.15) / width, (bottom + grid_h - cb_h) / height, 0.15 / width, cb_h / height))
    cb = fig.colorbar(im, cax=cax, extend=extend)
    cb.set_label("log10 max |error|", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    buf = io.StringIO()
    import matplotlib as mpl

    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "normconf", "svg.image_inline": True}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    # drop the XML prolog and DOCTYPE: the SVG is inlined into HTML
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _plain(label: str) -> str:
    """A label shown literally by matplotlib (``$`` would start mathtext)."""
    return str(label).replace("$", r"\$")


def worst_errors(
    pairs: Iterable[tuple[int, int, float | None, bool]], nc: int, nb: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grid of worst |error| (NaN = nothing compared) and of failed pairs from (ci, bi, err, failed)."""
    vals = np.full((nc, nb), np.nan)
    failed = np.zeros((nc, nb), bool)
    for ci, bi, err, bad in pairs:
        if err is not None and math.isfinite(err):
            vals[ci, bi] = err
        failed[ci, bi] = bad
    return vals, failed
