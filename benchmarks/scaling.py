"""The ``scaling`` section: cost against size, which must grow linearly.

(a) ``Runner.run_pair`` on BatchNorm train cases of 10^k float32 input elements (numpy, torch):
each size in a fresh Runner (a tiny case first: imports out of the way), then one *cold* run
(inputs generated and reference computed in the worker) and warm runs; CPU = this process + the
worker.  Peak memory over the cold and warm runs: this process's peak-RSS growth and the worker's
peak RSS (VmHWM, absolute and growth), both after ``clear_refs`` reset them to the current RSS;
as multiples of the input bytes.  Linearity: per-element cost at each size, max/min over 1e6…1e8
("linear" = within 2×; smaller sizes are dominated by fixed costs), the least-squares fit
cost = fixed + marginal × elements, and the log-log slope.  (b) the suite at 25/50/100 % of its
cases, ``-j 2`` (:func:`benchmarks.suite.bench_fractions`).  (c) ``-j 1`` vs ``-j 2``: the suite
section's numbers.
"""

from __future__ import annotations

import math
import os
import statistics
import time

from benchmarks.common import (
    cpu_now,
    make_case,
    mem_available,
    read_hwm,
    read_rss,
    reset_hwm,
    worker_pids,
)
from benchmarks.overhead import OWN_CONVENTIONS

#: N×C×H×W with exactly 10^k elements; C = 64 where 64 divides 10^k (k ≥ 6), else the largest
#: power of two that does with square H = W
SHAPES = {
    3: [5, 8, 5, 5],
    4: [25, 16, 5, 5],
    5: [5, 32, 25, 25],
    6: [25, 64, 25, 25],
    7: [10, 64, 125, 125],
    8: [100, 64, 125, 125],
}
#: memory needed per input byte before any size was measured (a float32 input, the reference's
#: float64 y and x_hat, the backend's outputs, the comparison's blocks), with margin
DEFAULT_NEED_X = 16.0
LINEAR_RANGE = (1e6, 1e8)


def _reps(n: int, repeat: int) -> int:
    """Timed warm runs at ``n`` elements: ``repeat`` up to 1e6, above it 3 (``repeat`` if fewer; a 1e8
    pair takes ~0.5 s).  Not 2: the median of two is their mean, which one slow run sets (one of six
    warm 1e8 runs on numpy took 1.46 s against 0.52-0.60 s here, 2026-12-07, with the same page
    faults and twice the user and system time: docs/performance.md, runs S and T)."""
    return repeat if n <= 1e6 else min(repeat, 3)


def _x(v: int | None, nbytes: int) -> float | None:
    return round(v / nbytes, 3) if v is not None else None


def measure_size(backend: str, k: int, repeat: int) -> dict:
    """One backend on the 10^k-element case: cold and warm wall/CPU, peak memory.

    *warm* is the steady state: one untimed pair after the cold one, then the timed ones.  The first
    pair after the cold one still pays the kernel's first touch of whatever the backend allocates
    beyond what the cold pair freed (the numpy backend's float64 reference at 1e8 elements: 2.1 s
    against 0.56 s from then on, here), which is memory the cold column already counts."""
    from normconf.runner import Runner

    shape = SHAPES[k]
    n = math.prod(shape)
    nbytes = 4 * n
    own = OWN_CONVENTIONS.get(backend, {})
    lc = make_case(shape, seed=3, case_id=f"scale_1e{k}", **own)
    with Runner() as runner:
        runner.run_pair(make_case([2, 2, 2, 2], case_id="warm", **own), backend)
        pids = worker_pids(runner)
        wpid = pids[0] if len(pids) == 1 else None
        reset, wreset = reset_hwm(), wpid is not None and reset_hwm(wpid)
        base, wbase = read_rss(), read_rss(wpid) if wpid else None
        c, t = cpu_now(pids, at="start"), time.perf_counter()
        rows = runner.run_pair(lc, backend)
        cold, cold_cpu = time.perf_counter() - t, cpu_now(pids) - c
        runner.run_pair(lc, backend)  # untimed: see the docstring
        wall, cpu = [], []
        for _ in range(_reps(n, repeat)):
            c, t = cpu_now(pids, at="start"), time.perf_counter()
            runner.run_pair(lc, backend)
            wall.append(time.perf_counter() - t)
            cpu.append(cpu_now(pids) - c)
        hwm, whwm = read_hwm(), read_hwm(wpid) if wpid else None
    w, cp = statistics.median(wall), statistics.median(cpu)
    return {
        "backend": backend,
        "elements": n,
        "shape": shape,
        "input_bytes": nbytes,
        "outcomes": sorted({r.outcome for r in rows}),
        "worker_pid": wpid if wpid is not None else "n/a",
        "cold_wall_s": round(cold, 4),
        "cold_cpu_s": round(cold_cpu, 4) if pids else None,
        "warm_wall_s": round(w, 5),
        "warm_cpu_s": round(cp, 5) if pids else None,
        "warm_runs": len(wall),
        "wall_ns_per_element": round(1e9 * w / n, 3),
        "cpu_ns_per_element": round(1e9 * cp / n, 3) if pids else None,
        "hwm_reset": {"harness": reset, "worker": wreset},
        "harness_rss_growth_x": _x(hwm - base, nbytes) if reset and hwm and base else None,
        "worker_peak_rss_mb": round(whwm / 2**20, 1) if whwm else None,
        "worker_peak_rss_x": _x(whwm, nbytes),
        "worker_rss_growth_x": _x(whwm - wbase, nbytes) if wreset and whwm and wbase else None,
        "samples": {"warm_wall_s": wall, "warm_cpu_s": cpu},
    }


def linearity(points: list[dict], key: str) -> dict:
    """Per-element cost (``key``: seconds) at each size; max/min over LINEAR_RANGE; the fit."""
    import numpy as np

    pts = [(p["elements"], p[key]) for p in points if p.get(key)]
    if len(pts) < 2:
        return {"key": key, "fit": None}
    n = np.array([p[0] for p in pts], float)
    t = np.array([p[1] for p in pts], float)
    # least squares on the per-element cost: t/n = marginal + fixed/n (each size weighs alike)
    (marginal, fixed), *_ = np.linalg.lstsq(np.stack([np.ones_like(n), 1 / n], 1), t / n, rcond=None)
    fit = fixed + marginal * n
    in_range = [(ni, ti) for ni, ti in pts if LINEAR_RANGE[0] <= ni <= LINEAR_RANGE[1]]
    per = [ti / ni for ni, ti in in_range]
    out = {
        "key": key,
        "ns_per_element": {str(int(ni)): round(1e9 * ti / ni, 3) for ni, ti in pts},
        "fixed_ms": round(1e3 * fixed, 3),
        "marginal_ns_per_element": round(1e9 * marginal, 3),
        "max_fit_error": round(float(np.max(np.abs(fit - t) / t)), 3),
        "loglog_slope": round(float(np.polyfit(np.log(n), np.log(t), 1)[0]), 3),
        "range": [int(ni) for ni, _ in in_range],
        "ratio_in_range": round(max(per) / min(per), 3) if len(per) >= 2 else None,
        "ratio_all": round(max(t / n) / min(t / n), 3),
    }
    out["linear"] = out["ratio_in_range"] <= 2.0 if out["ratio_in_range"] is not None else None
    return out


def bench_pairs(backends: list[str], exponents: list[int], repeat: int, log=print) -> dict:
    """Every size on every backend (smallest first); a size that would not fit in memory is skipped."""
    from normconf.runner import Runner

    with Runner() as r:
        known = set(r.adapters)
    points, skipped = [], []
    for backend in backends:
        if backend not in known:
            skipped.append({"backend": backend, "reason": "no such backend"})
            continue
        need_x = DEFAULT_NEED_X
        for k in exponents:
            nbytes = 4 * math.prod(SHAPES[k])
            avail = mem_available()
            if avail is not None and need_x * nbytes > avail:
                why = (
                    f"needs ~{need_x:.1f}× its {nbytes / 2**20:.1f} MiB input = {need_x * nbytes / 2**30:.2f} GiB, "
                    f"MemAvailable {avail / 2**30:.2f} GiB"
                )
                log(f"scaling: skipped {backend} 1e{k}: {why}")
                skipped.append({"backend": backend, "elements": 10**k, "reason": why})
                continue
            p = measure_size(backend, k, repeat)
            points.append(p)
            grew = (p["harness_rss_growth_x"] or 0) + (p["worker_rss_growth_x"] or 0)
            if 10**k >= 1e6 and grew:  # the next size's need, from this one's measured peak
                need_x = max(1.5 * grew, 4.0)
    fits = {}
    for backend in backends:
        mine = [p for p in points if p["backend"] == backend]
        if mine:
            fits[backend] = {"cpu": linearity(mine, "warm_cpu_s"), "wall": linearity(mine, "warm_wall_s")}
    return {"points": points, "skipped": skipped, "linearity": fits, "cpu_count": os.cpu_count()}
