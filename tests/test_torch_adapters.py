"""torch / torch-scratch translations, each checked against the reference (never against torch)."""

import pytest

from tests.helpers import loaded_case

pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")


def rows(runner, backend, **fields):
    # the conftest's session runner; loaded_case's default id "t" and shape [4, 3, 2, 5]
    lc = loaded_case(file="test", **{"input": {"seed": 1, "mean": 0.5, "std": 2.0}, **fields})
    return {(r.output, r.step): r for r in runner.run_pair(lc, backend)}


def outcomes(rs):
    return {k: r.outcome for k, r in rs.items()}


def test_torch_translates_batch_weight_momentum_over_steps(runner):
    # the case asks for torch's own running-variance convention (unbiased), so everything must pass
    rs = rows(
        runner,
        "torch",
        momentum={"batch_weight": 0.3},
        steps=3,
        running_variance="unbiased",
        running_mean=0.5,
        running_var=2.0,
    )
    assert set(outcomes(rs).values()) == {"pass"}, outcomes(rs)
    assert ("running_mean", 3) in rs and ("running_var", 3) in rs


def test_torch_running_weight_form_is_the_same_update(runner):
    rs = rows(runner, "torch", momentum={"running_weight": 0.7}, steps=2, running_variance="unbiased")
    assert set(outcomes(rs).values()) == {"pass"}, outcomes(rs)


def test_torch_cumulative_average_is_momentum_none(runner):
    rs = rows(runner, "torch", momentum="cumulative", steps=3, running_variance="unbiased")
    assert set(outcomes(rs).values()) == {"pass"}, outcomes(rs)


def test_torch_running_var_is_unbiased_not_biased(runner):
    rs = rows(runner, "torch", running_variance="biased")
    assert rs[("y", 1)].outcome == "pass"
    assert rs[("running_var", 1)].outcome in ("mismatch", "explained")
    assert rs[("running_mean", 1)].outcome == "pass"


@pytest.mark.parametrize("eps", [1e-8, 0.5])
def test_torch_eps_and_affine(runner, eps):
    rs = rows(
        runner,
        "torch",
        eps=eps,
        running_variance="unbiased",
        affine={"gamma": [-1.0, 0.0, 2.5], "beta": [0.1, 0.2, 0.3]},
    )
    assert set(outcomes(rs).values()) == {"pass"}, outcomes(rs)


@pytest.mark.parametrize("shape", [[6, 3], [4, 3, 7], [2, 3, 2, 2, 3]])
def test_torch_ranks_and_channels_last(runner, shape):
    rs = rows(
        runner,
        "torch",
        shape=shape,
        layout="channels_last",
        mode="eval",
        running_mean=[0.1, -0.2, 0.3],
        running_var=[1.5, 0.5, 2.0],
    )
    assert outcomes(rs) == {("y", 1): "pass"}
    assert "permuted" in rs[("y", 1)].notes


def test_torch_no_affine_and_eval_after(runner):
    rs = rows(runner, "torch", affine=False, eval_after=True, running_variance="unbiased", steps=2)
    assert set(outcomes(rs).values()) == {"pass"}, outcomes(rs)
    assert ("eval_y", 1) in rs


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_torch_dtypes_pass_or_unsupported_by_trying(runner, dtype):
    rs = rows(runner, "torch", dtype=dtype, running_variance="unbiased")
    got = set(outcomes(rs).values())
    if got == {"unsupported"}:
        assert "torch:" in next(iter(rs.values())).message  # PyTorch's own message
    else:
        assert got <= {"pass", "mismatch", "explained"}
        assert rs[("running_mean", 1)].outcome == "pass"


def test_torch_scratch_is_d2l_biased_everywhere(runner):
    rs = rows(runner, "torch-scratch", steps=2, momentum={"batch_weight": 0.1})
    assert set(outcomes(rs).values()) == {"pass"}, outcomes(rs)
    assert ("batch_var", 2) in rs
    unb = rows(runner, "torch-scratch", normalize_variance="unbiased")
    assert unb[("y", 1)].outcome in ("mismatch", "explained")


def test_torch_scratch_cumulative_is_unsupported(runner):
    rs = rows(runner, "torch-scratch", momentum="cumulative")
    (r,) = rs.values()
    assert r.outcome == "unsupported" and "cumulative" in r.message


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"layout": "channels_last", "shape": [4, 2, 5, 3]},
        {"dtype": "float16", "param_dtype": "float32"},
        {"steps": 2, "momentum": {"batch_weight": 0.3}},
    ],
)
def test_torch_stage_outputs_are_the_kernels_own(fields):
    """batch_mean/inv_std, read from the module call's autograd node, are what aten::native_batch_norm
    returns for the same batch and running buffers (bit for bit) — the module's kernel, not a fit."""
    import numpy as np
    import torch

    from normconf.adapters import get_adapter
    from normconf.inputs import generate

    case = loaded_case(file="test", **{"input": {"seed": 2, "mean": 0.5, "std": 2.0}, **fields}).case
    inputs = generate(case)
    obs = get_adapter("torch").run_case(case, inputs)
    rm = torch.from_numpy(np.ascontiguousarray(inputs.running_mean)).clone()
    rv = torch.from_numpy(np.ascontiguousarray(inputs.running_var)).clone()
    for k, x_np in enumerate(inputs.x):
        x = torch.from_numpy(np.ascontiguousarray(x_np))
        if case.layout == "channels_last":
            x = x.movedim(-1, 1).contiguous(memory_format=torch.channels_last)
        w = torch.from_numpy(inputs.gamma) if inputs.gamma is not None else None
        b = torch.from_numpy(inputs.beta) if inputs.beta is not None else None
        _, mean, invstd = torch.ops.aten.native_batch_norm(x, w, b, rm, rv, True, case.momentum_weight, case.eps)
        assert obs.outputs["batch_mean"][k].tobytes() == mean.numpy().tobytes()
        assert obs.outputs["inv_std"][k].tobytes() == invstd.numpy().tobytes()
    assert any("autograd node" in n for n in obs.notes)
