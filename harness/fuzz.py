"""``normconf fuzz``: property-based discovery of discrepancies, shrunk to ready YAML cases.

Hypothesis draws case mappings -- shape (rank 2-5, N may be 0), layout, dtype (and mixed
parameter dtype), mode, eps, momentum (both written forms, cumulative), variance estimators,
affine parameters, initial running statistics, steps/eval_after and the input distribution
(normal/uniform/constant, offsets and scales from tiny to huge) -- within a size budget
(``--max-elements``, all steps together), and runs every selected backend on each through one
:class:`~harness.runner.Runner` (worker processes stay warm across examples; backends of
different worker groups run in parallel, ``--jobs`` at a time).

A *finding* is a (case, backend) pair whose outcome is ``mismatch`` (unexplained) or ``error``;
its *signature* is ``(backend, outcome, output)`` (for errors the output is the exception type).
The search runs in rounds: each round generates examples until one shows a signature not found
before, then Hypothesis shrinks that example -- running only the failing backend -- to the
smallest case with the same signature (smallest by number of elements, then rank, steps and
YAML length), which is written to ``--out`` (default ``cases/found/``) as a ready case file with
a comment naming the command and the backend versions.  Later rounds continue with the rest of
the ``--max-examples`` budget and ignore signatures already found.

Deterministic: for a given ``--seed`` (and the same backends and versions) the drawn examples,
the findings and the files are the same on every run (``database=None``, a fixed Hypothesis seed
per round, no time-dependent phases; Hypothesis stops a single shrink after 5 minutes, which
only a very slow backend reaches).

Exit codes: 0 nothing found, 1 findings written, 2 usage errors.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: outcomes that count as a finding
FAILING = ("mismatch", "error")
DEFAULT_MAX_ELEMENTS = 512
DEFAULT_DTYPES = ("float32", "float64", "float16", "bfloat16")


# ----------------------------------------------------------------------------------------
# strategies


def _r3(x: float) -> float:
    """3 significant digits: readable YAML, and a value that round-trips exactly."""
    return float(f"{x:.3g}")


def case_dicts(
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    dtypes: tuple[str, ...] = DEFAULT_DTYPES,
    modes: tuple[str, ...] = ("train", "eval"),
    max_steps: int = 4,
):
    """Hypothesis strategy of case mappings (only non-default keys, no ``id``).

    Every choice shrinks towards the simplest case: rank 2, the smallest sizes, channels-first,
    the first dtype, the first mode, default eps/momentum/estimators/affine, one step, the
    default input N(0, 1) with seed 0.
    """
    from hypothesis import strategies as st

    @st.composite
    def strat(draw) -> dict[str, Any]:
        n = draw(st.integers(0, 8))
        c = draw(st.integers(1, 8))
        spatial = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
        mode = draw(st.sampled_from(modes))
        steps = draw(st.integers(1, max_steps))
        dims = [n, c, *spatial]
        # the size budget: halve the largest dimension until every step fits
        while math.prod(dims) * steps > max_elements:
            i = max(range(len(dims)), key=lambda j: dims[j])
            if dims[i] <= 1:
                steps = max(1, steps // 2)
                continue
            dims[i] = (dims[i] + 1) // 2
        d: dict[str, Any] = {"shape": dims}
        C = dims[1]
        if len(dims) > 2 and draw(st.booleans()):
            d["layout"] = "channels_last"
        dtype = draw(st.sampled_from(dtypes))
        if dtype != "float32":
            d["dtype"] = dtype
        if dtype in ("float16", "bfloat16") and draw(st.booleans()):
            d["param_dtype"] = "float32"
        if mode != "train":
            d["mode"] = mode
        eps = draw(
            st.one_of(st.none(), st.sampled_from([1e-3, 1e-4, 1e-8, 0.1, 1e-2, 1e-6]), st.floats(1e-8, 0.1).map(_r3))
        )
        if eps is not None and eps > 0:
            d["eps"] = eps
        if mode == "train":
            mom = draw(
                st.one_of(
                    st.none(),
                    st.sampled_from(
                        [
                            {"batch_weight": 0.1},
                            {"running_weight": 0.99},
                            "cumulative",
                            {"batch_weight": 0},
                            {"batch_weight": 1},
                            {"running_weight": 0.5},
                        ]
                    ),
                    st.floats(0, 1).map(lambda w: {"batch_weight": _r3(w)}),
                    st.floats(0, 1).map(lambda p: {"running_weight": _r3(p)}),
                )
            )
            if mom is not None:
                d["momentum"] = mom
            for key in ("normalize_variance", "running_variance"):
                est = draw(st.sampled_from(["biased", "unbiased"]))
                if est != "biased":
                    d[key] = est
        affine = draw(
            st.one_of(
                st.none(),
                st.just(False),
                st.fixed_dictionaries({"gamma": st.floats(-4, 4).map(_r3), "beta": st.floats(-4, 4).map(_r3)}),
                st.fixed_dictionaries(
                    {
                        "gamma": st.lists(st.floats(-4, 4).map(_r3), min_size=C, max_size=C),
                        "beta": st.lists(st.floats(-4, 4).map(_r3), min_size=C, max_size=C),
                    }
                ),
            )
        )
        if affine is not None:
            d["affine"] = affine
        rm = draw(st.one_of(st.none(), st.floats(-10, 10).map(_r3)))
        if rm is not None:
            d["running_mean"] = rm
        rv = draw(st.one_of(st.none(), st.sampled_from([0.0, 1e-4, 100.0]), st.floats(0, 10).map(_r3)))
        if rv is not None:
            d["running_var"] = rv
        if steps > 1:
            d["steps"] = steps
        if mode == "train" and draw(st.booleans()):
            d["eval_after"] = True
        dist = draw(st.sampled_from(["normal", "uniform", "constant"]))
        gen: dict[str, Any] = {}
        if dist == "normal":
            mean = draw(
                st.one_of(
                    st.just(0.0), st.sampled_from([1.0, -2.5, 10.0, 1e3, -1e3, 1e5]), st.floats(-100, 100).map(_r3)
                )
            )
            std = draw(
                st.one_of(st.just(1.0), st.sampled_from([0.1, 10.0, 1e-3, 1e3, 1e-6]), st.floats(1e-3, 1e3).map(_r3))
            )
            if mean != 0.0:
                gen["mean"] = mean
            if std != 1.0:
                gen["std"] = std
        elif dist == "uniform":
            low = draw(st.floats(-10, 10).map(_r3))
            width = draw(st.floats(1e-3, 20).map(_r3))
            gen.update(dist="uniform", low=low, high=_r3(low + width))
        else:
            gen.update(dist="constant", value=draw(st.floats(-100, 100).map(_r3)))
        s = draw(st.integers(0, 2**16 - 1))
        if s:
            gen["seed"] = s
        if gen:
            d["input"] = gen
        return d

    return strat()


# ----------------------------------------------------------------------------------------
# running examples


def _size_key(d: dict[str, Any], text: str) -> tuple:
    shape = d["shape"]
    return (math.prod(shape) * d.get("steps", 1), len(shape), d.get("steps", 1), len(text))


def _yaml_case(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=100)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", s).strip("-")[:60] or "x"


@dataclass
class Finding:
    """One signature and the smallest failing case seen for it."""

    backend: str
    outcome: str
    output: str
    case: dict[str, Any]
    message: str
    explanation: str
    version: str
    found_at: int  # example number (1-based) in the whole run
    round: int
    key: tuple = ()
    path: Path | None = None

    @property
    def signature(self) -> tuple[str, str, str]:
        return (self.backend, self.outcome, self.output)


def signature_of(rows) -> tuple[str, str, str, str, str, str] | None:
    """(outcome, output, message, explanation, version) of a failing pair, else None."""
    from harness.results import pair_outcome

    overall = pair_outcome(rows)
    if overall not in FAILING:
        return None
    bad = next(r for r in rows if r.outcome == overall)
    if overall == "error":
        what = _slug(bad.message.split(":", 1)[0].split(";", 1)[0].strip())[:40] or "error"
    else:
        what = bad.output or "?"
    return overall, what, bad.message, bad.explanation, bad.backend_version or ""


def representable(lc, runner) -> bool:
    """False when an expected output is finite but overflows its output dtype.

    Such a case asks for a number the backend cannot return (e.g. a float16 variance above
    65504): every backend would "fail" it, so the fuzzer does not draw it.
    """
    import numpy as np

    from harness.inputs import np_dtype
    from harness.oracle import reference_outputs
    from harness.results import output_dtype

    inputs, _ = runner.expected(lc)
    ref = reference_outputs(lc.case, inputs)  # float64: the expected values are these rounded (inf here)
    for name in lc.case.output_names():
        dt = np_dtype(output_dtype(lc.case, name))
        for a in ref.get(name, ()):
            with np.errstate(over="ignore", invalid="ignore"):
                if (np.isfinite(a) & ~np.isfinite(a.astype(dt))).any():
                    return False
    return True


class Executor:
    """Runs one case on several backends: one thread (one warm worker) per worker group."""

    def __init__(self, runner, backends: list[str], jobs: int = 2):
        self.runner = runner
        self.backends = backends
        self.group = {b: runner.group_of(b)[0] for b in backends}
        self._pools = {
            g: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fuzz-{g}")
            for g in dict.fromkeys(self.group.values())
        }
        self._sem = threading.Semaphore(max(1, jobs))

    def _one(self, lc, backend):
        with self._sem:
            return self.runner.run_pair(lc, backend)

    def run(self, lc, backends: list[str] | None = None) -> dict[str, list]:
        bs = backends or self.backends
        futs = {b: self._pools[self.group[b]].submit(self._one, lc, b) for b in bs}
        return {b: futs[b].result() for b in bs}

    def close(self) -> None:
        # each pool thread holds its worker in thread-local storage; Runner.close() ends them all
        for p in self._pools.values():
            p.shutdown(wait=True)


class _Found(Exception):
    """Raised inside the Hypothesis property to mark the round's target signature."""


def _found(sig: tuple[str, str, str]) -> None:
    # one raise site: Hypothesis tells failures apart by where they are raised, and the
    # generation and shrink paths must count as the same failure
    raise _Found(" ".join(sig))


@dataclass
class FuzzReport:
    findings: list[Finding] = field(default_factory=list)
    examples: int = 0
    rounds: int = 0
    seconds: float = 0.0
    shrink_runs: int = 0
    timed_out: bool = False
    #: explained discrepancies met while generating: (backend, explanation label) -> examples
    explained: dict[tuple[str, str], int] = field(default_factory=dict)


def fuzz(
    executor: Executor,
    *,
    max_examples: int = 100,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    dtypes: tuple[str, ...] = DEFAULT_DTYPES,
    modes: tuple[str, ...] = ("train", "eval"),
    max_findings: int = 50,
    max_shrinks: int = 200,
    max_seconds: float | None = None,
    on_finding: Callable[[Finding], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Search, shrink and return the findings (the caller writes them)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
    from hypothesis import seed as hseed

    from harness.cases import Case, LoadedCase

    report = FuzzReport()
    known: dict[tuple[str, str, str], Finding] = {}
    t0 = time.perf_counter()
    strategy = case_dicts(max_elements, dtypes, modes)

    def loaded(d: dict[str, Any]) -> LoadedCase:
        return LoadedCase(Case.model_validate({"id": "fuzz", **d}), "<fuzz>", 0)

    while report.examples < max_examples and len(known) < max_findings:
        report.rounds += 1
        state: dict[str, Any] = {"target": None, "best": None, "shrinks": 0}
        round_seed = int.from_bytes(
            hashlib.sha256(f"normconf-fuzz:{seed}:{report.rounds}".encode()).digest()[:8], "little"
        )
        budget = max_examples - report.examples

        def prop(d: dict[str, Any]) -> None:
            target = state["target"]
            text = _yaml_case(d)
            lc = loaded(d)
            if not representable(lc, executor.runner):
                reject()
            if target is None:  # generation
                if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                    report.timed_out = True
                    return  # out of time: the remaining draws are not run
                report.examples += 1
                if progress and report.examples % 25 == 0:
                    progress(
                        f"{report.examples}/{max_examples} examples, {len(known)} finding(s), "
                        f"{time.perf_counter() - t0:.0f} s"
                    )
                results = executor.run(lc)
                for b, rows in results.items():
                    for lab in sorted(
                        {x for r in rows if r.outcome == "explained" for x in r.explanation.split(";") if x}
                    ):
                        report.explained[(b, lab)] = report.explained.get((b, lab), 0) + 1
                    sig = signature_of(rows)
                    if sig is None or (b, sig[0], sig[1]) in known:
                        continue
                    outcome, what, msg, expl, version = sig
                    f = Finding(
                        b, outcome, what, d, msg, expl, version, report.examples, report.rounds, _size_key(d, text)
                    )
                    state["target"], state["best"] = (b, outcome, what), f
                    _found(state["target"])
                return
            # shrinking: only the target backend, only the target signature counts
            b = target[0]
            if state["shrinks"] >= max_shrinks:
                return  # shrink budget spent: keep the smallest case so far
            state["shrinks"] += 1
            report.shrink_runs += 1
            rows = executor.run(lc, [b])[b]
            sig = signature_of(rows)
            if sig is None or (b, sig[0], sig[1]) != target:
                return
            key = _size_key(d, text)
            best: Finding = state["best"]
            if key < best.key:
                best.case, best.key, best.message, best.explanation = d, key, sig[2], sig[3]
            _found(target)

        test = hseed(round_seed)(
            settings(
                max_examples=max(1, budget),
                database=None,
                derandomize=False,
                deadline=None,
                phases=(Phase.generate, Phase.shrink),
                report_multiple_bugs=False,
                print_blob=False,
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
            )(given(strategy)(prop))
        )
        try:
            test()
        except KeyboardInterrupt:
            raise
        except BaseException:  # _Found (the minimal example replayed), Flaky, ...
            pass
        best = state["best"]
        if best is None or report.timed_out:
            if best is not None:
                known[best.signature] = best
                report.findings.append(best)
                if on_finding:
                    on_finding(best)
            break  # the budget ran out (or the search space was exhausted) without a new signature
        known[best.signature] = best
        report.findings.append(best)
        if on_finding:
            on_finding(best)
    report.seconds = time.perf_counter() - t0
    return report


# ----------------------------------------------------------------------------------------
# writing findings


def finding_yaml(f: Finding, command: str, versions: dict[str, str]) -> tuple[str, str]:
    """(case id, file text) of a finding: a ready case file."""
    text = _yaml_case(f.case)
    digest = hashlib.sha256(f"{f.backend}|{f.outcome}|{f.output}|{text}".encode()).hexdigest()[:8]
    cid = _slug(f"fuzz_{f.backend}_{f.outcome}_{f.output}_{digest}")
    msg = " ".join(f.message.split())
    desc = f"Found by normconf fuzz: {f.backend} gives {f.outcome}"
    desc += f" in {f.output}" if f.outcome == "mismatch" else f" ({f.output})"
    desc += f": {msg[:300]}"
    case = {"id": cid, "description": desc, **f.case}
    lines = [
        f"# Found by `normconf fuzz`: {f.backend} -> {f.outcome} ({f.output}), shrunk to the smallest case",
        f"# that still shows it (example {f.found_at}, round {f.round}).",
        f"# command: {command}",
        "# backend versions: " + (", ".join(f"{b} {v}" for b, v in sorted(versions.items()) if v) or "unknown"),
        f"# reproduce: normconf run <this file> --backend {f.backend}",
        "# To keep it in the suite as a known discrepancy, add under the case:",
        f"#   expect: {{{f.backend}: {{outcome: {f.outcome}, reason: <why>}}}}",
    ]
    import yaml

    body = yaml.safe_dump({"cases": [case]}, sort_keys=False, default_flow_style=None, width=100)
    return cid, "\n".join(lines) + "\n" + body


def write_finding(f: Finding, out: Path, command: str, versions: dict[str, str]) -> Path:
    from harness.results import atomic_write_text

    cid, text = finding_yaml(f, command, versions)
    path = out / f"{cid}.yaml"
    atomic_write_text(path, text)
    f.path = path
    return path


# ----------------------------------------------------------------------------------------
# CLI


def cmd_fuzz(args: argparse.Namespace) -> int:
    from harness.cli import EXIT_OK, EXIT_UNEXPECTED, UsageError, _csv_list, _select_backends
    from harness.runner import Runner

    dtypes = tuple(_csv_list(args.dtype)) or DEFAULT_DTYPES
    bad = [d for d in dtypes if d not in DEFAULT_DTYPES]
    if bad:
        raise UsageError(f"--dtype: unknown dtype(s) {', '.join(bad)}; known: {', '.join(DEFAULT_DTYPES)}")
    modes = tuple(_csv_list(args.mode)) or ("train", "eval")
    if any(m not in ("train", "eval") for m in modes):
        raise UsageError("--mode: expected train and/or eval")
    if args.max_examples < 1 or args.max_elements < 1:
        raise UsageError("--max-examples and --max-elements must be at least 1")
    out = Path(args.out)
    with Runner(tuple(args.adapter or ()), tuple(args.native or ()), timeout=args.timeout) as runner:
        backends = _select_backends(runner, _csv_list(args.backend))
        info = runner.backend_info(backends)
        missing = {b: r for b, (r, _) in info.items() if r}
        for b, r in missing.items():
            print(f"skipping {b}: {r}", file=sys.stderr)
        backends = [b for b in backends if b not in missing]
        if not backends:
            raise UsageError("no available backend to fuzz")
        versions = {b: v for b, (_, v) in info.items() if b in backends}
        command = " ".join(
            [
                "normconf fuzz",
                "--backend",
                ",".join(backends),
                "--max-examples",
                str(args.max_examples),
                "--seed",
                str(args.seed),
                "--max-elements",
                str(args.max_elements),
                "--max-shrinks",
                str(args.max_shrinks),
            ]
            + [f"--adapter {a}" for a in args.adapter or ()]
            + [f"--native {n}" for n in args.native or ()]
            + (["--dtype", ",".join(dtypes)] if args.dtype else [])
            + (["--mode", ",".join(modes)] if args.mode else [])
        )
        print(
            f"fuzzing {', '.join(backends)}: up to {args.max_examples} examples of at most "
            f"{args.max_elements} elements, seed {args.seed}",
            file=sys.stderr,
        )

        def found(f: Finding) -> None:
            path = write_finding(f, out, command, versions)
            print(f"found: {f.backend} {f.outcome} {f.output} (example {f.found_at}) -> {path}", file=sys.stderr)

        ex = Executor(runner, backends, jobs=args.jobs)
        try:
            rep = fuzz(
                ex,
                max_examples=args.max_examples,
                seed=args.seed,
                max_elements=args.max_elements,
                dtypes=dtypes,
                modes=modes,
                max_findings=args.max_findings,
                max_shrinks=args.max_shrinks,
                max_seconds=args.max_seconds,
                on_finding=found,
                progress=lambda s: print(s, file=sys.stderr),
            )
        finally:
            ex.close()
    print(
        f"{rep.examples} examples in {rep.seconds:.0f} s ({rep.rounds} round(s), {rep.shrink_runs} shrink runs): "
        f"{len(rep.findings)} finding(s)" + (" (stopped by --max-seconds)" if rep.timed_out else "")
    )
    for f in rep.findings:
        shape = "x".join(str(s) for s in f.case["shape"])
        print(f"  {f.backend:22s} {f.outcome:8s} {f.output:14s} shape {shape:12s} {f.path}")
    if rep.explained:
        print("explained discrepancies met (not findings): backend, explanation, examples")
        for (b, lab), n in sorted(rep.explained.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])):
            print(f"  {b:22s} {lab:60s} {n}")
    return EXIT_UNEXPECTED if rep.findings else EXIT_OK


def add_parser(subparsers) -> None:
    """Register ``normconf fuzz`` (called by :mod:`harness.cli`)."""
    from harness.cli import _add_common

    p = subparsers.add_parser(
        "fuzz",
        help="draw random cases, find unexplained mismatches/errors, shrink them to YAML cases",
        description="Property-based search (Hypothesis) for cases where a backend gives an unexplained "
        "mismatch or an error; each new one is shrunk to a minimal case and written as YAML.",
    )
    p.add_argument("--backend", "-b", action="append", metavar="ID[,ID...]", help="backends to fuzz (default: all)")
    p.add_argument(
        "--max-examples", type=int, default=100, help="generated examples in all (default 100; shrinking is extra)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same findings (default 0)")
    p.add_argument("--out", "-o", default="cases/found", help="folder for the found cases (default: cases/found/)")
    p.add_argument(
        "--max-elements",
        type=int,
        default=DEFAULT_MAX_ELEMENTS,
        help=f"size budget: input elements of one example, all steps together (default {DEFAULT_MAX_ELEMENTS})",
    )
    p.add_argument("--dtype", action="append", metavar="DT[,DT...]", help="dtypes to draw (default: all four)")
    p.add_argument("--mode", action="append", metavar="MODE", help="modes to draw: train, eval (default: both)")
    p.add_argument("--max-findings", type=int, default=50, help="stop after this many findings (default 50)")
    p.add_argument(
        "--max-shrinks",
        type=int,
        default=200,
        help="backend runs spent shrinking one finding (default 200); the smallest case so far is kept",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop generating after this many seconds (the run is then no longer reproducible by seed alone)",
    )
    p.add_argument("--jobs", "-j", type=int, default=2, help="backends running at once (default 2)")
    _add_common(p)
    p.set_defaults(func=cmd_fuzz)
