"""LayerNorm through the ONNX backends (ort*, onnx-reference*) and opencv-dnn, and the two model
forms of normconf.onnx_models (LayerNormalization-17; the decomposed pre-opset-17 graph).

Every expected value is the float64 reference (``references/layer_norm.py`` through the op spec) or
computed by hand; no backend is compared with another.  Verdicts go through the runner (the conftest's
session ``runner``), so a pass is the verdict ``normconf run`` gives, at the case's tolerance.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("onnx")

from normconf.adapters import get_adapter  # noqa: E402
from normconf.adapters.base import Unsupported  # noqa: E402
from normconf.cases import LoadedCase  # noqa: E402
from normconf.ops import get as get_op  # noqa: E402
from normconf.ops.layer_norm.case import LayerNormCase  # noqa: E402
from normconf.profiles import profile_of  # noqa: E402

AFFINE = {"gamma": {"dist": "normal", "mean": 1.0, "std": 0.5, "seed": 1}, "beta": {"dist": "normal", "seed": 2}}
NATIVE_ORT = ("ort", "ort-init", "ort-init-noopt")
DECOMPOSED_ORT = ("ort-opset9", "ort-opset9-init")
NATIVE = NATIVE_ORT + ("onnx-reference", "opencv-dnn")
DECOMPOSED = DECOMPOSED_ORT + ("onnx-reference-opset9",)
ALL = NATIVE + DECOMPOSED
LN = get_op("layer_norm")


def ln(**fields) -> LayerNormCase:
    return LayerNormCase.model_validate(
        {"op": "layer_norm", "id": "ln", "shape": [4, 16], "input": {"seed": 3, "mean": 0.5, "std": 2.0}, **fields}
    )


def rows(runner, backend, **fields):
    return {(r.output, r.step): r for r in runner.run_pair(LoadedCase(ln(**fields), "test", 1), backend)}


def _need(backend: str) -> None:
    """Skip when the engine is missing (found without importing it: the workers import it)."""
    module = {"ort": "onnxruntime", "ope": "cv2"}.get(backend[:3])
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def direct(backend: str, **fields):
    """(Observed, case, inputs): the adapter called in this process (for dtypes, notes and models)."""
    _need(backend)
    c = ln(**fields)
    inputs = LN.generate(c)
    return get_adapter(backend).run_case(c, inputs), c, inputs


# --- the model builders ---------------------------------------------------------------------------
def test_layer_normalization_17_model_translates_the_case():
    from onnx import TensorProto, numpy_helper

    from normconf.onnx_models import build_layer_norm_model

    c = ln(shape=[2, 3, 8], axes=[-2, -1], eps=0.25, affine=AFFINE)
    inputs = LN.generate(c)
    model, feeds = build_layer_norm_model(c, inputs, "inputs")
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    (node,) = model.graph.node
    attrs = {a.name: a for a in node.attribute}
    assert node.op_type == "LayerNormalization" and list(node.input) == ["X", "Scale", "B"]
    assert attrs["axis"].i == -2 and attrs["stash_type"].i == 1
    assert attrs["epsilon"].f == pytest.approx(0.25) and attrs["epsilon"].type == 1  # AttributeProto.FLOAT
    outs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert list(outs) == ["Y", "Mean", "InvStdDev"]
    assert outs["Mean"].elem_type == TensorProto.FLOAT and [d.dim_value for d in outs["Mean"].shape.dim] == [2, 1, 1]
    np.testing.assert_array_equal(feeds["Scale"], inputs.gamma)
    np.testing.assert_array_equal(feeds["B"], inputs.beta)
    assert feeds["Scale"].shape == (3, 8)
    # initializers: the parameters are stored, only X is fed
    m_init, f_init = build_layer_norm_model(c, inputs, "initializers")
    assert list(f_init) == ["X"] and [i.name for i in m_init.graph.input] == ["X"]
    np.testing.assert_array_equal(numpy_helper.to_array(m_init.graph.initializer[0]), inputs.gamma)


def test_layer_normalization_17_without_affine_or_bias():
    from normconf.onnx_models import build_layer_norm_model

    c = ln(affine=False)
    model, feeds = build_layer_norm_model(c, LN.generate(c), "inputs")
    assert list(model.graph.node[0].input) == ["X", "Scale"]  # Scale is required: ones; B is optional: left out
    np.testing.assert_array_equal(feeds["Scale"], np.ones(16, np.float32))
    c = ln(bias=False, affine={"gamma": 2.0})
    model, feeds = build_layer_norm_model(c, LN.generate(c), "inputs")
    assert list(model.graph.node[0].input) == ["X", "Scale"] and "B" not in feeds
    # no affine needs no parameter dtype: Scale = 1 in the data dtype even with param_dtype float32
    c = ln(dtype="float16", param_dtype="float32", affine=False)
    _, feeds = build_layer_norm_model(c, LN.generate(c), "inputs")
    assert feeds["Scale"].dtype == np.float16


@pytest.mark.parametrize(
    "fields, ops",
    [
        (dict(affine=AFFINE), ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add"]),
        (
            dict(bias=False, affine={"gamma": 2.0}),
            ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul"],
        ),
        (dict(affine=False), ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div"]),
    ],
)
def test_decomposed_graph_is_the_pre_opset17_export(fields, ops):
    from onnx import numpy_helper

    from normconf.onnx_models import build_layer_norm_decomposed

    c = ln(shape=[2, 3, 8], axes=[1, 2], dtype="float64", eps=0.1, **fields)
    model, _ = build_layer_norm_decomposed(c, LN.generate(c), "inputs")
    assert model.opset_import[0].version == 9 and model.ir_version == 4
    assert [n.op_type for n in model.graph.node] == ops
    reduce = [n for n in model.graph.node if n.op_type == "ReduceMean"]
    assert all(list(n.attribute[0].ints) == [-2, -1] for n in reduce)
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # eps is a tensor of the data dtype here (exactly 0.1 in float64), not a float32 attribute
    assert consts["eps"].dtype == np.float64 and float(consts["eps"]) == 0.1 and float(consts["two"]) == 2.0
    assert [o.name for o in model.graph.output] == ["Y"]


# --- what cannot be expressed -----------------------------------------------------------------------
@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(shape=[2, 5, 3], axes=[1]), "not the trailing|not trailing"),
        (dict(shape=[4, 3, 6], axes=[0, 2]), "not the trailing|not trailing"),
        (dict(rms_scaling=True), "RMS scaling"),
        (dict(dtype="float16", param_dtype="float32"), "one type T|compute in float32"),
    ],
)
def test_unsupported_with_the_reason(backend, fields, words):
    import re

    reason = get_adapter(backend).unsupported(ln(**fields))
    assert reason and re.search(words, reason), reason


def test_dtype_limits_per_form():
    # the decomposed graph is opset 9: no bfloat16 in its schemas; OpenCV's kernels are float32 only
    for b in DECOMPOSED:
        assert "does not allow bfloat16" in get_adapter(b).unsupported(ln(dtype="bfloat16"))
    for dt in ("float16", "bfloat16", "float64"):
        assert "compute in float32" in get_adapter("opencv-dnn").unsupported(ln(dtype=dt))
    for b in NATIVE_ORT + ("onnx-reference",):
        assert get_adapter(b).unsupported(ln(dtype="bfloat16")) is None
    assert get_adapter("ort-opset9").unsupported(ln(dtype="float16", param_dtype="float32", affine=False)) is None


# --- verdicts through the runner ----------------------------------------------------------------------
PLAIN = [
    dict(),
    dict(shape=[2, 3, 8], axes=[-2, -1], affine=AFFINE),
    dict(shape=[6, 20], bias=False, affine={"gamma": {"dist": "normal", "seed": 4}}),
    dict(shape=[3, 4, 2, 5], axes=[1, 2, 3], affine=False),
    dict(shape=[48]),
    dict(shape=[8, 32], eps=0.1, input={"dist": "normal", "std": 0.1, "seed": 9}),  # eps dominates
    dict(steps=2, affine=AFFINE),
]


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize(
    "fields", PLAIN, ids=["last", "two_axes", "no_bias", "no_affine_3axes", "rank1", "eps_big", "two_steps"]
)
def test_plain_float32_cases_pass(runner, backend, fields):
    _need(backend)
    rs = rows(runner, backend, **fields)
    want = {"y"} if backend in DECOMPOSED else {"y", "mean", "inv_std"}
    assert {o for o, _ in rs} == want, rs
    bad = {k: (r.outcome, r.message, r.explanation) for k, r in rs.items() if r.outcome != "pass"}
    assert not bad, bad
    assert len(rs) == len(want) * fields.get("steps", 1)


@pytest.mark.parametrize("backend", ALL)
def test_unbiased_case_is_the_declared_biased_variance(runner, backend):
    # no ONNX form has an unbiased LayerNorm: every backend declares normalize_variance=biased, and y shows it
    _need(backend)
    rs = rows(runner, backend, shape=[6, 20], normalize_variance="unbiased")
    y = rs[("y", 1)]
    assert y.outcome == "explained" and "normalize_variance=biased" in y.explanation, (y.outcome, y.message)
    assert y.as_expected, y.expected_because
    assert profile_of(type(get_adapter(backend))).entry("normalize_variance", "layer_norm") is not None


@pytest.mark.parametrize("backend", ALL)
def test_unsupported_cases_are_unsupported_in_the_runner(runner, backend):
    _need(backend)
    rs = rows(runner, backend, shape=[2, 5, 3], axes=[1])
    assert {r.outcome for r in rs.values()} == {"unsupported"}


# --- outputs, dtypes and notes (the adapters called directly) -------------------------------------------
@pytest.mark.parametrize("backend", NATIVE)
def test_native_outputs_are_y_mean_inv_std_with_their_shapes(backend):
    obs, c, inputs = direct(backend, shape=[2, 3, 8], axes=[-2, -1], affine=AFFINE)
    assert set(obs.outputs) == {"y", "mean", "inv_std"}
    assert obs.outputs["y"][0].shape == (2, 3, 8)
    assert obs.outputs["mean"][0].shape == obs.outputs["inv_std"][0].shape == c.group_shape == (2, 1, 1)
    x = inputs.x[0].astype(np.float64)
    # statistics by hand, float64; float32 results of O(1) values: rtol 1e-5 is ~80 float32 ulps
    np.testing.assert_allclose(obs.outputs["mean"][0], x.mean(axis=(1, 2), keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        obs.outputs["inv_std"][0], 1 / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5), rtol=1e-5, atol=1e-6
    )
    assert any("LayerNormalization-17 (axis=-2" in n for n in obs.notes), obs.notes


@pytest.mark.parametrize("backend", DECOMPOSED)
def test_decomposed_returns_y_only_and_says_so(backend):
    obs, c, _ = direct(backend)
    assert set(obs.outputs) == {"y"}
    assert any("decomposed LayerNorm graph at opset 9" in n and "y only" in n for n in obs.notes), obs.notes
    assert any("float32 tensor constant" in n for n in obs.notes)  # fl32(1e-5) != 1e-5


@pytest.mark.parametrize("backend", DECOMPOSED_ORT)
def test_ort_says_what_it_made_of_the_decomposed_graph(backend):
    # ORT 1.32's default optimizations fuse the one-axis float32 graph with gamma and beta into LayerNormalization
    # and keep a float64 one as built (measured; the note is read from ORT's optimized model, not assumed)
    obs, _, _ = direct(backend, affine=AFFINE)
    assert any("ORT fused the decomposed graph into LayerNormalization" in n for n in obs.notes), obs.notes
    obs, _, _ = direct(backend, dtype="float64", affine=AFFINE)
    assert any("ORT ran the decomposed graph as built (9 nodes)" in n for n in obs.notes), obs.notes
    assert any("ORT_ENABLE_ALL" in n for n in obs.notes)


@pytest.mark.parametrize("backend", NATIVE_ORT)
def test_ort_float64_statistics_are_float32_and_y_double(backend):
    obs, c, inputs = direct(backend, dtype="float64", affine=AFFINE)
    assert obs.outputs["y"][0].dtype == np.float64
    assert obs.outputs["mean"][0].dtype == obs.outputs["inv_std"][0].dtype == np.float32
    assert any("Mean/InvStdDev returned as float32 for a float64 case" in n for n in obs.notes)
    ref = LN.reference(c, inputs)
    # y is computed in double: 1e-12 relative is thousands of float64 ulps, far below float32's 6e-8
    np.testing.assert_allclose(obs.outputs["y"][0], ref["y"][0], rtol=1e-12, atol=1e-12)
    prof = profile_of(type(get_adapter(backend)))
    assert prof.precision(c, "mean") == prof.precision(c, "inv_std") == "float32"
    assert prof.precision(c, "y") is None


@pytest.mark.parametrize("backend", NATIVE_ORT)
def test_ort_bfloat16_runs_through_ort_values(backend):
    import ml_dtypes

    obs, c, inputs = direct(backend, dtype="bfloat16", affine=AFFINE)
    y = obs.outputs["y"][0]
    assert y.dtype == ml_dtypes.bfloat16 and obs.outputs["mean"][0].dtype == np.float32
    ref = LN.reference(c, inputs)["y"][0]
    # bfloat16 result of |y| <= ~4: 3e-2 absolute is a few bfloat16 ulps (2^-7 relative)
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=2e-2, atol=3e-2)


def test_onnx_reference_epsilon_is_the_float32_attribute():
    # constant rows (variance 0): inv_std = 1/sqrt(eps) exactly shows which eps was used
    obs, c, _ = direct("onnx-reference", dtype="float64", eps=0.1, input={"dist": "constant", "value": 2.0})
    got = obs.outputs["inv_std"][0]
    np.testing.assert_array_equal(got, np.full(c.group_shape, 1 / np.sqrt(float(np.float32(0.1)))))
    assert not np.allclose(got, 1 / np.sqrt(0.1), rtol=1e-12, atol=0)
    prof = profile_of(type(get_adapter("onnx-reference")))
    assert prof.overrides(c) == {"eps_override": float(np.float32(0.1))}


@pytest.mark.parametrize("backend", NATIVE_ORT + ("onnx-reference",))
def test_layer_normalization_17_float64_uses_the_float32_eps(backend):
    # float64 rows with a variance of 1e-4 next to eps = 0.1: fl32(0.1) = 0.10000000149 moves y by ~7e-9 relative;
    # y is computed in double, so 1e-12 (thousands of float64 ulps) separates the two
    obs, c, inputs = direct(backend, dtype="float64", eps=0.1, input={"dist": "normal", "std": 0.01, "seed": 5})
    prof = profile_of(type(get_adapter(backend)))
    assert prof.overrides(c) == {"eps_override": float(np.float32(0.1))}
    y = obs.outputs["y"][0]
    np.testing.assert_allclose(y, LN.reference(c, inputs, prof.semantics(c))["y"][0], rtol=1e-12, atol=0)
    assert not np.allclose(y, LN.reference(c, inputs)["y"][0], rtol=1e-9, atol=0)


@pytest.mark.parametrize("backend", DECOMPOSED)
def test_decomposed_float64_uses_the_exact_eps(backend):
    # the decomposed graph holds eps as a float64 tensor (exactly 0.1), not a float32 attribute: with a variance
    # of 1e-4 next to eps = 0.1, fl32(0.1) would move y by ~7e-9 relative; 1e-12 is thousands of float64 ulps
    obs, c, inputs = direct(backend, dtype="float64", eps=0.1, input={"dist": "normal", "std": 0.01, "seed": 5})
    assert profile_of(type(get_adapter(backend))).overrides(c) == {}
    ref = LN.reference(c, inputs)["y"][0]
    np.testing.assert_allclose(obs.outputs["y"][0], ref, rtol=1e-12, atol=0)
    alt = LN.reference(c, inputs, c.semantics.replace(eps_override=float(np.float32(0.1))))["y"][0]
    assert not np.allclose(obs.outputs["y"][0], alt, rtol=1e-9, atol=0)


@pytest.mark.parametrize("backend", ["ort", "onnx-reference", "opencv-dnn", "ort-opset9"])
def test_no_affine_and_no_bias_are_noted(backend):
    obs, _, _ = direct(backend, affine=False)
    assert any("no affine" in n for n in obs.notes), obs.notes
    obs, _, _ = direct(backend, bias=False, affine={"gamma": 2.0})
    assert any("bias: false" in n for n in obs.notes), obs.notes


def test_opencv_float32_only_and_one_layer():
    pytest.importorskip("cv2")
    obs, c, inputs = direct("opencv-dnn", shape=[2, 3, 4, 5], axes=[1, 2, 3])
    assert obs.outputs["y"][0].dtype == np.float32 and obs.outputs["mean"][0].shape == (2, 1, 1, 1)
    with pytest.raises(Unsupported, match="compute in float32"):
        get_adapter("opencv-dnn").run_case(ln(dtype="float64"), LN.generate(ln(dtype="float64")))


# --- BatchNorm is untouched ---------------------------------------------------------------------------
def test_batch_norm_profiles_are_unchanged():
    from normconf.adapters import onnx_backends as ob

    bn = {b: profile_of(type(get_adapter(b))).for_op("batch_norm") for b in ALL}
    for b in NATIVE_ORT:
        assert bn[b] == ob.ONNX_TRAIN_CONVENTIONS
    assert bn["onnx-reference"] == ob.ONNX_TRAIN_CONVENTIONS
    assert bn["ort-opset9"] == bn["ort-opset9-init"] == ob.ONNX_OPSET9_CONVENTIONS
    assert bn["opencv-dnn"] == ()
    assert bn["onnx-reference-opset9"] == ob.ONNX_REFERENCE_OPSET9_CONVENTIONS
    for b in ALL:
        assert get_adapter(b).supports("batch_norm") and get_adapter(b).supports("layer_norm")
