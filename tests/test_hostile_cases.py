"""In-process checks of the hostile-input defences of issue 17 (the corpus in tests/bad_inputs/ runs
them through the command line): how YAML is read (YAML 1.2 core schema), which values are legal,
static size bounds, and that text from a case file is escaped in every message."""

from __future__ import annotations

import math

import pytest

from normconf.cases import (
    BYTES_PER_ELEMENT,
    Case,
    CaseError,
    CaseFileError,
    bytes_per_element,
    escape_text,
    estimated_bytes,
    load_file,
    load_paths,
)
from normconf.inputs import generate


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def errors_of(p, **kw) -> list[CaseError]:
    with pytest.raises(CaseFileError) as ei:
        load_file(p, **kw)
    return ei.value.errors


# --- YAML 1.2 core schema -------------------------------------------------------------------


def test_yaml12_readings_that_yaml11_shares_or_lacks_are_accepted(tmp_path):
    p = write(
        tmp_path,
        """
cases:
  - id: a
    shape: [2, 0x1F]          # hexadecimal: 31 in YAML 1.1 and 1.2
    steps: 0o3                # YAML 1.2 octal (a string to YAML 1.1, which has no 0o)
    eps: 1e-3                 # a float without a dot (YAML 1.2)
    description: "yes"        # quoted: a string in both
    tags: [!!str on, "off", y, n]   # y/n are strings (as PyYAML reads them)
    tolerance: {rtol: 1e-2, atol: 0, reason: the output named y, outputs: [y]}
  - id: b
    shape: [2, 3]
    data: [1, .nan, -.inf, +.inf, .5, 1.]   # NaN and infinities stay allowed in data
""",
    )
    a, b = (lc.case for lc in load_file(p))
    assert a.shape == [2, 31] and a.steps == 3 and a.eps == 1e-3 and a.description == "yes"
    assert a.tags == ["on", "off", "y", "n"] and a.tolerance.outputs == ["y"]
    assert math.isnan(b.data[1]) and b.data[2] == -math.inf and b.data[3] == math.inf and b.data[4:6] == [0.5, 1.0]


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("1:30", "sexagesimal (base 60) number 90"),
        ("010", "010: a leading zero is ambiguous (octal in YAML 1.1, decimal in 1.2): write 10"),
        ("08", "08: a leading zero is ambiguous"),
        ("1_000", "YAML 1.1 reads 1_000 as the number 1000"),
        ("0b11", "YAML 1.1 reads 0b11 as the number 3"),
        ("-0x1F", "YAML 1.1 reads -0x1F as the number -31, YAML 1.2 as the string '-0x1F'"),
        ("yes", "YAML 1.1 reads yes as the boolean true"),
        ("Off", "YAML 1.1 reads Off as the boolean false"),
        ("2024-01-01", "YAML 1.1 reads 2024-01-01 as a date"),
        ("!!int 010", "a leading zero is ambiguous"),
        ("!!bool yes", "YAML 1.2 booleans are true and false"),
        ("!!float 1_0.5", "not a YAML 1.2 float"),
        ("!!set {1: null}", "!!set is a YAML 1.1 type"),
        ("!!omap [{a: 1}]", "!!omap is a YAML 1.1 type"),
        ("!!binary aGk=", "!!binary is a YAML 1.1 type"),
        ("!!timestamp 2024-01-01", "!!timestamp is a YAML 1.1 type"),
    ],
)
def test_values_yaml11_reads_otherwise_are_refused_at_their_position(tmp_path, value, fragment):
    p = write(tmp_path, f"cases:\n  - id: a\n    shape: [2, 3]\n    steps: {value}\n")
    (e,) = errors_of(p)
    assert (e.line, e.column, e.field) == (4, 12, "cases[0](a).steps"), str(e)
    assert fragment in e.message, str(e)


def test_on_key_is_a_string_reported_at_the_key(tmp_path):
    p = write(tmp_path, "defaults:\n  shape: [2, 3]\ncases:\n  - id: a\n    eps: 0.1\n    on: true\n")
    (e,) = errors_of(p)
    assert (e.line, e.column, e.field) == (
        6,
        5,
        "cases[0](a).on",
    ) and "YAML 1.1 reads on as the boolean true" in e.message


def test_reading_problems_and_field_errors_are_reported_together_once_each(tmp_path):
    # the sexagesimal steps also fails `steps` (a string): one message for it; the other mistakes still reported
    p = write(
        tmp_path,
        "defaults:\n  shape: [2, 3]\ncases:\n  - id: a\n    shape: [2, 3]\n    steps: 1:30\n"
        "  - id: b\n    shape: [2, -3]\n  - id: c\n    eval_after: yes\n    mode: training\n",
    )
    errs = errors_of(p)
    assert [(e.line, e.field) for e in errs] == [
        (6, "cases[0](a).steps"),
        (8, "cases[1](b).shape[1]"),
        (10, "cases[2](c).eval_after"),
        (11, "cases[2](c).mode"),
    ], "\n".join(map(str, errs))
    assert "YAML 1.1 reads yes" in errs[2].message


def test_merge_keys_are_kept(tmp_path):
    p = write(tmp_path, "cases:\n  - &base {id: a, shape: [2, 3], eps: 0.001}\n  - {<<: *base, id: b}\n")
    assert [lc.case.eps for lc in load_file(p)] == [0.001, 0.001]


def test_booleans_are_strict(tmp_path):
    for bad in ('"true"', "1", "0"):
        p = write(tmp_path, f"cases:\n  - {{id: a, shape: [2, 3], eval_after: {bad}}}\n")
        (e,) = errors_of(p)
        assert "eval_after" in e.field and "valid boolean" in e.message


# --- legal values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("eps", "1" + "0" * 400, "must be a finite number within float64 range"),
        ("running_var", "-0.5", "a variance must be a finite number ≥ 0"),
        ("running_var", "{dist: constant, value: -1}", "a variance must be ≥ 0"),
        ("running_var", "{dist: normal, std: 0, mean: 2}", None),  # a constant drawn by `normal`: fine
        ("running_mean", "[0, 1e400, 0]", "beyond float64 range"),
        ("affine", "{gamma: 70000, beta: 0}", None),  # float32 holds 70000
        ("tolerance", "{rtol: 0, atol: -.inf, reason: minus infinity}", "greater than or equal to 0"),
        ("tolerance", "{rtol: 0, atol: 1e-3, reason: typo, outputs: [running_varr]}", "did you mean 'running_var'?"),
        ("input", "{seed: -1}", "greater than or equal to 0"),
        ("input", "{dist: uniform, low: 1, high: 1}", None),  # an empty range is a constant: fine
        ("input", "{dist: normal, low: 5, high: 1}", None),  # low/high are unused by `normal`
    ],
)
def test_value_rules(tmp_path, field, value, fragment):
    p = write(tmp_path, f"cases:\n  - id: a\n    shape: [2, 3]\n    {field}: {value}\n")
    if fragment is None:
        (lc,) = load_file(p)
        generate(lc.case)  # and it runs
        return
    errs = errors_of(p)
    assert len(errs) == 1 and fragment in errs[0].message and errs[0].line == 4, "\n".join(map(str, errs))


def test_trap_nonfinite_library_file_stays_valid():
    from pathlib import Path

    cases = load_file(Path(__file__).resolve().parent.parent / "cases" / "trap_nonfinite.yaml")
    assert any(any(math.isnan(v) for v in lc.case.data) for lc in cases)


def test_generate_refuses_numbers_beyond_float64_in_cases_built_in_code():
    # Case.model_validate skips the file-level checks; generate() then fails with a clear ValueError
    c = Case.model_validate({"id": "a", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 10**400]})
    with pytest.raises(ValueError, match="data: a value is beyond float64 range"):
        generate(c)
    c = Case.model_validate({"id": "a", "shape": [2, 3], "affine": {"gamma": [1, 10**400, 1]}})
    with pytest.raises(ValueError, match="affine.gamma"):
        generate(c)


# --- static size bounds ---------------------------------------------------------------------


def test_memory_estimate_counts_dtype_copies_and_zero_dimensions():
    assert BYTES_PER_ELEMENT == bytes_per_element("float32") == 32
    assert (bytes_per_element("float16"), bytes_per_element("bfloat16"), bytes_per_element("float64")) == (28, 28, 40)
    c = Case.model_validate({"id": "a", "shape": [100, 10], "steps": 2, "dtype": "float64"})
    assert estimated_bytes(c) == 2000 * 40
    empty = Case.model_validate({"id": "e", "shape": [0, 1000, 7], "steps": 3})
    assert empty.n_elements == 0 and empty.footprint_elements == 21000 and estimated_bytes(empty) == 21000 * 32


def test_empty_batch_is_bounded_like_a_full_one_and_the_flag_still_raises_it(tmp_path):
    p = write(tmp_path, "cases:\n  - {id: e, shape: [0, 3000, 1000]}\n")
    (e,) = errors_of(p, max_elements=1_000_000)
    assert "3000000 with the zero dimension counted as 1" in e.message and "--max-elements" in e.message
    (lc,) = load_file(p, max_elements=3_000_000)
    assert lc.case.n_elements == 0


def test_trap_empty_batch_library_file_stays_valid():
    from pathlib import Path

    assert load_file(Path(__file__).resolve().parent.parent / "cases" / "trap_empty_batch.yaml")


# --- no cases -------------------------------------------------------------------------------


def test_no_cases_is_an_error(tmp_path):
    (e,) = errors_of(write(tmp_path, "defaults: {shape: [2, 3]}\ncases: []\n"))
    assert (e.line, e.field) == (2, "cases") and "no cases" in e.message
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaseFileError, match="no case files"):
        load_paths([tmp_path / "empty"])


# --- escaping -------------------------------------------------------------------------------


def test_escape_text():
    assert escape_text("plain ×…é") == "plain ×…é"
    assert escape_text("a\x1b[2Jb\x07\t\n") == "a\\x1b[2Jb\\x07\\t\\n"
    assert escape_text("\u202eevil\u2028\udcff\x85") == "\\u202eevil\\u2028\\udcff\\x85"
    e = CaseError("f\x1b.yaml", 1, 2, "cases[0](\x1b[31m)", "unknown key '\x1b'")
    assert str(e) == "f\\x1b.yaml:1:2: cases[0](\\x1b[31m): unknown key '\\x1b'"


def test_control_characters_are_refused_at_their_position(tmp_path):
    p = write(tmp_path, "cases:\n  - id: a\n    shape: [2, 3]  \x1b[2J\n    description: x\x7fy\n")
    errs = errors_of(p)
    assert [(e.line, e.column) for e in errs] == [(3, 20), (4, 19)], "\n".join(map(str, errs))
    assert "U+001B (\\x1b)" in errs[0].message and "U+007F" in errs[1].message
    assert all(c.isprintable() for e in errs for c in str(e))


def test_many_control_characters_are_listed_up_to_a_bound(tmp_path):
    p = write(tmp_path, "cases: []\n# " + "\x07" * 500 + "\n")
    errs = errors_of(p)
    assert len(errs) == 21 and "and 480 more" in errs[-1].message
