"""TensorFlow backends: keras-tf, tf-nn, tf-fused.

Every expected value is computed independently: by hand with NumPy in float64,
or with the float64 oracle (normconf.oracle.reference_outputs), never by another
backend.

Tolerances: float32 results against float64 values use rtol 1e-5 / atol 1e-6
(a few float32 operations on values <= 10 in magnitude: ~10 float32 ulps of
1.2e-7); seed checks use the harness's default tolerance
(normconf.compare.default_tolerance), i.e. the verdict `normconf run` gives.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from normconf.adapters import get_adapter  # noqa: E402
from normconf.adapters.base import Unsupported  # noqa: E402
from normconf.adapters.tensorflow import TF_ENV, data_format, keras_dtype_policy, tf, tf_refuses_dtype  # noqa: E402
from normconf.cases import Case  # noqa: E402
from normconf.compare import compare, default_tolerance  # noqa: E402
from normconf.inputs import generate  # noqa: E402
from normconf.oracle import reference_outputs  # noqa: E402
from tests.helpers import case_maker  # noqa: E402

TF_IDS = ["keras-tf", "tf-nn", "tf-fused"]
RTOL, ATOL = 1e-5, 1e-6  # see the module docstring

from tests.seed_values import SEED, SEED_Y  # noqa: E402  (docs/seed.md's numbers)


def _keras_on_tensorflow() -> None:
    """keras-tf needs Keras on TensorFlow; Keras picks its backend once per process (the runner gives
    keras-tf its own worker), so skip if another test already imported Keras on another backend."""
    tf()
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"keras was imported on {keras.backend.backend()} in this process")


case = case_maker(id="t", shape=[4, 3, 2, 5], input={"seed": 5, "std": 2.0, "mean": 1.0})


def run(backend: str, c: Case):
    if backend == "keras-tf":
        _keras_on_tensorflow()
    inputs = generate(c)
    return get_adapter(backend).run(c, inputs), inputs


def moments(x: np.ndarray, axis: int, ddof: int = 0):
    x = x.astype(np.float64)
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    return x.mean(axis=axes), x.var(axis=axes, ddof=ddof)


def bcast(v, ndim, axis):
    s = [1] * ndim
    s[axis % ndim] = -1
    return np.asarray(v, np.float64).reshape(s)


# --- momentum direction and initial running statistics ------------------------------------------
def test_keras_momentum_direction_and_initial_stats():
    c = case(momentum={"batch_weight": 0.3}, running_mean=[2.0, -1.0, 0.5], running_var=[3.0, 0.5, 1.5])
    obs, inputs = run("keras-tf", c)
    mean, var = moments(inputs.x[0], 1)
    # Keras: moving = momentum*moving + (1-momentum)*batch with momentum = 1 - 0.3
    np.testing.assert_allclose(
        obs.outputs["running_mean"][0], 0.7 * np.array([2.0, -1.0, 0.5]) + 0.3 * mean, rtol=RTOL, atol=ATOL
    )
    np.testing.assert_allclose(
        obs.outputs["running_var"][0], 0.7 * np.array([3.0, 0.5, 1.5]) + 0.3 * var, rtol=RTOL, atol=ATOL
    )
    layer = next(iter(get_adapter("keras-tf")._cache._d.values()))["layer"]
    assert layer.momentum == pytest.approx(0.7)


def test_keras_running_weight_used_as_written():
    from normconf.adapters.tensorflow import keras_momentum

    assert keras_momentum(case(momentum={"running_weight": 0.875})) == 0.875
    assert keras_momentum(case(momentum={"batch_weight": 0.25})) == 0.75


def test_fused_exponential_avg_factor_is_batch_weight_with_bessel_running_var():
    c = case(momentum={"batch_weight": 0.3}, running_mean=[2.0, -1.0, 0.5], running_var=[3.0, 0.5, 1.5])
    obs, inputs = run("tf-fused", c)
    mean, var_u = moments(inputs.x[0], 1, ddof=1)
    np.testing.assert_allclose(
        obs.outputs["running_mean"][0], 0.7 * np.array([2.0, -1.0, 0.5]) + 0.3 * mean, rtol=RTOL, atol=ATOL
    )
    # FusedBatchNormV3 blends the Bessel-corrected batch variance into the running variance
    np.testing.assert_allclose(
        obs.outputs["running_var"][0], 0.7 * np.array([3.0, 0.5, 1.5]) + 0.3 * var_u, rtol=RTOL, atol=ATOL
    )


def test_fused_batch_variance_output_is_bessel_corrected_and_y_is_not():
    obs, inputs = run("tf-fused", case())
    mean, var_b = moments(inputs.x[0], 1)
    _, var_u = moments(inputs.x[0], 1, ddof=1)
    np.testing.assert_allclose(obs.outputs["batch_mean"][0], mean, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(obs.outputs["batch_var"][0], var_u, rtol=RTOL, atol=ATOL)
    x = inputs.x[0].astype(np.float64)
    np.testing.assert_allclose(
        obs.outputs["y"][0], (x - bcast(mean, 4, 1)) / np.sqrt(bcast(var_b, 4, 1) + 1e-5), rtol=RTOL, atol=ATOL
    )


def test_tf_nn_batch_statistics_and_no_running_stats():
    c = case(steps=2, eval_after=True)
    obs, inputs = run("tf-nn", c)
    for k in range(2):
        mean, var = moments(inputs.x[k], 1)
        np.testing.assert_allclose(obs.outputs["batch_mean"][k], mean, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(obs.outputs["batch_var"][k], var, rtol=RTOL, atol=ATOL)
    assert set(obs.outputs) == {"y", "batch_mean", "batch_var"}
    assert any("no running statistics" in n for n in obs.notes)


# --- eps and given running statistics (inference) -------------------------------------------------
@pytest.mark.parametrize("backend", TF_IDS)
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_eps_and_running_stats_in_inference(backend, layout):
    rm, rv, g, b = [0.5, -1.0, 2.0], [4.0, 0.25, 1.0], [1.0, 2.0, -1.0], [0.0, 1.0, 3.0]
    c = case(mode="eval", eps=0.5, running_mean=rm, running_var=rv, affine={"gamma": g, "beta": b}, layout=layout)
    obs, inputs = run(backend, c)
    x = inputs.x[0].astype(np.float64)
    ax = c.channel_axis
    want = (x - bcast(rm, 4, ax)) / np.sqrt(bcast(rv, 4, ax) + 0.5) * bcast(g, 4, ax) + bcast(b, 4, ax)
    np.testing.assert_allclose(obs.outputs["y"][0], want, rtol=RTOL, atol=ATOL)
    assert not any("transpos" in n for n in obs.notes)  # channels-last is native on all three


# --- axis / layout in training --------------------------------------------------------------------
@pytest.mark.parametrize("backend", TF_IDS)
@pytest.mark.parametrize(
    "layout,shape",
    [
        ("channels_first", [2, 3, 4, 5]),
        ("channels_last", [2, 3, 4, 5]),
        ("channels_first", [2, 3, 2, 3, 2]),
        ("channels_last", [2, 3, 2, 3, 2]),
    ],
)
def test_channel_axis_in_training(backend, layout, shape):
    c = case(layout=layout, shape=shape, input={"seed": 3, "std": 1.5})
    obs, inputs = run(backend, c)
    x = inputs.x[0].astype(np.float64)
    mean, var = moments(x, c.channel_axis)
    want = (x - bcast(mean, x.ndim, c.channel_axis)) / np.sqrt(bcast(var, x.ndim, c.channel_axis) + 1e-5)
    assert obs.outputs["y"][0].shape == c.array_shape
    np.testing.assert_allclose(obs.outputs["y"][0], want, rtol=RTOL, atol=ATOL)


def test_fused_data_format():
    assert data_format(case()) == "NCHW"
    assert data_format(case(layout="channels_last")) == "NHWC"
    assert data_format(case(shape=[2, 3, 2, 2, 2])) == "NCDHW"
    assert data_format(case(shape=[2, 3, 2, 2, 2], layout="channels_last")) == "NDHWC"


def test_fused_rank_declaration_matches_tensorflow():
    a = get_adapter("tf-fused")
    assert "rank 3" in a.unsupported(case(shape=[2, 3, 4]))
    # the declaration is true: the kernel refuses a 3-D input
    t = tf()
    # the Eigen kernel says "4 or 5-dimensional", the oneDNN one (TF_ENABLE_ONEDNN_OPTS=1) "4-dimensional"
    with pytest.raises(Exception, match="4(-| or 5-)dimensional"):
        t.compat.v1.nn.fused_batch_norm(t.zeros([2, 4, 3]), t.ones([3]), t.zeros([3]))


@pytest.mark.parametrize("backend", ["keras-tf", "tf-nn"])
def test_rank_2_and_3(backend):
    for shape in ([6, 3], [4, 3, 5]):
        c = case(shape=shape)
        obs, inputs = run(backend, c)
        x = inputs.x[0].astype(np.float64)
        mean, var = moments(x, 1)
        want = (x - bcast(mean, x.ndim, 1)) / np.sqrt(bcast(var, x.ndim, 1) + 1e-5)
        np.testing.assert_allclose(obs.outputs["y"][0], want, rtol=RTOL, atol=ATOL)


# --- multi-step -----------------------------------------------------------------------------------
def test_keras_multi_step_running_stats_every_step():
    c = case(
        steps=3,
        momentum={"batch_weight": 0.25},
        running_mean=1.0,
        running_var=2.0,
        eval_after=True,
        affine={"gamma": [1.0, 0.5, 2.0], "beta": [0.0, -1.0, 1.0]},
    )
    obs, inputs = run("keras-tf", c)
    ref = reference_outputs(c, inputs)  # Keras: biased variance everywhere, like the case
    for name in ("y", "running_mean", "running_var", "eval_y"):
        assert len(obs.outputs[name]) == len(ref[name])
        for k, (o, e) in enumerate(zip(obs.outputs[name], ref[name])):
            np.testing.assert_allclose(o, e, rtol=RTOL, atol=ATOL, err_msg=f"{name} step {k}")


def test_fused_multi_step_running_stats_every_step():
    c = case(steps=3, momentum={"batch_weight": 0.25}, running_mean=1.0, running_var=2.0, eval_after=True)
    obs, inputs = run("tf-fused", c)
    # the oracle under the case's conventions except an unbiased running variance (the op's)
    ref = reference_outputs(c, inputs, c.semantics.replace(running_variance="unbiased"))
    for name in ("y", "running_mean", "running_var", "eval_y"):
        for k, (o, e) in enumerate(zip(obs.outputs[name], ref[name])):
            np.testing.assert_allclose(o, e, rtol=RTOL, atol=ATOL, err_msg=f"{name} step {k}")


# --- the seed case ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", TF_IDS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_seed_case(backend, mode):
    extra = (
        {"mode": "eval", "running_mean": 7.863888888888889, "running_var": 1946.0649305555556} if mode == "eval" else {}
    )
    c = Case.model_validate({"id": "seed", "shape": [3, 1, 1, 6], "data": SEED, "eps": 1e-5, **extra})
    obs, inputs = run(backend, c)
    ref = reference_outputs(c, inputs)["y"][0]
    assert compare(obs.outputs["y"][0], ref, default_tolerance("float32"), "float32").close
    np.testing.assert_allclose(obs.outputs["y"][0], SEED_Y, rtol=0, atol=1.5e-6)  # 6 decimals + float32


# --- dtypes: decided by trying ----------------------------------------------------------------------
def test_fused_float64_unsupported_with_tf_message():
    c = case(dtype="float64")
    assert get_adapter("tf-fused").unsupported(c) is None  # not declared
    with pytest.raises(Unsupported, match="allowed values"):
        run("tf-fused", c)


def test_fused_float16_params_refused_float32_params_run():
    with pytest.raises(Unsupported, match="float16"):
        run("tf-fused", case(dtype="float16"))
    obs, inputs = run("tf-fused", case(dtype="float16", param_dtype="float32"))
    assert obs.outputs["y"][0].dtype == np.float16 and obs.outputs["running_mean"][0].dtype == np.float32


def test_keras_float16_runs_and_mixed_policy():
    assert keras_dtype_policy(case(dtype="float16", param_dtype="float32")) == "mixed_float16"
    assert keras_dtype_policy(case(dtype="float32", param_dtype="float16")) is None
    obs, _ = run("keras-tf", case(dtype="float16", param_dtype="float32"))
    assert obs.outputs["y"][0].dtype == np.float16 and obs.outputs["running_var"][0].dtype == np.float32


def test_tf_nn_mixed_dtypes_unsupported_with_tf_message():
    with pytest.raises(Unsupported, match="does not match|expected to be"):
        run("tf-nn", case(dtype="float16", param_dtype="float32"))


def test_dtype_refusal_classifier():
    assert tf_refuses_dtype(
        TypeError(
            "Value passed to parameter 'scale' has DataType float16 not in list of allowed values: bfloat16, float32"
        )
    )
    assert tf_refuses_dtype(
        RuntimeError("No OpKernel was registered to support Op 'FusedBatchNormV3' used by {{node x}}")
    )
    assert not tf_refuses_dtype(ValueError("input must be 4 or 5-dimensional[2,3,4]"))
    assert not tf_refuses_dtype(RuntimeError("Incompatible shapes: [2,3] vs. [4]"))


def test_cumulative_momentum():
    c = case(momentum="cumulative")
    assert "cumulative" in get_adapter("keras-tf").unsupported(c)
    assert "cumulative" in get_adapter("tf-fused").unsupported(c)
    assert get_adapter("tf-nn").unsupported(c) is None  # no running statistics: momentum is irrelevant
    assert get_adapter("keras-tf").unsupported(case(momentum="cumulative", mode="eval")) is None


# --- caching, worker group ------------------------------------------------------------------------
def test_traced_functions_are_cached_by_signature():
    from normconf.adapters import tensorflow as tfa

    _keras_on_tensorflow()
    for backend in TF_IDS:
        a = get_adapter(backend)
        c1 = case(shape=[3, 2, 3, 3], input={"seed": 21}, running_mean=0.5)
        a.run(c1, generate(c1))
        before = tfa.STATS["traced_functions"]
        c2 = case(shape=[3, 2, 3, 3], input={"seed": 22}, running_mean=-0.5, affine={"gamma": 2.0, "beta": 1.0})
        obs = a.run(c2, generate(c2))  # same signature: no new trace
        assert tfa.STATS["traced_functions"] == before, backend
        # ... and the values of the second case were used
        ref = reference_outputs(c2, generate(c2))
        np.testing.assert_allclose(obs.outputs["y"][0], ref["y"][0], rtol=RTOL, atol=ATOL)


def test_worker_group_and_env():
    for b in TF_IDS:
        a = get_adapter(b)
        assert a.worker == "tensorflow"
        assert a.worker_env["KERAS_BACKEND"] == "tensorflow"
        assert a.worker_env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert os.environ.get("KERAS_BACKEND", "tensorflow") == TF_ENV["KERAS_BACKEND"]


def test_one_trace_serves_every_batch_and_spatial_size():
    from normconf.adapters import tensorflow as tfa

    _keras_on_tensorflow()
    assert tfa.RELAXED_SHAPES
    for backend in TF_IDS:
        a = get_adapter(backend)
        c1 = case(shape=[3, 4, 3, 3], input={"seed": 31})
        a.run(c1, generate(c1))
        before = tfa.STATS["traced_functions"]
        c2 = case(shape=[5, 4, 2, 6], input={"seed": 32})  # same rank, C and layout; other N, H, W
        obs = a.run(c2, generate(c2))
        assert tfa.STATS["traced_functions"] == before, backend
        ref = reference_outputs(c2, generate(c2))
        assert obs.outputs["y"][0].shape == (5, 4, 2, 6)
        np.testing.assert_allclose(obs.outputs["y"][0], ref["y"][0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("backend", TF_IDS)
def test_results_do_not_depend_on_what_ran_before(backend):
    # the same case before and after another case of the same traced function: the same bits
    if backend == "keras-tf":
        _keras_on_tensorflow()
    a = get_adapter(backend)
    c1 = case(shape=[4, 2, 3, 3], steps=2, input={"seed": 41}, running_mean=0.5, eval_after=True)
    c2 = case(shape=[7, 2, 2, 5], steps=2, input={"seed": 42}, running_mean=-2.0, eval_after=True)
    first = a.run(c1, generate(c1)).outputs
    a.run(c2, generate(c2))
    again = a.run(c1, generate(c1)).outputs
    assert first.keys() == again.keys()
    for name in first:
        for k, (u, v) in enumerate(zip(first[name], again[name])):
            assert u.tobytes() == v.tobytes(), f"{name} step {k}"
