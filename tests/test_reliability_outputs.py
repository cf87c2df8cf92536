"""Malformed backend outputs become ``error`` rows that say what was wrong; the run goes on (issue 17).

The planted backends are in tests/hostile_adapters.py.  Every result is checked in its worker
against the case's output spec (harness/validate_outputs.py) and then judged there (issue 18:
only rows travel back); the harness bounds each reply's size before reading it
(harness/runner.py); results.rows_for and report.plots.plot_data never raise on a strange array
that slipped through anyway.  ``hostile-bypass`` defeats its worker's checks: its 256 MiB ``y``
is then refused by rows_for's own check in that worker (an error row naming the shape) and never
reaches the harness.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from normconf.adapters.numpy_ref import NumpyReference
from normconf.cases import load_file
from normconf.inputs import generate
from normconf.oracle import expected_outputs
from normconf.report.plots import plot_data
from normconf.results import rows_for
from normconf.runner import Runner
from normconf.worker import BackendResult
from tests.hostile_adapters import HOSTILE, SPEC

ROOT = Path(__file__).resolve().parent.parent
TINY = "defaults: {shape: [3, 2], dtype: float32}\ncases:\n  - {id: tiny, mode: train}\n"
INVALID = "backend returned invalid outputs: "

#: backend -> the fragments its error message must contain
REASONS = {
    "hostile-flat": [INVALID + "y step 1: shape (6,) but the case's x is (3, 2)"],
    "hostile-0d": [INVALID + "y step 1: shape () but the case's x is (3, 2)"],
    "hostile-transposed": [INVALID + "y step 1: shape (2, 3) but the case's x is (3, 2)"],
    "hostile-complex": [INVALID + "y step 1: dtype complex128 (complex); expected a real floating dtype"],
    "hostile-int": [INVALID + "y step 1: dtype int64 (integer)"],
    "hostile-object": [INVALID + "y step 1: dtype object (an object array)"],
    "hostile-list": [INVALID + "y step 1: a list, not a numpy.ndarray"],
    "hostile-key": [INVALID + "unknown output 'Y'", "did you mean 'y'?", "y missing"],
    "hostile-steps": [INVALID + "y: 2 steps returned but the case has 1"],
    "hostile-huge": [INVALID + "y step 1: shape (33554432,) but the case's x is (3, 2)"],
    "hostile-huge-notes": ["backend result of", "bytes exceeds the bound of", "bytes for this case"],
    "hostile-bypass": [INVALID + "y step 1: shape (33554432,) but the case's x is (3, 2)"],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    f = tmp_path_factory.mktemp("outputs") / "tiny.yaml"
    f.write_text(TINY)
    return load_file(f)[0]


@pytest.fixture(scope="module")
def runner():
    with Runner(extra_specs=(SPEC,), timeout=60) as r:
        yield r


def _errors(backend: str, rows: list[tuple]) -> list[tuple]:
    """The one error row of a hostile backend's pair (``(output, outcome, message)``): its only row,
    except for hostile-bypass, whose valid outputs are judged too (it defeated its worker's checks,
    so rows_for in that worker refuses y alone)."""
    errors = [r for r in rows if r[1] == "error"]
    assert len(errors) == 1, (backend, rows)
    if backend == "hostile-bypass":
        assert errors[0][0] == "y" and {r[1] for r in rows} == {"error", "pass"}, rows
    else:
        assert rows == errors, rows
    return errors


def test_every_hostile_backend_has_a_reason():
    assert sorted(REASONS) == sorted(HOSTILE)


@pytest.mark.parametrize("backend", sorted(REASONS))
def test_malformed_output_is_an_error_row_with_its_reason(runner, tiny, backend):
    rows = runner.run_pair(tiny, backend)
    errors = _errors(backend, [(r.output, r.outcome, r.message) for r in rows])
    for fragment in REASONS[backend]:
        assert fragment in errors[0][2], errors[0][2]
    assert len(errors[0][2]) < 5000
    # the run goes on: the correct backend (same worker group, or a fresh worker) still passes
    ok = runner.run_pair(tiny, "hostile-correct")
    assert ok and all(r.outcome == "pass" for r in ok), [(r.output, r.outcome, r.message) for r in ok]


def test_cli_run_with_every_hostile_backend_completes_with_reports(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    backends = ["hostile-correct", *HOSTILE, "numpy"]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), COLUMNS="200"
    )
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "normconf.cli",
            "run",
            "tiny.yaml",
            "--adapter",
            SPEC,
            "-b",
            ",".join(backends),
            "--timeout",
            "60",
            "--out",
            "reports",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 3, out  # 3: error outcomes not as expected; the run itself completed
    assert "Traceback" not in out
    for name in ("results.csv", "results.json", "index.html"):
        assert (tmp_path / "reports" / name).stat().st_size > 0, name
    df = pd.read_csv(tmp_path / "reports" / "results.csv", keep_default_na=False)
    assert set(df["backend"]) == set(backends)
    for b in ("hostile-correct", "numpy"):
        assert set(df[df["backend"] == b]["outcome"]) == {"pass"}, df[df["backend"] == b]
    for b, fragments in REASONS.items():
        g = df[df["backend"] == b]
        errors = _errors(b, list(zip(g["output"], g["outcome"], g["message"])))
        for fragment in fragments:
            assert fragment in errors[0][2], (b, errors[0][2])
    meta = json.loads((tmp_path / "reports" / "results.json").read_text())["meta"]
    assert meta["partial"] is False


# --- the spec keeps every legitimate result valid -------------------------------------------


def _case(tmp_path, **fields):
    text = "cases:\n  - " + json.dumps({"id": "c", **fields}) + "\n"
    f = tmp_path / "c.yaml"
    f.write_text(text)
    return load_file(f)[0].case


LEGIT = {
    "train": dict(shape=[3, 2]),
    "eval": dict(shape=[4, 3, 2, 2], mode="eval"),
    "eval_steps": dict(shape=[4, 3], mode="eval", steps=2),
    "multistep_eval_after": dict(shape=[2, 3, 4], steps=3, eval_after=True),
    "channels_last": dict(shape=[2, 3, 4, 5], layout="channels_last"),
    "bfloat16": dict(shape=[2, 4, 3], dtype="bfloat16", param_dtype="float32"),
    "float16": dict(shape=[5, 2], dtype="float16"),
    "empty_batch": dict(shape=[0, 2, 3], mode="eval"),
}


@pytest.mark.parametrize("name", sorted(LEGIT))
def test_spec_accepts_what_real_backends_return(tmp_path, name):
    from normconf.validate_outputs import problems

    case = _case(tmp_path, **LEGIT[name])
    full = NumpyReference().run(case, generate(case)).outputs  # y, statistics, inv_std and x_hat in float64
    assert problems(case, full) == []
    keras_like = {"y": full["y"], **{k: full[k] for k in ("running_mean", "running_var") if k in full}}
    tf_nn_like = {k: v for k, v in full.items() if k not in ("running_mean", "running_var")}
    assert problems(case, keras_like) == [] and problems(case, tf_nn_like) == []
    assert problems(case, {"y": full["y"]}) == []


def test_spec_names_are_the_references():
    from normconf import validate_outputs as vo
    from normconf.references.batchnorm import OUTPUT_NAMES, PER_CHANNEL_OUTPUTS

    assert vo.OUTPUT_NAMES == OUTPUT_NAMES
    assert set(vo.OUTPUT_NAMES) - set(vo.DATA_OUTPUTS) == set(PER_CHANNEL_OUTPUTS)


def test_spec_rejects_statistics_in_eval_mode_and_eval_y_without_eval_after(tmp_path):
    from normconf.validate_outputs import problems

    ev = _case(tmp_path, shape=[3, 2], mode="eval")
    y = [np.zeros((3, 2), np.float32)]
    assert any(
        "unknown output 'batch_mean' (not produced in eval mode)" in p
        for p in problems(ev, {"y": y, "batch_mean": [np.zeros(2)]})
    )
    tr = _case(tmp_path, shape=[3, 2])
    assert any("'eval_y' (only with eval_after)" in p for p in problems(tr, {"y": y, "eval_y": y}))
    assert problems(tr, {"y": y, "batch_mean": [np.zeros((1, 2))]}) == [
        "batch_mean step 1: shape (1, 2) but a per-channel output is (2,)"
    ]


# --- defence in depth: what slipped through costs a row, never the run or the report ----------


def test_plot_data_never_raises():
    e = np.arange(6.0).reshape(3, 2)
    for strange in (
        e.reshape(-1),
        np.float64(1.0),
        np.asarray(1.0),
        e.T,
        e + 1j,
        e.astype(object),
        np.array(["a"] * 6).reshape(3, 2),
        None,
        {"y": 1},
    ):
        assert plot_data(strange, e, 1) is None, strange
    assert plot_data(e + 1, e, 1)["channels"] == 2


def test_rows_for_never_raises_on_strange_arrays(tiny):
    inputs = generate(tiny.case)
    ref = expected_outputs(tiny.case, inputs)
    good = {k: [a.astype(np.float32) for a in v] for k, v in ref.items()}
    strange = {
        "flat": [good["y"][0].reshape(-1)],
        "0d": [np.asarray(1.0)],
        "complex": [good["y"][0] + 1j],
        "object": [good["y"][0].astype(object)],
        "list": [good["y"][0].tolist()],
        "ragged": [[[1.0, 2.0], [3.0]]],
        "none": [None],
        "not_a_list": good["y"][0],
    }
    for what, y in strange.items():
        res = BackendResult("m", "ok", outputs={**good, "y": y})
        rows = rows_for(tiny, "m", res, ref, inputs)
        by_output = {(r.output, r.step): r for r in rows}
        y_rows = [r for r in rows if r.output == "y"]
        assert [r.outcome for r in y_rows] == ["error"], (what, [(r.output, r.outcome, r.message) for r in rows])
        assert y_rows[0].message.startswith(INVALID), (what, y_rows[0].message)
        assert by_output[("batch_mean", 1)].outcome == "pass", what  # the other outputs keep their rows
    rows = rows_for(tiny, "m", BackendResult("m", "ok", outputs=["y"]), ref, inputs)
    assert [r.outcome for r in rows] == ["error"] and rows[0].message.startswith(INVALID)


def test_results_json_holds_every_text_and_number_as_is(tmp_path):
    """write_json splices pandas' own JSON text into the file (and undoes its "\\/" escapes):
    what it holds parses to exactly what a full parse and re-serialization of the rows gives,
    for the strings that could trip the splice (slashes, backslashes before slashes, quotes,
    non-ASCII, a script tag) and for missing and non-finite numbers."""
    from normconf.results import Row, read_results, to_frame, write_json

    texts = ["cases/a.yaml", "a\\/b", "\\\\/", "\\", 'quote " and /', "m−1 = 17 · √(17/18)", "</script>", ""]
    rows = [
        Row(f"c{i}", t, i, "b/x", "v 1/2", "y", None, "pass", message=t, explanation_text=t)
        for i, t in enumerate(texts)
    ]
    for r, v in zip(rows, [float("nan"), float("inf"), -float("inf"), 1e-300, 0.1 + 0.2, None, 5e-324, 1.0]):
        r.max_abs_err = v
    df = to_frame(rows)
    meta = {"command": "normconf run cases/", "path": "a/b\\c"}
    write_json(df, tmp_path / "results.json", meta)
    text = (tmp_path / "results.json").read_text(encoding="utf-8")
    data = json.loads(text)
    full = json.loads(
        json.dumps({"meta": meta, "results": json.loads(df.to_json(orient="records", double_precision=15))})
    )
    assert data == full
    assert [r["message"] for r in data["results"]] == texts
    assert '"file":"cases/a.yaml"' in text and '"backend":"b/x"' in text  # slashes as they are
    back, back_meta = read_results(tmp_path / "results.json")
    assert back_meta == meta and list(back["file"]) == texts
