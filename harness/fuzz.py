"""``normconf fuzz``: property-based discovery of discrepancies, shrunk to ready YAML cases.

Op-agnostic: ``--op NAME`` (default ``batch_norm``) picks the op whose fuzz hook
(``OpSpec.fuzz_cases``: :mod:`normconf.ops.batch_norm.fuzz`, :mod:`normconf.ops.layer_norm.fuzz`)
draws the case mappings, within a size budget (``--max-elements``, all steps together); the
backends are those whose adapter declares the op, and every selected one runs each example
through one :class:`~normconf.runner.Runner` (worker processes stay warm across examples; backends
of different worker groups run in parallel, ``--jobs`` at a time).  Examples whose expected
output overflows its dtype (:func:`representable`) are not drawn.

A *finding* is a (case, backend) pair whose outcome is ``mismatch`` (unexplained) or ``error``;
its *signature* is ``(backend, outcome, output)`` (for errors the output is the exception type).
The search runs in rounds: each round generates examples until one shows a signature not found
before, then Hypothesis shrinks that example -- running only the failing backend -- to the
smallest case with the same signature (smallest by number of elements, then rank, steps and
YAML length), which is written to ``--out`` (default ``cases/found/``) as a ready case file
(:mod:`normconf.fuzz_findings`).  Later rounds continue with the rest of the ``--max-examples``
budget and ignore signatures already found.

Deterministic: for a given ``--seed`` (and the same backends and versions) the drawn examples,
the findings and the files are the same on every run: ``database=None``, a fixed Hypothesis seed
per round, settings from Hypothesis' default profile (not one a test suite loaded), no
time-dependent phases, and no constants from the source of loaded modules
(:func:`source_blind_draws`).  Hypothesis stops a single shrink after 5 minutes, which only a very
slow backend reaches; ``--max-seconds`` is time-dependent by definition.

Exit codes: 0 nothing found, 1 findings written, 2 usage errors.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from normconf.fuzz_findings import Finding, finding_yaml, size_key, slug, write_finding, yaml_case
from normconf.ops._strategies import FUZZ_DTYPES

__all__ = ["Executor", "Finding", "FuzzReport", "finding_yaml", "fuzz", "representable", "write_finding"]

#: outcomes that count as a finding
FAILING = ("mismatch", "error")
DEFAULT_MAX_ELEMENTS = 512
DEFAULT_OP = "batch_norm"


# ----------------------------------------------------------------------------------------
# drawing cases


def fuzzable_ops() -> list[str]:
    """The registered ops that have a fuzz hook (``OpSpec.fuzz_cases``)."""
    from normconf import ops

    return [s.name for s in ops.all_ops() if s.fuzz_cases is not None]


def hook_options(op: str) -> tuple[str, ...]:
    """The op-specific keyword options its fuzz hook takes (BatchNorm: ``modes``)."""
    import inspect

    from normconf import ops

    hook = ops.get(op).fuzz_cases
    if hook is None:
        return ()
    return tuple(n for n in inspect.signature(hook).parameters if n not in ("max_elements", "dtypes"))


def op_dtypes(runner, backends: list[str], op: str) -> tuple[str, ...]:
    """The dtypes (of :data:`FUZZ_DTYPES`) at least one of ``backends`` declares for ``op``."""
    declared: set[str] = set()
    for b in backends:
        cls = runner.adapters[b]
        declared.update(dict(getattr(cls, "op_dtypes", {}) or {}).get(op, cls.dtypes))
    return tuple(d for d in FUZZ_DTYPES if d in declared) or FUZZ_DTYPES


def supports_op(runner, backend: str, op: str) -> bool:
    """The backend's adapter declares ``op`` (its ``ops`` ClassVar; ``"*"``: every op)."""
    declared = tuple(runner.adapters[backend].ops)
    return "*" in declared or op in declared


@contextmanager
def source_blind_draws():
    """Hypothesis draws without the constants it collects from the source of loaded local modules.

    Hypothesis (6.131 and later) mixes numbers found in the source of every *local* module in
    ``sys.modules`` into its draws.  Which modules are loaded differs between ``normconf fuzz`` and
    pytest, and grows during a run (lazy imports), so the same seed would draw different cases; the
    pool also changes with any edit of a number in the harness.  For the run, the default provider
    is a subclass whose local pool is empty (Hypothesis' own pool of boundary values stays) and the
    pool cache is a fresh one; both are restored afterwards.  A Hypothesis without the pool has
    nothing to remove.
    """
    from hypothesis.internal.conjecture import providers as hp

    base = getattr(hp, "HypothesisProvider", None)
    if base is None or not hasattr(base, "_local_constants") or not hasattr(hp, "CONSTANTS_CACHE"):
        yield
        return

    class SourceBlindProvider(base):  # type: ignore[misc, valid-type]
        @property
        def _local_constants(self):
            return hp.Constants()

    saved = hp.AVAILABLE_PROVIDERS["hypothesis"], hp.CONSTANTS_CACHE
    hp.AVAILABLE_PROVIDERS["hypothesis"] = SourceBlindProvider
    hp.CONSTANTS_CACHE = type(saved[1])(1024)
    try:
        yield
    finally:
        hp.AVAILABLE_PROVIDERS["hypothesis"], hp.CONSTANTS_CACHE = saved


# ----------------------------------------------------------------------------------------
# running examples


def signature_of(rows) -> tuple[str, str, str, str, str] | None:
    """(outcome, output, message, explanation, version) of a failing pair, else None."""
    from normconf.results import pair_outcome

    overall = pair_outcome(rows)
    if overall not in FAILING:
        return None
    bad = next(r for r in rows if r.outcome == overall)
    if overall == "error":
        what = slug(bad.message.split(":", 1)[0].split(";", 1)[0].strip())[:40] or "error"
    else:
        what = bad.output or "?"
    return overall, what, bad.message, bad.explanation, bad.backend_version or ""


def representable(lc, runner) -> bool:
    """False when an expected output is finite but overflows its output dtype.

    Such a case asks for a number the backend cannot return (e.g. a float16 variance above
    65504): every backend would "fail" it, so the fuzzer does not draw it.
    """
    import numpy as np

    from normconf.inputs import np_dtype
    from normconf.ops import spec_for
    from normconf.oracle import reference_outputs
    from normconf.results import output_dtype

    inputs = spec_for(lc.case).generate(lc.case)  # the workers judge: no expected values are needed here
    names = lc.case.output_names()
    # float64: the expected values are these rounded (inf here); only the outputs checked below
    ref = reference_outputs(lc.case, inputs, outputs=frozenset(names))
    for name in names:
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
        self.backends = list(backends)
        self.group = {b: runner.group_of(b)[0] for b in backends}
        self._pools = {
            g: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fuzz-{g}")
            for g in dict.fromkeys(self.group.values())
        }
        self._sem = threading.Semaphore(max(1, jobs))

    def probe(self) -> dict[str, tuple[str | None, str]]:
        """{backend: (unavailable reason or None, version)} (:meth:`Runner.backend_info`), asked by the
        pool thread that will run the backend: its worker, started here, is the one the examples use,
        so each framework is imported once, and every group's worker starts at the same time (not
        behind the ``jobs`` limit, which bounds the examples).  Unavailable backends are dropped."""
        by_group: dict[str, list[str]] = {}
        for b in self.backends:
            by_group.setdefault(self.group[b], []).append(b)
        futs = [self._pools[g].submit(self.runner.backend_info, bs) for g, bs in by_group.items()]
        info: dict[str, tuple[str | None, str]] = {}
        for f in futs:
            info.update(f.result())
        self.backends = [b for b in self.backends if not info[b][0]]
        return info

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

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


class StrategyError(RuntimeError):
    """An op's fuzz hook drew a case its own model rejects (a bug in the hook, never skipped)."""


def case_strategy(op: str, max_elements: int, dtypes: tuple[str, ...], options: dict[str, Any] | None = None):
    """The op's fuzz hook's strategy; :class:`ValueError` for an op without a hook or an option it lacks."""
    from normconf import ops

    spec = ops.get(op)
    if spec.fuzz_cases is None:
        raise ValueError(f"op {op} has no fuzz hook (OpSpec.fuzz_cases); fuzzable ops: {', '.join(fuzzable_ops())}")
    extra = sorted(set(options or {}) - set(hook_options(op)))
    if extra:
        raise ValueError(f"op {op}'s fuzz hook takes no option {', '.join(extra)}")
    return spec.fuzz_cases(max_elements=max_elements, dtypes=dtypes, **(options or {}))


def fuzz(
    executor: Executor,
    *,
    op: str = DEFAULT_OP,
    max_examples: int = 100,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    dtypes: tuple[str, ...] | None = None,
    options: dict[str, Any] | None = None,
    max_findings: int = 50,
    max_shrinks: int = 200,
    max_seconds: float | None = None,
    on_finding: Callable[[Finding], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Search, shrink and return the findings (the caller writes them).

    ``dtypes``: default those the executor's backends declare for ``op``; ``options``: the op hook's
    own keyword options (BatchNorm: ``modes``).  Raises :class:`StrategyError` when the hook draws
    an invalid case.
    """
    from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
    from hypothesis import seed as hseed

    from normconf import ops
    from normconf.cases import LoadedCase

    spec = ops.get(op)
    report = FuzzReport()
    known: dict[tuple[str, str, str], Finding] = {}
    t0 = time.perf_counter()
    if dtypes is None:
        dtypes = op_dtypes(executor.runner, executor.backends, op)
    strategy = case_strategy(op, max_elements, dtypes, options)
    op_required = spec.case_model.model_fields["op"].is_required()

    def loaded(d: dict[str, Any]) -> LoadedCase:
        from pydantic import ValidationError

        try:
            case = spec.case_model.model_validate({"id": "fuzz", **d})
        except ValidationError as e:
            raise StrategyError(f"the {op} fuzz hook drew an invalid case {d}: {e}") from None
        problems = spec.cross_checks(case)
        if problems:
            raise StrategyError(f"the {op} fuzz hook drew an invalid case {d}: {problems}")
        return LoadedCase(case, "<fuzz>", 0)

    def drawn(d: dict[str, Any]) -> dict[str, Any]:
        """The mapping as written: ``op`` first where the case model requires it."""
        return {"op": op, **d} if op_required and "op" not in d else d

    while report.examples < max_examples and len(known) < max_findings:
        report.rounds += 1
        state: dict[str, Any] = {"target": None, "best": None, "shrinks": 0}
        round_seed = int.from_bytes(
            hashlib.sha256(f"normconf-fuzz:{seed}:{report.rounds}".encode()).digest()[:8], "little"
        )
        budget = max_examples - report.examples

        def prop(d: dict[str, Any]) -> None:
            target = state["target"]
            d = drawn(d)
            text = yaml_case(d)
            try:
                lc = loaded(d)
            except StrategyError as e:
                state["invalid"] = e
                raise
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
                        b, outcome, what, d, msg, expl, version, report.examples, report.rounds, size_key(d, text)
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
            key = size_key(d, text)
            best: Finding = state["best"]
            if key < best.key:
                best.case, best.key, best.message, best.explanation = d, key, sig[2], sig[3]
            _found(target)

        test = hseed(round_seed)(
            settings(
                settings.get_profile("default"),
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
            with source_blind_draws():
                test()
        except KeyboardInterrupt:
            raise
        except BaseException:  # _Found (the minimal example replayed), Flaky, ...
            pass
        if "invalid" in state:
            raise state["invalid"]
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
# CLI


def _op_of(name: str) -> str:
    """``--op``: a registered op with a fuzz hook, else a usage error with the known ones."""
    import difflib

    from normconf import ops
    from normconf.cli_common import UsageError

    known = fuzzable_ops()
    if name in known:
        return name
    hint = difflib.get_close_matches(name, ops.names(), n=1)
    what = "has no fuzz hook (OpSpec.fuzz_cases)" if name in ops.names() else "is not a known op"
    raise UsageError(
        f"--op {name}: {what}"
        + (f" (did you mean {hint[0]!r}?)" if hint and hint[0] != name else "")
        + f"; fuzzable ops: {', '.join(known)}"
    )


def _op_backends(runner, requested: list[str], op: str) -> list[str]:
    """The backends to fuzz: the requested ones (default all) whose adapter declares ``op``."""
    from normconf.cli_common import UsageError, _select_backends

    backends = _select_backends(runner, requested)
    lacking = [b for b in backends if not supports_op(runner, b, op)]
    if requested and lacking:
        raise UsageError(
            f"--backend: {', '.join(lacking)} do(es) not implement op {op}; backends with {op}: "
            + ", ".join(b for b in sorted(runner.adapters) if supports_op(runner, b, op))
        )
    if lacking:
        print(f"not fuzzing (no {op}): {', '.join(lacking)}", file=sys.stderr)
    return [b for b in backends if b not in lacking]


def cmd_fuzz(args: argparse.Namespace) -> int:
    from normconf.cli import EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, UsageError, _csv_list
    from normconf.package_data import require_extra
    from normconf.runner import Runner

    require_extra("hypothesis", "fuzz", "normconf fuzz")  # a usage error naming the extra, before any work
    op = _op_of(args.op)
    dtypes = tuple(_csv_list(args.dtype))
    bad = [d for d in dtypes if d not in FUZZ_DTYPES]
    if bad:
        raise UsageError(f"--dtype: unknown dtype(s) {', '.join(bad)}; known: {', '.join(FUZZ_DTYPES)}")
    options: dict[str, Any] = {}
    if args.mode:
        if "modes" not in hook_options(op):
            raise UsageError(
                f"--mode: op {op} has no modes (its fuzz hook takes: {', '.join(hook_options(op)) or 'none'})"
            )
        options["modes"] = tuple(_csv_list(args.mode))
        if not options["modes"] or any(m not in ("train", "eval") for m in options["modes"]):
            raise UsageError("--mode: expected train and/or eval")
    if args.max_examples < 1 or args.max_elements < 1:
        raise UsageError("--max-examples and --max-elements must be at least 1")
    out = Path(args.out)
    with (
        Runner(tuple(args.adapter or ()), tuple(args.native or ()), timeout=args.timeout) as runner,
        Executor(runner, _op_backends(runner, _csv_list(args.backend), op), jobs=args.jobs) as ex,
    ):
        info = ex.probe()  # starts the workers the examples run on (each framework imported once)
        missing = {b: r for b, (r, _) in info.items() if r}
        for b, r in missing.items():
            print(f"skipping {b}: {r}", file=sys.stderr)
        backends = ex.backends
        if not backends:
            raise UsageError(f"no available backend to fuzz op {op}")
        versions = {b: v for b, (_, v) in info.items() if b in backends}
        command = " ".join(
            ["normconf fuzz", "--op", op, "--backend", ",".join(backends)]
            + ["--max-examples", str(args.max_examples), "--seed", str(args.seed)]
            + ["--max-elements", str(args.max_elements), "--max-shrinks", str(args.max_shrinks)]
            + [f"--adapter {a}" for a in args.adapter or ()]
            + [f"--native {n}" for n in args.native or ()]
            + (["--dtype", ",".join(dtypes)] if dtypes else [])
            + (["--mode", ",".join(options["modes"])] if "modes" in options else [])
        )
        print(
            f"fuzzing {op} on {', '.join(backends)}: up to {args.max_examples} examples of at most "
            f"{args.max_elements} elements, seed {args.seed}",
            file=sys.stderr,
        )

        def found(f: Finding) -> None:
            path = write_finding(f, out, command, versions)
            print(f"found: {f.backend} {f.outcome} {f.output} (example {f.found_at}) -> {path}", file=sys.stderr)

        try:
            rep = fuzz(
                ex,
                op=op,
                max_examples=args.max_examples,
                seed=args.seed,
                max_elements=args.max_elements,
                dtypes=dtypes or None,
                options=options,
                max_findings=args.max_findings,
                max_shrinks=args.max_shrinks,
                max_seconds=args.max_seconds,
                on_finding=found,
                progress=lambda s: print(s, file=sys.stderr),
            )
        except StrategyError as e:  # a broken fuzz hook (a plug-in op's): said plainly, nothing written
            print(f"normconf fuzz: {e}", file=sys.stderr)
            return EXIT_USAGE
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
    """Register ``normconf fuzz`` (called by :mod:`normconf.cli`)."""
    from normconf.cli import _add_common

    p = subparsers.add_parser(
        "fuzz",
        help="draw random cases, find unexplained mismatches/errors, shrink them to YAML cases",
        description="Property-based search (Hypothesis) for cases where a backend gives an unexplained "
        "mismatch or an error; each new one is shrunk to a minimal case and written as YAML.",
    )
    p.add_argument(
        "--op", default=DEFAULT_OP, metavar="OP", help=f"the op to fuzz (default {DEFAULT_OP}; any op with a fuzz hook)"
    )
    p.add_argument(
        "--backend", "-b", action="append", metavar="ID[,ID...]", help="backends to fuzz (default: all with the op)"
    )
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
    p.add_argument(
        "--dtype",
        action="append",
        metavar="DT[,DT...]",
        help="dtypes to draw (default: those the backends declare for the op)",
    )
    p.add_argument(
        "--mode", action="append", metavar="MODE", help="modes to draw: train, eval (default: both; batch_norm only)"
    )
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
