"""LayerNorm through Keras: keras.layers.LayerNormalization on keras-tf, keras-torch, keras-jax and
keras-numpy (Keras 3), and tf_keras.layers.LayerNormalization split by its own path choice over
tf-keras-fused / tf-keras-unfused (Keras 2).  tf-nn and tf-fused (raw TensorFlow ops) have no LayerNorm.

Every expectation is the float64 reference (``normconf.references.layer_norm``, through the runner's comparison
or called here), never another framework.  Everything runs through :class:`normconf.runner.Runner`
(one worker per group, ``KERAS_BACKEND`` set before import), never in this process.
"""

from __future__ import annotations

import numpy as np
import pytest

from normconf.cases import LoadedCase
from normconf.ops.layer_norm.case import LayerNormCase

AFFINE = {"gamma": {"dist": "normal", "seed": 1}, "beta": {"dist": "normal", "seed": 2}}
KERAS3 = ("keras-tf", "keras-torch", "keras-jax", "keras-numpy")
TF_KERAS = ("tf-keras-fused", "tf-keras-unfused")
NEEDS = {
    "keras-tf": ("keras", "tensorflow"),
    "keras-torch": ("keras", "torch"),
    "keras-jax": ("keras", "jax"),
    "keras-numpy": ("keras",),
    "tf-keras-fused": ("tf_keras", "tensorflow"),
    "tf-keras-unfused": ("tf_keras", "tensorflow"),
    "tf-nn": ("tensorflow",),
    "tf-fused": ("tensorflow",),
}


def _need(backend: str) -> None:
    for mod in NEEDS[backend]:
        pytest.importorskip(mod)


def ln_case(**fields) -> LoadedCase:
    c = LayerNormCase.model_validate(
        {"op": "layer_norm", "id": "ln", "shape": [4, 16], "input": {"seed": 3, "mean": 0.5, "std": 2.0}, **fields}
    )
    return LoadedCase(c, "test", 1)


def rows(runner, backend, **fields):
    _need(backend)
    return {(r.output, r.step): r for r in runner.run_pair(ln_case(**fields), backend)}


def detail(rs):
    return {k: (r.outcome, r.message[:300]) for k, r in rs.items()}


# --- plain float32 cases: y within the case tolerance --------------------------------------------------
PLAIN = [
    dict(),
    dict(shape=[2, 3, 8], axes=[-2, -1], affine=AFFINE),
    dict(shape=[3, 8], bias=False, affine={"gamma": {"dist": "normal", "seed": 4}}),
    dict(shape=[3, 8], affine=False, eps=0.5),
    dict(shape=[16]),
    dict(shape=[3, 8], steps=3, affine=AFFINE),
    dict(shape=[3, 4, 5], axes=[0, 2], affine=AFFINE),  # non-consecutive: the moments path on every backend
]
PLAIN_IDS = ["last", "two_trailing", "no_bias", "no_affine", "rank1", "steps", "first_and_last"]


@pytest.mark.parametrize("fields", PLAIN, ids=PLAIN_IDS)
@pytest.mark.parametrize("backend", KERAS3)
def test_keras3_plain_float32_cases_pass(runner, backend, fields):
    rs = rows(runner, backend, **fields)
    assert {r.outcome for r in rs.values()} == {"pass"}, detail(rs)
    steps = fields.get("steps", 1)
    assert set(rs) == {("y", s) for s in range(1, steps + 1)}  # the layer exposes y only


@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("fields", PLAIN, ids=PLAIN_IDS)
def test_tf_keras_runs_each_case_on_exactly_one_path(runner, fields, eps):
    fields = {**fields, "eps": fields.get("eps", eps)}
    by = {b: rows(runner, b, **fields) for b in TF_KERAS}
    ran = [b for b, rs in by.items() if {r.outcome for r in rs.values()} != {"unsupported"}]
    assert len(ran) == 1, {b: detail(rs) for b, rs in by.items()}
    (b,) = ran
    assert {r.outcome for r in by[b].values()} == {"pass"}, detail(by[b])
    (other,) = set(TF_KERAS) - {b}
    (r,) = by[other].values()
    assert f"this case runs on {b}" in r.message and "no argument to force" in r.message
    # which one: the layer's own rule (_fused_can_be_used): consecutive axes ending at the last one,
    # epsilon >= 1.001e-5, float32 variables
    c = ln_case(**fields).case
    want_fused = c.trailing and c.eps >= 1.001e-5
    assert b == ("tf-keras-fused" if want_fused else "tf-keras-unfused")
    path = "fused path (tf_keras chose it" if want_fused else "unfused path (tf_keras chose it"
    assert path in by[b][("y", 1)].notes


@pytest.mark.parametrize(
    "backend,fields",
    [
        ("tf-keras-fused", dict(dtype="float16", param_dtype="float32", eps=1e-3)),  # mixed_float16: float32 variables
        ("tf-keras-unfused", dict(dtype="float16", eps=1e-3)),  # a float16 layer: float16 variables, never fused
        ("tf-keras-unfused", dict(dtype="float64", eps=1e-3)),
    ],
)
def test_tf_keras_path_follows_the_variable_dtype(runner, backend, fields):
    (other,) = set(TF_KERAS) - {backend}
    rs = rows(runner, backend, **fields)
    assert {r.outcome for r in rs.values()} <= {"pass", "explained"}, detail(rs)
    (r,) = rows(runner, other, **fields).values()
    assert r.outcome == "unsupported" and f"runs on {backend}" in r.message
    if backend == "tf-keras-unfused":
        assert f"its variables are {fields['dtype']}, not float32" in r.message


def test_tf_keras_has_no_rms_scaling(runner):
    for b in TF_KERAS:
        (r,) = rows(runner, b, rms_scaling=True).values()
        assert r.outcome == "unsupported" and "no rms_scaling" in r.message


@pytest.mark.parametrize("backend", ("tf-nn", "tf-fused"))
def test_raw_tensorflow_ops_have_no_layer_norm(runner, backend):
    (r,) = rows(runner, backend).values()
    assert r.outcome == "unsupported" and "op layer_norm not implemented" in r.message


# --- axes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ("keras-tf", "keras-jax", "keras-numpy", "tf-keras-unfused"))
@pytest.mark.parametrize("shape,axes", [([2, 5, 3], [1]), ([2, 4, 4], [1]), ([3, 4, 5], [0, 1])])
def test_non_trailing_axes_are_normalized_where_keras_says(runner, backend, shape, axes):
    rs = rows(runner, backend, shape=shape, axes=axes, affine=AFFINE)
    assert {r.outcome for r in rs.values()} == {"pass"}, detail(rs)


def test_keras_torch_non_trailing_consecutive_axes_wrong_dims(runner):
    # Keras bug, reported as is: consecutive axes go to F.layer_norm, which normalizes the trailing dims.
    # (2, 4, 4) axis 1: normalized over axis 2 silently (a mismatch the profile does not expect)
    (r,) = rows(runner, "keras-torch", shape=[2, 4, 4], axes=[1]).values()
    assert r.outcome == "mismatch" and r.as_expected is False and r.max_abs_err > 0.5, (r.outcome, r.message)


def test_keras_torch_non_trailing_axis_refused_by_torch(runner):
    # (2, 5, 3) axis 1: torch refuses normalized_shape [5] on a trailing dim of 3 (an error, not corrected)
    (r,) = rows(runner, "keras-torch", shape=[2, 5, 3], axes=[1]).values()
    assert r.outcome == "error" and "normalized_shape=[5]" in r.message, (r.outcome, r.message)


# --- dtypes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", KERAS3)
@pytest.mark.parametrize(
    "fields",
    [
        dict(dtype="float16"),
        dict(dtype="bfloat16"),
        dict(dtype="float16", param_dtype="float32"),
        dict(dtype="bfloat16", param_dtype="float32"),
    ],
    ids=["f16", "bf16", "mixed_f16", "mixed_bf16"],
)
def test_keras3_half_precision_runs(runner, backend, fields):
    rs = rows(runner, backend, **fields)
    assert {r.outcome for r in rs.values()} <= {"pass", "explained"}, detail(rs)
    if "param_dtype" in fields:
        assert f"dtype policy mixed_{fields['dtype']}" in rs[("y", 1)].notes


@pytest.mark.parametrize("backend", KERAS3 + TF_KERAS)
def test_no_dtype_policy_is_unsupported(runner, backend):
    (r,) = rows(runner, backend, dtype="float32", param_dtype="float16").values()
    assert r.outcome == "unsupported" and "no Keras dtype policy" in r.message


def test_float64_working_precision(runner):
    """keras-tf keeps float64 (BIT64_TO_BIT32_DTYPE keeps it on TensorFlow); torch/JAX/NumPy compute a
    float64 case in float32 (declared working_precision), which the verdict accepts."""
    tf_rs = rows(runner, "keras-tf", dtype="float64", affine=AFFINE)
    assert tf_rs[("y", 1)].outcome == "pass" and tf_rs[("y", 1)].max_abs_err < 1e-12
    for b in ("keras-torch", "keras-jax", "keras-numpy"):
        (r,) = rows(runner, b, dtype="float64", affine=AFFINE).values()
        assert r.outcome in ("pass", "explained") and r.as_expected, (b, r.outcome, r.message)
        if r.outcome == "explained":
            assert "precision=float32" in r.explanation, r.explanation
        assert 1e-9 < r.max_abs_err < 1e-5, (b, r.max_abs_err)  # float32 work, not float64


# --- conventions ---------------------------------------------------------------------------------------
def _reference_y(lc, **semantics):
    from normconf.ops import get
    from normconf.ops.layer_norm.semantics import LayerNormSemantics

    spec = get("layer_norm")
    inputs = spec.generate(lc.case)
    return spec.reference(lc.case, inputs, LayerNormSemantics(**semantics))["y"]


@pytest.mark.parametrize("backend", KERAS3)
@pytest.mark.parametrize(
    "affine", [True, False, {"gamma": {"dist": "normal", "seed": 5}}], ids=["gamma_ones", "no_affine", "gamma"]
)
def test_rms_scaling_divides_by_the_variance(runner, backend, affine):
    """Raw output against the float64 reference of gamma·x/sqrt(var + eps) (Keras' rms_scaling)."""
    _need(backend)
    lc = ln_case(rms_scaling=True, affine=affine, input={"seed": 7, "mean": 1.0, "std": 1.0})
    res = runner.run_backend(lc, backend)
    assert res.status == "ok", res.message
    assert set(res.outputs) == {"y"}
    want = _reference_y(lc, centered=False, scale_statistic="variance")[0]
    rms = _reference_y(lc, centered=False, scale_statistic="mean_square")[0]
    got = np.asarray(res.outputs["y"][0], np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(got - rms)) > 0.1  # and visibly not the root mean square
    assert any("rms_scaling=True" in n and "incorrectly scales the input by the variance" in n for n in res.notes)


@pytest.mark.parametrize("backend", KERAS3)
def test_rms_scaling_explained_by_the_declared_convention(runner, backend):
    (r,) = rows(runner, backend, rms_scaling=True, input={"seed": 7, "mean": 1.0, "std": 1.0}).values()
    assert r.outcome == "explained" and r.explanation == "scale_statistic=variance" and r.as_expected, detail({0: r})


@pytest.mark.parametrize("backend", KERAS3 + ("tf-keras-unfused",))
def test_unbiased_case_explained_by_the_biased_variance(runner, backend):
    (r,) = rows(runner, backend, normalize_variance="unbiased").values()
    assert r.outcome == "explained" and r.explanation == "normalize_variance=biased" and r.as_expected, detail({0: r})


def test_profiles_declare_layer_norm_entries_with_evidence():
    from normconf.adapters.keras_backends import KerasJax, KerasNumpy, KerasTorch
    from normconf.adapters.tensorflow import TFNN, KerasTF, TFFused
    from normconf.adapters.tf_keras_backends import TFKerasFused, TFKerasUnfused

    for cls in (KerasTF, KerasTorch, KerasJax, KerasNumpy):
        ln = {e.knob: e for e in cls.conventions if e.op == "layer_norm"}
        assert ln["scale_statistic"].value == "variance" and "_layer_normalization" in ln["scale_statistic"].evidence
        assert ln["normalize_variance"].value == "biased"
        assert ("working_precision" in ln) == (cls is not KerasTF)
        assert "layer_norm" in cls.ops
    for cls in (TFKerasFused, TFKerasUnfused):
        assert {e.knob for e in cls.conventions if e.op == "layer_norm"} == {"normalize_variance"}
        assert "layer_norm" in cls.ops
    for cls in (TFNN, TFFused):
        assert cls.ops == ("batch_norm",)
