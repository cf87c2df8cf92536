"""LayerNorm's precision explanation checks the *shape* of the error, not only its size.

Any error of a row's statistics (μ̂ = μ + δμ, inv̂ = inv + δinv) changes ``y`` by exactly
``γ·(x − μ)·δinv − γ·inv̂·δμ``: two constants per row.  Where a nearly lost one-pass float32
variance (offset 1e4, κ² ≈ 1e8) makes the statistics' bound allow almost anything, statistics taken
over the wrong elements fit inside it in size, never in shape (harness/ops/layer_norm/bounds.py,
``shape_fraction``).  And a documented convention that reproduces the output at float64 is preferred
to a precision hypothesis that assumes a lost algorithm (``_degraded`` in explain.py).

Backends here are the float64 reference with one planted change (tests/fuzz_mutants.py) or the
reference recomputed in a legitimate working precision (references/layer_norm.py emulates float32
statistics, the one-pass variance and folded arithmetic), never a framework.
"""

from __future__ import annotations

import numpy as np
import pytest

from normconf.cases import load_paths
from normconf.inputs import generate
from normconf.ops.layer_norm import bounds as lb
from normconf.ops.layer_norm.explain import explain
from normconf.oracle import reference_outputs
from normconf.references.layer_norm import layer_norm_reference
from normconf.results import tolerance_for
from tests import fuzz_mutants as fm

CASES = """\
normconf: 1
defaults: {op: layer_norm}
cases:
  - {id: rows_1e4, shape: [8, 64], input: {dist: normal, mean: 10000.0, std: 1.0, seed: 21}}
  - id: middle_axis_1e4
    shape: [6, 16, 5]
    axes: [1]
    input: {dist: normal, mean: 10000.0, std: 1.0, seed: 22}
  - id: middle_axis_1e4_affine
    shape: [4, 32, 3]
    axes: [1]
    affine: {gamma: {dist: normal, mean: 1.0, std: 0.5, seed: 3}, beta: {dist: normal, mean: 0.0, std: 1.0, seed: 4}}
    input: {dist: normal, mean: 10000.0, std: 0.5, seed: 23}
  - id: middle_axis_1e3
    shape: [6, 16, 5]
    axes: [1]
    input: {dist: normal, mean: 1000.0, std: 1.0, seed: 24}
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    p = tmp_path_factory.mktemp("shape") / "c.yaml"
    p.write_text(CASES, encoding="utf-8")
    out = {}
    for lc in load_paths([p]):
        inputs = generate(lc.case)
        out[lc.id] = (lc.case, inputs, reference_outputs(lc.case, inputs))
    return out


def _explain(case, inputs, ref, obs, output="y"):
    tol = tolerance_for(case, output)
    o, e = np.asarray(obs[output][0], np.float64), np.asarray(ref[output][0], np.float64)
    lim = tol.atol + tol.rtol * np.abs(e)
    if np.all(np.abs(o - e) <= lim):
        return "pass", ""
    got = explain(case, inputs, output, 1, o, e, tol)
    assert got is not None
    return got


@pytest.mark.parametrize("mutant", [fm.TrailingAxesOnly, fm.LastFeatureShift])
@pytest.mark.parametrize("cid", ["middle_axis_1e4", "middle_axis_1e4_affine", "middle_axis_1e3"])
def test_statistics_of_the_wrong_elements_are_not_precision(cases, cid, mutant):
    case, inputs, ref = cases[cid]
    label, text = _explain(case, inputs, ref, mutant().run(case, inputs).outputs)
    assert label == "", (label, text)
    assert "allows the error's size but not its shape" in text or "is exceeded" in text, text


@pytest.mark.parametrize("cid", ["rows_1e4", "middle_axis_1e4", "middle_axis_1e4_affine", "middle_axis_1e3"])
def test_a_documented_convention_beats_a_lost_algorithm(cases, cid):
    """The unbiased variance scales every row by √((m−1)/m): inside the one-pass float32 bound at offset
    1e4, but reproduced exactly by the convention, which is the explanation."""
    case, inputs, ref = cases[cid]
    obs = fm.UnbiasedVariance().run(case, inputs).outputs
    for output in ("y", "inv_std"):
        label, text = _explain(case, inputs, ref, obs, output)
        assert label == "normalize_variance=unbiased", (output, label, text)


def _precision_backend(case, inputs, variance: str, arithmetic: str, noise_ulps: int, seed: int):
    sem = case.semantics.replace(
        stats_dtype="float32", compute_dtype="float32", variance_algorithm=variance, arithmetic=arithmetic
    )
    out = layer_norm_reference(
        inputs.x,
        axes=case.norm_axes,
        eps=case.eps,
        gamma=inputs.gamma,
        beta=inputs.beta,
        semantics=sem,
        input_dtype=np.dtype(np.float32),
    )
    rng = np.random.default_rng(seed)
    obs = {}
    for name, arrays in out.items():
        y = arrays[0].astype(np.float32)
        if noise_ulps:
            k = rng.integers(-noise_ulps, noise_ulps + 1, size=y.shape).astype(np.float32)
            y = (y + k * np.spacing(y)).astype(np.float32)
        obs[name] = [y.astype(np.float64)]
    return obs


@pytest.mark.parametrize("noise", [0, 2])
@pytest.mark.parametrize("arithmetic", ["unfolded", "folded"])
@pytest.mark.parametrize("variance", ["two_pass", "one_pass"])
@pytest.mark.parametrize("cid", ["rows_1e4", "middle_axis_1e4", "middle_axis_1e4_affine", "middle_axis_1e3"])
def test_legitimate_working_precisions_are_precision(cases, cid, variance, arithmetic, noise):
    """float32 statistics and arithmetic, two-pass or one-pass, folded or not, ±2 ULP of noise on top:
    ``pass`` or a precision label, never a convention and never ``mismatch``."""
    case, inputs, ref = cases[cid]
    obs = _precision_backend(case, inputs, variance, arithmetic, noise, seed=len(cid) + noise)
    for output in ("y", "x_hat"):
        label, text = _explain(case, inputs, ref, obs, output)
        assert label == "pass" or label.startswith("precision="), (output, label, text)


def test_shape_fraction_separates_a_statistics_error_from_a_regrouping(cases):
    case, inputs, ref = cases["middle_axis_1e4_affine"]
    rb = lb.RowBounds(case, inputs, case.semantics)
    model = lb.models(case, "y")[-1]  # the loosest: float32 one-pass folded
    tol = tolerance_for(case, "y")
    e = np.asarray(ref["y"][0], np.float64)
    # exact per-row statistics errors, computed in float64: y changes by γ(x−μ)δinv − γ·inv̂·δμ only
    x = np.asarray(inputs.x[0], np.float64)
    mu = x.mean(axis=case.norm_axes, keepdims=True)
    inv = 1 / np.sqrt(x.var(axis=case.norm_axes, keepdims=True) + case.eps)
    g, b = rb.signed_params("y", 1)
    shifted = g * (x - mu * (1 + 1e-7)) * inv * 1.3 + b
    assert lb.shape_fraction(rb, model, "y", 1, shifted, e, tol) < 0.5
    regrouped = np.asarray(fm.TrailingAxesOnly().run(case, inputs).outputs["y"][0], np.float64)
    assert lb.shape_fraction(rb, model, "y", 1, regrouped, e, tol) > 10 * lb.SHAPE_MARGIN
