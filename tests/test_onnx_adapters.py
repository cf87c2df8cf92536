"""ONNX backends (ort*, onnx-reference*) and the shared model builder (normconf.onnx_models).

Every expected value is computed independently: by hand with NumPy in float64,
or with the float64 oracle (normconf.oracle.reference_outputs).  No backend is
compared with itself or with another backend.

Tolerances: float32 backends against float64 values computed by hand use
rtol 1e-5 / atol 1e-6 -- a handful of float32 operations (mean, variance,
rsqrt, multiply-add) on values of magnitude <= 10 stay within ~10 float32 ulps
(1.2e-7 each); the seed checks use the harness's own default tolerance
(normconf.compare.default_tolerance), i.e. the verdict `normconf run` gives.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from normconf.adapters import get_adapter  # noqa: E402
from normconf.adapters.base import Unsupported  # noqa: E402
from normconf.cases import Case  # noqa: E402
from normconf.compare import compare, default_tolerance  # noqa: E402
from normconf.inputs import generate  # noqa: E402
from normconf.oracle import reference_outputs  # noqa: E402
from normconf.profiles import profile_of  # noqa: E402
from tests.helpers import case_maker  # noqa: E402

ORT_IDS = ["ort", "ort-init", "ort-init-noopt", "ort-opset9", "ort-opset9-init"]
REF_IDS = ["onnx-reference", "onnx-reference-opset9"]
ALL_IDS = ORT_IDS + REF_IDS
OPSET15_IDS = ["ort", "ort-init", "ort-init-noopt", "onnx-reference"]
RTOL, ATOL = 1e-5, 1e-6  # see the module docstring

from tests.seed_values import SEED, SEED_Y  # noqa: E402  (docs/seed.md's numbers)

case = case_maker(id="t", shape=[4, 3, 2, 5], input={"seed": 7, "std": 2.0, "mean": 1.0})


def needs_ort(backend: str) -> None:
    if backend.startswith("ort"):
        pytest.importorskip("onnxruntime")


def run(backend: str, c: Case):
    needs_ort(backend)
    inputs = generate(c)
    return get_adapter(backend).run(c, inputs), inputs


def by_hand_train(x: np.ndarray, axis: int):
    x = x.astype(np.float64)
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    return x.mean(axis=axes), x.var(axis=axes)  # biased (population) variance


def bcast(v, ndim, axis):
    s = [1] * ndim
    s[axis % ndim] = -1
    return np.asarray(v, np.float64).reshape(s)


# --- the model builder --------------------------------------------------------------------------
def test_model_attributes_translate_momentum_and_eps():
    from normconf.onnx_models import build_model

    # PyTorch-direction batch weight 0.3 -> ONNX momentum 0.7 (weight of the old running value)
    c = case(momentum={"batch_weight": 0.3}, eps=0.25)
    model, feeds = build_model(c, generate(c), opset=15)
    (node,) = model.graph.node
    attrs = {a.name: a for a in node.attribute}
    assert attrs["momentum"].f == pytest.approx(0.7)
    assert attrs["epsilon"].f == pytest.approx(0.25)
    assert attrs["training_mode"].i == 1
    assert [o.name for o in model.graph.output] == ["Y", "running_mean", "running_var"]
    # a running_weight is used exactly as written
    c2 = case(momentum={"running_weight": 0.875})
    (node2,) = build_model(c2, generate(c2))[0].graph.node
    assert {a.name: a.f for a in node2.attribute}["momentum"] == 0.875


def test_params_as_inputs_or_initializers():
    from normconf.onnx_models import PARAM_NAMES, X, build_model

    c = case(affine={"gamma": [1.0, 2.0, 3.0], "beta": [0.5, 0.0, -0.5]}, running_mean=[0.1, 0.2, 0.3])
    inputs = generate(c)
    m_in, feeds_in = build_model(c, inputs, params_as="inputs")
    assert set(feeds_in) == {X, *PARAM_NAMES} and not m_in.graph.initializer
    m_init, feeds_init = build_model(c, inputs, params_as="initializers")
    assert set(feeds_init) == {X}
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in m_init.graph.initializer}
    np.testing.assert_array_equal(inits["scale"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(inits["input_mean"], np.float32([0.1, 0.2, 0.3]))
    assert [i.name for i in m_init.graph.input] == [X]


def test_a_signature_shares_one_model_and_each_case_keeps_its_feeds():
    """Parameters as inputs: cases that differ only in their values share one checked model (and its
    digest); the feeds are each case's own; another eps, or initializers, is another model."""
    from normconf.onnx_models import SCALE, X, build_model, model_digest

    a = case(affine={"gamma": [1.0, 2.0, 3.0], "beta": [0.0, 0.0, 0.0]})
    b = case(affine={"gamma": [4.0, 5.0, 6.0], "beta": [0.0, 0.0, 0.0]}, input={"seed": 8})
    ma, fa = build_model(a, generate(a))
    mb, fb = build_model(b, generate(b))
    assert ma is mb and model_digest(ma) == model_digest(mb)
    np.testing.assert_array_equal(fa[SCALE], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(fb[SCALE], [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(fb[X], generate(b).x[0])
    me, _ = build_model(case(eps=1e-3), generate(case(eps=1e-3)))
    assert me is not ma and me.graph.node[0].attribute[0].f == pytest.approx(1e-3)
    mi, _ = build_model(a, generate(a), params_as="initializers")
    assert mi is not build_model(a, generate(a), params_as="initializers")[0]


def test_opset9_model_is_inference_and_min_ir():
    from normconf.onnx_models import build_model

    c = case(mode="eval")
    model, _ = build_model(c, generate(c), opset=9)
    assert model.opset_import[0].version == 9 and model.ir_version == 4
    assert [o.name for o in model.graph.output] == ["Y"]
    with pytest.raises(Unsupported, match="inference only"):
        build_model(case(), generate(case()), opset=9)


def test_schema_type_constraints_decide_expressibility():
    from normconf.onnx_models import check_expressible

    with pytest.raises(Unsupported, match="bfloat16"):
        check_expressible(case(mode="eval", dtype="bfloat16"), 9, training=False)
    with pytest.raises(Unsupported, match="one type"):
        check_expressible(case(mode="eval", dtype="float16", param_dtype="float32"), 9, training=False)
    check_expressible(case(dtype="float16", param_dtype="float32"), 15, training=True)  # T, T1, T2 differ at 15


def test_cumulative_momentum_is_unsupported_in_training_only():
    a = get_adapter("onnx-reference")
    assert "cumulative" in a.unsupported(case(momentum="cumulative"))
    assert a.unsupported(case(momentum="cumulative", mode="eval")) is None


# --- translations, checked on every backend ------------------------------------------------------
@pytest.mark.parametrize("backend", OPSET15_IDS)
def test_momentum_direction_and_initial_running_stats(backend):
    c = case(momentum={"batch_weight": 0.3}, running_mean=[2.0, -1.0, 0.5], running_var=[3.0, 0.5, 1.5])
    obs, inputs = run(backend, c)
    mean, var = by_hand_train(inputs.x[0], 1)
    np.testing.assert_allclose(
        obs.outputs["running_mean"][0], 0.7 * np.array([2.0, -1.0, 0.5]) + 0.3 * mean, rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(
        obs.outputs["running_var"][0], 0.7 * np.array([3.0, 0.5, 1.5]) + 0.3 * var, rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("backend", ["ort", "ort-init", "ort-opset9", "ort-opset9-init", "onnx-reference"])
def test_eps_and_given_running_stats_in_inference(backend):
    # a large eps makes a wrong eps (or eps outside the sqrt) visible
    rm, rv = [0.5, -1.0, 2.0], [4.0, 0.25, 1.0]
    c = case(
        mode="eval",
        eps=0.5,
        running_mean=rm,
        running_var=rv,
        affine={"gamma": [1.0, 2.0, -1.0], "beta": [0.0, 1.0, 3.0]},
    )
    obs, inputs = run(backend, c)
    x = inputs.x[0].astype(np.float64)
    want = (x - bcast(rm, 4, 1)) / np.sqrt(bcast(rv, 4, 1) + 0.5) * bcast([1.0, 2.0, -1.0], 4, 1) + bcast(
        [0.0, 1.0, 3.0], 4, 1
    )
    np.testing.assert_allclose(obs.outputs["y"][0], want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("backend", OPSET15_IDS)
@pytest.mark.parametrize("shape", [[2, 3, 4, 5], [3, 3, 7], [2, 3, 2, 3, 2]])
def test_channels_last_is_transposed_and_said(backend, shape):
    # distinct per-channel means: reducing over the wrong axis would fail
    c = case(
        layout="channels_last",
        shape=shape,
        input={"seed": 1, "std": 1.0},
        affine={"gamma": [1.0, 2.0, 0.5], "beta": [0.0, -1.0, 1.0]},
    )
    obs, inputs = run(backend, c)
    x = inputs.x[0].astype(np.float64)  # (N, *spatial, C)
    assert x.shape == (shape[0], *shape[2:], 3)
    mean, var = by_hand_train(x, -1)
    want = (x - mean) / np.sqrt(var + 1e-5) * np.array([1.0, 2.0, 0.5]) + np.array([0.0, -1.0, 1.0])
    assert obs.outputs["y"][0].shape == x.shape
    np.testing.assert_allclose(obs.outputs["y"][0], want, rtol=RTOL, atol=ATOL)
    assert any("transposed" in n for n in obs.notes)
    np.testing.assert_allclose(obs.outputs["running_mean"][0], 0.1 * mean, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("backend", OPSET15_IDS)
def test_rank2_needs_no_transpose(backend):
    c = case(layout="channels_last", shape=[6, 3])  # (N, C) is the same array in both layouts
    obs, inputs = run(backend, c)
    mean, var = by_hand_train(inputs.x[0], 1)
    np.testing.assert_allclose(obs.outputs["y"][0], (inputs.x[0] - mean) / np.sqrt(var + 1e-5), rtol=RTOL, atol=ATOL)
    assert not any("transposed" in n for n in obs.notes)


@pytest.mark.parametrize("backend", OPSET15_IDS)
def test_multi_step_feeds_running_stats_back(backend):
    c = case(steps=3, momentum={"batch_weight": 0.25}, running_mean=1.0, running_var=2.0, eval_after=True)
    obs, inputs = run(backend, c)
    ref = reference_outputs(c, inputs)
    assert len(obs.outputs["running_mean"]) == 3
    for name in ("y", "running_mean", "running_var", "eval_y"):
        for k, (o, e) in enumerate(zip(obs.outputs[name], ref[name])):
            np.testing.assert_allclose(o, e, rtol=RTOL, atol=ATOL, err_msg=f"{name} step {k}")
    # BatchNormalization-15 has no batch-statistics outputs: none are invented
    assert "batch_mean" not in obs.outputs and "batch_var" not in obs.outputs


@pytest.mark.parametrize("backend", OPSET15_IDS)
def test_seed_case_train(backend):
    c = Case.model_validate({"id": "seed", "shape": [3, 1, 1, 6], "data": SEED, "eps": 1e-5})
    obs, inputs = run(backend, c)
    ref = reference_outputs(c, inputs)["y"][0]
    assert compare(obs.outputs["y"][0], ref, default_tolerance("float32"), "float32").close
    # docs/seed.md gives y to 6 decimals (rounding 5e-7) plus float32 error: atol 1.5e-6
    np.testing.assert_allclose(obs.outputs["y"][0], SEED_Y, rtol=0, atol=1.5e-6)


@pytest.mark.parametrize("backend", ALL_IDS)
def test_seed_case_eval_twin(backend):
    c = Case.model_validate(
        {
            "id": "seed_eval",
            "shape": [3, 1, 1, 6],
            "data": SEED,
            "eps": 1e-5,
            "mode": "eval",
            "running_mean": 7.863888888888889,
            "running_var": 1946.0649305555556,
        }
    )
    obs, inputs = run(backend, c)
    ref = reference_outputs(c, inputs)["y"][0]
    assert compare(obs.outputs["y"][0], ref, default_tolerance("float32"), "float32").close
    np.testing.assert_allclose(obs.outputs["y"][0], SEED_Y, rtol=0, atol=1.5e-6)


# --- dtypes: decided by trying ------------------------------------------------------------------
def test_ort_bfloat16_is_unsupported_with_orts_message():
    pytest.importorskip("onnxruntime")
    c = case(dtype="bfloat16")
    assert get_adapter("ort").unsupported(c) is None  # not declared: decided by running
    with pytest.raises(Unsupported, match="NOT_IMPLEMENTED.*Could not find an implementation"):
        run("ort", c)


def test_ort_float16_runs():
    c = case(dtype="float16", mode="eval", running_mean=0.5, running_var=2.0)
    obs, inputs = run("ort", c)
    assert obs.outputs["y"][0].dtype == np.float16
    x = inputs.x[0].astype(np.float64)
    # float16 output: rtol 2e-3 is two float16 ulps (9.8e-4) of the result
    np.testing.assert_allclose(
        obs.outputs["y"][0].astype(np.float64),
        (x - 0.5) / np.sqrt(np.float64(np.float16(2.0)) + 1e-5),
        rtol=2e-3,
        atol=1e-3,
    )


def test_dtype_refusal_classifier():
    from normconf.adapters.onnx_backends import ort_refuses_dtype

    assert ort_refuses_dtype(
        RuntimeError(
            "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for BatchNormalization(15) node"
        )
    )
    assert not ort_refuses_dtype(
        RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: X")
    )
    assert not ort_refuses_dtype(ValueError("something else"))


def test_opset9_declares_train_unsupported():
    for b in ("ort-opset9", "ort-opset9-init", "onnx-reference-opset9"):
        assert "inference only" in get_adapter(b).unsupported(case())


def test_sessions_are_cached_by_signature():
    pytest.importorskip("onnxruntime")
    from normconf.adapters import onnx_backends as ob

    a = get_adapter("ort")
    c1 = case(input={"seed": 11}, running_mean=0.25)
    c2 = case(input={"seed": 12}, running_mean=-0.5)  # same signature, other values
    a.run(c1, generate(c1))
    before = ob.STATS["sessions_created"]
    a.run(c2, generate(c2))
    assert ob.STATS["sessions_created"] == before
    c3 = case(shape=[2, 3, 3, 3])  # another shape: another session
    a.run(c3, generate(c3))
    assert ob.STATS["sessions_created"] == before + 1


def test_worker_group():
    for b in ALL_IDS:
        assert get_adapter(b).worker == "onnx"


# --- known discrepancies of the installed versions (strict xfail: an upgrade that fixes them shows) ---
@pytest.mark.xfail(
    strict=True,
    reason=(
        "onnx.reference BatchNormalization_9 normalizes with momentum-blended statistics even in a one-output "
        "(inference) node: the schema default momentum=0.9 is never None (onnx/onnx PR #8442)"
    ),
)
def test_onnx_reference_opset9_inference_uses_given_stats():
    c = case(mode="eval", running_mean=[0.5, -1.0, 2.0], running_var=[4.0, 0.25, 1.0])
    obs, inputs = run("onnx-reference-opset9", c)
    x = inputs.x[0].astype(np.float64)
    want = (x - bcast([0.5, -1.0, 2.0], 4, 1)) / np.sqrt(bcast([4.0, 0.25, 1.0], 4, 1) + 1e-5)
    np.testing.assert_allclose(obs.outputs["y"][0], want, rtol=RTOL, atol=ATOL)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "onnxruntime 1.32 CPU, float16 training_mode=1 with initializers and graph optimizations on: scale/B are "
        "shared with the equal-valued input_var/input_mean initializers and then overwritten by the running update"
    ),
)
def test_ort_init_float16_train_default_params():
    c = case(dtype="float16")
    obs, inputs = run("ort-init", c)
    x = inputs.x[0].astype(np.float64)
    mean, var = by_hand_train(x, 1)
    want = (x - bcast(mean, 4, 1)) / np.sqrt(bcast(var, 4, 1) + 1e-5)
    # float16 result: 1e-2 absolute is ~10 float16 ulps at |y| <= 4
    np.testing.assert_allclose(obs.outputs["y"][0].astype(np.float64), want, rtol=0, atol=1e-2)


def test_ort_init_float16_train_without_optimizations_is_right():
    # the same model with graph optimizations disabled gives the batch-normalized y
    c = case(dtype="float16")
    obs, inputs = run("ort-init-noopt", c)
    x = inputs.x[0].astype(np.float64)
    mean, var = by_hand_train(x, 1)
    want = (x - bcast(mean, 4, 1)) / np.sqrt(bcast(var, 4, 1) + 1e-5)
    np.testing.assert_allclose(obs.outputs["y"][0].astype(np.float64), want, rtol=0, atol=1e-2)


@pytest.mark.parametrize("backend", ["ort", "onnx-reference"])
def test_momentum_attribute_is_float32_in_float64_models(backend):
    # ONNX stores momentum as a float32 attribute: a float64 model blends with float32(0.9)
    c = case(dtype="float64", momentum={"running_weight": 0.9}, running_mean=0.0)
    obs, inputs = run(backend, c)
    mean, _ = by_hand_train(inputs.x[0], 1)
    m32 = float(np.float32(0.9))
    # float64 arithmetic on O(1) values: 1e-12 relative is ~4500 float64 ulps, far below the 2.4e-7 effect
    np.testing.assert_allclose(obs.outputs["running_mean"][0], (1.0 - m32) * mean, rtol=1e-12, atol=1e-15)
    assert not np.allclose(obs.outputs["running_mean"][0], 0.1 * mean, rtol=1e-9, atol=0)


@pytest.mark.parametrize("backend", ORT_IDS + ["onnx-reference"])  # opset 9's evaluator blends (xfail below)
def test_epsilon_attribute_is_float32_in_float64_models(backend):
    # ONNX stores epsilon as a float32 attribute (every opset): a float64 model normalizes with
    # fl32(1e-5) = 9.99999974738e-06.  A running variance of 1e-6 makes the 2.5e-13 difference a
    # 1.2e-8 relative change of y, far above float64 rounding (1e-12 relative is ~4500 ulps)
    rv = [1e-6, 1e-6, 1e-6]
    c = case(dtype="float64", mode="eval", eps=1e-5, running_mean=[0.0, 0.5, -0.5], running_var=rv)
    obs, inputs = run(backend, c)
    x = inputs.x[0]
    mean = bcast([0.0, 0.5, -0.5], 4, 1)
    e32 = float(np.float32(1e-5))
    np.testing.assert_allclose(obs.outputs["y"][0], (x - mean) / np.sqrt(1e-6 + e32), rtol=1e-12, atol=0)
    assert not np.allclose(obs.outputs["y"][0], (x - mean) / np.sqrt(1e-6 + 1e-5), rtol=1e-9, atol=0)
    assert profile_of(type(get_adapter(backend))).entry("attribute_dtype") is not None  # and it is declared


def test_training_sessions_with_initializers_are_not_reused():
    """ORT 1.32's float16 training-mode BatchNormalization session with the running statistics as
    initializers returns other running statistics on a second Run() (it keeps state between runs), so
    the adapter builds a fresh session each time: repeated runs of one case give identical results."""
    from pathlib import Path

    from normconf.cases import load_paths

    pytest.importorskip("onnxruntime")
    cases = Path(__file__).resolve().parent.parent / "cases" / "dtypes.yaml"
    lc = next(lc for lc in load_paths([cases]) if lc.case.id == "dtype_float16_train")
    a = get_adapter("ort-init")
    inputs = generate(lc.case)
    first, second = a.run(lc.case, inputs).outputs, a.run(lc.case, inputs).outputs
    for name in first:
        assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(first[name], second[name])), name
