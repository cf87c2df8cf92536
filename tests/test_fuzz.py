"""``normconf fuzz``: finds planted faults, shrinks them to minimal YAML cases that reproduce.

The mutant backends live in tests/fuzz_mutants.py (the reference with one planted fault each);
the worker process imports them as ``tests.fuzz_mutants``, so every run here has the repository
root as its working directory.
"""

import csv
import math
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings

from normconf.cases import Case, LoadedCase, load_file
from normconf.fuzz import Executor, Finding, fuzz, representable, signature_of, write_finding
from normconf.ops.batch_norm.fuzz import case_dicts
from tests.helpers import FUZZ_MUTANTS as MUTANTS
from tests.helpers import REPO_ROOT, fuzz_mutant_runner, run_cli


@pytest.fixture(scope="module")
def runner():
    with fuzz_mutant_runner(timeout=120) as r:  # in the repository root: the worker imports tests.fuzz_mutants
        yield r


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(case_dicts(max_elements=64))
def test_drawn_cases_are_valid_and_within_budget(d):
    case = Case.model_validate({"id": "x", **d})
    assert case.n_elements <= 64
    assert 2 <= case.rank <= 5
    assert case.shape[0] >= 0 and all(s >= 1 for s in case.shape[1:])
    if case.mode == "eval":
        assert not case.eval_after


def test_planted_fault_is_found_shrunk_and_reproduced(tmp_path):
    out = tmp_path / "found"
    p = run_cli(
        "fuzz",
        "--adapter",
        MUTANTS,
        "--backend",
        "mutant-third-channel",
        "--max-examples",
        "40",
        "--seed",
        "1",
        "--max-shrinks",
        "80",
        "--out",
        str(out),
    )
    assert p.returncode == 1, p.stdout + p.stderr  # 1: something was found
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 1, (files, p.stdout, p.stderr)
    text = files[0].read_text()
    assert text.startswith("normconf: 1\n")  # the case-file format version first
    assert "# command: normconf fuzz --op batch_norm --backend mutant-third-channel --max-examples 40 --seed 1" in text
    assert "mutant-third-channel mutant-1" in text  # the backend version
    (lc,) = load_file(files[0])
    # the fault needs C >= 3 and at least one sample: (1, 3) is the smallest case that shows it
    assert lc.case.shape == [1, 3], lc.case.shape
    assert lc.case.rank == 2 and lc.case.steps == 1 and math.prod(lc.case.shape) == 3

    # `normconf run` reproduces it on the mutant, and the reference passes the same case
    rep = tmp_path / "rep"
    p = run_cli(
        "run", str(files[0]), "--adapter", MUTANTS, "--backend", "mutant-third-channel,numpy", "--out", str(rep)
    )
    assert p.returncode == 1, p.stdout + p.stderr
    with open(rep / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mutant_y = [r for r in rows if r["backend"] == "mutant-third-channel" and r["output"] == "y"]
    assert mutant_y and mutant_y[0]["outcome"] == "mismatch"
    assert mutant_y[0]["worst_index"] == "[0, 2]"  # the third channel
    assert {r["outcome"] for r in rows if r["backend"] == "numpy"} == {"pass"}


def test_fault_needing_three_steps_shrinks_to_three_steps(runner):
    ex = Executor(runner, ["mutant-step3"])
    try:
        rep = fuzz(ex, max_examples=60, seed=3, max_findings=1, max_shrinks=100)
    finally:
        ex.close()
    assert len(rep.findings) == 1
    f = rep.findings[0]
    assert (f.backend, f.outcome, f.output) == ("mutant-step3", "mismatch", "running_mean")
    assert f.case["shape"] == [1, 1] and f.case.get("steps") == 3, f.case
    assert f.case.get("mode", "train") == "train"


def test_same_seed_same_findings(runner):
    def once():
        ex = Executor(runner, ["mutant-third-channel"])
        try:
            rep = fuzz(ex, max_examples=15, seed=7, max_shrinks=40)
        finally:
            ex.close()
        return [(f.signature, f.case, f.found_at) for f in rep.findings], rep.examples

    first, second = once(), once()
    assert first == second
    assert first[0], "expected the planted faults to be found"


def test_reference_has_no_findings(runner, tmp_path):
    # the NumPy reference through the adapter path must pass every drawn case: anything else is a
    # bug in the strategy (e.g. an unrepresentable expected value) or in the harness
    ex = Executor(runner, ["numpy"])
    try:
        rep = fuzz(ex, max_examples=40, seed=11)
    finally:
        ex.close()
    assert rep.examples == 40
    assert rep.findings == [], [(f.signature, f.case, f.message) for f in rep.findings]


def test_the_probe_starts_the_workers_the_examples_run_on():
    """``normconf fuzz`` asks whether each backend is available of the worker its examples then run on:
    one worker per group for the whole session (each framework imported once, not once to probe and
    again to fuzz), every group's started at once."""
    with fuzz_mutant_runner(timeout=120) as r, Executor(r, ["numpy", "mutant-third-channel"]) as ex:
        info = ex.probe()
        assert set(info) == {"numpy", "mutant-third-channel"} and not any(why for why, _ in info.values())
        groups = set(ex.group.values())
        assert len(r._all_workers) == len(groups)
        rep = fuzz(ex, max_examples=6, seed=2, max_shrinks=5)
        assert rep.examples >= 1
        assert len(r._all_workers) == len(groups)  # the examples started none


def test_unrepresentable_expectation_is_not_drawn(runner):
    # a float16 batch with std 1000 has a variance (1e6) above the float16 maximum 65504
    huge = LoadedCase(
        Case.model_validate({"id": "h", "shape": [8, 2], "dtype": "float16", "input": {"std": 1000.0}}), "<t>", 0
    )
    fine = LoadedCase(Case.model_validate({"id": "f", "shape": [8, 2], "dtype": "float16"}), "<t>", 0)
    assert not representable(huge, runner)
    assert representable(fine, runner)


def test_written_finding_is_a_valid_case_file(runner, tmp_path):
    lc = LoadedCase(Case.model_validate({"id": "x", "shape": [2, 4]}), "<t>", 0)
    rows = runner.run_pair(lc, "mutant-third-channel")
    sig = signature_of(rows)
    assert sig is not None and sig[:2] == ("mismatch", "y")
    f = Finding("mutant-third-channel", sig[0], sig[1], {"shape": [2, 4]}, sig[2], sig[3], sig[4], 1, 1)
    path = write_finding(f, tmp_path, "normconf fuzz --seed 0", {"mutant-third-channel": "mutant-1"})
    (loaded,) = load_file(path)
    assert loaded.case.shape == [2, 4]
    assert loaded.id.startswith("fuzz_mutant-third-channel_mismatch_y_")
    assert "Found by normconf fuzz" in loaded.case.description
    text = path.read_text()
    assert text.startswith("normconf: 1\n") and "op:" not in text  # BatchNorm, the default op


DRAWS = """
import hashlib, importlib, json, sys
from hypothesis import HealthCheck, Phase, given, seed, settings
from normconf.fuzz import case_strategy, source_blind_draws
for m in sys.argv[2:]:
    importlib.import_module(m)
seen = []
@seed(123)
@settings(max_examples=60, database=None, deadline=None, phases=(Phase.generate,),
          suppress_health_check=list(HealthCheck))
@given(case_strategy(sys.argv[1], 512, ("float32", "float64", "float16", "bfloat16")))
def draw(d):
    seen.append(d)
with source_blind_draws():
    draw()
print(hashlib.sha256(json.dumps(seen).encode()).hexdigest())
"""


@pytest.mark.parametrize("op", ["batch_norm", "layer_norm"])
def test_draws_do_not_depend_on_the_loaded_modules(op):
    # Hypothesis mixes constants from the source of loaded local modules into its draws; the fuzzer
    # turns that off, so a seed draws the same cases however many harness/test modules are imported
    more = ["normconf.explain", "normconf.report.html", "normconf.cli", "tests.fuzz_mutants", "tests.test_fuzz"]
    digests = set()
    for extra in ([], more):
        p = subprocess.run(
            [sys.executable, "-c", DRAWS, op, *extra], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
        )
        assert p.returncode == 0, p.stderr
        digests.add(p.stdout.strip())
    assert len(digests) == 1, digests
