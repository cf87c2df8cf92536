"""Case loading and validation: positions, all errors at once, safe YAML, schema, defaults."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from normconf.cases import CaseFileError, json_schema, load_file, load_paths

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_ten_mistakes_give_ten_positioned_messages():
    with pytest.raises(CaseFileError) as ei:
        load_file(DATA / "ten_mistakes.yaml")
    errs = ei.value.errors
    assert len(errs) == 10, "\n".join(map(str, errs))
    expected = [  # (line, field fragment, message fragment)
        (9, "epsilon", "unknown key 'epsilon' (did you mean 'eps'?)"),
        (12, "steps", "valid integer"),
        (15, "eps", "> 0"),
        (17, "shape[1]", "must be > 0"),
        (20, "data", "5 values for shape [2, 3]: expected 6"),
        (25, "dtype", "float16"),
        (28, "momentum", "batch_weight"),
        (31, "tolerance.reason", "required"),
        (33, "shape", "at most 5"),
        (21, "id", "duplicate id 'ok_case'"),
    ]
    for line, fld, msg in expected:
        match = [e for e in errs if e.line == line and fld in e.field and msg in e.message]
        assert match, f"no error at line {line} for {fld!r} containing {msg!r}; got:\n" + "\n".join(map(str, errs))
    assert all(e.file.endswith("ten_mistakes.yaml") and e.column >= 1 for e in errs)


def test_cli_validate_exit_2_without_traceback():
    p = subprocess.run(
        [sys.executable, "-m", "normconf.cli", "validate", str(DATA / "ten_mistakes.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 10
    assert all("ten_mistakes.yaml:" in ln for ln in lines)
    assert "10 errors; nothing was run" in p.stderr


def test_python_tags_are_refused(tmp_path):
    p = write(tmp_path, "cases:\n  - id: x\n    shape: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(CaseFileError) as ei:
        load_file(p)
    (e,) = ei.value.errors
    assert e.line == 3 and "python/object" in e.message and "refused" in e.message


def test_yaml_syntax_error_has_position(tmp_path):
    p = write(tmp_path, "cases:\n  - id: x\n    shape: [2, 3\n  - id: y\n")
    with pytest.raises(CaseFileError) as ei:
        load_file(p)
    assert ei.value.errors[0].line >= 3 and "YAML error" in ei.value.errors[0].message


def test_defaults_merge_and_expectation_drop(tmp_path):
    p = write(
        tmp_path,
        """
defaults:
  shape: [2, 3]
  eps: 1e-3
  expect:
    torch: {outcome: mismatch, reason: known difference}
cases:
  - id: a
  - id: b
    eps: 0.5
    expect: {torch: null, numpy: {outcome: pass, reason: trivially}}
""",
    )
    a, b = (lc.case for lc in load_file(p))
    assert a.eps == 1e-3 and b.eps == 0.5  # `1e-3` without a dot is a float (YAML 1.2)
    assert set(a.expect) == {"torch"} and set(b.expect) == {"numpy"}


def test_momentum_forms_mean_the_same_update(tmp_path):
    p = write(
        tmp_path,
        """
cases:
  - {id: a, shape: [2, 3], momentum: {batch_weight: 0.1}}
  - {id: b, shape: [2, 3], momentum: {running_weight: 0.9}}
  - {id: c, shape: [2, 3], momentum: cumulative}
  - {id: d, shape: [2, 3]}
""",
    )
    a, b, c, d = (lc.case for lc in load_file(p))
    assert a.momentum_weight == pytest.approx(0.1) and b.momentum_weight == pytest.approx(0.1)
    assert c.momentum_weight is None
    assert d.momentum_weight == pytest.approx(0.1)  # ONNX default momentum 0.9 = batch weight 0.1
    assert (d.eps, d.normalize_variance, d.running_variance, d.mode) == (1e-5, "biased", "biased", "train")


def test_duplicate_ids_across_files(tmp_path):
    write(tmp_path, "cases:\n  - {id: same, shape: [2, 3]}\n", "a.yaml")
    write(tmp_path, "cases:\n  - {id: same, shape: [2, 3]}\n", "b.yaml")
    with pytest.raises(CaseFileError) as ei:
        load_paths([tmp_path])
    (e,) = ei.value.errors
    assert "duplicate id 'same'" in e.message and "a.yaml:2" in e.message and e.file.endswith("b.yaml")


def test_schema_file_is_up_to_date():
    on_disk = json.loads((ROOT / "cases" / "schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema())), "run `make schema` (normconf schema) to regenerate"


def test_schema_validates_the_suite_and_rejects_bad_case():
    import jsonschema
    import yaml

    schema = json_schema()
    for f in sorted((ROOT / "cases").glob("*.yaml")):
        jsonschema.validate(
            yaml.load(f.read_text(), Loader=__import__("normconf.cases", fromlist=["_Loader"])._Loader), schema
        )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cases": [{"id": "x", "shape": [2, 3], "epsilon": 1}]}, schema)
