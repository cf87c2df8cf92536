"""BatchNorm's precision explanation checks the *shape* of the error, and the mean it implies.

Any error of a channel's statistics changes a normalized output by ``γ·(x − μ)·δinv − γ·inv̂·δμ``:
two constants per channel and step (harness/explain/channel_shape.py).  Where a nearly lost one-pass
float32 variance (offset 1e2–1e4) makes the bound allow almost anything in size, statistics taken
over the wrong elements — per sample (an InstanceNorm), per position, or from half the batch — must
stay ``mismatch``: the first two leave residuals far above rounding, the third a mean error no float32
sum of these inputs can make.  A float32 sum of squares that overflows leaves inv_std = 0 and y = β:
that, and nothing else, is what an overflow explains.

The backends here are the float64 reference's inputs with one planted change (no framework).
"""

from __future__ import annotations

import numpy as np
import pytest

from normconf.explain import explain_output
from normconf.explain.precision import SHAPE_MARGIN
from normconf.inputs import generate
from normconf.oracle import reference_outputs
from normconf.outputs import tolerance_for
from tests.helpers import case_maker

make = case_maker(shape=[8, 4, 6, 5], dtype="float32", mode="train")


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float, rows: slice = slice(None)) -> np.ndarray:
    part = x[rows]
    mu = part.mean(axis=axes, keepdims=True)
    var = part.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def per_sample(x, eps):
    """statistics per (n, c): an InstanceNorm"""
    return _normalize(x, (2, 3), eps)


def per_position(x, eps):
    """statistics over the batch axis only, per channel and position"""
    return _normalize(x, (0,), eps)


def half_batch(x, eps):
    """statistics of the first half of the batch, applied to all of it"""
    return _normalize(x, (0, 2, 3), eps, slice(0, x.shape[0] // 2))


def _explained(case, y):
    inputs = generate(case)
    f = explain_output(case, inputs, "y", 1, y.astype(np.float32), None, tolerance_for(case, "y"))
    return f


@pytest.mark.parametrize("wrong", [per_sample, per_position, half_batch])
@pytest.mark.parametrize("mean", [100.0, 1000.0])
def test_statistics_of_the_wrong_elements_are_not_precision(wrong, mean):
    case = make(input={"dist": "normal", "mean": mean, "std": 1.0, "seed": 5})
    x = np.asarray(generate(case).x[0], np.float64)
    f = _explained(case, wrong(x, case.eps))
    assert f.label == "", (f.label, f.text)
    assert "not a precision effect either" in f.text, f.text


@pytest.mark.parametrize("wrong", [per_sample, per_position])
def test_a_regrouping_fits_the_size_but_not_the_shape_at_offset_1e4(wrong):
    case = make(input={"dist": "normal", "mean": 1.0e4, "std": 1.0, "seed": 5})
    x = np.asarray(generate(case).x[0], np.float64)
    f = _explained(case, wrong(x, case.eps))
    assert f.label == "", (f.label, f.text)
    assert "allows the error's size" in f.text and "but not its shape" in f.text, f.text


def test_a_per_channel_statistics_error_within_the_bound_is_still_precision():
    """The reference normalized with the statistics a float32 one-pass variance could give (each
    channel's variance off by 3 %, its mean by a float32 rounding): the shape check must let it pass."""
    case = make(input={"dist": "normal", "mean": 1000.0, "std": 1.0, "seed": 5})
    x = np.asarray(generate(case).x[0], np.float64)
    mu = x.mean(axis=(0, 2, 3), keepdims=True) * (1 + 2.0**-24)
    var = x.var(axis=(0, 2, 3), keepdims=True) * np.array([1.03, 0.97, 1.02, 0.99]).reshape(1, 4, 1, 1)
    f = _explained(case, (x - mu) / np.sqrt(var + case.eps))
    assert f.label.startswith("precision=float32") and "one_pass" in f.label, (f.label, f.text)
    assert f.precision is not None and f.precision.shape_fraction is not None
    assert f.precision.shape_fraction <= SHAPE_MARGIN


def test_an_overflowed_float32_variance_explains_y_equal_beta_only():
    case = make(shape=[4, 2, 8], input={"dist": "normal", "mean": 0.0, "std": 1.0e19, "seed": 1103})
    inputs = generate(case)
    ref = np.asarray(reference_outputs(case, inputs)["y"][0], np.float64)
    tol = tolerance_for(case, "y")
    zero = explain_output(case, inputs, "y", 1, np.zeros_like(ref, np.float32), None, tol)
    assert zero.label.startswith("precision=float32"), (zero.label, zero.text)
    assert "what an overflowed sum gives" in zero.text, zero.text
    other = ref.copy()
    other[0, 0, :] = 5.0  # neither β (= 0) nor a non-finite value nor within the in-range bound
    f = explain_output(case, inputs, "y", 1, other.astype(np.float32), None, tol)
    assert not f.label.startswith("precision="), (f.label, f.text)


def test_an_inv_std_error_beyond_its_bound_is_not_hidden_by_the_mean_allowance():
    """65 536 elements per channel at offset 1e3: the mean's float32 bound (≈ 0.08) allows, in size, an
    error of 0.07 at |x − μ| ≈ 4.5, which a 3 % variance error makes; the two-pass float32 model allows
    inv_std only 0.3 %.  The fitted δinv (1.5 %) must be checked against inv_std's own bound: only the
    one-pass model (whose variance at κ ≈ 1e3 may be far off) may explain it."""
    case = make(shape=[16, 8, 64, 64], input={"dist": "normal", "mean": 1000.0, "std": 1.0, "seed": 5})
    x = np.asarray(generate(case).x[0], np.float64)
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True) * (1 + 0.03 * np.cos(np.arange(8))).reshape(1, 8, 1, 1)
    f = _explained(case, (x - mu) / np.sqrt(var + case.eps))
    assert f.label.startswith("precision=float32") and "variance=one_pass" in f.label, (f.label, f.text)
