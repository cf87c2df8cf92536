"""A statistic whose sum may overflow its working dtype bounds nothing: the inv_std bound stays infinite
(BatchNorm and LayerNorm), so no precision model is 'covered' by a finite but meaningless bound there."""

from __future__ import annotations

import numpy as np

from normconf.explain.bounds import Bounds, Model
from normconf.ops import get
from normconf.ops.layer_norm import bounds as lb
from normconf.ops.layer_norm.case import LayerNormCase
from tests.helpers import case

HALF = Model("float16", "float16", "two_pass", "unfolded")
F32 = Model("float32", "float32", "two_pass", "unfolded")


def test_batch_norm_inv_std_bound_is_infinite_where_a_float16_sum_can_overflow():
    c = case(shape=[4, 2, 8], dtype="float16", input={"dist": "normal", "std": 150.0, "seed": 1})
    inputs = get("batch_norm").generate(c)
    b = Bounds(c, inputs, c.semantics)
    _, d_half = b.per_channel(HALF, "inv_std", 1)
    _, d_f32 = b.per_channel(F32, "inv_std", 1)
    assert np.isinf(d_half).all()  # 64 squares of ~2e4 overflow float16's 65504
    assert np.isfinite(d_f32).all() and (d_f32 < 1e-3).all()


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
