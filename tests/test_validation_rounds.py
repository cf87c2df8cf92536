"""One-round validation (issue 16): every error of every case file in one invocation.

Conventions: ``normconf validate``, ``normconf run`` and the pytest plugin report, in one invocation,
every kind of problem together — pydantic field errors, the checks that need several fields (data
lengths, values that cannot be: a negative variance, a parameter that overflows the case's dtype,
literal or drawn by a generator), ``expect:`` keys naming a backend the registry does not hold, and
ids repeated within and across files (also ids of cases that are invalid otherwise).  Each error
names ``file:line`` and the field; the exit status is 2, no traceback is printed and ``run`` writes
nothing to ``--out``.  A case with a wrong field still gets the checks of its other fields (a repair
pass), but no check that reads the wrong field (no follow-on error about a placeholder).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from normconf.case_model import Generator
from normconf.cases import check_paths, load_file
from normconf.inputs import parameter

ROOT = Path(__file__).resolve().parent.parent

MISTAKES = """\
normconf: 1
cases:
  - id: field_error
    shape: [2, 3]
    eps: -1
    running_var: [1, -1, 1]
  - id: data_length
    shape: [2, 3]
    data: [1, 2, 3]
  - id: typo_backend
    shape: [2, 3]
    expect:
      tourch: {outcome: mismatch, reason: a typo in the backend id}
  - id: shared
    shape: [2, 3]
    dtype: float16
    affine: {gamma: {dist: constant, value: 70000}}
"""
OTHER = """\
normconf: 1
cases:
  - id: shared
    shape: [2, 3]
    momentum: {batch_weight: 2}
"""
#: (file, line, field, message fragment) of every error of the suite, in the order they are reported
EXPECTED = [
    ("mistakes.yaml", 5, "cases[0](field_error).eps", "eps must be a finite number > 0 (got -1)"),
    ("mistakes.yaml", 6, "cases[0](field_error).running_var[1]", "a variance must be a finite number ≥ 0 (got -1)"),
    ("mistakes.yaml", 9, "cases[1](data_length).data", "3 values for shape [2, 3]: expected 6"),
    ("mistakes.yaml", 13, "expect.tourch (typo_backend)", "unknown backend 'tourch' (did you mean 'torch'?)"),
    ("mistakes.yaml", 17, "cases[3](shared).affine.gamma.value", "70000 overflows float16 (it would be inf)"),
    ("other.yaml", 3, "shared.id", "duplicate id 'shared': also defined at "),
    ("other.yaml", 5, "cases[0](shared).momentum.batch_weight", "less than or equal to 1 (got 2)"),
]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    d = tmp_path / "suite"
    d.mkdir()
    (d / "mistakes.yaml").write_text(MISTAKES)
    (d / "other.yaml").write_text(OTHER)
    return d


def _check_all_reported(out: str, lines: list[str]) -> None:
    """Every EXPECTED error is on one line of ``lines`` with its file:line, field and message; no other."""
    assert "Traceback" not in out, out
    for file, line, fld, fragment in EXPECTED:
        hits = [ln for ln in lines if f"{file}:{line}:" in ln and f" {fld}: " in ln and fragment in ln]
        assert len(hits) == 1, f"{file}:{line} {fld}: {fragment!r} reported {len(hits)} times in:\n{out}"
    assert len(lines) == len(EXPECTED), out
    assert "mistakes.yaml:14" in next(ln for ln in lines if "duplicate id 'shared'" in ln), out


def _normconf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    cmd = [sys.executable, "-m", "normconf.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_validate_reports_every_kind_of_error_in_one_round(suite):
    p = _normconf("validate", "suite", cwd=suite.parent)
    assert p.returncode == 2, p.stdout + p.stderr
    _check_all_reported(p.stdout + p.stderr, [ln for ln in p.stderr.splitlines() if ln.startswith("error: suite/")])
    assert f"{len(EXPECTED)} errors; nothing was run" in p.stderr
    assert "valid" not in p.stdout


def test_run_reports_every_kind_of_error_in_one_round_and_writes_nothing(suite):
    out = suite.parent / "reports"
    p = _normconf("run", "suite", "--backend", "numpy", "--out", str(out), cwd=suite.parent)
    assert p.returncode == 2, p.stdout + p.stderr
    _check_all_reported(p.stdout + p.stderr, [ln for ln in p.stderr.splitlines() if ln.startswith("error: suite/")])
    assert f"{len(EXPECTED)} errors; nothing was run" in p.stderr
    assert not out.exists(), "a refused run must not create the report folder"


def test_pytest_plugin_reports_every_kind_of_error_in_one_round(suite):
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(suite.parent), str(suite)]
        + ["--co", "-q", "--normconf-backend", "numpy"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out = p.stdout + p.stderr
    assert p.returncode == 2, out  # collection errors
    assert "ERROR collecting suite/mistakes.yaml" in out and "ERROR collecting suite/other.yaml" in out, out
    _check_all_reported(out, [ln for ln in out.splitlines() if f"{suite}/" in ln and ".yaml:" in ln])
    assert "::" not in out, "no item is collected from an invalid file"


# --- the same round, in process ------------------------------------------------------------


def _errors(tmp_path: Path, text: str, known=("numpy", "torch")) -> list[str]:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    cases, errors = check_paths([f], known)
    assert not cases or not errors
    return [f"{e.line}: {e.field}: {e.message}" for e in errors]


def test_a_field_error_does_not_hide_the_other_fields_checks_nor_add_follow_on_errors(tmp_path):
    errs = _errors(
        tmp_path,
        "cases:\n"
        "  - id: steps_wrong\n    shape: [2, 3]\n    steps: 0\n    data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\n"
        "  - id: shape_wrong\n    shape: [2, x]\n    running_var: [1, 1, 1]\n    data: [1, 2]\n"
        "  - id: dtype_wrong\n    shape: [2, 3]\n    dtype: float17\n    affine: {gamma: 70000}\n"
        "  - id: typo\n    shape: [2, 3]\n    momentun: 0.1\n    running_var: -1\n"
        "  - id: bad_expect\n    shape: [2, 3]\n    eps: -1\n    expect: {trch: {outcome: bogus, reason: a typo}}\n",
    )
    text = "\n".join(errs)
    # steps: 0 fails; the 12 values would fit 2 steps: no data error about the placeholder (1 step)
    assert [e for e in errs if "steps_wrong" in e] == [
        "4: cases[0](steps_wrong).steps: Input should be greater than or equal to 1 (got 0)"
    ], text
    # shape fails: no data length, no parameter length against a placeholder shape
    assert len([e for e in errs if "shape_wrong" in e]) == 1 and "shape[1]" in text, text
    # dtype fails: no overflow check against the default float32
    assert len([e for e in errs if "dtype_wrong" in e]) == 1 and "dtype_wrong).dtype" in text, text
    # an unknown key does not hide the negative variance
    assert "cases[3](typo).momentun: unknown key 'momentun' (did you mean 'momentum'?)" in text, text
    assert "cases[3](typo).running_var: a variance must be a finite number ≥ 0 (got -1)" in text, text
    # the expect: key of an invalid case is checked against the registry too (the key, not the value)
    assert "cases[4](bad_expect).eps: eps must be a finite number > 0" in text, text
    assert "cases[4](bad_expect).expect.trch.outcome:" in text, text
    assert "expect.trch (bad_expect): unknown backend 'trch' (did you mean 'torch'?)" in text, text
    assert len(errs) == 8, text


def test_duplicate_ids_of_invalid_cases_across_calls(tmp_path):
    """The pytest plugin checks one file at a time; ``first_ids`` carries the ids across the calls."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("cases:\n  - id: same\n    shape: [2, 3]\n    eps: -1\n")
    b.write_text("cases:\n  - id: same\n    shape: [2, 3]\n")
    ids: dict[str, tuple[str, int]] = {}
    assert len(check_paths([a], first_ids=ids).errors) == 1
    _, errors = check_paths([b], first_ids=ids)
    assert [(e.line, e.field, e.message) for e in errors] == [
        (2, "same.id", f"duplicate id 'same': also defined at {a}:2")
    ]
    assert check_paths([a, b]).errors[-1].message == errors[0].message
    # a file named twice is one file, read once (test_a_file_named_twice_is_read_once)
    assert check_paths([b, b]).errors == []


@pytest.mark.parametrize(
    "gamma, n",
    [
        ("{dist: normal, std: 2000, seed: 1}", 3),  # a draw is made (40·std ≥ 65520) but stays finite
        ("{dist: normal, std: 30000, seed: 0}", 64),
        ("{dist: normal, mean: 60000, std: 3000, seed: 7}", 8),
        ("{dist: normal, mean: -60000, std: 3000, seed: 2}", 8),
        ("{dist: normal, mean: 60000, std: 1, seed: 0}", 8),
    ],
)
def test_a_generator_is_refused_exactly_when_its_draws_overflow_float16(tmp_path, gamma, n):
    """The loader refuses a drawn gamma in a float16 case exactly when a drawn value would be inf."""
    spec = Generator.model_validate(yaml.safe_load(gamma))
    overflows = bool(np.isinf(parameter(spec, n, "float16", "gamma")).any())
    text = f"cases:\n  - id: g\n    op: layer_norm\n    shape: [2, {n}]\n    dtype: float16\n    affine: {{gamma: {gamma}}}\n"
    errs = _errors(tmp_path, text)
    if overflows:
        assert len(errs) == 1 and "draws" in errs[0] and "overflows float16 (it would be inf)" in errs[0], errs
        assert errs[0].startswith("6: cases[0](g).affine.gamma: normal("), errs
    else:
        assert errs == []


@pytest.mark.parametrize(
    "dtype, field, value, fragment",
    [
        (
            "float16",
            "running_var",
            "{dist: uniform, low: 0, high: 100000}",
            "running_var.high: 100000 overflows float16",
        ),
        (
            "float16",
            "running_mean",
            "{dist: uniform, low: -70000, high: 0}",
            "running_mean.low: -70000 overflows float16",
        ),
        ("float16", "running_mean", "{dist: constant, value: 65520}", "running_mean.value: 65520 overflows float16"),
        ("float16", "running_var", "{dist: normal, mean: 1, std: 0}", None),
        ("float16", "running_var", "{dist: uniform, low: 0, high: 65520}", None),  # high is not drawn
        ("float32", "running_mean", "{dist: constant, value: 70000}", None),
        ("float32", "running_var", "-1", "running_var: a variance must be a finite number ≥ 0 (got -1)"),
        (
            "float32",
            "momentum",
            "{batch_weight: .nan}",
            "a momentum weight must be a finite number in [0, 1] (got nan)",
        ),
        ("float32", "input", "{std: .nan}", "input.std: must be a finite number within float64 range (got nan)"),
        ("float32", "tolerance", "{rtol: .nan, atol: 0, reason: why not}", "tolerance.rtol: must be a finite number"),
    ],
)
def test_impossible_values_are_refused_with_a_clear_message(tmp_path, dtype, field, value, fragment):
    errs = _errors(tmp_path, f"cases:\n  - id: v\n    shape: [2, 3]\n    dtype: {dtype}\n    {field}: {value}\n")
    if fragment is None:
        assert errs == []
        return
    assert len(errs) == 1 and errs[0].startswith("5: ") and fragment in errs[0], errs
    assert "greater than or equal" not in errs[0], errs


def test_layer_norm_dimension_messages_name_the_axes_that_may_be_0(tmp_path):
    errs = _errors(
        tmp_path,
        "cases:\n"
        "  - {id: neg, op: layer_norm, shape: [2, -3]}\n"
        "  - {id: zero, op: layer_norm, shape: [2, 3, 0], axes: [-1]}\n"
        "  - {id: every, op: layer_norm, shape: [0, 4], axes: [0, 1]}\n"
        "  - {id: batch_empty, op: layer_norm, shape: [0, 4]}\n",
    )
    assert errs == [
        "2: cases[0](neg).shape[1]: dimension must be > 0 (got -3); only the axes that are not normalized (0) may be 0",
        "3: cases[1](zero).shape[2]: dimension must be > 0 (got 0); only the axes that are not normalized (0, 1) may be 0",
        "4: cases[2](every).shape[0]: dimension must be > 0 (got 0); no dimension may be 0 (every axis is normalized)",
    ], "\n".join(errs)
    assert not any("batch" in e for e in errs)


def test_a_valid_file_gives_its_cases_and_no_error(tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text("normconf: 1\ncases:\n  - {id: a, shape: [2, 3], expect: {torch: {outcome: pass, reason: fine}}}\n")
    cases, errors = check_paths([f], ["torch"])
    assert errors == [] and [lc.id for lc in cases] == ["a"] == [lc.id for lc in load_file(f)]


def test_a_file_named_twice_is_read_once(tmp_path):
    """A file named directly and through its folder (or through a link) is one file: its ids are not
    duplicates of themselves."""
    folder = tmp_path / "cases"
    folder.mkdir()
    f = folder / "one.yaml"
    f.write_text("normconf: 1\ncases:\n  - {id: only, shape: [4, 2]}\n", encoding="utf-8")
    (tmp_path / "link.yaml").symlink_to(f)
    checked = check_paths([folder, f, tmp_path / "link.yaml"])
    assert checked.errors == [] and [c.id for c in checked.cases] == ["only"]
    other = tmp_path / "other.yaml"
    other.write_text("normconf: 1\ncases:\n  - {id: only, shape: [4, 2]}\n", encoding="utf-8")
    dup = check_paths([f, other]).errors  # a real duplicate in another file is still one
    assert len(dup) == 1 and "duplicate id 'only'" in dup[0].message
