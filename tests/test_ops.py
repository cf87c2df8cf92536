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


def test_the_explanation_cache_asks_the_op_what_its_statistics_path_computes(center_op, monkeypatch):
    # the cache is op-agnostic: which outputs come from the statistics-only reference is the op's hook
    # (default: its per-group outputs), and so is an alternative computed where it is read
    import normconf.oracle as oracle
    from normconf.explain.refcache import ReferenceCache

    asked = []
    real = oracle.reference_outputs
    monkeypatch.setattr(oracle, "reference_outputs", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    assert center_op.statistics_outputs(None) == {"mean"}
    case = toy_op.CenterCase.model_validate({"id": "x", "op": "center", "shape": [3, 5]})
    inputs = center_op.generate(case)
    cache = ReferenceCache()
    cache.get(case, inputs, case.semantics, "mean")
    cache.get(case, inputs, case.semantics.replace(subtract="nothing"), "y")
    assert [kw["statistics_only"] for kw in asked] == [True, False]
    assert cache.deferred(case, inputs, case.semantics, "y") is None  # no deferred_output hook: computed whole


def test_the_cache_hands_an_alternative_to_the_ops_deferred_hook_with_its_cached_statistics(center_op):
    from dataclasses import replace

    from normconf.explain.refcache import ReferenceCache

    seen = []

    def hook(case, inputs, sem, output, statistics):
        seen.append((sem, output, statistics(case, inputs, sem)))
        return ["steps of " + output]

    ops.register(replace(center_op, deferred_output=hook), replace=True)
    case = toy_op.CenterCase.model_validate({"id": "x", "op": "center", "shape": [3, 5]})
    inputs = center_op.generate(case)
    cache = ReferenceCache()
    alt = case.semantics.replace(subtract="nothing")
    assert cache.deferred(case, inputs, alt, "y") == ["steps of y"]
    assert cache.deferred(case, inputs, alt, "y") == ["steps of y"]
    assert cache.computed == 1  # the statistics-only reference ran once for both
    (s1, o1, st1), (_s2, _o2, st2) = seen
    assert (s1, o1) == (alt, "y") and st1 is st2
    np.testing.assert_array_equal(st1["mean"][0], np.asarray(inputs.x[0], np.float64).mean(axis=-1, keepdims=True))


def test_batch_norms_statistics_path_covers_the_statistics_of_a_training_step_and_inv_std():
    from tests.helpers import case_maker

    bn, ln = ops.get("batch_norm"), ops.get("layer_norm")
    make = case_maker()
    train, infer = make(mode="train"), make(mode="eval")
    stats = {"batch_mean", "batch_var", "running_mean", "running_var"}
    assert bn.statistics_outputs(train) == stats | {"inv_std"}
    assert bn.statistics_outputs(infer) == {"inv_std"}  # eval: the running statistics are the full run's
    assert ln.statistics_outputs(None) == set(ln.group_outputs)
    assert bn.deferred_output is not None and ln.deferred_output is None


def test_the_explanation_cache_names_no_op():
    # the op-agnostic machinery reads the OpSpec: a new op (GroupNorm, InstanceNorm) needs no edit there
    from pathlib import Path

    import normconf.explain.refcache as refcache

    src = Path(refcache.__file__).read_text()
    assert "batch_norm" not in src and "layer_norm" not in src and "references." not in src
