"""The ``floor`` section: what the suite's frameworks cost without normconf around them.

For each worker group of the suite's backends, one bare process with that group's environment
(the runner's: thread counts, malloc settings, the JAX compilation cache, the group's
``worker_env``; :class:`normconf.worker_handle.WorkerHandle`) runs every backend of the group on every
case of the suite, through its adapter's ``run_case`` and nothing else: no reference, no
comparison, no explanation, no worker protocol, no reports.  What it costs (CPU, the process's
own, from its start to its end, as a worker's) is the *floor*: interpreter start, the frameworks'
imports, their per-case work, and the adapters' translation of a case into a framework call (which
any harness must do).  The process also loads the cases and draws their inputs, which normconf does
for every pair; that part is measured separately and counted as normconf's, not the floor's.

Set beside the suite section's ``-j 2`` run (its CPU per worker group, ``meta.timing`` of its
``results.json``), the difference is what normconf itself adds: the inputs, the reference, the
judging and the explanation search, the workers' own start-up and protocol, the harness process and
the reports.  The same split is measured inside that run too (``meta.timing.backend_cpu_seconds``:
each worker's CPU inside the adapters' calls, :class:`normconf.worker.BackendClock`), in the same
minutes as the rest of the run; the floor, minutes apart, is the independent check (this machine's
speed moves by ±20 % between minutes: docs/performance.md).  A context for the suite target
(issue 18), not a target of its own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, children_cpu, loadavg

#: one worker group's backends over the cases: CPU by part, written as JSON to argv[1]
_DRIVER = r"""
import json, os, sys, time
import numpy                           # every framework imports it
t_numpy = time.process_time()          # the interpreter's start-up and numpy's import
out, backends, paths = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
from normconf.cases import load_paths
lcs = load_paths(paths)
t_cases = time.process_time()
from normconf.adapters import get_adapter
from normconf.adapters.base import Unsupported
from normconf.ops import spec_for
from normconf.worker import _read_only
adapters, cpu = {}, {"imports": 0.0, "inputs": 0.0, "runs": 0.0}
for b in backends:
    t = time.process_time()
    a = get_adapter(b)
    if a.available() is None:
        a.version()                    # what imports the framework, as in a worker
        adapters[b] = a
    cpu["imports"] += time.process_time() - t
wall = {}
counts = {"cases": 0, "runs": 0, "unsupported": 0, "errors": 0}
for lc in lcs:
    case = lc.case
    todo = [(b, a) for b, a in adapters.items() if not a.unsupported(case)]
    counts["unsupported"] += len(adapters) - len(todo)
    if not todo:
        continue
    t = time.process_time()
    inputs = _read_only(spec_for(case).generate(case))  # as a worker hands them out
    cpu["inputs"] += time.process_time() - t
    counts["cases"] += 1
    t = time.process_time()
    for b, a in todo:
        try:
            tb = time.perf_counter()
            a.run_case(case, inputs)
            wall[b] = wall.get(b, 0.0) + time.perf_counter() - tb  # as a row's `seconds`
            counts["runs"] += 1
        except Unsupported:
            counts["unsupported"] += 1
        except Exception:
            counts["errors"] += 1
    cpu["runs"] += time.process_time() - t
cpu["process_start"] = t_numpy
cpu["cases"] = t_cases - t_numpy
with open(out, "w") as f:
    json.dump({"cpu": cpu, "run_wall": wall, "counts": counts, "backends": sorted(adapters)}, f)
sys.stdout.flush()
os._exit(0)                            # as a worker ends: no interpreter teardown
"""


def suite_backends(extra: list[str]) -> list[str]:
    """The backends the suite runs: ``-b a,b`` in its extra arguments, else every built-in one."""
    from normconf.adapters import all_adapters

    for i, arg in enumerate(extra):
        if arg in ("-b", "--backend") and i + 1 < len(extra):
            return [b.strip() for b in extra[i + 1].split(",") if b.strip()]
    return sorted(all_adapters())


def group_env(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """The environment a worker of a group with ``env`` starts with, and its token: the scratch folder
    it names (its ``TMPDIR``) is created here, and the caller removes it (``isolation.remove_scratch``)."""
    from normconf import isolation
    from normconf.worker_env import worker_environment

    token = isolation.new_token()
    return isolation.worker_env(worker_environment(env), token), token


def run_group(group: str, env: dict[str, str], backends: list[str], paths: list[str]) -> dict:
    """One bare process for ``group``: its parts' CPU, its whole CPU (``RUSAGE_CHILDREN``) and wall."""
    from normconf import isolation

    penv, token = group_env(env)
    with tempfile.TemporaryDirectory(prefix="normconf-floor-") as tmp:
        out = Path(tmp) / "floor.json"
        cmd = [sys.executable, "-P", "-c", _DRIVER, str(out), ",".join(backends), *(str(ROOT / p) for p in paths)]
        c0, t = children_cpu(), time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=penv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        finally:
            isolation.remove_scratch(token)
        wall, total = time.perf_counter() - t, children_cpu() - c0
        if p.returncode != 0 or not out.exists():
            return {"group": group, "backends": backends, "error": f"exit {p.returncode}: {p.stdout[-600:]}"}
        r = json.loads(out.read_text())
    cpu = r["cpu"]
    normconf = cpu["cases"] + cpu["inputs"]
    return {
        "group": group,
        "backends": r["backends"],
        **r["counts"],
        **{f"{k}_cpu_s": round(v, 3) for k, v in cpu.items()},
        "run_wall_s": {b: round(v, 3) for b, v in sorted(r["run_wall"].items())},
        "process_cpu_s": round(total, 3),
        "wall_s": round(wall, 3),
        # the process's CPU less normconf's own part in it (case loading, inputs): start, imports, runs, exit
        "floor_cpu_s": round(total - normconf, 3),
    }


def suite_groups(extra: list[str]) -> dict[str, tuple[dict[str, str], list[str]]]:
    """``{worker group: (its environment, the suite's backends in it)}``, as the runner groups them."""
    from normconf.adapters import all_adapters
    from normconf.worker_env import worker_groups

    table = worker_groups(all_adapters())
    groups: dict[str, tuple[dict[str, str], list[str]]] = {}
    for b in suite_backends(extra):
        if b in table:
            g, env = table[b]
            groups.setdefault(g, (env, []))[1].append(b)
    return dict(sorted(groups.items()))


def bench_floor(paths: list[str], extra: list[str], suite_res: dict | None, repeat: int = 1) -> dict:
    """Every group of the suite's backends, one after the other, ``repeat`` rounds (medians), and the
    comparison with the suite's ``-j 2`` run when the suite section ran (its medians)."""
    groups = suite_groups(extra)
    rounds = [[run_group(g, env, bs, paths) for g, (env, bs) in groups.items()] for _ in range(max(1, repeat))]
    rows = []
    for i, g in enumerate(groups):
        runs = [rd[i] for rd in rounds]
        ok = [r for r in runs if "error" not in r]
        if len(ok) < len(runs):
            rows.append(next(r for r in runs if "error" in r))
            continue
        row = dict(ok[0])
        for k in [k for k in row if k.endswith("_s") and isinstance(row[k], float)]:
            row[k] = round(statistics.median(r[k] for r in ok), 3)
        row["floor_cpu_s_rounds"] = [r["floor_cpu_s"] for r in ok]
        rows.append(row)
    ok = [r for r in rows if "error" not in r]
    floor = round(sum(r["floor_cpu_s"] for r in ok), 3)
    out: dict = {
        "paths": paths,
        "extra_args": extra,
        "rounds": len(rounds),
        "groups": rows,
        "floor_cpu_s": floor,
        "complete": len(ok) == len(rows),
        "loadavg": loadavg(),
    }
    if suite_res and "j2_group_cpu_s" in suite_res:
        by_group, inside = suite_res["j2_group_cpu_s"], suite_res.get("j2_group_backend_cpu_s", {})
        for r in ok:
            s = by_group.get(r["group"])
            r["suite_j2_worker_cpu_s"] = s
            r["suite_j2_backend_cpu_s"] = inside.get(r["group"])
            r["normconf_share_cpu_s"] = None if s is None else round(s - r["floor_cpu_s"], 3)
        cpu, pairs, backends = suite_res["j2_cpu_s"], suite_res["pairs"], suite_res.get("j2_backend_cpu_s")
        in_run = None if backends is None else cpu - backends
        out.update(
            suite_j2_cpu_s=cpu,
            suite_j2_harness_cpu_s=suite_res["j2_harness_cpu_s"],
            suite_pairs=pairs,
            normconf_share_cpu_s=round(cpu - floor, 3),
            normconf_ms_per_pair=round(1e3 * (cpu - floor) / max(1, pairs), 3),
            # the same split measured inside the suite's own run: its CPU less the backends' calls in it
            suite_j2_backend_cpu_s=backends,
            normconf_share_in_run_cpu_s=None if in_run is None else round(in_run, 3),
            normconf_ms_per_pair_in_run=None if in_run is None else round(1e3 * in_run / max(1, pairs), 3),
        )
    return out
