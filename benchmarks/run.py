"""normconf performance benchmark (issue 18): one command, one table per section, a targets table,
``benchmarks/results.json``.

Usage::

    make bench                                   # = .venv/bin/python benchmarks/run.py
    .venv/bin/python benchmarks/run.py --quick   # tiny shapes, few repeats (the smoke test runs this)
    .venv/bin/python benchmarks/run.py --only overhead,reference --repeat 9
    .venv/bin/python benchmarks/run.py --only scaling --max-size 1e6

Sections (``--only``), measured side by side in one run; every time is the median of ``--repeat``
runs (the JSON keeps every sample), as wall time and as CPU time (this process plus the worker
processes, all threads: on a shared machine the wall time includes waiting for a core, the CPU
time does not).  The two sides of a ratio are measured in alternating rounds
(:func:`benchmarks.common.timeit_side_by_side`):

``overhead``  (:mod:`benchmarks.overhead`) per backend (numpy, torch, ort, cpp), a large case
    (32×64×56×56 float32, train) and a small one (8×4×4×4) through ``Runner.run_pair`` vs the
    framework called directly (:mod:`benchmarks.direct`); the small case again with one CPU-bound
    process running.
``reference`` the float64 reference on the large array vs ``np.copy`` of it.
``suite``     (:mod:`benchmarks.suite`) ``normconf run`` on the BatchNorm library (every
    ``cases/*.yaml`` but ``layer_norm*``, plus ``cases/found/``), serial and ``-j 2``, and whether
    the two results agree.
``floor``     (:mod:`benchmarks.floor`) the suite's backends without normconf: each worker group's
    adapters over the suite's cases in one bare process (framework imports and calls only), set
    beside the suite's ``-j 2`` CPU: what normconf itself adds.
``fuzz``      ``normconf.fuzz.fuzz`` throughput: examples and backend runs per second.
``memory``    (:mod:`benchmarks.memory`) peak memory of the large case, with and without an
    explanation search, as multiples of the input bytes.
``scaling``   (:mod:`benchmarks.scaling`) time and peak memory against size (1e4…1e8 elements) on
    numpy and torch, with a linearity check; the suite at 25/50/100 % of its cases; ``-j 1`` vs ``-j 2``.

The JSON records the load average before and after each section.  Targets: :mod:`benchmarks.targets`.

The benchmark process re-executes itself with the workers' malloc settings
(:func:`normconf.worker_env.malloc_env`), so that the direct calls and the reference it times pay
the page faults a worker pays, not glibc's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # benchmarks.x, never a bare x
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import floor, memory, overhead, suite  # noqa: E402
from benchmarks.common import loadavg  # noqa: E402
from benchmarks.printout import print_tables  # noqa: E402
from benchmarks.targets import TARGETS, suite_fit, targets  # noqa: E402

LARGE = [32, 64, 56, 56]
SMALL = [8, 4, 4, 4]
QUICK_LARGE = [4, 8, 16, 16]
BACKENDS = ["numpy", "torch", "ort", "cpp"]
SCALING_BACKENDS = ["numpy", "torch"]
SECTIONS = ["overhead", "reference", "suite", "floor", "fuzz", "memory", "scaling"]


def bench_fuzz(backends: list[str], max_examples: int, jobs: int = 2) -> dict:
    """``normconf.fuzz.fuzz`` over ``backends``: generated examples (one case on every backend) per second.

    Shrinking a finding runs the failing backend alone many times; those runs are counted
    separately (``shrink_runs``) and included in the time, as in a real ``normconf fuzz``.
    The first run's time (seed 0) includes the start-up, as a session's does: ``Executor.probe``
    starts every group's worker at once (each imports its framework; ``start_seconds``) and the
    examples run on those workers; a second run (seed 1) on the same, now warm, workers measures a
    session's steady rate.
    """
    from normconf.fuzz import Executor, fuzz
    from normconf.runner import Runner

    with Runner() as runner, Executor(runner, [b for b in backends if b in runner.adapters], jobs=jobs) as ex:
        t = time.perf_counter()
        ex.probe()  # as `normconf fuzz` starts: every group's worker at once, the ones the examples use
        t_start = time.perf_counter() - t
        rep = fuzz(ex, max_examples=max_examples, seed=0)
        dt = time.perf_counter() - t
        t = time.perf_counter()
        warm = fuzz(ex, max_examples=max_examples, seed=1)
        dt_warm = time.perf_counter() - t
    bs = ex.backends
    return {
        "backends": bs,
        "jobs": jobs,
        "start_seconds": round(t_start, 3),
        **_fuzz_rates(rep, len(bs), dt),
        "warm": _fuzz_rates(warm, len(bs), dt_warm),
    }


def _fuzz_rates(rep, n_backends: int, seconds: float) -> dict:
    """One fuzz run's counts and rates (backend runs: every example on every backend, plus shrinking)."""
    runs = rep.examples * n_backends + rep.shrink_runs
    return {
        "examples": rep.examples,
        "shrink_runs": rep.shrink_runs,
        "findings": len(rep.findings),
        "seconds": round(seconds, 3),
        "examples_per_s": round(rep.examples / seconds, 2),
        "backend_runs_per_s": round(runs / seconds, 2),
    }


def bench_scaling(res: dict, backends: list[str], exponents: list[int], repeat: int, suite_args) -> dict:
    """(a) sizes, (b) suite fractions, (c) -j 1 vs -j 2 (the suite section's runs when it ran)."""
    from benchmarks.scaling import bench_pairs

    out: dict = {"pairs": bench_pairs(backends, exponents, repeat)}
    s = res.get("suite")
    source = "the suite section"
    if not s:
        s, source = suite.bench_suite(*suite_args), "this section (no suite section)"
    out["jobs"] = {k: v for k, v in s.items() if k != "runs"} | {"measured_by": source}
    full = {k: s[f"j2_{k}"] for k in ("wall_s", "cpu_s", "harness_cpu_s", "workers_cpu_s")}
    out["fractions"] = suite.bench_fractions(s["paths"], s["extra_args"], full | {"jobs": 2, "pairs": s["pairs"]})
    out["fractions_fit"] = suite_fit(out["fractions"])
    return out


def _with_worker_malloc() -> None:
    """Re-execute this process with the workers' ``GLIBC_TUNABLES`` unless it already runs with them
    (glibc reads them at start-up only)."""
    from normconf.worker_env import malloc_env

    want = malloc_env()
    if os.environ.get("GLIBC_TUNABLES", "") != want["GLIBC_TUNABLES"]:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **want})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, few repeats, a one-file suite (smoke test)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections (default: all)")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per measurement (default 7, quick 3)")
    ap.add_argument("--suite-repeat", type=int, default=1)
    ap.add_argument("--suite-paths", default=None, help="case paths for the suite (default: the BatchNorm library)")
    ap.add_argument(
        "--max-size", type=float, default=None, help="largest scaling size in elements (default 1e8, quick 1e5)"
    )
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if argv is None:
        _with_worker_malloc()

    if args.memory_probe:
        p = json.loads(args.memory_probe)
        print(json.dumps(memory.memory_probe(p["shape"], p["backend"], p["explain"])))
        return 0

    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    repeat = args.repeat or (3 if args.quick else 7)
    large = QUICK_LARGE if args.quick else LARGE
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    library = suite.bn_library()
    suite_paths = (
        args.suite_paths.split(",") if args.suite_paths else ["cases/seed_article.yaml"] if args.quick else library
    )
    suite_extra = ["-b", "numpy"] if args.quick else []
    max_size = args.max_size or (1e5 if args.quick else 1e8)
    exponents = [k for k in range(3 if args.quick else 4, 9) if 10**k <= max_size]

    res: dict = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": args.quick,
            "repeat": repeat,
            "sections": sections,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": loadavg(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "suite_is_library": suite_paths == library and not suite_extra,
            "git": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip(),
        },
        "loadavg": {},
    }
    run = {
        "overhead": lambda: overhead.bench_overhead(
            backends, {"large": large, "small": SMALL}, repeat, max(1, repeat // 2)
        ),
        "reference": lambda: overhead.bench_reference(large, repeat),
        "suite": lambda: suite.bench_suite(suite_paths, args.suite_repeat, suite_extra),
        "floor": lambda: floor.bench_floor(suite_paths, suite_extra, res.get("suite"), args.suite_repeat),
        "fuzz": lambda: bench_fuzz(["numpy"] if args.quick else backends, 5 if args.quick else 60),
        "memory": lambda: memory.bench_memory(large, "torch" if "torch" in backends else backends[0]),
        "scaling": lambda: bench_scaling(
            res,
            [b for b in SCALING_BACKENDS if b in backends],
            exponents,
            repeat,
            (suite_paths, args.suite_repeat, suite_extra),
        ),
    }
    t0 = time.perf_counter()
    for name in SECTIONS:
        if name in sections:
            before, t = loadavg(), time.perf_counter()
            res[name] = run[name]()
            res["loadavg"][name] = {"before": before, "after": loadavg(), "seconds": round(time.perf_counter() - t, 1)}
    res["meta"]["loadavg_after"] = loadavg()
    res["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    res["meta"]["targets"] = TARGETS
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")  # the measurements, whatever follows
    res["targets"] = targets(res)
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print_tables(res)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
