"""The expected value at the dtype limits is the float64 result rounded to the output dtype."""

import numpy as np

from normconf.cases import Case
from normconf.inputs import generate
from normconf.oracle import expected_outputs, reference_outputs


def test_expected_variance_overflows_to_inf_in_float16():
    # true variance 9e4 > float16 max 65504: the correctly rounded expected batch_var is inf
    case = Case.model_validate(
        {
            "id": "ovf",
            "shape": [4, 1],
            "dtype": "float16",
            "param_dtype": "float16",
            "data": [-300.0, 300.0, -300.0, 300.0],
        }
    )
    inputs = generate(case)
    ref = reference_outputs(case, inputs)["batch_var"][0]
    exp = expected_outputs(case, inputs)["batch_var"][0]
    assert ref[0] == 90000.0 and np.isposinf(exp[0])
    # the y output stays finite (±1): rounding applies per output
    assert np.all(np.isfinite(expected_outputs(case, inputs)["y"][0]))


def test_float64_outputs_are_not_rounded():
    case = Case.model_validate({"id": "f64", "shape": [3, 2], "dtype": "float64", "input": {"seed": 3}})
    inputs = generate(case)
    a, b = reference_outputs(case, inputs), expected_outputs(case, inputs)
    assert all(np.array_equal(a[k][0], b[k][0]) for k in a)
