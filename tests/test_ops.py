"""The op seam: the registry, op dispatch in the case loader, and a toy op from tests/ alone on numpy."""

from __future__ import annotations

import numpy as np
import pytest

from normconf import ops
from normconf.adapters.numpy_ref import NumpyReference
from normconf.cases import CaseFileError, load_file
from normconf.oracle import expected_outputs
from normconf.results import rows_for
from normconf.worker import BackendResult
from tests import toy_op


@pytest.fixture
def center_op():
    ops.register(toy_op.SPEC, replace=True)
    yield toy_op.SPEC
    ops._REGISTRY.pop("center", None)


def test_builtin_ops_and_their_output_lists():
    assert {"batch_norm", "layer_norm"} <= set(ops.names())
    bn, ln = ops.get("batch_norm"), ops.get("layer_norm")
    assert bn.result_order == (
        "y",
        "batch_mean",
        "batch_var",
        "running_mean",
        "running_var",
        "eval_y",
        "inv_std",
        "x_hat",
    )
    assert ln.main_outputs == ("y", "mean", "inv_std") and ln.stage_outputs == ("x_hat",)
    assert ln.data_outputs == ("y", "x_hat") and ln.group_outputs == ("mean", "inv_std")
    with pytest.raises(ops.UnknownOp, match="known ops: batch_norm, layer_norm"):
        ops.get("group_norm")


def test_a_builtin_op_cannot_be_replaced():
    with pytest.raises(ValueError, match="already registered"):
        ops.register(
            ops.OpSpec(
                **{
                    **{
                        f: getattr(toy_op.SPEC, f)
                        for f in (
                            "title",
                            "case_model",
                            "outputs",
                            "semantics",
                            "generate",
                            "reference",
                            "output_names",
                            "output_shape",
                        )
                    },
                    "name": "layer_norm",
                }
            )
        )


def test_unknown_op_in_a_case_file_names_the_line_and_the_known_ops(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cases:\n  - id: a\n    shape: [2, 3]\n  - id: b\n    op: layer_nrom\n    shape: [2, 3]\n")
    with pytest.raises(CaseFileError) as e:
        load_file(p)
    msg = str(e.value)
    assert "c.yaml:5:" in msg and "cases[1](b).op" in msg and "unknown op 'layer_nrom'" in msg
    assert "did you mean 'layer_norm'?" in msg and "known ops: batch_norm, layer_norm" in msg


def test_layer_norm_fields_are_checked_with_their_own_hints(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "defaults: {op: layer_norm}\ncases:\n  - id: a\n    shape: [2, 3]\n    axes: [2]\n"
        "  - id: b\n    shape: [2, 3]\n    layout: channels_last\n"
        "  - id: c\n    shape: [2, 3]\n    affine: {gamma: [1, 2]}\n"
    )
    with pytest.raises(CaseFileError) as e:
        load_file(p)
    msg = str(e.value)
    assert "cases[0](a).axes[0]: axis 2 is out of range for rank 2" in msg
    assert "cases[1](b).layout: unknown key 'layout'" in msg and "axes" in msg  # LayerNorm's keys, not BatchNorm's
    assert "cases[2](c).affine.gamma: 2 values for the normalized shape 3 (3 values)" in msg


def test_a_toy_op_registered_from_tests_runs_on_numpy(center_op, tmp_path):
    p = tmp_path / "center.yaml"
    p.write_text(
        "defaults: {op: center}\ncases:\n  - id: c1\n    shape: [3, 5]\n"
        "  - {id: c2, shape: [4], dtype: float16, input: {dist: uniform, low: -2, high: 2, seed: 3}}\n"
    )
    loaded = load_file(p)
    assert [lc.case.op for lc in loaded] == ["center", "center"]
    numpy_backend = NumpyReference()
    for lc in loaded:
        assert numpy_backend.unsupported(lc.case) is None
        inputs = center_op.generate(lc.case)
        obs = numpy_backend.run_case(lc.case, inputs)
        assert set(obs.outputs) == {"y", "mean"}
        rows = rows_for(
            lc, "numpy", BackendResult("numpy", "ok", outputs=obs.outputs), expected_outputs(lc.case, inputs), inputs
        )
        assert [(r.output, r.outcome) for r in rows] == [("y", "pass"), ("mean", "pass")]
        assert all(r.op == "center" and r.as_expected for r in rows)
    # a backend that forgot to subtract the mean is a mismatch (the toy op has no explainer)
    lc = loaded[0]
    inputs = center_op.generate(lc.case)
    wrong = {"y": [np.asarray(inputs.x[0], np.float32)], "mean": center_op.reference(lc.case, inputs)["mean"]}
    rows = rows_for(lc, "m", BackendResult("m", "ok", outputs=wrong), expected_outputs(lc.case, inputs), inputs)
    assert [(r.output, r.outcome) for r in rows] == [("y", "mismatch"), ("mean", "pass")]
    assert rows[0].as_expected is False


def test_an_adapter_without_the_op_is_unsupported_without_running(center_op):
    from normconf.adapters.torch_backends import TorchModule

    case = toy_op.CenterCase.model_validate({"id": "x", "op": "center", "shape": [2, 3]})
    assert "op center not implemented by torch" in TorchModule().unsupported(case)
