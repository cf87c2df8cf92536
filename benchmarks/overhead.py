"""The ``overhead`` and ``reference`` sections: normconf against the framework called directly.

``overhead``: per backend, a large and a small case through ``Runner.run_pair`` (warm: inputs and
expected values already cached; cold: a new seed each run) vs :mod:`benchmarks.direct` on the same
arrays, the two in alternating rounds (:func:`benchmarks.common.timeit_side_by_side`); then the
small case again with one CPU-bound process running (``load = 1 busy process``).  CPU time = this
process + the backend's worker process (all threads).  ``reference``: the float64 reference vs
``np.copy`` of the same float32 array, alternating too.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks.common import backend_clock, cpu_hog, make_case, ms, stats, timeit_side_by_side, worker_pids

#: case fields that make each backend *pass* (its own conventions), so the overhead measured is the
#: harness's and not an explanation search (measured separately under ``memory``)
OWN_CONVENTIONS = {"torch": {"running_variance": "unbiased"}}


def _measure(runner, backend: str, size: str, shape: list[int], repeat: int, cold_repeat: int) -> dict:
    from benchmarks import direct
    from normconf.inputs import generate

    own = OWN_CONVENTIONS.get(backend, {})
    lc = make_case(shape, seed=0, case_id=f"bench_{size}", **own)
    inputs = generate(lc.case)
    first = runner.run_pair(lc, backend)  # warm: the worker caches the case's inputs and expected values
    if first[0].outcome in ("error", "unsupported"):
        return {"backend": backend, "size": size, "skipped": f"{first[0].outcome}: {first[0].message}"}
    pids = worker_pids(runner)
    adapter: list[float] = []
    adapter_cpu: list[float] = []

    def pair() -> None:
        c = backend_clock(runner)
        adapter.append(runner.run_pair(lc, backend)[0].seconds or 0.0)
        adapter_cpu.append(backend_clock(runner) - c)

    # reading y and its expected values once (two arrays of y's size and dtype): the least any check of every
    # element costs, for the proposed form of the large-case target (benchmarks.targets).  Their maxima: NumPy's
    # fastest one-thread pass here (SIMD, no chain of additions: a float32 sum costs twice as much, compute-bound)
    ya = np.array(inputs.x[0])
    yb = ya.copy()

    def read() -> None:
        np.maximum.reduce(ya, axis=None)
        np.maximum.reduce(yb, axis=None)

    # the direct call, normconf's pair and the read in alternating rounds: no ratio is a drift between two blocks
    side = timeit_side_by_side(
        {"direct": direct.DIRECT[backend](lc.case, inputs), "normconf": (pair, pids), "read": read}, repeat
    )
    d, n = side["direct"], side["normconf"]
    adapter, adapter_cpu = adapter[-repeat:], adapter_cpu[-repeat:]
    cold = []
    for i in range(cold_repeat):  # a new seed per run: inputs generated, reference computed
        lci = make_case(shape, seed=1000 + i, case_id=f"bench_{size}", **own)
        t = time.perf_counter()
        runner.run_pair(lci, backend)
        cold.append(time.perf_counter() - t)
    dm, nm, cm = d["median"], n["median"], statistics.median(cold)
    dc = d["cpu"]["median"]
    nc = n["cpu"]["median"] if pids else None  # without the worker's pid its CPU is unknown
    return {
        "backend": backend,
        "size": size,
        "shape": shape,
        "input_bytes": int(inputs.x[0].nbytes),
        "case_fields": own,
        "outcomes": sorted({r.outcome for r in first}),
        "worker_pids": pids or "n/a",
        "direct_ms": ms(dm),
        "normconf_warm_ms": ms(nm),
        "ratio_warm": round(nm / dm, 3),
        "overhead_warm_ms": ms(nm - dm),
        "direct_cpu_ms": ms(dc),
        "normconf_warm_cpu_ms": ms(nc) if nc is not None else None,
        "ratio_warm_cpu": round(nc / dc, 3) if nc is not None and dc > 0 else None,
        "overhead_warm_cpu_ms": ms(nc - dc) if nc is not None else None,
        "read_output_and_expected_cpu_ms": round(side["read"]["cpu"]["median"] * 1e3, 6),
        "normconf_cold_ms": ms(cm),
        "ratio_cold": round(cm / dm, 3),
        "overhead_cold_ms": ms(cm - dm),
        # adapter: Row.seconds (the adapter's run inside the worker); rest: the round trip, judging in
        # the worker (comparison, explanation, rows) and the rows' transport
        "breakdown_warm_ms": {"adapter": ms(statistics.median(adapter)), "rest": ms(nm - statistics.median(adapter))},
        # the same split in CPU: the worker's CPU inside the adapter's calls (its BackendClock), and the rest
        "breakdown_warm_cpu_ms": {
            "adapter": ms(statistics.median(adapter_cpu)),
            "rest": ms(nc - statistics.median(adapter_cpu)) if nc is not None else None,
        },
        "samples": {"direct": d, "normconf_warm": n, "normconf_cold": stats(cold), "read": side["read"]},
    }


def bench_overhead(backends: list[str], sizes: dict[str, list[int]], repeat: int, cold_repeat: int) -> list[dict]:
    """Idle: every size of every backend; then under load (one busy process): the small case."""
    from benchmarks import direct
    from normconf.runner import Runner

    out, ok = [], []
    for backend in backends:
        with Runner() as runner:
            why = direct.available(backend) or (None if backend in runner.adapters else "no such backend")
            if why:
                out.append({"backend": backend, "skipped": why})
                continue
            ok.append(backend)
            for size, shape in sizes.items():
                out.append({**_measure(runner, backend, size, shape, repeat, cold_repeat), "load": "idle"})
    if "small" not in sizes:
        return out
    with cpu_hog() as hog:
        t, c = time.perf_counter(), hog.cpu()
        for backend in ok:
            with Runner() as runner:
                r = _measure(runner, backend, "small", sizes["small"], repeat, cold_repeat)
                out.append({**r, "load": "1 busy process"})
        # the busy process really ran: its CPU time over the section's wall time (~1 core)
        cores = round((hog.cpu() - c) / (time.perf_counter() - t), 2)
    for r in out:
        if r.get("load") == "1 busy process":
            r["busy_process_cores"] = cores
            r["busy_process_pid"] = hog.pid
    return out


def bench_reference(shape: list[int], repeat: int) -> dict:
    import numpy as np

    from normconf.inputs import generate
    from normconf.oracle import reference_outputs

    lc = make_case(shape)
    inputs = generate(lc.case)
    x = inputs.x[0]
    # as a run computes it: the outputs backends return (a worker computes x_hat only for a backend
    # that returns it: harness/worker.py _Host.expected); and with every output, x_hat included
    names = frozenset(lc.case.output_names())
    side = timeit_side_by_side(
        {
            "reference": lambda: reference_outputs(lc.case, inputs, outputs=names),
            "reference_all": lambda: reference_outputs(lc.case, inputs),
            "copy": lambda: np.copy(x),
            "astype_f64": lambda: x.astype(np.float64),
        },
        repeat,
    )
    ref, ref_all, cp, cp64 = side["reference"], side["reference_all"], side["copy"], side["astype_f64"]
    return {
        "shape": shape,
        "input_bytes": int(x.nbytes),
        "reference_ms": ms(ref["median"]),
        "copy_ms": ms(cp["median"]),
        "astype_f64_ms": ms(cp64["median"]),
        "ratio": round(ref["median"] / cp["median"], 2),
        "reference_cpu_ms": ms(ref["cpu"]["median"]),
        "reference_outputs": sorted(names),
        "reference_all_ms": ms(ref_all["median"]),
        "reference_all_cpu_ms": ms(ref_all["cpu"]["median"]),
        "copy_cpu_ms": ms(cp["cpu"]["median"]),
        "ratio_cpu": round(ref["cpu"]["median"] / cp["cpu"]["median"], 2) if cp["cpu"]["median"] > 0 else None,
        "samples": {"reference": ref, "reference_all": ref_all, "copy": cp, "astype_f64": cp64},
    }
