"""Numeric knobs solved from the data: eps (from the per-channel scale) and the batch weight.

Each solver returns the value *and its resolution*: how far the value could move before
the reproduced output leaves the tolerance.  A solved value near a documented default is
named as that default only when the default lies within the resolution; otherwise the
solved value itself is the candidate (and must then pass the corroboration rule of
:mod:`.search`: residual ≤ 0.1× the tolerance, error without it ≥ 10×, no precision bound
covering the error, every other output of the pair reproduced).
"""

from __future__ import annotations

import math
import threading
from typing import Callable

import numpy as np

from normconf.explain.arrays import SAMPLE_ABOVE, as_f64, channel_view, columns, sample_columns
from normconf.explain.catalog import KNOWN_BATCH_WEIGHTS, KNOWN_EPS
from normconf.explain.deferred import sample
from normconf.explain.refcache import CACHE
from normconf.semantics import Semantics


def _known_near(value: float, table: dict[float, str], rel: float) -> float | None:
    best, dist = None, math.inf
    for k in table:
        if k == 0.0:
            d = abs(value) if abs(value) < 1e-9 else math.inf
        else:
            d = abs(value - k) / abs(k)
        if d < dist:
            best, dist = k, d
    return best if dist <= rel else None


def _round_to(value: float, within: float) -> float:
    """The shortest decimal (fewest significant digits, 1 to 12) within ``within`` of ``value``."""
    if value == 0 or not math.isfinite(value):
        return value
    for digits in range(1, 13):
        v = float(f"{value:.{digits}g}")
        if abs(v - value) <= within:
            return v
    return float(f"{value:.12g}")


def solve_eps(
    case, inputs, sem: Semantics, output: str, step: int, obs: np.ndarray, tol=None
) -> tuple[float | None, float, str]:
    """The eps that makes the reference (under ``sem``) reproduce ``obs``'s per-channel scale.

    From the normalized output: per channel, the least-squares factor ``r`` between
    the backend's ``x_hat`` (``(y - beta) / gamma``) and the reference's gives the
    backend's ``inv_std = r * inv_std_ref``; eps = 1/inv_std² - var.  Returns
    (eps or None, its resolution, how it was found).
    """
    none = (None, math.inf, "")
    if output not in ("y", "x_hat", "inv_std", "eval_y") or sem.eps_placement != "inside_sqrt":
        return none
    if case.mode == "train" and sem.train_statistics != "batch" and output != "eval_y":
        return none
    if output == "eval_y" and (sem.channel_axis_swapped or case.mode != "train"):
        return none
    eps0 = sem.eps_used(case.eps)
    if output == "eval_y":
        rm_steps = CACHE.get(case, inputs, sem, "running_mean")
        rv_steps = CACHE.get(case, inputs, sem, "running_var")
        if rm_steps is None or rv_steps is None:
            return none
        x_last = np.asarray(inputs.x[-1], np.float64)
        shape = [1] * x_last.ndim
        shape[case.channel_axis % x_last.ndim] = -1
        with np.errstate(all="ignore"):
            inv_ref = 1.0 / np.sqrt(rv_steps[-1] + eps0)
        xr_fn = lambda: (x_last - rm_steps[-1].reshape(shape)) * inv_ref.reshape(shape)  # noqa: E731
    else:
        inv_ref_steps = CACHE.get(case, inputs, sem, "inv_std")
        if inv_ref_steps is None:
            return none
        inv_ref = inv_ref_steps[step - 1]

        def xr_fn():
            xr_steps = CACHE.get(case, inputs, sem, "x_hat")
            return None if xr_steps is None else xr_steps[step - 1]

    gam = None
    ax = case.channel_axis
    with np.errstate(all="ignore"):
        if output == "inv_std":
            o = as_f64(obs, inv_ref.shape)
            if o is None:
                return none
            r = o / inv_ref
            xr = None
        else:
            big = output == "x_hat" or (output == "y" and not sem.channel_axis_swapped)
            if big and np.size(obs) > SAMPLE_ABOVE and np.ndim(obs) >= 2:
                # a large output: the per-channel scale from a sample of its columns (exact x̂ there)
                cols = sample_columns(np.shape(obs), ax)
                xr = sample(case, inputs, sem, "x_hat", step, cols)
                obs = columns(np.asarray(obs), ax % np.ndim(obs), cols)
                ax = 0
            else:
                xr = xr_fn()
            if xr is None:
                return none
            o = as_f64(obs, xr.shape)
            if o is None:
                return none
            if output in ("y", "eval_y") and case.has_affine and sem.affine == "gamma_beta":
                g = np.asarray(inputs.gamma, np.float64)
                b = np.asarray(inputs.beta, np.float64)
                shape = [1] * o.ndim
                shape[ax % o.ndim] = -1
                gam = g
                o = (o - b.reshape(shape)) / np.where(g == 0, np.nan, g).reshape(shape)
            axes = tuple(a for a in range(o.ndim) if a != ax % o.ndim)  # per-channel sums in the own layout
            fin = np.isfinite(o) & np.isfinite(xr)
            num = np.where(fin, o * xr, 0.0).sum(axis=axes)
            den = np.where(fin, xr * xr, 0.0).sum(axis=axes)
            r = np.where(den > 0, num / den, np.nan)
        var_used = 1.0 / (inv_ref * inv_ref) - eps0
        eps_c = 1.0 / (r * inv_ref) ** 2 - var_used
    ok = np.isfinite(eps_c)
    if not ok.any():
        return none
    est = float(np.median(eps_c[ok]))
    if not est > 0:
        return none
    spread = float(np.max(np.abs(eps_c[ok] - est)))
    if spread > 0.05 * est:
        return none
    if xr is not None and output in ("y", "x_hat") and tol is not None and np.size(xr) <= _REFINE_MAX:
        est = _refine_eps(case, inputs, sem, output, obs, xr, var_used, est, max(spread, 1e-3 * est), tol, ax)
    resolution = max(spread, _eps_resolution(case, output, obs, xr, gam, var_used, est, inv_ref, tol, ax))
    how = f"solved eps = {est:.6g} ± {resolution:.2g} from the per-channel scale of the normalized output"
    if eps_c.size > 1:
        how += f" ({eps_c.size} channels agree within {100 * spread / est:.2g}%)"
    return est, resolution, how


#: outputs up to this many elements get the eps solve refined against the tolerance (cheap there)
_REFINE_MAX = 1 << 17


def _refine_eps(case, inputs, sem, output, obs, xr, var_used, est, width, tol, ax) -> float:
    """The eps within ``est ± 3·width`` whose output is closest to ``obs`` in tolerance units (worst element).

    The reference's x̂ scales exactly with inv_std: x̂(eps) = x̂ · √(var + eps₀) / √(var + eps), so each
    trial costs one elementwise pass and no reference run.  Needed where the per-channel least-squares
    solve is noisy (float16/bfloat16 outputs)."""
    xv = channel_view(np.asarray(xr, np.float64), ax)
    ov = channel_view(np.asarray(obs, np.float64), ax)
    C = xv.shape[0]
    g = np.ones(C)
    b = np.zeros(C)
    if output == "y" and case.has_affine and sem.affine in ("gamma_beta", "gamma_only", "beta_only"):
        if inputs.gamma is not None and sem.affine != "beta_only":
            g = np.asarray(inputs.gamma, np.float64)
        if inputs.beta is not None and sem.affine != "gamma_only":
            b = np.asarray(inputs.beta, np.float64)
    v = np.asarray(var_used, np.float64).reshape(-1)
    if v.shape[0] != C:
        return est
    trials = est + np.linspace(-3 * width, 3 * width, 121)
    trials = trials[trials > 0]
    best, best_score = est, math.inf
    with np.errstate(all="ignore"):
        inv0 = 1.0 / np.sqrt(v + sem.eps_used(case.eps))
        lim = tol.atol + tol.rtol * np.abs(ov)
        for e in trials:
            k = (1.0 / np.sqrt(v + e)) / inv0
            alt = (g * k)[:, None] * xv + b[:, None]
            score = float(np.nanmax(np.abs(ov - alt) / lim))
            if score < best_score:
                best, best_score = float(e), score
    return best


def _eps_resolution(case, output, obs, xr, gamma, var_used, eps, inv_ref, tol, ax) -> float:
    """How far eps can move before some element of the output moves by its whole tolerance:
    min over elements of tol_i / |d out_i / d eps|, with d x̂/d eps = −x̂ / (2(var + eps))."""
    if tol is None:
        return 0.0
    with np.errstate(all="ignore"):
        if xr is None:  # inv_std: d inv / d eps = −inv / (2(var + eps))
            o = np.abs(np.asarray(obs, np.float64).reshape(-1))
            lim = tol.atol + tol.rtol * o
            slope = np.abs(inv_ref) / (2 * (var_used + eps))
        else:  # in the array's own layout, per-channel factors broadcast (no channel-major copies)
            xa = np.asarray(xr, np.float64)
            ax = ax % xa.ndim
            shape = [1] * xa.ndim
            shape[ax] = -1
            g = np.ones(xa.shape[ax]) if gamma is None else np.abs(np.asarray(gamma, np.float64))
            lim = tol.atol + tol.rtol * np.abs(np.asarray(obs, np.float64))
            slope = (g / (2 * (np.asarray(var_used) + eps))).reshape(shape) * np.abs(xa)
        per = np.where(slope > 0, lim / slope, np.inf)
        per = per[np.isfinite(per)]
    return float(per.min()) if per.size else 0.0


#: for the last (case JSON, inputs object): _batch_stats' answers {(semantics, step): (mean, var)} and _grid_state's
#: {("grid", semantics, output, channels[, cell]): (steps, state)}
_STATS: dict = {"owner": None, "answers": {}}
_STATS_LOCK = threading.Lock()


def _answers_for(case, inputs) -> dict:
    """:data:`_STATS`' answers for ``case`` on ``inputs`` (emptied when another case or inputs object asks;
    call with :data:`_STATS_LOCK` held)."""
    from normconf.explain.refcache import _case_key

    ck = _case_key(case)
    cur = _STATS["owner"]
    if cur is None or cur[0] != ck or cur[1] is not inputs:
        _STATS["owner"], _STATS["answers"] = (ck, inputs), {}
    return _STATS["answers"]


def _batch_stats(case, inputs, sem: Semantics, k: int):
    """Per-channel (mean, var used for the running update) of step ``k`` under ``sem`` (memoized per case:
    the momentum solve of step ``k`` needs every step up to ``k``); read-only."""
    with _STATS_LOCK:
        answers = _answers_for(case, inputs)
        hit = answers.get((sem, k))
    if hit is None:
        hit = answers[(sem, k)] = _batch_stats_of(case, inputs, sem, k)
    return hit


def _batch_stats_of(case, inputs, sem: Semantics, k: int):
    from normconf.inputs import np_dtype
    from normconf.references.batchnorm import memo_batch_statistics

    x = inputs.x[k - 1]
    ax = case.channel_axis
    if sem.channel_axis_swapped:
        ax = -1 if ax % x.ndim == 1 else 1
    with np.errstate(all="ignore"):
        mean, vb, vu, _m = memo_batch_statistics(x, ax, sem, np_dtype(case.dtype))  # the reference's own
    return mean, (vb if sem.running_variance == "biased" else vu)


def _simulate(
    init: np.ndarray, stats: list[np.ndarray], w: np.ndarray, start: tuple[int, np.ndarray] | None = None
) -> np.ndarray:
    """Running statistic after len(stats) steps for every batch weight in ``w``: shape (len(w), C), each step
    ``(1 − w)·r + w·s`` as the reference computes it.  ``start``: ``(k, r)``, the state after the first ``k``
    of ``stats`` for the same ``w`` (an earlier call's answer, not changed): the steps after it only, the same
    bits."""
    wc = w[:, None]
    keep = 1.0 - wc
    first, r = (0, np.broadcast_to(init, (w.size, init.size))) if start is None else start
    r = r.copy()
    t = np.empty_like(r)
    for s in stats[first:]:
        np.multiply(keep, r, out=r)
        np.multiply(wc, s[None, :], out=t)
        np.add(r, t, out=r)
    return r


def _grid_state(case, inputs, key: tuple, steps: int, run: Callable[[tuple[int, np.ndarray] | None], np.ndarray]):
    """``run(start)``'s state after ``steps`` steps on one grid of weights, continued from the latest state
    kept for ``key`` (semantics, output, the channels solved; for the fine grid also its coarse cell) at or
    before ``steps`` (the momentum solve of step k+1 needs the grid's state after step k, which the solve of
    step k computed); kept with the batch statistics of the case (:func:`_batch_stats`)."""
    with _STATS_LOCK:
        answers = _answers_for(case, inputs)
        kept = answers.get(("grid", *key))
    start = kept if kept is not None and kept[0] <= steps else None
    r = run(start)
    r.flags.writeable = False
    with _STATS_LOCK:
        if _STATS["answers"] is answers:
            answers[("grid", *key)] = (steps, r)
    return r


def solve_momentum(
    case, inputs, sem: Semantics, output: str, step: int, obs: np.ndarray, tol=None
) -> tuple[float | None, float, str]:
    """The constant batch weight w that reproduces ``obs`` (running_mean/var after ``step``), with its resolution.

    The loss Σ_c (r_c(w) − o_c)² is a polynomial in w; it is evaluated on a grid of 1001
    weights in [0, 1] and then on 1001 weights around the best cell, all at once (vectorized).
    """
    none = (None, math.inf, "")
    if output not in ("running_mean", "running_var") or case.mode != "train":
        return none
    C = case.channels
    o = as_f64(obs, (C,))
    if o is None or not np.isfinite(o).any():
        return none
    init = np.asarray(inputs.running_mean if output == "running_mean" else inputs.running_var, np.float64).copy()
    if sem.initial_running == "zeros":
        init[:] = 0.0
    stats = []
    for k in range(1, step + 1):
        mean, var_run = _batch_stats(case, inputs, sem, k)
        stats.append(mean if output == "running_mean" else var_run)
    if any(np.shape(s) != init.shape for s in stats):  # e.g. another channel axis: no per-channel solve
        return none
    fin = np.isfinite(o) & np.isfinite(init) & np.all([np.isfinite(s) for s in stats], axis=0)
    if not fin.any():
        return none
    o, init, stats = o[fin], init[fin], [s[fin] for s in stats]
    with np.errstate(all="ignore"):
        if step == 1:
            d = stats[0] - init
            den = float((d**2).sum())
            if den <= 0:
                return none
            w = float(((o - init) * d).sum() / den)
            slope = np.abs(d)
        else:
            grid = np.linspace(0.0, 1.0, 1001)
            key = (sem, output, fin.tobytes())
            coarse = _grid_state(case, inputs, key, step, lambda start: _simulate(init, stats, grid, start))
            loss = ((coarse - o) ** 2).sum(axis=1)
            i = int(np.nanargmin(loss))
            fine = np.linspace(grid[max(i - 2, 0)], grid[min(i + 2, grid.size - 1)], 1001)
            # the fine grid around the best cell: the same grid (and state) as the previous step's where that
            # cell is the same
            refined = _grid_state(case, inputs, (*key, i), step, lambda start: _simulate(init, stats, fine, start))
            loss = ((refined - o) ** 2).sum(axis=1)
            w = float(fine[int(np.nanargmin(loss))])
            h = 1e-6
            rr = _simulate(init, stats, np.array([w - h, w + h]))
            slope = np.abs(rr[1] - rr[0]) / (2 * h)
    if not (math.isfinite(w) and -1e-6 <= w <= 1 + 1e-6):
        return none
    w = min(max(w, 0.0), 1.0)
    if tol is not None:
        lim = tol.atol + tol.rtol * np.abs(o)
        with np.errstate(all="ignore"):
            per = np.where(slope > 0, lim / slope, np.inf)
        resolution = float(np.min(per)) if per.size else math.inf
    else:
        resolution = 1e-6
    return w, resolution, f"solved batch weight w = {w:.6g} ± {resolution:.2g} from {output} after step {step}"


def solved_alternatives(
    case, inputs, sem: Semantics, output: str, step: int, obs: np.ndarray, tol=None
) -> list[tuple[Semantics, str, str]]:
    """Alternatives with a numeric knob solved from ``obs`` (semantics, kind, note), on top of ``sem``.

    kind ``known_value``: a documented default within the solve's resolution (or the case's eps or
    momentum held in float32); ``solved_value``: the solved number itself.
    """
    out: list[tuple[Semantics, str, str]] = []
    eps, res, how = solve_eps(case, inputs, sem, output, step, obs, tol)
    if eps is not None:
        cur = sem.eps_used(case.eps)
        # the case's eps held in float32 (an ONNX float attribute in a float64 model): like the momentum below
        with np.errstate(over="ignore"):  # an eps beyond float32's range has no float32 twin
            e32 = float(np.float32(case.eps))
        if (
            math.isfinite(e32)
            and e32 != cur
            and abs(eps - e32) < abs(eps - cur)
            and abs(eps - e32) <= max(0.5 * abs(e32 - cur), res)
        ):
            out.append(
                (
                    sem.replace(eps_override=e32),
                    "known_value",
                    f"{how}; {e32!r} = float32({case.eps:g}): the eps held in float32",
                )
            )
        near = _known_near(eps, KNOWN_EPS, 0.25)
        if near is not None and near > 0 and abs(near - cur) > 1e-12 * max(cur, 1e-300) and abs(eps - near) <= res:
            out.append((sem.replace(eps_override=near), "known_value", f"{how}; {near:g} is {KNOWN_EPS[near]}"))
        if near is None or abs(eps - near) > res:  # the solve tells the value apart from the default
            solved = _round_to(eps, res / 20)  # rounding moves the output by at most 1/20 of its tolerance
            if abs(solved - cur) > res:
                out.append((sem.replace(eps_override=solved), "solved_value", how))
                if solved > cur:  # the same numbers as a clamp of the case's eps to a minimum
                    out.append((sem.replace(eps_minimum=solved), "solved_value", how))
    w, res, how = solve_momentum(case, inputs, sem, output, step, obs, tol)
    if w is None:
        return out
    cw = case.momentum_weight
    base = sem.replace(momentum_direction="as_given", running_average="exponential")
    if cw is not None:
        # the case's momentum held in float32 (either direction): 0.1 -> float32(0.1), or 1 - float32(0.9)
        for w32, form in (
            (float(np.float32(cw)), f"float32({cw:g})"),
            (1.0 - float(np.float32(1.0 - cw)), f"1 − float32({1 - cw:g})"),
        ):
            if w32 != cw and abs(w - w32) < abs(w - cw) and abs(w - w32) <= max(0.5 * abs(w32 - cw), res):
                out.append(
                    (
                        base.replace(momentum_override=w32),
                        "known_value",
                        f"{how}; {w32!r} = {form}: the momentum held in float32",
                    )
                )
    near = _known_near(w, KNOWN_BATCH_WEIGHTS, 0.05)
    if near is not None and (cw is None or abs(near - cw) > 1e-12) and abs(w - near) <= res:
        out.append(
            (base.replace(momentum_override=near), "known_value", f"{how}; {near:g} is {KNOWN_BATCH_WEIGHTS[near]}")
        )
    if near is None or abs(w - near) > res:  # the solve tells the value apart from the default
        solved = _round_to(w, res / 20)  # rounding moves the output by at most 1/20 of its tolerance
        if cw is None or abs(solved - cw) > max(res, 1e-12):
            out.append((base.replace(momentum_override=solved), "solved_value", how))
    return out
