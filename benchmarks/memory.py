"""The ``memory`` section: peak memory of one large case on one backend, each in a fresh process.

Measured around one ``Runner.run_pair`` (after a tiny case imported the framework), as multiples
of the input's bytes: this (harness) process's ``tracemalloc`` peak and peak-RSS growth, and the
worker's peak-RSS growth (VmHWM after ``clear_refs`` reset it to the current RSS).  Without an
explanation (the case passes) and with one (torch: ``normalize_variance: unbiased`` makes ``y``
mismatch, and the explanation search runs: in the worker, where the outputs are judged).
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, make_case, read_hwm, read_rss, reset_hwm, worker_pids


def memory_probe(shape: list[int], backend: str, explain: bool) -> dict:
    """Runs in the fresh process (``run.py --memory-probe``)."""
    import tracemalloc

    from normconf.runner import Runner

    # torch: biased variance to normalize, unbiased for running_var.  Asking for exactly that passes;
    # asking for the unbiased one to normalize makes y (the full-size output) mismatch -> explanation search
    kw = {"running_variance": "unbiased", "normalize_variance": "unbiased" if explain else "biased"}
    lc = make_case(shape, seed=7, case_id="bench_memory", **kw)
    with Runner() as runner:
        runner.run_pair(make_case([2, 2, 2, 2], case_id="warm"), backend)  # imports out of the way
        pids = worker_pids(runner)
        wpid = pids[0] if len(pids) == 1 else None
        gc.collect()
        reset, wreset = reset_hwm(), wpid is not None and reset_hwm(wpid)
        base, wbase = read_rss(), read_rss(wpid) if wpid else None
        tracemalloc.start()
        t = time.perf_counter()
        rows = runner.run_pair(lc, backend)
        dt = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        hwm, whwm = read_hwm(), read_hwm(wpid) if wpid else None
    nbytes = 4 * math.prod(shape)
    return {
        "backend": backend,
        "explain": explain,
        "shape": shape,
        "input_bytes": nbytes,
        "seconds": round(dt, 2),
        "outcomes": sorted({r.outcome for r in rows}),
        "explanations": sorted({r.explanation for r in rows if r.explanation}),
        "worker_pid": wpid if wpid is not None else "n/a",
        "harness_traced_peak_x": round(peak / nbytes, 2),
        "harness_rss_growth_x": round((hwm - base) / nbytes, 2) if reset and hwm and base else None,
        "worker_rss_growth_x": round((whwm - wbase) / nbytes, 2) if wreset and whwm and wbase else None,
    }


def bench_memory(shape: list[int], backend: str) -> list[dict]:
    out = []
    for explain in (False, True):
        arg = json.dumps({"shape": shape, "backend": backend, "explain": explain})
        cmd = [sys.executable, str(Path(__file__).with_name("run.py")), "--memory-probe", arg]
        p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            out.append({"backend": backend, "explain": explain, "error": p.stderr[-1500:]})
            continue
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return out
