"""A statistic whose sum may overflow its working dtype.

LayerNorm: the inv_std bound is infinite, so no precision model is 'covered' by a finite but
meaningless bound there.  BatchNorm keeps the two outcomes apart: the bound of a summation that stays
in range (another order may not overflow), and an overflow mask where the statistic may instead be
non-finite; inv_std = 1/√inf = 0 then leaves y = β, which is all an overflow can produce.
"""

from __future__ import annotations

import numpy as np

from normconf.explain.bounds import Bounds, Model, judge
from normconf.ops import get
from normconf.ops.layer_norm import bounds as lb
from normconf.ops.layer_norm.case import LayerNormCase
from normconf.outputs import tolerance_for
from tests.helpers import case

HALF = Model("float16", "float16", "two_pass", "unfolded")
F32 = Model("float32", "float32", "two_pass", "unfolded")


def _overflow_case():
    c = case(shape=[4, 2, 8], dtype="float16", input={"dist": "normal", "std": 150.0, "seed": 1})
    return c, get("batch_norm").generate(c)


def test_batch_norm_marks_where_a_float16_sum_can_overflow():
    c, inputs = _overflow_case()
    b = Bounds(c, inputs, c.semantics)
    _, d_half, over_half = b.per_channel(HALF, "inv_std", 1)
    _, d_f32, over_f32 = b.per_channel(F32, "inv_std", 1)
    assert over_half.all()  # 32 squares of ~2e4 overflow float16's 65504
    assert np.isfinite(d_half).all()  # the bound of an in-range summation is still a bound
    assert not over_f32.any() and np.isfinite(d_f32).all() and (d_f32 < 1e-3).all()


def test_an_overflow_allows_only_non_finite_statistics_or_beta():
    c, inputs = _overflow_case()
    b = Bounds(c, inputs, c.semantics)
    from normconf.oracle import reference_outputs

    ref = reference_outputs(c, inputs)
    y = np.asarray(ref["y"][0], np.float64)
    tol = tolerance_for(c, "y")
    beta = np.zeros_like(y)  # the case's β is 0: inv_std = 0 gives y = 0
    assert judge(b, HALF, "y", 1, beta, y, tol).covered
    assert judge(b, HALF, "y", 1, np.full_like(y, np.nan), y, tol).covered
    assert not judge(b, F32, "y", 1, beta, y, tol).covered  # float32 sums do not overflow here
    wrong = y.copy()
    wrong[0, 0, 0] = 40.0  # neither a non-finite value, nor β, nor within the in-range bound
    assert not judge(b, HALF, "y", 1, wrong, y, tol).covered
    var = np.asarray(ref["batch_var"][0], np.float64)
    assert judge(b, HALF, "batch_var", 1, np.full_like(var, np.inf), var, tolerance_for(c, "batch_var")).covered
    assert not judge(b, F32, "batch_var", 1, np.full_like(var, np.inf), var, tolerance_for(c, "batch_var")).covered


def test_layer_norm_inv_std_bound_is_infinite_where_a_float16_sum_can_overflow():
    c = LayerNormCase.model_validate(
        {
            "id": "h",
            "op": "layer_norm",
            "shape": [4, 64],
            "dtype": "float16",
            "input": {"dist": "normal", "std": 200.0, "seed": 2},
        }
    )
    inputs = get("layer_norm").generate(c)
    rb = lb.RowBounds(c, inputs, c.semantics)
    assert np.isinf(rb.group_bound(HALF, "inv_std", 1)).all()
    assert np.isfinite(rb.group_bound(F32, "inv_std", 1)).all()
