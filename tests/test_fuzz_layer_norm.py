"""``normconf fuzz --op layer_norm``: the LayerNorm fuzz hook finds planted faults, shrinks them to
minimal case files that validate and reproduce, never reports an explained convention, and the
same seed gives the same files.

The mutant backends live in tests/fuzz_mutants.py; the worker imports them as ``tests.fuzz_mutants``,
so every run here has the repository root as its working directory.
"""

import csv
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from normconf import ops
from normconf.cases import load_file
from normconf.fuzz import Executor, Finding, finding_yaml, fuzz
from normconf.ops.layer_norm.fuzz import case_dicts
from tests.helpers import FUZZ_MUTANTS as MUTANTS
from tests.helpers import fuzz_mutant_runner, run_cli

SPEC = ops.get("layer_norm")


@pytest.fixture(scope="module")
def runner():
    with fuzz_mutant_runner(timeout=120) as r:  # in the repository root: the worker imports tests.fuzz_mutants
        yield r


def run_fuzz(runner, backend, **kw):
    ex = Executor(runner, [backend])
    try:
        return fuzz(ex, op="layer_norm", **kw)
    finally:
        ex.close()


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(case_dicts(max_elements=64))
def test_drawn_cases_are_valid_and_within_budget(d):
    case = SPEC.case_model.model_validate({"id": "x", **d})
    assert SPEC.cross_checks(case) == []
    assert case.op == "layer_norm" and d["op"] == "layer_norm"
    assert case.n_elements <= 64
    assert 1 <= case.rank <= 5
    assert all(case.shape[a] >= 1 for a in case.norm_axes)


def test_strategy_reaches_every_option():
    # one fixed-seed sample of the strategy must contain each kind of case the hook promises
    from hypothesis import Phase, seed

    seen: list[dict] = []

    @seed(0)
    @settings(max_examples=400, deadline=None, database=None, phases=(Phase.generate,))
    @given(case_dicts(max_elements=512))
    def sample(d):
        seen.append(d)

    sample()
    cases = [SPEC.case_model.model_validate({"id": "x", **d}) for d in seen]
    assert {c.rank for c in cases} == {1, 2, 3, 4, 5}
    assert any(not c.trailing for c in cases), "non-trailing axes"
    assert any(c.trailing and len(c.norm_axes) > 1 for c in cases), "trailing k > 1"
    assert any(min(a) < 0 for a in (d.get("axes", [0]) for d in seen) if len(a) > 1 or a != [-1]), "negative axes"
    assert {c.dtype for c in cases} == {"float32", "float64", "float16", "bfloat16"}
    assert any(c.param_dtype == "float32" and c.dtype != "float32" for c in cases)
    assert {c.eps for c in cases} >= {1e-5, 1e-6, 1e-3, 1e-12}, "the documented eps values"
    assert any(c.eps not in (1e-5, 1e-6, 1e-3, 1e-12, 0.1, 1e-2) for c in cases), "random eps"
    assert any(c.affine is False for c in cases) and any(not c.bias for c in cases if c.has_affine)
    assert any(isinstance(d.get("affine"), dict) and isinstance(d["affine"]["gamma"], list) for d in seen)
    assert any(c.rms_scaling for c in cases) and any(c.normalize_variance == "unbiased" for c in cases)
    assert any(c.steps > 1 for c in cases) and any(0 in c.shape for c in cases), "steps, empty rows"
    means = Counter(abs(d.get("input", {}).get("mean", 0.0)) >= 1e3 for d in seen)
    assert means[True] > 0, "large offsets"


def test_planted_fault_is_found_validated_reproduced_and_deterministic(tmp_path):
    args = ["fuzz", "--op", "layer_norm", "--adapter", MUTANTS, "--backend", "mutant-ln-last-feature,numpy"]
    args += ["--max-examples", "25", "--seed", "1", "--max-shrinks", "60"]
    p = run_cli(*args, "--out", str(tmp_path / "a"))
    assert p.returncode == 1, p.stdout + p.stderr  # 1: something was found
    files = sorted((tmp_path / "a").glob("*.yaml"))
    assert len(files) == 1, (files, p.stdout, p.stderr)  # the reference (numpy) has no finding
    text = files[0].read_text()
    assert text.startswith("normconf: 1\n")
    assert "# command: normconf fuzz --op layer_norm --backend mutant-ln-last-feature,numpy" in text
    assert "mutant-ln-last-feature mutant-1" in text  # the backend version
    (lc,) = load_file(files[0])
    assert lc.case.op == "layer_norm"
    assert lc.case.shape == [3] and lc.case.steps == 1, lc.case  # rows of m >= 3: one row of 3

    v = run_cli("validate", str(files[0]))
    assert v.returncode == 0, v.stdout + v.stderr

    rep = tmp_path / "rep"
    r = run_cli(
        "run", str(files[0]), "--adapter", MUTANTS, "--backend", "mutant-ln-last-feature,numpy", "--out", str(rep)
    )
    assert r.returncode == 1, r.stdout + r.stderr
    with open(rep / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    y = [x for x in rows if x["backend"] == "mutant-ln-last-feature" and x["output"] == "y"]
    assert y and y[0]["outcome"] == "mismatch" and y[0]["worst_index"] == "[2]", y
    assert {x["outcome"] for x in rows if x["backend"] == "numpy"} == {"pass"}

    # the same seed again: byte-identical finding files
    p2 = run_cli(*args, "--out", str(tmp_path / "b"))
    assert p2.returncode == 1, p2.stdout + p2.stderr
    again = sorted((tmp_path / "b").glob("*.yaml"))
    assert [f.name for f in again] == [f.name for f in files]
    assert again[0].read_bytes() == files[0].read_bytes()


def test_non_trailing_fault_shrinks_to_two_elements(runner):
    rep = run_fuzz(runner, "mutant-ln-trailing-only", max_examples=80, seed=2, max_shrinks=100, max_findings=1)
    assert [f.signature for f in rep.findings] == [("mutant-ln-trailing-only", "mismatch", "y")]
    case = SPEC.case_model.model_validate({"id": "x", **rep.findings[0].case})
    assert not case.trailing and case.rank == 2 and case.n_elements == 2, rep.findings[0].case


def test_explained_convention_is_not_a_finding(runner):
    rep = run_fuzz(runner, "mutant-ln-unbiased", max_examples=30, seed=5)
    assert rep.findings == [], [(f.signature, f.case, f.message) for f in rep.findings]
    assert rep.explained.get(("mutant-ln-unbiased", "normalize_variance=unbiased"), 0) > 0, rep.explained


def test_reference_has_no_findings(runner):
    rep = run_fuzz(runner, "numpy", max_examples=40, seed=11)
    assert rep.examples == 40
    assert rep.findings == [], [(f.signature, f.case, f.message) for f in rep.findings]


def test_same_seed_same_findings_in_process(runner):
    def once():
        rep = run_fuzz(runner, "mutant-ln-last-feature", max_examples=15, seed=7, max_shrinks=30)
        return [(f.signature, f.case, f.found_at) for f in rep.findings], rep.examples

    first, second = once(), once()
    assert first == second and first[0]


def test_unknown_op_exits_2_with_the_known_ops():
    p = run_cli("fuzz", "--op", "nope", timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "fuzzable ops: batch_norm, layer_norm" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("fuzz", "--op", "layer_nrom", timeout=60)
    assert p.returncode == 2 and "did you mean 'layer_norm'?" in p.stderr, p.stderr


def test_options_and_backends_the_op_lacks_exit_2():
    p = run_cli("fuzz", "--op", "layer_norm", "--mode", "train", timeout=60)
    assert p.returncode == 2 and "--mode: op layer_norm has no modes" in p.stderr, p.stderr
    p = run_cli("fuzz", "--op", "layer_norm", "--adapter", MUTANTS, "--backend", "mutant-third-channel", timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "mutant-third-channel do(es) not implement op layer_norm" in p.stderr and "Traceback" not in p.stderr


def test_written_file_has_no_terminal_escapes(tmp_path):
    msg = "\x1b[31mValueError\x1b[0m: boom\n\x1b]0;title\x07second line\x07"
    f = Finding("numpy", "error", "ValueError", {"op": "layer_norm", "shape": [2, 3]}, msg, "", "2.0", 1, 1)
    cid, text = finding_yaml(f, "normconf fuzz --op layer_norm\x1b[2J", {"numpy": "2.0\x1b[1m"})
    assert "\x1b" not in text and "\x07" not in text
    assert "# message: ValueError: boom second line\\x07" in text  # one line; the stray BEL escaped
    assert text.startswith("normconf: 1\n") and "\n  op: layer_norm\n" in text
    assert "# Found by `normconf fuzz` (layer_norm): numpy -> error (ValueError), shrunk" in text
    path = tmp_path / f"{cid}.yaml"
    path.write_text(text)
    (lc,) = load_file(path)
    assert lc.case.op == "layer_norm" and lc.case.shape == [2, 3]
