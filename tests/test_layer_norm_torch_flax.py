"""LayerNorm through torch (nn.LayerNorm), torch-functional (F.layer_norm), flax (linen) and flax-nnx:
each translation checked against the float64 reference through the runner (never against another framework)."""

import importlib.util

import pytest

from normconf.cases import LoadedCase
from normconf.ops.layer_norm.case import LayerNormCase

AFFINE = {"gamma": {"dist": "normal", "seed": 1}, "beta": {"dist": "normal", "seed": 2}}
TORCH = ("torch", "torch-functional")
FLAX = ("flax", "flax-nnx")


def ln_case(**fields) -> LoadedCase:
    c = LayerNormCase.model_validate(
        {"op": "layer_norm", "id": "ln", "shape": [4, 16], "input": {"seed": 3, "mean": 0.5, "std": 2.0}, **fields}
    )
    return LoadedCase(c, "test", 1)


def rows(runner, backend, **fields):
    return {(r.output, r.step): r for r in runner.run_pair(ln_case(**fields), backend)}


def outcomes(rs):
    return {k: r.outcome for k, r in rs.items()}


def _need(backend):
    """Skip when the framework is missing, without importing it here (the workers import it)."""
    module = "torch" if backend.startswith("torch") else "flax"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


PLAIN = [
    dict(),
    dict(shape=[2, 3, 8], axes=[-2, -1], affine=AFFINE),
    dict(shape=[3, 8], bias=False, affine={"gamma": {"dist": "normal", "seed": 4}}),
    dict(shape=[3, 8], affine=False, eps=0.5),
    dict(shape=[16]),
    dict(shape=[3, 8], steps=3, affine=AFFINE),
]


@pytest.mark.parametrize("fields", PLAIN, ids=["last", "two_trailing", "no_bias", "no_affine", "rank1", "steps"])
@pytest.mark.parametrize("backend", TORCH + FLAX)
def test_plain_float32_cases_pass(runner, backend, fields):
    _need(backend)
    rs = rows(runner, backend, **fields)
    assert set(outcomes(rs).values()) == {"pass"}, {k: (r.outcome, r.message) for k, r in rs.items()}
    steps = fields.get("steps", 1)
    # torch reports the kernel's statistics; the functional form and flax only y
    want = {"y", "mean", "inv_std"} if backend == "torch" else {"y"}
    assert {o for o, _ in rs} == want
    assert {s for _, s in rs} == set(range(1, steps + 1))


def test_torch_statistics_come_from_native_layer_norm(runner):
    _need("torch")
    rs = rows(runner, "torch", shape=[2, 3, 8], axes=[1, 2], affine=AFFINE)
    assert rs[("mean", 1)].outcome == rs[("inv_std", 1)].outcome == "pass"
    assert "native_layer_norm" in rs[("y", 1)].notes and "elementwise_affine=True" in rs[("y", 1)].notes


@pytest.mark.parametrize("backend", TORCH)
@pytest.mark.parametrize("shape,axes", [([2, 5, 3], [1]), ([3, 4, 5], [0, 2]), ([3, 4, 5], [0, 1])])
def test_torch_non_trailing_axes_are_unsupported(runner, backend, shape, axes):
    _need(backend)
    (r,) = rows(runner, backend, shape=shape, axes=axes).values()
    assert r.outcome == "unsupported" and "trailing" in r.message and str(axes) in r.message


@pytest.mark.parametrize("backend", FLAX)
@pytest.mark.parametrize("shape,axes", [([2, 5, 3], [1]), ([3, 4, 5], [0, 2]), ([3, 4, 5], [0, 1])])
def test_flax_expresses_any_axes(runner, backend, shape, axes):
    # reduction_axes = feature_axes = the normalized axes; a non-uniform gamma/beta checks the feature mapping
    _need(backend)
    rs = rows(runner, backend, shape=shape, axes=axes, affine=AFFINE)
    assert outcomes(rs) == {("y", 1): "pass"}, {k: r.message for k, r in rs.items()}
    assert f"reduction_axes=feature_axes={axes}" in rs[("y", 1)].notes


@pytest.mark.parametrize("backend", TORCH + FLAX)
def test_rms_scaling_is_unsupported(runner, backend):
    _need(backend)
    (r,) = rows(runner, backend, rms_scaling=True, affine={"gamma": {"dist": "normal", "seed": 5}}).values()
    assert r.outcome == "unsupported" and "RMSNorm" in r.message


def test_torch_scratch_stays_batch_norm_only(runner):
    _need("torch")
    (r,) = rows(runner, "torch-scratch").values()
    assert r.outcome == "unsupported" and "not implemented by torch-scratch" in r.message


@pytest.mark.parametrize("backend", TORCH)
def test_torch_mixed_parameter_dtype_unsupported_by_trying(runner, backend):
    # float32 input with float16 weights: the CPU kernel refuses; PyTorch's own message is kept
    _need(backend)
    (r,) = rows(runner, backend, shape=[4, 8], param_dtype="float16", affine=AFFINE).values()
    assert r.outcome == "unsupported" and r.message.startswith("torch:") and "mixed dtype" in r.message


@pytest.mark.parametrize("backend", TORCH + FLAX)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_dtypes_run(runner, backend, dtype):
    _need(backend)
    rs = rows(runner, backend, shape=[4, 32], dtype=dtype, affine=AFFINE)
    assert set(outcomes(rs).values()) <= {"pass", "explained"}, {k: (r.outcome, r.message) for k, r in rs.items()}
    assert ("y", 1) in rs


@pytest.mark.parametrize("backend", FLAX)
def test_flax_keeps_its_default_fast_variance(runner, backend):
    # rows at 1e4 with std 1: Flax' default one-pass variance (use_fast_variance=True) loses the variance in
    # float32; the adapter must not switch it off, so y is far from the reference (the two-pass one passes)
    _need(backend)
    rs = rows(runner, backend, shape=[4, 64], input={"dist": "normal", "mean": 1.0e4, "std": 1, "seed": 5})
    r = rs[("y", 1)]
    assert r.outcome != "pass" and r.max_abs_err > 1.0
    assert "use_fast_variance at Flax' default (True)" in r.notes


def test_nnx_notes_the_parameter_cast_to_the_case_dtype(runner):
    _need("flax")
    rs = rows(runner, "flax-nnx", shape=[4, 32], dtype="float16", param_dtype="float32", affine=AFFINE)
    assert "rounded to float16" in rs[("y", 1)].notes
    lin = rows(runner, "flax", shape=[4, 32], dtype="float16", param_dtype="float32", affine=AFFINE)
    assert lin[("y", 1)].outcome == "pass" and "rounded" not in lin[("y", 1)].notes


def test_layer_norm_profiles_and_ops():
    from normconf.adapters.flax_backends import FlaxLinen, FlaxNNX
    from normconf.adapters.torch_backends import TorchFunctional, TorchModule, TorchScratch
    from normconf.profiles import Profile

    assert TorchModule.ops == FlaxLinen.ops == FlaxNNX.ops == ("batch_norm", "layer_norm")
    assert TorchFunctional.ops == ("layer_norm",) and TorchScratch.ops == ("batch_norm",)
    for cls in (TorchModule, TorchFunctional, FlaxLinen, FlaxNNX):
        p = Profile(cls.id, tuple(cls.conventions))
        assert [e.label for e in p.for_op("layer_norm")] == ["normalize_variance=biased"], cls.id
    # the BatchNorm profiles are unchanged by LayerNorm
    assert [e.label for e in Profile("torch", TorchModule.conventions).for_op("batch_norm")] == [
        "normalize_variance=biased",
        "running_variance=unbiased",
    ]
    # nnx's float32 BatchStat variables: in training the running statistics, in inference y
    nnx_bn = Profile("flax-nnx", FlaxNNX.conventions).for_op("batch_norm")
    assert [e.label for e in nnx_bn] == [
        "normalize_variance=biased",
        "running_variance=biased",
        "working_precision=float32",
        "working_precision=float32",
    ]
    assert [(e.outputs, e.modes) for e in nnx_bn[2:]] == [
        (("running_mean", "running_var", "eval_y"), ()),
        (("y",), ("eval",)),
    ]


@pytest.mark.parametrize("backend", TORCH + FLAX)
def test_unbiased_case_shows_the_declared_biased_variance(runner, backend):
    # none of them offers the unbiased variance: the profile's normalize_variance=biased is the expected outcome
    _need(backend)
    rs = rows(runner, backend, normalize_variance="unbiased")
    y = rs[("y", 1)]
    assert y.outcome == "explained" and y.explanation == "normalize_variance=biased" and y.as_expected, y.message
    if backend == "torch":
        assert rs[("inv_std", 1)].explanation == "normalize_variance=biased" and rs[("mean", 1)].outcome == "pass"
