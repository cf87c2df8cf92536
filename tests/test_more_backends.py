"""More backends: keras-torch, keras-jax, keras-numpy, flax, flax-nnx, tf-keras-fused,
tf-keras-unfused, opencv-dnn.

Every expected value is computed independently of the backends: by hand (a tiny case
whose statistics are small exact numbers, formulas evaluated with NumPy in float64)
or with the float64 oracle through the runner's comparison (``Runner.run_pair``),
never by another backend or the backend itself.

The backends run through :class:`normconf.runner.Runner` (one worker process per
group, with ``KERAS_BACKEND`` etc. set before import), never in this process.  To
start each worker once, all the cases a backend needs run together the first time
that backend is asked for (:func:`results`).

Tolerances: float32 results against float64 hand values use rtol 1e-5 / atol 1e-6
(a handful of float32 operations on values <= 10 in magnitude: about 10 float32
ulps of 1.2e-7).  Reference checks use the harness's default tolerances (the
verdict ``normconf run`` gives).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from normconf.cases import Case, LoadedCase

RTOL, ATOL = 1e-5, 1e-6  # see the module docstring

TRAIN_IDS = ["keras-torch", "keras-jax", "keras-numpy", "flax", "flax-nnx", "tf-keras-fused", "tf-keras-unfused"]
ALL_IDS = TRAIN_IDS + ["opencv-dnn"]
NEEDS = {
    "keras-torch": ("keras", "torch"),
    "keras-jax": ("keras", "jax"),
    "keras-numpy": ("keras",),
    "flax": ("flax", "jax"),
    "flax-nnx": ("flax", "jax"),
    "tf-keras-fused": ("tf_keras", "tensorflow"),
    "tf-keras-unfused": ("tf_keras", "tensorflow"),
    "opencv-dnn": ("cv2", "onnx"),
}
#: the estimator each backend uses for the running variance (read from the installed sources;
#: tf-keras-fused takes FusedBatchNormV3's Bessel-corrected batch_variance output)
RUNNING_VAR = {b: "biased" for b in ALL_IDS} | {"tf-keras-fused": "unbiased"}

# --- the hand case: shape (N=2, C=2, H=1, W=2); per channel four values -------------------------
#   channel 0: 1 2 3 6 -> mean 3, biased var 3.5, unbiased var 14/3
#   channel 1: 0 0 4 4 -> mean 2, biased var 4,   unbiased var 16/3
DATA = [1, 2, 0, 0, 3, 6, 4, 4]  # logical (N, C, H, W) row-major
X = np.array(DATA, np.float64).reshape(2, 2, 1, 2)
MEAN, VAR_B, VAR_U = np.array([3.0, 2.0]), np.array([3.5, 4.0]), np.array([14 / 3, 16 / 3])
RM0, RV0 = np.array([1.0, -1.0]), np.array([2.0, 0.5])
GAMMA, BETA = np.array([2.0, 3.0]), np.array([0.5, -1.0])
EPS, W = 0.5, 0.25  # a large eps and an asymmetric momentum make every convention visible

HAND = dict(
    shape=[2, 2, 1, 2],
    data=[float(v) for v in DATA],
    eps=EPS,
    running_mean=RM0.tolist(),
    running_var=RV0.tolist(),
    affine={"gamma": GAMMA.tolist(), "beta": BETA.tolist()},
)


def _c(v, layout="channels_first"):
    """(C,) vector broadcast against logical X (channels-first, rank 4)."""
    return np.asarray(v, np.float64).reshape(1, -1, 1, 1)


def bn(x, mean, var):
    return _c(GAMMA) * (x - _c(mean)) / np.sqrt(_c(var) + EPS) + _c(BETA)


def running(old, batch):
    return (1 - W) * old + W * batch


def hand_expected(running_var: str):
    var_batch = VAR_U if running_var == "unbiased" else VAR_B
    rm, rv = running(RM0, MEAN), running(RV0, var_batch)
    return {"y": bn(X, MEAN, VAR_B), "running_mean": rm, "running_var": rv, "eval_y": bn(X, rm, rv)}


def to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if layout == "channels_last" and a.ndim > 1 else a


def _case(cid: str, **kw) -> LoadedCase:
    return LoadedCase(Case.model_validate({"id": cid, **kw}), "test_more_backends", 1)


RANDOM = dict(
    shape=[4, 3, 2, 5],
    input={"seed": 7, "mean": 1.0, "std": 2.0},
    running_mean=0.5,
    running_var=2.0,
    affine={"gamma": [1.5, 0.5, 2.0], "beta": [0.1, -0.2, 0.3]},
    eps=1e-3,
)

CASES: dict[str, LoadedCase] = {
    # hand-derived
    "hand_bw": _case("hand_bw", **HAND, momentum={"batch_weight": W}, eval_after=True),
    "hand_rw": _case("hand_rw", **HAND, momentum={"running_weight": 1 - W}, eval_after=True),
    "hand_cl": _case("hand_cl", **HAND, layout="channels_last", momentum={"batch_weight": W}, eval_after=True),
    "hand_eval": _case("hand_eval", **HAND, mode="eval"),
    "hand_eval_cl": _case("hand_eval_cl", **HAND, mode="eval", layout="channels_last"),
    "cumulative": _case("cumulative", **HAND, momentum="cumulative"),
    # against the reference
    "ref_train": _case(
        "ref_train", **RANDOM, layout="channels_last", steps=2, eval_after=True, momentum={"running_weight": 0.8}
    ),
    "ref_eval": _case("ref_eval", **RANDOM, mode="eval"),
    "ref_rank2": _case("ref_rank2", **{**RANDOM, "shape": [6, 3]}, steps=2),
    "ref_rank5_noaffine": _case("ref_rank5_noaffine", **{**RANDOM, "shape": [2, 3, 2, 2, 3], "affine": False}),
    # dtype facts decided by trying
    "f64_train": _case("f64_train", **RANDOM, dtype="float64"),
    "f64_eval": _case("f64_eval", **RANDOM, dtype="float64", mode="eval"),
    "bf16_eval": _case("bf16_eval", **RANDOM, dtype="bfloat16", mode="eval"),
    "f16_eval": _case("f16_eval", **RANDOM, dtype="float16", mode="eval"),
    "rank3_train": _case("rank3_train", **{**RANDOM, "shape": [4, 3, 5]}),
    # one signature (shape, dtype, layout), two configurations, run one after the other in one worker:
    # an adapter that caches compiled steps must key them by every number of the module (eps, momentum)
    "sig_a": _case("sig_a", **RANDOM, momentum={"batch_weight": 0.1}, eval_after=True),
    "sig_b": _case("sig_b", **{**RANDOM, "eps": 0.5}, momentum={"batch_weight": 0.4}, eval_after=True),
}

_RESULTS: dict[str, dict] = {}
_RUNNER = None


def _missing(backend: str) -> str | None:
    for mod in NEEDS[backend]:
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    return None


@pytest.fixture(scope="module")
def runner():
    global _RUNNER
    from normconf.runner import Runner

    with Runner(timeout=600) as r:
        _RUNNER = r
        yield r
    _RUNNER = None
    _RESULTS.clear()


def results(runner, backend: str) -> dict:
    """{case id: (BackendResult, rows)} for every case of :data:`CASES`, run once per backend."""
    reason = _missing(backend)
    if reason:
        pytest.skip(f"{backend}: {reason}")
    if backend not in _RESULTS:
        out = {}
        for cid, lc in CASES.items():
            res = runner.run_backend(lc, backend)
            rows = []
            if res.status == "ok":
                inputs, ref = runner.expected(lc)
                from normconf.results import rows_for

                rows = rows_for(lc, backend, res, ref, inputs)
            out[cid] = (res, rows)
        _RESULTS[backend] = out
    return _RESULTS[backend]


def ok(runner, backend: str, cid: str):
    res, rows = results(runner, backend)[cid]
    assert res.status == "ok", f"{backend} on {cid}: {res.status}: {res.message}"
    return res.outputs, rows


def check(actual, expected, what: str):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=RTOL, atol=ATOL, err_msg=what)


# ================================================================================================
# framework-free checks (fast)


def test_translation_functions():
    from normconf.adapters._keras_common import keras_momentum, keras_unsupported
    from normconf.adapters.base import Unsupported
    from normconf.adapters.flax_backends import CUMULATIVE_REASON, flax_momentum

    for fn in (keras_momentum, flax_momentum):
        # the case's running_weight is used as given (no 1-(1-x) rounding), batch_weight is turned around
        assert fn(CASES["hand_rw"].case) == 1 - W
        assert fn(
            Case.model_validate({"id": "m", "shape": [2, 2], "momentum": {"batch_weight": 0.1}})
        ) == pytest.approx(0.9, abs=0)
        assert fn(Case.model_validate({"id": "m", "shape": [2, 2], "momentum": {"running_weight": 0.99}})) == 0.99
        with pytest.raises(Unsupported, match="cumulative"):
            fn(CASES["cumulative"].case)
    assert "cumulative" in CUMULATIVE_REASON
    assert "cumulative" in keras_unsupported(CASES["cumulative"].case)
    assert keras_unsupported(CASES["hand_eval"].case) is None
    mixed = Case.model_validate({"id": "m", "shape": [2, 2], "dtype": "float16", "param_dtype": "float64"})
    assert "dtype policy" in keras_unsupported(mixed)


def test_worker_groups_and_environments():
    from normconf.adapters import all_adapters

    a = all_adapters()
    for b in ALL_IDS:
        assert b in a, f"{b} is not registered"
    env = {b: a[b].worker_env for b in ALL_IDS}
    groups = {b: a[b].worker for b in ALL_IDS}
    for b, kb in (("keras-torch", "torch"), ("keras-jax", "jax"), ("keras-numpy", "numpy")):
        assert env[b]["KERAS_BACKEND"] == kb
    # Keras on torch / JAX runs beside that framework's own backends (one import of it)
    assert groups["keras-torch"] == a["torch"].worker == "torch" and groups["keras-numpy"] == "keras-numpy"
    assert env["keras-jax"]["JAX_PLATFORMS"] == "cpu"
    assert (
        groups["flax"] == groups["flax-nnx"] == groups["keras-jax"] == "jax" and env["flax"]["JAX_PLATFORMS"] == "cpu"
    )
    # Keras 2 beside the other TensorFlow backends (one TensorFlow import); tf.keras routed to it
    assert groups["tf-keras-fused"] == groups["tf-keras-unfused"] == a["tf-nn"].worker == "tensorflow"
    assert env["tf-keras-fused"]["TF_USE_LEGACY_KERAS"] == "1"
    assert groups["opencv-dnn"] == "opencv"
    # Keras backends never share a process with keras-tf (the tensorflow group) or each other
    assert len({groups[b] for b in ("keras-torch", "keras-jax", "keras-numpy")} | {a["keras-tf"].worker}) == 4


#: (backends checked, the group mates that run before them on each case): Keras on torch and on JAX, and
#: Keras 2, share a process with these; the group mates import their framework's other packages first
_SHARED = [
    ("keras-torch", "torch,torch-scratch"),
    ("keras-jax", "flax,flax-nnx"),
    ("tf-keras-fused,tf-keras-unfused", "keras-tf,tf-nn,tf-fused"),
]


@pytest.mark.parametrize("backends, mates", _SHARED, ids=[b for b, _m in _SHARED])
def test_a_backend_computes_the_same_beside_its_group_mates(tmp_path, backends, mates):
    """The rows of backends that share a worker process (harness/adapters/keras_backends.py,
    tf_keras_backends.py) are the same when their group mates ran first on every case (Keras 3 imported
    before tf_keras, Flax's and torch's modules before Keras's) as when they run alone."""
    import pandas as pd

    from normconf.adapters import get_adapter
    from tests.helpers import run_cli

    missing = {b: why for b in [*backends.split(","), *mates.split(",")] if (why := get_adapter(b).available())}
    if missing:
        pytest.skip(f"not available: {missing}")

    rows = {}
    for name, selected in (("alone", backends), ("beside", f"{mates},{backends}")):
        out = tmp_path / name
        p = run_cli(
            "run",
            "cases/seed_article.yaml",
            "cases/multistep.yaml",
            "cases/train_eval.yaml",
            "-b",
            selected,
            "-q",
            "-o",
            str(out),
            timeout=600,
        )
        assert p.returncode in (0, 1), p.stderr
        df = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str).drop(columns=["seconds"])
        rows[name] = df[df["backend"].isin(backends.split(","))].reset_index(drop=True)
    assert len(rows["alone"]) > 20
    pd.testing.assert_frame_equal(rows["alone"], rows["beside"])


def test_adapter_modules_import_no_framework():
    code = (
        "import sys; import normconf.adapters.keras_backends, normconf.adapters.flax_backends, "
        "normconf.adapters.tf_keras_backends, normconf.adapters.opencv_dnn, normconf.adapters._keras_common; "
        "bad = [m for m in ('keras', 'tensorflow', 'tf_keras', 'jax', 'flax', 'torch', 'cv2', 'onnx') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_refusal_classifiers():
    from normconf.adapters.keras_backends import refuses_dtype
    from normconf.adapters.opencv_dnn import cv_refuses_dtype

    assert cv_refuses_dtype(
        Exception("(-215:Assertion failed) sctype == CV_32F || sctype == CV_16F in function 'getScaleBias'")
    )
    assert cv_refuses_dtype(Exception("Overload resolution failed: - blob data type = bfloat16 is not supported"))
    assert not cv_refuses_dtype(Exception("(-2:Unspecified error) Can't create layer 'bn' of type 'Foo'"))
    assert refuses_dtype(Exception("\"batch_norm\" not implemented for 'Half'"))
    assert not refuses_dtype(Exception("shape mismatch: (3,) vs (4,)"))


# ================================================================================================
# hand-derived translations, through the worker processes


@pytest.mark.parametrize("backend", TRAIN_IDS)
@pytest.mark.parametrize("cid", ["hand_bw", "hand_rw", "hand_cl"])
def test_train_hand_values(runner, backend, cid):
    """Momentum direction (both spellings), eps, axis/layout and initial running statistics, by hand."""
    out, _ = ok(runner, backend, cid)
    layout = CASES[cid].case.layout
    exp = hand_expected(RUNNING_VAR[backend])
    check(out["y"][0], to_layout(exp["y"], layout), f"{backend} y")
    check(out["running_mean"][0], exp["running_mean"], f"{backend} running_mean (momentum direction)")
    check(out["running_var"][0], exp["running_var"], f"{backend} running_var ({RUNNING_VAR[backend]} estimator)")
    check(out["eval_y"][0], to_layout(exp["eval_y"], layout), f"{backend} eval_y")


@pytest.mark.parametrize("backend", TRAIN_IDS)
def test_momentum_not_reversed(runner, backend):
    """The reversed direction ((1-w)*batch + w*old) would give 2.5 / 1.25 for channel 0 / 1."""
    out, _ = ok(runner, backend, "hand_bw")
    rm = np.asarray(out["running_mean"][0], np.float64)
    assert abs(rm[0] - 2.5) > 0.5 and abs(rm[1] - 1.25) > 0.5, rm


def test_fused_keras2_running_var_is_unbiased(runner):
    """tf-keras-fused blends FusedBatchNormV3's Bessel-corrected variance: not the biased value."""
    out, _ = ok(runner, "tf-keras-fused", "hand_bw")
    rv = np.asarray(out["running_var"][0], np.float64)
    assert not np.allclose(rv, running(RV0, VAR_B), rtol=1e-3), rv


@pytest.mark.parametrize("backend", ALL_IDS)
@pytest.mark.parametrize("cid", ["hand_eval", "hand_eval_cl"])
def test_eval_hand_values(runner, backend, cid):
    """Inference with the case's running statistics, eps inside the square root, both layouts."""
    out, _ = ok(runner, backend, cid)
    check(out["y"][0], to_layout(bn(X, RM0, RV0), CASES[cid].case.layout), f"{backend} eval y")


@pytest.mark.parametrize("backend", TRAIN_IDS)
def test_cumulative_is_unsupported(runner, backend):
    res, _ = results(runner, backend)["cumulative"]
    assert res.status == "unsupported" and "cumulative" in res.message


def test_opencv_refuses_training(runner):
    res, _ = results(runner, "opencv-dnn")["hand_bw"]
    assert res.status == "unsupported" and "mode train" in res.message


# ================================================================================================
# against the float64 reference (the runner's comparison, default tolerances)


def _outcomes(rows, name):
    return [r.outcome for r in rows if r.output == name]


@pytest.mark.parametrize("backend", TRAIN_IDS)
@pytest.mark.parametrize("cid", ["ref_train", "ref_rank2", "ref_rank5_noaffine"])
def test_train_matches_reference(runner, backend, cid):
    if backend == "tf-keras-fused" and CASES[cid].case.rank not in (4, 5):
        res, _ = results(runner, backend)[cid]
        assert res.status == "unsupported" and "4D or 5D" in res.message
        return
    _, rows = ok(runner, backend, cid)
    summary = [(r.output, r.step, r.outcome, r.max_abs_err) for r in rows]
    for name in ("y", "running_mean"):
        assert set(_outcomes(rows, name)) == {"pass"}, summary
    # eval_y normalizes with the final running_var, so it follows the running-variance estimator
    for name in ("running_var", "eval_y"):
        got = _outcomes(rows, name)
        if not got:  # no eval_after in this case
            continue
        if RUNNING_VAR[backend] == "biased":
            assert set(got) == {"pass"}, summary
        else:  # the unbiased running variance is a discrepancy the harness must show
            assert "pass" not in got, summary


@pytest.mark.parametrize("backend", TRAIN_IDS)
def test_same_signature_other_numbers_is_not_a_cached_step(runner, backend):
    """sig_b (eps 0.5, batch weight 0.4) right after sig_a (1e-3, 0.1), same shape and dtype: both match
    their own reference (a step compiled for sig_a and reused would be off by far more than the tolerance)."""
    for cid in ("sig_a", "sig_b"):
        _, rows = ok(runner, backend, cid)
        summary = [(r.output, r.outcome, r.max_abs_err) for r in rows]
        for name in ("y", "running_mean") + (("running_var", "eval_y") if RUNNING_VAR[backend] == "biased" else ()):
            assert _outcomes(rows, name) == ["pass"], (cid, summary)


@pytest.mark.parametrize("backend", ALL_IDS)
def test_eval_matches_reference(runner, backend):
    _, rows = ok(runner, backend, "ref_eval")
    assert _outcomes(rows, "y") == ["pass"], rows


# ================================================================================================
# dtype behaviour, decided by trying (pinned so a framework change shows up here)


@pytest.mark.parametrize("backend", ["keras-torch", "keras-jax", "keras-numpy"])
def test_keras3_float64_computes_in_float32(runner, backend):
    """Keras 3's result_type maps float64 to float32 on non-TF backends: y is off by float32 rounding."""
    out, rows = ok(runner, backend, "f64_train")
    assert out["y"][0].dtype == np.float64
    err = max(r.max_abs_err for r in rows if r.output == "y")
    assert 1e-12 < err < 1e-5, err


def test_flax_float64_is_float64(runner):
    out, rows = ok(runner, "flax", "f64_train")
    assert out["y"][0].dtype == np.float64
    assert max(r.max_abs_err for r in rows if r.output == "y") < 1e-12


def test_tf_keras_fused_refusals(runner):
    res, _ = results(runner, "tf-keras-fused")["f64_train"]
    assert res.status == "unsupported" and "float64" in res.message and "fused=True" in res.message
    res, _ = results(runner, "tf-keras-fused")["rank3_train"]
    assert res.status == "unsupported" and "4D or 5D" in res.message
    out, _ = ok(runner, "tf-keras-unfused", "rank3_train")  # the unfused layer takes any rank
    assert out["y"][0].shape == CASES["rank3_train"].case.array_shape


def _cv2_version() -> tuple[int, int]:
    import cv2

    return tuple(int(p) for p in cv2.__version__.split(".")[:2])  # type: ignore[return-value]


def test_opencv_dtypes(runner):
    """float64 parameters are refused (the folded BatchNorm layer is CV_32F/CV_16F only), float16 runs;
    bfloat16 is decided by trying: OpenCV 5.0's Python bindings refuse bfloat16 blobs, 5.1 takes them.
    Either way the adapter reports what OpenCV did: unsupported with OpenCV's message, or an output
    in the case's dtype that is compared like any other."""
    res, _ = results(runner, "opencv-dnn")["f64_eval"]
    assert res.status == "unsupported" and "CV_32F" in res.message
    res, rows = results(runner, "opencv-dnn")["bf16_eval"]
    if _cv2_version() < (5, 1):
        assert res.status == "unsupported" and "bfloat16" in res.message
    else:
        assert res.status == "ok", (res.status, res.message)
        assert {r.output for r in rows} == {"y"} and all(r.outcome in ("pass", "explained") for r in rows), rows
    out, rows = ok(runner, "opencv-dnn", "f16_eval")
    assert _outcomes(rows, "y") == ["pass"], rows


def test_opencv_empty_batch_is_an_error_not_a_fake_array(runner):
    """OpenCV 5.0's Net.forward() returns None for N = 0: reported as an error, never turned into an
    array.  OpenCV 5.1 returns an empty (0, C, H, W) tensor: passed through as it is (an adapter
    translates, it does not invent the shape)."""
    if _missing("opencv-dnn"):
        pytest.skip("opencv-dnn: cv2/onnx not installed")
    res = runner.run_backend(_case("empty_eval", shape=[0, 2, 3, 3], mode="eval"), "opencv-dnn")
    if _cv2_version() < (5, 1):
        assert res.status == "error" and "returned None" in res.message, (res.status, res.message)
    else:
        assert res.status == "ok", (res.status, res.message)
        (y,) = res.outputs["y"]
        assert y.shape == (0, 2, 3, 3) and y.dtype == np.float32
