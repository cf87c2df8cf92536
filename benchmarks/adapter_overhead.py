"""Per-case overhead of the TensorFlow and ONNX adapters on a 200-case run.

Usage::

    .venv/bin/python benchmarks/adapter_overhead.py                  # every TF/ONNX backend
    .venv/bin/python benchmarks/adapter_overhead.py -b ort,keras-tf --cases 200 --shapes distinct

Each backend runs in its own fresh process (with the runner's thread settings,
``normconf.runner.thread_env``, and the adapter's ``worker_env``, as a worker gets them), over the same deterministic list of cases: a mix of
train/eval, channels-first/-last, 1-3 steps, float32 (and a few float16), on
either a pool of 10 shapes (``--shapes pooled``: what a suite looks like, most
cases share a signature) or a different shape per case (``--shapes distinct``:
the worst case for caching).  Input generation is not timed; ``adapter.run`` is.

Reported per backend: the framework import (once per process, not part of any
case), the total of the 200 cases, the first case, the mean
and median of the other cases, and where the time went (per case, averaged
over all cases) from the adapters' ``STATS`` counters: building (TF layers/functions; ONNX model
construction + onnx.checker), session creation (ORT/ReferenceEvaluator) or
tracing (the first call of a new tf.function), compute, conversion to NumPy,
and the rest (argument handling, transposes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_BACKENDS = [
    "keras-tf",
    "tf-nn",
    "tf-fused",
    "ort",
    "ort-init",
    "ort-init-noopt",
    "ort-opset9",
    "ort-opset9-init",
    "onnx-reference",
    "onnx-reference-opset9",
]
POOL = [
    [8, 16, 8, 8],
    [4, 3, 5, 5],
    [16, 32, 4, 4],
    [2, 8, 16, 16],
    [32, 4, 2, 2],
    [8, 8, 6, 6],
    [3, 1, 1, 6],
    [16, 16, 8, 8],
    [4, 64, 3, 3],
    [6, 12, 10, 10],
]


def make_cases(n: int, shapes: str):
    from normconf.cases import Case

    cases = []
    for i in range(n):
        shape = (
            list(POOL[i % len(POOL)])
            if shapes == "pooled"
            else [2 + i % 7, 2 + (i // 7) % 9, 3 + i % 5, 3 + (i // 5) % 6]
        )
        mode = "eval" if i % 3 == 2 else "train"
        cases.append(
            Case.model_validate(
                {
                    "id": f"c{i}",
                    "shape": shape,
                    "mode": mode,
                    "layout": "channels_last" if i % 4 == 1 else "channels_first",
                    "dtype": "float16" if i % 10 == 9 else "float32",
                    "param_dtype": "float32",
                    "steps": 1 + i % 3 if mode == "train" else 1,
                    "eval_after": mode == "train" and i % 5 == 0,
                    "input": {"seed": i, "std": 2.0},
                    "momentum": {"batch_weight": 0.1 + 0.05 * (i % 2)},
                    "running_mean": 0.5,
                    "running_var": 1.5,
                }
            )
        )
    return cases


def child(backend: str, n: int, shapes: str) -> dict:
    """Runs in the fresh process: time every case of one backend."""
    from normconf.adapters import get_adapter
    from normconf.adapters.base import Unsupported
    from normconf.inputs import generate

    adapter = get_adapter(backend)
    mod = sys.modules[type(adapter).__module__]
    cases = make_cases(n, shapes)
    inputs = [generate(c) for c in cases]
    t = time.perf_counter()
    adapter.version()  # imports the framework (TensorFlow: once per process)
    import_s = time.perf_counter() - t
    times, outcomes = [], {"ran": 0, "unsupported": 0, "error": 0}
    t_all = time.perf_counter()
    for c, inp in zip(cases, inputs):
        t = time.perf_counter()
        try:
            if adapter.unsupported(c):
                outcomes["unsupported"] += 1
            else:
                adapter.run(c, inp)
                outcomes["ran"] += 1
        except Unsupported:
            outcomes["unsupported"] += 1
        except Exception:
            outcomes["error"] += 1
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t_all
    return {
        "backend": backend,
        "import_s": import_s,
        "total_s": total,
        "times": times,
        "outcomes": outcomes,
        "stats": dict(getattr(mod, "STATS", {})),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", "--backend", default=",".join(DEFAULT_BACKENDS))
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--shapes", choices=["pooled", "distinct"], default="pooled")
    ap.add_argument("--json", help="write the raw numbers here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.cases, args.shapes)))
        return

    from normconf.adapters import get_adapter

    try:
        from normconf.worker_env import thread_env

        threads = thread_env()
    except ImportError:  # a runner without per-worker thread settings
        threads = {}
    rows = []
    for b in args.backend.split(","):
        env = {**os.environ, **threads, **get_adapter(b).worker_env}
        p = subprocess.run(
            [sys.executable, __file__, "--child", b, "--cases", str(args.cases), "--shapes", args.shapes],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        if p.returncode != 0:
            print(f"{b}: failed\n{p.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    ms = lambda s: f"{1e3 * s:8.2f}"  # noqa: E731
    print(f"{args.cases} cases, shapes {args.shapes}; times in ms")
    print(
        f"{'backend':22} {'ran/uns/err':>11} {'import':>9} {'total':>9} {'first':>8} {'mean':>8} {'median':>8}"
        f" | {'build':>8} {'sess/trc':>8} {'compute':>8} {'convert':>8} {'other':>8} (per case)"
    )
    for r in rows:
        t, st, n = r["times"], r["stats"], len(r["times"])
        rest = t[1:] or t
        o = r["outcomes"]
        setup = st.get("session", 0.0) + st.get("trace", 0.0)
        accounted = st.get("build", 0.0) + setup + st.get("compute", 0.0) + st.get("convert", 0.0)
        other = r["total_s"] - accounted
        print(
            f"{r['backend']:22} {o['ran']:>3}/{o['unsupported']:>3}/{o['error']:>3} {ms(r['import_s'])} {ms(r['total_s'])} {ms(t[0])} "
            f"{ms(statistics.mean(rest))} {ms(statistics.median(rest))} | "
            f"{ms(st.get('build', 0.0) / n)} {ms(setup / n)} {ms(st.get('compute', 0.0) / n)} "
            f"{ms(st.get('convert', 0.0) / n)} {ms(other / n)}"
            f"   [{int(st.get('sessions_created', st.get('traced_functions', 0)))} sessions/traces, "
            f"{int(st.get('cache_hits', 0))} cache hits]"
        )


if __name__ == "__main__":
    main()
