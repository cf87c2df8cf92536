"""Deterministic inputs (pinned by a hash) and the comparison's metrics."""

import numpy as np
import pytest

from normconf.cases import Case
from normconf.compare import Tolerance, compare, default_tolerance, ulp
from normconf.inputs import generate
from tests.helpers import case_maker

case = case_maker(
    **{
        "id": "t",
        "shape": [4, 3, 5, 6],
        "input": {"dist": "normal", "mean": 1.0, "std": 2.0, "seed": 7},
        "affine": {"gamma": {"dist": "uniform", "low": 0.5, "high": 1.5, "seed": 3}, "beta": 0.25},
        "steps": 2,
    }
)


def test_inputs_are_pinned_by_hash():
    # a change here means every machine's inputs changed: update deliberately, never casually
    assert generate(case()).digest() == PINNED_FP32
    assert generate(case(dtype="bfloat16", layout="channels_last")).digest() == PINNED_BF16_NHWC


def test_inputs_rounded_to_dtype_and_laid_out():
    c = case(dtype="float16", layout="channels_last")
    inp = generate(c)
    assert len(inp.x) == 2 and inp.x[0].dtype == np.float16 and inp.x[0].shape == (4, 5, 6, 3)
    logical = generate(case(dtype="float16"))
    np.testing.assert_array_equal(np.moveaxis(inp.x[1], -1, 1), logical.x[1])
    assert inp.gamma.dtype == np.float16 and (inp.beta == np.float16(0.25)).all()
    assert not np.array_equal(inp.x[0], inp.x[1])  # each step its own batch


def test_explicit_data_in_logical_order():
    c = Case.model_validate({"id": "d", "shape": [1, 2, 3], "layout": "channels_last", "data": [0, 1, 2, 10, 11, 12]})
    x = generate(c).x[0]
    assert x.shape == (1, 3, 2)
    np.testing.assert_array_equal(x[0, :, 1], [10, 11, 12])


def test_compare_metrics_and_nan_inf_positions():
    exp = np.array([1.0, 2.0, np.nan, np.inf, 0.0])
    ok = compare(np.array([1.0, 2.0, np.nan, np.inf, 0.0], np.float32), exp, default_tolerance("float32"), "float32")
    assert ok.close and ok.mismatched == 0
    bad = compare(np.array([1.0, 2.5, 1.0, -np.inf, 0.0], np.float32), exp, default_tolerance("float32"), "float32")
    assert not bad.close and bad.mismatched == 3
    assert "NaN positions differ" in bad.message and "Inf positions" in bad.message
    assert bad.max_abs_err == pytest.approx(0.5) and bad.max_rel_err == pytest.approx(0.25)
    # 0.5 at 2.0 in float32: ulp(2.0) = 2**-22
    assert bad.max_ulp == pytest.approx(0.5 / 2**-22)


def test_tolerance_is_atol_plus_rtol():
    t = Tolerance(rtol=1e-3, atol=1e-5)
    assert compare(np.array([1.0 + 1e-3]), np.array([1.0]), t, "float64").close
    assert not compare(np.array([1.0 + 1.2e-3]), np.array([1.0]), t, "float64").close


def test_ulp_per_dtype():
    assert ulp(np.array([1.0]), "float16")[0] == 2.0**-10
    assert ulp(np.array([1.0]), "bfloat16")[0] == 2.0**-7
    assert ulp(np.array([1.0]), "float64")[0] == 2.0**-52


def test_shape_mismatch_is_a_mismatch():
    c = compare(np.zeros((2, 3)), np.zeros((3, 2)), default_tolerance("float32"), "float32")
    assert not c.close and "shape" in c.message


PINNED_FP32 = "6f1359571225f68cfcb2697202e65aeb8b5df0b94df2d9581596a3803d828b53"
PINNED_BF16_NHWC = "69420bc87bcafd404316fea7c6a1736979292b1c2af54480ca4039feeb58c075"


@pytest.mark.parametrize("dist", ["normal", "uniform", "constant"])
@pytest.mark.parametrize("n,chunk", [(1, 1 << 17), (300_007, 1 << 17), (1000, 7), (0, 5)])
def test_drawing_in_chunks_gives_the_whole_draws_numbers(dist, n, chunk):
    # the input is drawn a chunk at a time (no float64 array of all of it); NumPy's Generator fills values one
    # after the other from the bit generator, so any chunk size gives the numbers of one whole-array draw
    from normconf.cases import Generator
    from normconf.inputs import _draw_chunks, _draw_into

    gen = Generator.model_validate(
        {
            "normal": {"dist": "normal", "mean": 1.5, "std": 3.0, "seed": 11},
            "uniform": {"dist": "uniform", "low": -2.0, "high": 5.0, "seed": 11},
            "constant": {"dist": "constant", "value": 0.1, "seed": 11},
        }[dist]
    )
    rng = np.random.Generator(np.random.PCG64(11))
    whole = {
        "normal": lambda: rng.standard_normal(n) * 3.0 + 1.5,
        "uniform": lambda: rng.uniform(-2.0, 5.0, n),
        "constant": lambda: np.full(n, 0.1),
    }[dist]()
    got = np.concatenate(list(_draw_chunks(gen, n, chunk=chunk)))
    assert got.dtype == np.float64 and np.array_equal(got, whole)
    for dt in (np.float32, np.float16):
        assert np.array_equal(_draw_into(gen, n, np.dtype(dt)), whole.astype(dt))


def test_a_large_input_is_drawn_without_a_float64_copy():
    import tracemalloc

    from normconf.inputs import draw_x

    c = case(shape=[4, 8, 128, 128], steps=1)  # 524 288 float32 elements: 2 MiB
    tracemalloc.start()
    (x,) = draw_x(c)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert x.dtype == np.float32 and x.nbytes == 2 << 20
    # the float32 array plus one chunk's float64 temporaries (2 × 1 MiB); a whole float64 draw was 3× the input
    assert peak <= x.nbytes + 3 * (1 << 20), peak


@pytest.mark.parametrize(
    "shape,steps,dtype",
    [([4, 3, 5, 7], 1, "float32"), ([2, 6, 3, 4, 5], 2, "float16"), ([5, 4, 9], 3, "bfloat16"), ([6, 3], 1, "float64")],
)
@pytest.mark.parametrize("chunk", [7, 1 << 17])
def test_a_channels_last_input_is_drawn_in_place_with_the_same_numbers(monkeypatch, shape, steps, dtype, chunk):
    # drawn straight into the channels-last array in blocks of the logical order: the values of a logical
    # draw moved to the layout, whatever the block size, each step C-contiguous
    from normconf import inputs as inp

    monkeypatch.setattr(inp, "DRAW_CHUNK", chunk)
    c = case(shape=shape, steps=steps, dtype=dtype, layout="channels_last")
    logical = inp.draw_x(c)
    got = inp.draw_x(c, "channels_last")
    assert len(got) == steps
    for g, lg in zip(got, logical):
        assert g.flags.c_contiguous and g.dtype == lg.dtype
        np.testing.assert_array_equal(g, np.moveaxis(lg, 1, -1))
    np.testing.assert_array_equal(inp.generate(c).x[0], got[0])


def test_a_large_channels_last_input_is_never_held_twice():
    import tracemalloc

    from normconf.inputs import draw_x

    c = case(shape=[4, 8, 256, 256], steps=1, layout="channels_last")  # 8 MiB of float32
    tracemalloc.start()
    (x,) = draw_x(c, "channels_last")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert x.shape == (4, 256, 256, 8) and x.flags.c_contiguous
    # the array plus one block's float64 temporaries; drawing logically and copying to the layout was 2×
    assert peak <= x.nbytes + 3 * (1 << 20), peak
