"""normconf performance benchmark: one command, one table, ``benchmarks/results.json``.

Usage::

    make bench                                   # = .venv/bin/python benchmarks/run.py
    .venv/bin/python benchmarks/run.py --quick   # tiny shapes, few repeats (the smoke test runs this)
    .venv/bin/python benchmarks/run.py --only overhead,reference --repeat 9

Measured side by side in one run (every time is the median of ``--repeat`` runs;
the JSON keeps every sample):

``overhead``
    per backend (numpy, torch, ort, cpp when available) on a large case
    (32×64×56×56 float32, train) and a small one (8×4×4×4): the framework called
    directly on the same arrays (:mod:`benchmarks.direct`) vs ``Runner.run_pair``
    (worker round trip, adapter, comparison and result rows).  *warm*: the
    per-case inputs and reference already computed (what every backend but the
    first sees in a run: they are computed once per case and shared); *cold*:
    a new seed every time, so inputs are generated in both processes and the
    reference is computed.  Breakdown of the warm time: adapter (inside the
    worker), transport (the rest of the worker call: pickling, pipe), rows
    (comparison + explanation + rows).
``reference``
    the float64 reference (``reference_outputs``) on the large array vs
    ``np.copy`` of the same array (the memory-bandwidth bound).
``suite``
    ``normconf run cases/`` serial vs ``-j 2`` (wall time of the whole command, CPU
    time of the harness process and of its workers, and the CPU-time bound of the
    speedup on idle cores), and whether the two results.csv agree (timing columns
    aside; the differing rows are named).
``fuzz``
    ``normconf.fuzz.fuzz`` over the same backends: examples and backend runs per second.
``memory``
    peak memory of one large case in a fresh process, as a multiple of the
    input's bytes: the harness process (``tracemalloc`` peak of NumPy/Python
    allocations during ``run_pair``) and the worker (peak RSS growth), with and
    without an explanation search (a case whose ``y`` mismatches on torch).

Every timing is reported as wall time and as CPU time (this process plus the
worker process, all threads): on a shared machine the wall time includes waiting
for a core, the CPU time does not.  The JSON records the load average before and
after, and the spread (min/max) of every timing.  Details: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LARGE = [32, 64, 56, 56]
SMALL = [8, 4, 4, 4]
QUICK_LARGE = [4, 8, 16, 16]
BACKENDS = ["numpy", "torch", "ort", "cpp"]
TARGETS = {
    "overhead_large_ratio": 1.15,  # torch and ort, normconf / direct
    "overhead_small_ms": 2.0,  # per small case beyond the framework call
    "reference_vs_copy": 5.0,
    "suite_speedup_j2": 1.6,
    "peak_memory_multiple": 6.0,
}


# ----------------------------------------------------------------------------------------
# helpers


def _stats(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": [round(s, 6) for s in samples],
    }


def timeit(fn, repeat: int, warmup: int = 1, cpu_of: list[int] | None = None) -> dict:
    """Wall time of ``fn`` (median of ``repeat``) and CPU time: this process plus the ``cpu_of`` pids.

    On a shared machine the wall time includes waiting for a core; the CPU time does not
    (it counts every thread of this process, so a framework's intra-op threads count too).
    """
    for _ in range(warmup):
        fn()
    out, cpu = [], []
    for _ in range(repeat):
        c = time.process_time() + sum(_proc_cpu(p) for p in cpu_of or ())
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        cpu.append(time.process_time() + sum(_proc_cpu(p) for p in cpu_of or ()) - c)
    s = _stats(out)
    s["cpu"] = _stats(cpu)
    return s


_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """utime + stime of another process in seconds (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def make_case(shape: list[int], seed: int = 0, case_id: str = "bench", **kw):
    from normconf.cases import Case, Generator, LoadedCase

    c = Case.model_validate(
        {"id": case_id, "shape": list(shape), "mode": "train", "momentum": {"batch_weight": 0.1}, **kw}
    ).model_copy(update={"input": Generator(seed=seed)})
    return LoadedCase(c, "<benchmark>", 0)


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def ms(v: float) -> float:
    return round(v * 1e3, 3)


# ----------------------------------------------------------------------------------------
# overhead


#: case fields that make each backend *pass* (its own conventions), so the overhead measured is the
#: harness's and not an explanation search (measured separately under ``memory``)
OWN_CONVENTIONS = {"torch": {"running_variance": "unbiased"}}


def bench_overhead(backends: list[str], sizes: dict[str, list[int]], repeat: int, cold_repeat: int) -> list[dict]:
    from benchmarks import direct
    from normconf.inputs import generate
    from normconf.results import rows_for
    from normconf.runner import Runner

    out = []
    with Runner() as runner:
        for backend in backends:
            why = direct.available(backend) or (None if backend in runner.adapters else "no such backend")
            if why:
                out.append({"backend": backend, "skipped": why})
                continue
            for size, shape in sizes.items():
                own = OWN_CONVENTIONS.get(backend, {})
                lc = make_case(shape, seed=0, case_id=f"bench_{size}", **own)
                inputs = generate(lc.case)
                call = direct.DIRECT[backend](lc.case, inputs)
                d = timeit(call, repeat)
                # warm: the pair's inputs/reference cached in both processes
                first = runner.run_pair(lc, backend)
                if first[0].outcome in ("error", "unsupported"):
                    out.append({"backend": backend, "size": size, "skipped": f"{first[0].outcome}: {first[0].message}"})
                    continue
                outcomes = sorted({r.outcome for r in first})
                wpid = runner._worker(backend).proc.pid
                n = timeit(lambda: runner.run_pair(lc, backend), repeat, cpu_of=[wpid])
                # breakdown (the body of run_pair, timed piece by piece)
                adapter, transport, rows = [], [], []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    res = runner.run_backend(lc, backend)
                    t1 = time.perf_counter()
                    inp, ref = runner.expected(lc)
                    rows_for(lc, backend, res, ref, inp)
                    t2 = time.perf_counter()
                    adapter.append(res.seconds)
                    transport.append((t1 - t0) - res.seconds)
                    rows.append(t2 - t1)
                # cold: a new seed per run, nothing cached anywhere
                cold = []
                for i in range(cold_repeat):
                    lci = make_case(shape, seed=1000 + i, case_id=f"bench_{size}", **own)
                    t = time.perf_counter()
                    runner.run_pair(lci, backend)
                    cold.append(time.perf_counter() - t)
                dm, nm = d["median"], n["median"]
                dc, nc = d["cpu"]["median"], n["cpu"]["median"]
                out.append(
                    {
                        "backend": backend,
                        "size": size,
                        "shape": shape,
                        "input_bytes": int(inputs.x[0].nbytes),
                        "case_fields": own,
                        "outcomes": outcomes,
                        "direct_ms": ms(dm),
                        "normconf_warm_ms": ms(nm),
                        "ratio_warm": round(nm / dm, 3),
                        "overhead_warm_ms": ms(nm - dm),
                        "direct_cpu_ms": ms(dc),
                        "normconf_warm_cpu_ms": ms(nc),
                        "ratio_warm_cpu": round(nc / dc, 3) if dc > 0 else None,
                        "overhead_warm_cpu_ms": ms(nc - dc),
                        "normconf_cold_ms": ms(statistics.median(cold)),
                        "ratio_cold": round(statistics.median(cold) / dm, 3),
                        "overhead_cold_ms": ms(statistics.median(cold) - dm),
                        "breakdown_warm_ms": {
                            "adapter": ms(statistics.median(adapter)),
                            "transport": ms(statistics.median(transport)),
                            "rows": ms(statistics.median(rows)),
                        },
                        "samples": {"direct": d, "normconf_warm": n, "normconf_cold": _stats(cold)},
                    }
                )
    return out


# ----------------------------------------------------------------------------------------
# reference vs copy


def bench_reference(shape: list[int], repeat: int) -> dict:
    import numpy as np

    from normconf.inputs import generate
    from normconf.oracle import reference_outputs

    lc = make_case(shape)
    inputs = generate(lc.case)
    x = inputs.x[0]
    ref = timeit(lambda: reference_outputs(lc.case, inputs), repeat)
    cp = timeit(lambda: np.copy(x), repeat)
    cp64 = timeit(lambda: x.astype(np.float64), repeat)
    return {
        "shape": shape,
        "input_bytes": int(x.nbytes),
        "reference_ms": ms(ref["median"]),
        "copy_ms": ms(cp["median"]),
        "astype_f64_ms": ms(cp64["median"]),
        "ratio": round(ref["median"] / cp["median"], 2),
        "reference_cpu_ms": ms(ref["cpu"]["median"]),
        "copy_cpu_ms": ms(cp["cpu"]["median"]),
        "ratio_cpu": round(ref["cpu"]["median"] / cp["cpu"]["median"], 2) if cp["cpu"]["median"] > 0 else None,
        "samples": {"reference": ref, "copy": cp, "astype_f64": cp64},
    }


# ----------------------------------------------------------------------------------------
# suite wall time


#: runs ``normconf`` in a child process and reports its own CPU time and its workers' (RUSAGE_CHILDREN)
_SUITE_DRIVER = """
import json, resource, sys
from normconf.cli import main
rc = main(sys.argv[2:])
s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": rc, "harness_cpu_s": s.ru_utime + s.ru_stime, "workers_cpu_s": c.ru_utime + c.ru_stime}, f)
sys.exit(rc)
"""


def _run_suite(paths: list[str], jobs: int, out_dir: Path, extra: list[str]) -> dict:
    usage = out_dir.with_suffix(".usage.json")
    cmd = [sys.executable, "-c", _SUITE_DRIVER, str(usage), "run", *paths, "-o", str(out_dir), "-j", str(jobs), *extra]
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise RuntimeError(f"normconf run -j {jobs} exited {p.returncode}:\n{p.stdout[-2000:]}")
    u = json.loads(usage.read_text())
    return {"wall_s": dt, "harness_cpu_s": u["harness_cpu_s"], "workers_cpu_s": u["workers_cpu_s"]}


def _same_results(a: Path, b: Path) -> tuple[bool, str]:
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


def bench_suite(paths: list[str], repeat: int, extra: list[str]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="normconf-bench-"))
    try:
        serial, par = [], []
        for i in range(repeat):  # interleaved, so drifting load hits both alike
            serial.append(_run_suite(paths, 1, tmp / f"j1_{i}", extra))
            par.append(_run_suite(paths, 2, tmp / f"j2_{i}", extra))
        same, detail = _same_results(tmp / "j1_0", tmp / "j2_0")
        s, p = statistics.median(r["wall_s"] for r in serial), statistics.median(r["wall_s"] for r in par)
        h = statistics.median(r["harness_cpu_s"] for r in serial)
        w = statistics.median(r["workers_cpu_s"] for r in serial)
        h2 = statistics.median(r["harness_cpu_s"] for r in par)
        w2 = statistics.median(r["workers_cpu_s"] for r in par)
        # what 2 idle cores could give at best: the -j 2 run's CPU spread over 2 cores, but never
        # faster than its harness process (its comparison/explanation threads share one GIL)
        bound = (h + w) / max((h2 + w2) / 2, h2)
        return {
            "paths": paths,
            "serial_s": round(s, 2),
            "j2_s": round(p, 2),
            "speedup": round(s / p, 2),
            "serial_harness_cpu_s": round(h, 2),
            "serial_workers_cpu_s": round(w, 2),
            "j2_harness_cpu_s": round(h2, 2),
            "j2_workers_cpu_s": round(w2, 2),
            "speedup_cpu_bound": round(bound, 2),
            "results_identical": same,
            "detail": detail,
            "cpu_count": os.cpu_count(),
            "loadavg": loadavg(),
            "runs": {"serial": serial, "j2": par},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# fuzz throughput


def bench_fuzz(backends: list[str], max_examples: int, jobs: int = 2) -> dict:
    """``normconf.fuzz.fuzz`` over ``backends``: generated examples (one case on every backend) per second.

    Shrinking a finding runs the failing backend alone many times; those runs are counted
    separately (``shrink_runs``) and included in the time, as in a real ``normconf fuzz``.
    """
    if not (ROOT / "harness" / "fuzz.py").exists():
        return {"skipped": "harness/fuzz.py does not exist yet"}
    from normconf.fuzz import Executor, fuzz
    from normconf.runner import Runner

    with Runner() as runner:
        bs = [b for b in backends if b in runner.adapters]
        info = runner.backend_info(bs)
        bs = [b for b in bs if not info[b][0]]
        ex = Executor(runner, bs, jobs=jobs)
        try:
            t = time.perf_counter()
            rep = fuzz(ex, max_examples=max_examples, seed=0)
            dt = time.perf_counter() - t
        finally:
            ex.close()
    runs = rep.examples * len(bs) + rep.shrink_runs
    return {
        "backends": bs,
        "jobs": jobs,
        "examples": rep.examples,
        "shrink_runs": rep.shrink_runs,
        "findings": len(rep.findings),
        "seconds": round(dt, 2),
        "examples_per_s": round(rep.examples / dt, 2),
        "backend_runs_per_s": round(runs / dt, 2),
    }


# ----------------------------------------------------------------------------------------
# peak memory (in a fresh process)


def _read_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_hwm(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_probe(shape: list[int], backend: str, explain: bool) -> dict:
    """Run in a fresh process: one large case through run_pair, peak memory measured."""
    import gc
    import tracemalloc

    from normconf.runner import Runner

    # torch: biased variance to normalize, unbiased for running_var.  Asking for exactly that passes;
    # asking for the unbiased one to normalize makes y (the full-size output) mismatch -> explanation search
    kw = {"running_variance": "unbiased", "normalize_variance": "unbiased" if explain else "biased"}
    lc = make_case(shape, seed=7, case_id="bench_memory", **kw)
    with Runner() as runner:
        runner.run_pair(make_case([2, 2, 2, 2], case_id="warm"), backend)  # imports out of the way
        wpid = runner._worker(backend).proc.pid
        gc.collect()
        rss_reset = _reset_hwm(os.getpid()) and _reset_hwm(wpid)
        w_before = _read_hwm(wpid)
        p_before = _read_hwm(os.getpid())
        tracemalloc.start()
        t = time.perf_counter()
        rows = runner.run_pair(lc, backend)
        dt = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        p_hwm = _read_hwm(os.getpid())
        w_hwm = _read_hwm(wpid)
    nbytes = 4 * int(__import__("math").prod(shape))
    outcomes = sorted({r.outcome for r in rows})
    return {
        "backend": backend,
        "explain": explain,
        "shape": shape,
        "input_bytes": nbytes,
        "seconds": round(dt, 2),
        "outcomes": outcomes,
        "explanations": sorted({r.explanation for r in rows if r.explanation}),
        "harness_traced_peak_x": round(peak / nbytes, 2),
        "harness_rss_growth_x": round((p_hwm - p_before) / nbytes, 2) if rss_reset else None,
        "worker_rss_growth_x": round((w_hwm - w_before) / nbytes, 2) if rss_reset else None,
    }


def bench_memory(shape: list[int], backend: str) -> list[dict]:
    out = []
    for explain in (False, True):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-probe",
            json.dumps({"shape": shape, "backend": backend, "explain": explain}),
        ]
        p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            out.append({"backend": backend, "explain": explain, "error": p.stderr[-1500:]})
            continue
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return out


# ----------------------------------------------------------------------------------------
# the table


def targets(res: dict) -> list[dict]:
    t = []
    for r in res.get("overhead", []):
        if "skipped" in r:
            continue
        if r["size"] == "large" and r["backend"] in ("torch", "ort"):
            for kind, key in (("wall", "ratio_warm"), ("CPU", "ratio_warm_cpu")):
                if r.get(key) is not None:
                    t.append(
                        {
                            "target": f"overhead {r['backend']} large (warm, {kind}) <= {TARGETS['overhead_large_ratio']}x",
                            "value": r[key],
                            "met": r[key] <= TARGETS["overhead_large_ratio"],
                        }
                    )
        if r["size"] == "small":
            for kind, key in (("wall", "overhead_warm_ms"), ("CPU", "overhead_warm_cpu_ms")):
                if r.get(key) is not None:
                    t.append(
                        {
                            "target": f"overhead {r['backend']} small (warm, {kind}) <= {TARGETS['overhead_small_ms']} ms",
                            "value": r[key],
                            "met": r[key] <= TARGETS["overhead_small_ms"],
                        }
                    )
    ref = res.get("reference")
    if ref:
        t.append(
            {
                "target": f"reference <= {TARGETS['reference_vs_copy']}x np.copy",
                "value": ref["ratio"],
                "met": ref["ratio"] <= TARGETS["reference_vs_copy"],
            }
        )
        if ref.get("ratio_cpu") is not None:
            t.append(
                {
                    "target": f"reference <= {TARGETS['reference_vs_copy']}x np.copy (CPU)",
                    "value": ref["ratio_cpu"],
                    "met": ref["ratio_cpu"] <= TARGETS["reference_vs_copy"],
                }
            )
    s = res.get("suite")
    if s and "speedup" in s:
        t.append(
            {
                "target": f"suite -j 2 speedup >= {TARGETS['suite_speedup_j2']}x",
                "value": s["speedup"],
                "met": s["speedup"] >= TARGETS["suite_speedup_j2"],
            }
        )
        if "speedup_cpu_bound" in s:
            t.append(
                {
                    "target": f"suite -j 2 speedup, CPU-time bound >= {TARGETS['suite_speedup_j2']}x",
                    "value": s["speedup_cpu_bound"],
                    "met": s["speedup_cpu_bound"] >= TARGETS["suite_speedup_j2"],
                }
            )
        t.append(
            {
                "target": "suite -j 2 results identical to serial",
                "value": s["detail"][:120],
                "met": s["results_identical"],
            }
        )
    for m in res.get("memory", []):
        if "error" in m:
            continue
        worst = max(
            v for v in (m["harness_traced_peak_x"], m["harness_rss_growth_x"] or 0, m["worker_rss_growth_x"] or 0)
        )
        t.append(
            {
                "target": f"peak memory {'with' if m['explain'] else 'without'} explanation <= {TARGETS['peak_memory_multiple']}x input",
                "value": worst,
                "met": worst <= TARGETS["peak_memory_multiple"],
            }
        )
    return t


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=150)
    if res.get("overhead"):
        tb = Table(
            title="harness overhead: Runner.run_pair vs the framework called directly (median ms; "
            "CPU = harness + worker processes)"
        )
        for c in (
            "backend",
            "case",
            "direct",
            "normconf warm",
            "ratio",
            "+ms",
            "adapter/transport/rows",
            "normconf cold",
            "ratio cold",
            "CPU: direct",
            "normconf",
            "ratio",
            "+ms",
        ):
            tb.add_column(c, justify="right")
        for r in res["overhead"]:
            if "skipped" in r:
                tb.add_row(r["backend"], r.get("size", ""), "skipped: " + r["skipped"][:60])
                continue
            b = r["breakdown_warm_ms"]
            tb.add_row(
                r["backend"],
                r["size"],
                f"{r['direct_ms']:.2f}",
                f"{r['normconf_warm_ms']:.2f}",
                f"{r['ratio_warm']:.2f}x",
                f"{r['overhead_warm_ms']:.2f}",
                f"{b['adapter']:.1f}/{b['transport']:.1f}/{b['rows']:.1f}",
                f"{r['normconf_cold_ms']:.1f}",
                f"{r['ratio_cold']:.2f}x",
                f"{r['direct_cpu_ms']:.2f}",
                f"{r['normconf_warm_cpu_ms']:.2f}",
                f"{r['ratio_warm_cpu']:.2f}x" if r["ratio_warm_cpu"] else "",
                f"{r['overhead_warm_cpu_ms']:.2f}",
            )
        con.print(tb)
    ref = res.get("reference")
    if ref:
        con.print(
            f"reference {ref['shape']}: {ref['reference_ms']:.1f} ms vs np.copy {ref['copy_ms']:.1f} ms "
            f"= {ref['ratio']}x (astype float64: {ref['astype_f64_ms']:.1f} ms); CPU time {ref['reference_cpu_ms']:.1f} "
            f"vs {ref['copy_cpu_ms']:.1f} ms = {ref['ratio_cpu']}x"
        )
    s = res.get("suite")
    if s:
        if "speedup" in s:
            con.print(
                f"suite {' '.join(s['paths'])}: serial {s['serial_s']} s (CPU: harness process "
                f"{s['serial_harness_cpu_s']} s, workers {s['serial_workers_cpu_s']} s), -j 2 {s['j2_s']} s "
                f"= {s['speedup']}x ({s['cpu_count']} CPUs; CPU-time bound on idle cores "
                f"{s['speedup_cpu_bound']}x); results: {s['detail']}"
            )
        else:
            con.print(f"suite: {s}")
    f = res.get("fuzz")
    if f and "skipped" not in f:
        con.print(
            f"fuzz ({', '.join(f['backends'])}, -j {f['jobs']}): {f['examples']} examples + {f['shrink_runs']} "
            f"shrink runs in {f['seconds']} s = {f['examples_per_s']} examples/s, "
            f"{f['backend_runs_per_s']} backend runs/s ({f['findings']} findings)"
        )
    elif f:
        con.print(f"fuzz: {f['skipped']}")
    for m in res.get("memory", []):
        if "error" in m:
            con.print(f"memory ({m['backend']}, explain={m['explain']}): probe failed: {m['error'][-300:]}")
        else:
            con.print(
                f"memory {m['shape']} on {m['backend']} {'with' if m['explain'] else 'without'} explanation "
                f"({', '.join(m['outcomes'])}): harness traced peak {m['harness_traced_peak_x']}x, harness RSS "
                f"+{m['harness_rss_growth_x']}x, worker RSS +{m['worker_rss_growth_x']}x input bytes ({m['seconds']} s)"
            )
    tb = Table(title="targets")
    for c in ("target", "value", "met"):
        tb.add_column(c)
    for t in res.get("targets", []):
        tb.add_row(t["target"], str(t["value"]), "yes" if t["met"] else "NO")
    con.print(tb)


# ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, few repeats, a one-file suite (smoke test)")
    ap.add_argument(
        "--only", default="overhead,reference,suite,fuzz,memory", help="comma-separated sections (default: all)"
    )
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (default 7, quick 3)")
    ap.add_argument("--suite-repeat", type=int, default=1)
    ap.add_argument("--suite-paths", default=None, help="case paths for the suite section (default cases/)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_probe:
        p = json.loads(args.memory_probe)
        print(json.dumps(memory_probe(p["shape"], p["backend"], p["explain"])))
        return 0

    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    repeat = args.repeat or (3 if args.quick else 7)
    large = QUICK_LARGE if args.quick else LARGE
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    suite_paths = (args.suite_paths or ("cases/seed_article.yaml" if args.quick else "cases")).split(",")
    suite_extra = ["-b", "numpy"] if args.quick else []

    res: dict = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": args.quick,
            "repeat": repeat,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": loadavg(),
            "git": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip(),
        }
    }
    t0 = time.perf_counter()
    if "overhead" in sections:
        res["overhead"] = bench_overhead(backends, {"large": large, "small": SMALL}, repeat, max(1, repeat // 2))
    if "reference" in sections:
        res["reference"] = bench_reference(large, repeat)
    if "suite" in sections:
        res["suite"] = bench_suite(suite_paths, args.suite_repeat, suite_extra)
    if "fuzz" in sections:
        res["fuzz"] = bench_fuzz(["numpy"] if args.quick else backends, 5 if args.quick else 60)
    if "memory" in sections:
        res["memory"] = bench_memory(large, "torch" if "torch" in backends else backends[0])
    res["meta"]["loadavg_after"] = loadavg()
    res["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    res["targets"] = targets(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print_table(res)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
