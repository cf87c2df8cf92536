"""The ``suite`` section: ``normconf run`` on the BatchNorm case library, serial and ``-j 2``.

The BatchNorm library: every ``cases/*.yaml`` except ``layer_norm*.yaml``, plus ``cases/found/``.
Each run is a child process; wall time is the whole command's, CPU time is the process tree's
(``RUSAGE_CHILDREN`` delta here: the harness process and every worker it waited for), split into
the harness process's own and its workers' (measured inside it).  A *pair* is one (case, backend).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, children_cpu, loadavg

#: runs ``normconf`` in a child process and reports its own CPU time and its workers' (RUSAGE_CHILDREN)
_DRIVER = """
import json, resource, sys
from normconf.cli import main
rc = main(sys.argv[2:])
s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": rc, "harness_cpu_s": s.ru_utime + s.ru_stime, "workers_cpu_s": c.ru_utime + c.ru_stime}, f)
sys.exit(rc)
"""


def bn_library() -> list[str]:
    """The BatchNorm case library's paths (relative to the repository root)."""
    files = sorted(p for p in (ROOT / "cases").glob("*.yaml") if not p.name.startswith("layer_norm"))
    return [str(p.relative_to(ROOT)) for p in files] + ["cases/found"]


def case_ids(paths: list[str]) -> list[str]:
    from normconf.cases import load_paths

    return sorted(lc.id for lc in load_paths([str(ROOT / p) for p in paths]))


def run_suite(paths: list[str], jobs: int, out_dir: Path, extra: list[str]) -> dict:
    """One ``normconf run paths -j jobs``: wall and CPU seconds, and its number of pairs."""
    import pandas as pd

    usage = out_dir.with_suffix(".usage.json")
    cmd = [sys.executable, "-c", _DRIVER, str(usage), "run", *paths, "-o", str(out_dir), "-j", str(jobs), *extra]
    c0, t = children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt, cpu = time.perf_counter() - t, children_cpu() - c0
    if p.returncode not in (0, 1):
        raise RuntimeError(f"normconf run -j {jobs} exited {p.returncode}:\n{p.stdout[-2000:]}")
    u = json.loads(usage.read_text())
    df = pd.read_csv(out_dir / "results.csv", usecols=["case", "backend"], keep_default_na=False)
    timing = json.loads((out_dir / "results.json").read_text()).get("meta", {}).get("timing", {})
    return {
        "jobs": jobs,
        "wall_s": round(dt, 3),
        "cpu_s": round(cpu, 3),
        "harness_cpu_s": round(u["harness_cpu_s"], 3),
        "workers_cpu_s": round(u["workers_cpu_s"], 3),
        "pairs": int(len(df.drop_duplicates())),
        "rows": int(len(df)),
        "rc": p.returncode,
        # the workers' CPU by worker group, measured inside the run (results.json meta.timing)
        "group_cpu_s": dict(timing.get("worker_cpu_seconds", {})),
        # the part of it inside the backends' calls (normconf.worker.BackendClock), by worker group
        "group_backend_cpu_s": dict(timing.get("backend_cpu_seconds", {})),
    }


def same_results(a: Path, b: Path) -> tuple[bool, str]:
    """Whether two runs' results.csv are equal (timing columns aside), and what differs."""
    import pandas as pd

    from normconf.results import TIMING_COLUMNS

    da = pd.read_csv(a / "results.csv", keep_default_na=False).drop(columns=TIMING_COLUMNS)
    db = pd.read_csv(b / "results.csv", keep_default_na=False).drop(columns=TIMING_COLUMNS)
    if da.shape != db.shape:
        return False, f"shapes differ: {da.shape} vs {db.shape}"
    if not da.equals(db):
        ne = da != db
        rows = ne.any(axis=1)
        examples = []
        for i in list(rows[rows].index)[:6]:
            cols = [c for c in da.columns if ne.at[i, c]]
            examples.append(
                f"{da.at[i, 'case']} [{da.at[i, 'backend']}] {da.at[i, 'output']}: "
                + "; ".join(f"{c}: {str(da.at[i, c])[:80]!r} vs {str(db.at[i, c])[:80]!r}" for c in cols[:3])
            )
        return False, f"{int(rows.sum())} rows differ: " + " | ".join(examples)
    return True, f"{len(da)} rows identical"


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def bench_suite(paths: list[str], repeat: int, extra: list[str]) -> dict:
    """Serial vs ``-j 2`` (interleaved, so drifting load hits both alike), medians of ``repeat``."""
    tmp = Path(tempfile.mkdtemp(prefix="normconf-bench-"))
    try:
        serial, par = [], []
        for i in range(repeat):
            serial.append(run_suite(paths, 1, tmp / f"j1_{i}", extra))
            par.append(run_suite(paths, 2, tmp / f"j2_{i}", extra))
        same, detail = same_results(tmp / "j1_0", tmp / "j2_0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"paths": paths, "extra_args": extra, "cpu_count": os.cpu_count(), "pairs": par[0]["pairs"]}
    for name, runs in (("serial", serial), ("j2", par)):
        for key in ("wall_s", "cpu_s", "harness_cpu_s", "workers_cpu_s"):
            out[f"{name}_{key}"] = _median(runs, key)
    for key in ("group_cpu_s", "group_backend_cpu_s"):
        groups = sorted({g for r in par for g in r[key]})
        out[f"j2_{key}"] = {g: round(statistics.median(r[key].get(g, 0.0) for r in par), 3) for g in groups}
    out["j2_backend_cpu_s"] = round(sum(out["j2_group_backend_cpu_s"].values()), 3)
    out["speedup"] = round(out["serial_wall_s"] / out["j2_wall_s"], 2)
    # what 2 idle cores could give at best: the -j 2 run's CPU spread over 2 cores, but never
    # faster than its harness process alone (its threads share one GIL)
    out["speedup_cpu_bound"] = round(out["serial_cpu_s"] / max(out["j2_cpu_s"] / 2, out["j2_harness_cpu_s"]), 2)
    out["results_identical"] = same
    out["detail"] = detail
    out["loadavg"] = loadavg()
    out["runs"] = {"serial": serial, "j2": par}
    return out


def bench_fractions(paths: list[str], extra: list[str], full_j2: dict | None) -> list[dict]:
    """``-j 2`` on 25 / 50 / 100 % of the cases (every 4th / every 2nd / every case id, sorted);
    ``full_j2``: the 100 % run already measured (the suite section's), else it is run here."""
    ids = case_ids(paths)
    tmp = Path(tempfile.mkdtemp(prefix="normconf-bench-frac-"))
    out = []
    try:
        for pct, step in ((25, 4), (50, 2), (100, 1)):
            sub = ids[::step]
            if step == 1 and full_j2 is not None:
                r, reused = dict(full_j2), True
            else:
                sel = [] if step == 1 else ["--case", ",".join(sub)]
                r, reused = run_suite(paths, 2, tmp / f"frac{pct}", extra + sel), False
            r.update(
                percent=pct,
                cases=len(sub),
                reused_suite_run=reused,
                wall_per_pair_ms=round(1e3 * r["wall_s"] / r["pairs"], 3),
                cpu_per_pair_ms=round(1e3 * r["cpu_s"] / r["pairs"], 3),
            )
            out.append(r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
