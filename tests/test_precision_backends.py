"""The precision-only backends emulator (tests/precision_backends.py) checked on its own.

It must follow the case's conventions exactly and differ from the float64
reference only by floating-point arithmetic: close to the reference in float32
on benign data, per-add rounding where it claims it, and the error sizes that
rounding analysis predicts for low precision, offsets and the folded forms.
"""

from __future__ import annotations

import itertools
import math

import ml_dtypes
import numpy as np
import pytest

from normconf.compare import compare
from normconf.inputs import generate, np_dtype
from normconf.oracle import reference_outputs
from normconf.results import output_dtype, tolerance_for
from tests.helpers import case_maker
from tests.precision_backends import (
    ARITHMETIC,
    ORDERS,
    WORKING,
    channel_sums,
    guard_examples,
    precision_outputs,
    working_dtype,
)

F32_EPS = float(np.finfo(np.float32).eps)
BF16 = np.dtype(ml_dtypes.bfloat16)


_case = case_maker(
    id="precision",
    shape=[64, 4, 8],
    steps=2,
    momentum={"batch_weight": 0.1},
    eval_after=True,
    affine={
        "gamma": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": 3},
        "beta": {"dist": "normal", "std": 0.5, "seed": 4},
    },
    input={"dist": "normal", "mean": 0.0, "std": 1.0, "seed": 41},
)


def _f64(a) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


# ----------------------------------------------------------------------------------------
# structure: names, steps, shapes, dtypes


@pytest.mark.parametrize("mode,eval_after", [("train", True), ("train", False), ("eval", False)])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_outputs_have_the_reference_structure_and_output_dtypes(mode, eval_after, dtype):
    case = _case(
        mode=mode,
        eval_after=eval_after,
        dtype=dtype,
        shape=[6, 3, 5],
        param_dtype="float32" if dtype in ("float16", "bfloat16") else None,
    )
    inputs = generate(case)
    ref = reference_outputs(case, inputs)
    working = "float32" if dtype in ("float32", "float64") else dtype
    out = precision_outputs(case, inputs, order="forward", working=working, arithmetic="unfolded")
    assert list(out) == case.output_names()
    full = precision_outputs(case, inputs, order="forward", working=working, arithmetic="unfolded", intermediates=True)
    assert list(full) == case.output_names() + ["inv_std", "x_hat"]
    for name, steps in full.items():
        assert len(steps) == len(ref[name])
        for a, e in zip(steps, ref[name]):
            assert a.shape == e.shape
            assert a.dtype == np_dtype(output_dtype(case, name))


def test_layouts_give_the_same_bits():
    """Sums run over each channel's elements in logical order whatever the layout."""
    for order, arithmetic in itertools.product(ORDERS, ARITHMETIC):
        a = _case(layout="channels_first")
        b = _case(layout="channels_last")
        oa = precision_outputs(a, generate(a), order=order, working="float32", arithmetic=arithmetic)
        ob = precision_outputs(b, generate(b), order=order, working="float32", arithmetic=arithmetic)
        for name in oa:
            for xa, xb in zip(oa[name], ob[name]):
                if xa.ndim > 1:
                    xb = np.moveaxis(xb, -1, 1)
                assert np.array_equal(xa, xb), (order, arithmetic, name)


def test_bad_arguments_are_refused():
    case = _case()
    inputs = generate(case)
    for kw in ({"order": "random"}, {"working": "float64"}, {"arithmetic": "fused"}):
        args = dict(order="forward", working="float32", arithmetic="unfolded") | kw
        with pytest.raises(ValueError):
            precision_outputs(case, inputs, **args)


# ----------------------------------------------------------------------------------------
# (a) float32 on benign data: close to the float64 reference, within a few ULPs


@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(layout="channels_last", normalize_variance="unbiased", running_variance="unbiased"),
        dict(momentum="cumulative", steps=3, affine=False, eps=1e-3),
        dict(mode="eval", eval_after=False, running_mean=0.1, running_var=1.5),
    ],
)
@pytest.mark.parametrize("order", ORDERS)
def test_float32_every_order_is_close_to_the_reference(order, variant):
    case = _case(**variant)
    inputs = generate(case)
    ref = reference_outputs(case, inputs)
    for arithmetic in ARITHMETIC:
        out = precision_outputs(case, inputs, order=order, working="float32", arithmetic=arithmetic, intermediates=True)
        for name, steps in out.items():
            for k, (o, e) in enumerate(zip(steps, ref[name]), start=1):
                if name in case.output_names():  # the harness's own verdict, default float32 tolerance
                    c = compare(o, e, tolerance_for(case, name), output_dtype(case, name))
                    assert c.close, (order, arithmetic, name, k, c.message)
                # and a few float32 ULPs relative to the output's scale (m = 512: measured <= 5.4)
                scale = float(np.max(np.abs(e)))
                err = float(np.max(np.abs(_f64(o) - e)))
                assert err <= 16 * F32_EPS * scale, (order, arithmetic, name, k, err / (F32_EPS * scale))


def test_pairwise_float32_sanity_case():
    """The brief's sanity test: float32 case, mean 0 std 1, float32 pairwise: every output close."""
    case = _case(steps=3, eval_after=True)
    inputs = generate(case)
    ref = reference_outputs(case, inputs)
    out = precision_outputs(case, inputs, order="pairwise", working="float32", arithmetic="unfolded")
    for name in case.output_names():
        for o, e in zip(out[name], ref[name]):
            assert compare(o, e, tolerance_for(case, name), output_dtype(case, name)).close, name


# ----------------------------------------------------------------------------------------
# the vectorized emulator against a scalar, one-operation-at-a-time model


def _scalar_sum(vals, order, t, perm):
    if order == "forward":
        seq = [list(vals)]
    elif order == "backward":
        seq = [list(vals)[::-1]]
    elif order == "permuted":
        seq = [[vals[i] for i in perm]]
    elif order.startswith("block"):
        b = int(order[5:])
        seq = [list(vals[i : i + b]) for i in range(0, len(vals), b)]
    if order == "kahan":
        s, c = t(0), t(0)
        for v in vals:
            y = v - c
            u = s + y
            c = (u - s) - y
            s = u
        return s
    sums = []
    for block in seq:
        s = block[0]
        for v in block[1:]:
            s = s + v
        sums.append(s)
    s = sums[0]
    for v in sums[1:]:
        s = s + v
    return s


def _scalar_model(case, inputs, order, working, arithmetic, seed=0):
    """One channel at a time, one NumPy scalar operation at a time (no arrays, no cumsum)."""
    wd = working_dtype(working)
    t = wd.type
    C = case.channels
    x_steps = [np.moveaxis(x, case.channel_axis, 0).reshape(C, -1) for x in inputs.x]  # (C, m), logical order
    m = x_steps[0].shape[1]
    perm = np.random.default_rng(seed).permutation(m)
    g = inputs.gamma if inputs.gamma is not None else np.ones(C)
    bt = inputs.beta if inputs.beta is not None else np.zeros(C)
    out = {n: [] for n in ("y", "batch_mean", "batch_var", "running_mean", "running_var")}
    rm = [t(v) for v in inputs.running_mean]
    rv = [t(v) for v in inputs.running_var]
    one, eps = t(1.0), t(case.eps)
    for k, xs in enumerate(x_steps, start=1):
        w = t(1.0 / k if case.momentum_weight is None else case.momentum_weight)
        ys, means, vars_ = np.empty((C, m)), [], []
        for c in range(C):
            xv = [t(v) for v in xs[c]]
            mean = t(float(_scalar_sum(xv, order, t, perm)) / m)
            sq = [(v - mean) * (v - mean) for v in xv]
            ss = float(_scalar_sum(sq, order, t, perm))
            var_b, var_u = t(ss / m), t(ss / (m - 1))
            var = var_b if case.normalize_variance == "biased" else var_u
            var_run = var_b if case.running_variance == "biased" else var_u
            inv = one / np.sqrt(var + eps)
            gg, bb = t(g[c]), t(bt[c])
            a = gg * inv
            b = bb - mean * a
            for j, v in enumerate(xv):
                if arithmetic == "unfolded":
                    ys[c, j] = float(((v - mean) * inv) * gg + bb)
                elif arithmetic == "folded":
                    ys[c, j] = float(v * a + b)
                else:
                    ys[c, j] = float(t(float(v) * float(a) + float(b)))
            rm[c] = (one - w) * rm[c] + w * mean
            rv[c] = (one - w) * rv[c] + w * var_run
            means.append(float(mean))
            vars_.append(float(var))
        out["y"].append(ys)
        out["batch_mean"].append(np.array(means))
        out["batch_var"].append(np.array(vars_))
        out["running_mean"].append(np.array([float(v) for v in rm]))
        out["running_var"].append(np.array([float(v) for v in rv]))
    return out


@pytest.mark.parametrize("momentum", ["cumulative", {"batch_weight": 0.1}])
@pytest.mark.parametrize("working,dtype", [("float32", "float64"), ("float16", "float16"), ("bfloat16", "bfloat16")])
@pytest.mark.parametrize("order", [o for o in ORDERS if o != "pairwise"])
def test_vectorized_emulator_matches_the_scalar_model_bit_for_bit(order, working, dtype, momentum):
    case = _case(
        shape=[9, 2, 11],
        dtype=dtype,
        param_dtype="float32" if dtype != "float64" else None,
        steps=3,
        momentum=momentum,
        eval_after=False,
        normalize_variance="unbiased",
        running_mean=0.3,
        running_var=0.7,
        layout="channels_last",
        input={"dist": "normal", "mean": 3.0, "std": 1.0, "seed": 8},
    )
    inputs = generate(case)
    for arithmetic in ARITHMETIC:
        out = precision_outputs(case, inputs, order=order, working=working, arithmetic=arithmetic)
        model = _scalar_model(case, inputs, order, working, arithmetic)
        wd = working_dtype(working)
        for name, steps in model.items():
            for k, (o, e) in enumerate(zip(out[name], steps)):
                o = _f64(o)
                if name == "y":
                    o = np.moveaxis(o, -1, 0).reshape(case.channels, -1)
                # the model's values are in wd; the emulator's were cast from wd to the output dtype
                e = _f64(np.asarray(e).astype(wd).astype(np_dtype(output_dtype(case, name))))
                assert np.array_equal(o, e), (order, arithmetic, name, k, np.max(np.abs(o - e)))


@pytest.mark.parametrize("working", WORKING)
def test_cumsum_rounds_after_every_addition(working):
    """``forward`` relies on np.cumsum in wd rounding after each add: compare with a scalar loop."""
    wd = working_dtype(working)
    rows = (np.random.default_rng(1).standard_normal((3, 700)) * 3 + 7).astype(wd)
    got = channel_sums(rows, "forward", wd)
    for c in range(3):
        s = rows[c, 0]
        for v in rows[c, 1:]:
            s = s + v
        assert got[c] == s and got.dtype == wd


# ----------------------------------------------------------------------------------------
# (b) per-add rounding: float16 forward sum of 4096 ones stagnates at 2048


def test_float16_forward_sum_of_ones_stagnates_at_2048_and_kahan_does_not():
    wd = np.dtype(np.float16)
    ones = np.ones((2, 4096), wd)
    # 2048 + 1 is a tie between 2048 and 2050 (float16 spacing 2 there): round-to-even keeps 2048
    assert channel_sums(ones, "forward", wd).tolist() == [2048.0, 2048.0]
    assert channel_sums(ones, "backward", wd).tolist() == [2048.0, 2048.0]
    assert channel_sums(ones, "permuted", wd, np.random.default_rng(0).permutation(4096)).tolist() == [2048.0] * 2
    assert channel_sums(ones, "kahan", wd).tolist() == [4096.0, 4096.0]
    # blocks of 8 / 64 sum exactly (8, 64), and so do 512 / 64 block sums of 8 / 64: 4096 exactly
    assert channel_sums(ones, "block8", wd).tolist() == [4096.0, 4096.0]
    assert channel_sums(ones, "block64", wd).tolist() == [4096.0, 4096.0]
    assert channel_sums(ones, "block4096", wd).tolist() == [2048.0, 2048.0]  # one block: forward
    # NumPy's own float16 sum accumulates in float32 and rounds once (documented caveat of "pairwise")
    assert channel_sums(ones, "pairwise", wd).tolist() == [4096.0, 4096.0]
    # bfloat16 (8-bit significand) stagnates at 256; NumPy's bfloat16 sum is that same sequential loop
    bones = np.ones((1, 4096), BF16)
    assert channel_sums(bones, "forward", BF16).tolist() == [256.0]
    assert channel_sums(bones, "pairwise", BF16).tolist() == [256.0]
    assert channel_sums(bones, "kahan", BF16).tolist() == [4096.0]


def test_float16_stagnation_shows_in_the_batch_mean():
    case = _case(
        shape=[4096, 1],
        dtype="float16",
        param_dtype="float32",
        steps=1,
        eval_after=False,
        affine=False,
        input={"dist": "constant", "value": 1.0},
    )
    inputs = generate(case)
    fwd = precision_outputs(case, inputs, order="forward", working="float16", arithmetic="unfolded")
    kah = precision_outputs(case, inputs, order="kahan", working="float16", arithmetic="unfolded")
    assert fwd["batch_mean"][0].tolist() == [0.5]  # 2048 / 4096
    assert kah["batch_mean"][0].tolist() == [1.0]
    assert kah["batch_var"][0].tolist() == [0.0]
    # forward: x - 0.5 = 0.5, squares 0.25 stagnate at 512 (0.25 spacing 0.5 there): var 512 / 4096
    assert fwd["batch_var"][0].tolist() == [0.125]
    # float32 working precision has none of that
    f32 = precision_outputs(case, inputs, order="forward", working="float32", arithmetic="unfolded")
    assert f32["batch_mean"][0].tolist() == [1.0]


# ----------------------------------------------------------------------------------------
# (c) bfloat16 working precision on offset data


def test_bfloat16_working_precision_differs_from_float32_on_offset_data():
    case = _case(
        dtype="bfloat16",
        param_dtype="float32",
        steps=1,
        eval_after=False,
        affine=False,
        input={"dist": "normal", "mean": 100.0, "std": 1.0, "seed": 5},
    )
    inputs = generate(case)
    ref = reference_outputs(case, inputs)
    m = 64 * 8
    for order in ORDERS:
        f32 = precision_outputs(case, inputs, order=order, working="float32", arithmetic="unfolded")
        bf = precision_outputs(case, inputs, order=order, working="bfloat16", arithmetic="unfolded")
        # float32 working precision: the bfloat16 inputs (all in [64, 128): multiples of 2**-1) sum
        # exactly in float32 for m = 512 (sum < 2**16: 17 bits < 24, in any order), so the mean is the
        # float32 rounding of the exact mean
        assert np.allclose(_f64(f32["batch_mean"][0]), ref["batch_mean"][0], rtol=F32_EPS, atol=0), order
        for name in case.output_names():
            assert compare(f32[name][0], ref[name][0], tolerance_for(case, name), output_dtype(case, name)).close
        # bfloat16: the mean itself is a bfloat16 number (spacing 0.5 at 64..128): error >= 0 and, with
        # sums of ~5e4 (spacing 256), far more; the variance (~1) is destroyed by the mean's error
        d_mean = np.abs(_f64(bf["batch_mean"][0]) - ref["batch_mean"][0])
        assert np.all(d_mean > np.abs(_f64(f32["batch_mean"][0]) - ref["batch_mean"][0])), order
        assert not np.array_equal(bf["y"][0], f32["y"][0]), order
        tol = tolerance_for(case, "batch_var")
        assert not compare(bf["batch_var"][0], ref["batch_var"][0], tol, output_dtype(case, "batch_var")).close
    assert m == math.prod(case.shape) // case.channels


# ----------------------------------------------------------------------------------------
# (d) folded vs unfolded on a large offset (mean 1e4, std 1, float32)


def test_folded_arithmetic_loses_the_offsets_ulp_and_fma_half_of_it():
    """Derivation, given the emulator's own float32 mean and inv_std (gamma 1, beta 0):

    * unfolded: ``x - mean`` is exact (Sterbenz: both in [8192, 16384)), ``x_hat = round(d * inv)``:
      error <= 0.5 ulp(|y|) (<= 2**-22 for |y| < 4, far below ulp(1e4) = 2**-10);
    * folded: ``a = inv`` exactly, ``b = -round(mean * a)`` (error <= 0.5 ulp(1e4) = 2**-11) and
      ``round(x * a)`` (another <= 2**-11) are both rounded at 1e4's scale before cancelling:
      error <= 2**-10 + 0.5 ulp(|y|);
    * folded_fma: only ``b``'s rounding remains: error <= 2**-11 + 0.5 ulp(|y|) (+ a double-rounding
      ulp of y at most).
    """
    case = _case(
        shape=[2048, 8],
        steps=1,
        eval_after=False,
        affine=False,
        input={"dist": "normal", "mean": 1e4, "std": 1.0, "seed": 7},
    )
    inputs = generate(case)
    ref = reference_outputs(case, inputs)
    x = _f64(inputs.x[0])
    err, err_ref, y = {}, {}, {}
    for arithmetic in ARITHMETIC:
        out = precision_outputs(
            case, inputs, order="pairwise", working="float32", arithmetic=arithmetic, intermediates=True
        )
        exact = (x - _f64(out["batch_mean"][0])) * _f64(out["inv_std"][0])  # float64, given the same stats
        y[arithmetic] = _f64(out["y"][0])
        err[arithmetic] = np.abs(y[arithmetic] - exact)
        err_ref[arithmetic] = y[arithmetic] - ref["y"][0]
        assert np.all(np.abs(y[arithmetic]) < 8)
    ulp_y = 2.0**-21  # ulp of |y| < 8 in float32 (2**2 * 2**-23)
    assert err["unfolded"].max() <= 0.5 * ulp_y
    assert err["folded"].max() <= 2.0**-10 + ulp_y
    assert err["folded_fma"].max() <= 2.0**-11 + 2 * ulp_y
    # over 16384 elements the rounding of x*a spreads over its whole range: folded is far worse
    assert err["folded"].max() > 2.0**-12 > 100 * err["unfolded"].max()
    assert np.abs(y["folded"] - y["unfolded"]).max() > 1000 * ulp_y
    # against the float64 reference every form shares the float32 mean's error; folded adds two
    # independent roundings at 1e4's scale on top of it, so its RMS error is larger
    rms = {a: float(np.sqrt(np.mean(e**2))) for a, e in err_ref.items()}
    assert rms["folded"] > rms["unfolded"] and rms["folded"] > rms["folded_fma"]


# ----------------------------------------------------------------------------------------
# guard examples


def test_guard_examples_are_deterministic_diverse_and_cheap():
    ex = list(guard_examples())
    assert len(ex) == 520
    again = list(guard_examples())
    assert [(c.model_dump(), o, w, a) for c, o, w, a in ex] == [(c.model_dump(), o, w, a) for c, o, w, a in again]
    assert [c.id for c, *_ in guard_examples(5, seed=1)] != [] and [
        c.model_dump() for c, *_ in guard_examples(5, seed=1)
    ] != [c.model_dump() for c, *_ in ex[:5]]
    pairs = {(o, a) for _, o, _, a in ex}
    assert pairs == set(itertools.product(ORDERS, ARITHMETIC))
    ms = [math.prod(c.shape) // c.channels for c, *_ in ex]
    assert min(ms) == 2 and 3000 <= max(ms) <= 4096
    assert max(c.n_elements for c, *_ in ex) <= 20000
    assert {c.rank for c, *_ in ex} == {2, 3, 4}
    assert {c.channels for c, *_ in ex} == set(range(1, 9))
    assert {c.layout for c, *_ in ex} == {"channels_first", "channels_last"}
    assert {c.mode for c, *_ in ex} == {"train", "eval"}
    assert {c.steps for c, *_ in ex if c.mode == "train"} == {1, 2, 3}
    assert {c.momentum_weight for c, *_ in ex} == {0.1, 0.01, 0.5, None}
    assert {c.eval_after for c, *_ in ex if c.mode == "train"} == {True, False}
    assert {(c.normalize_variance, c.running_variance) for c, *_ in ex} == set(
        itertools.product(["biased", "unbiased"], repeat=2)
    )
    assert {c.eps for c, *_ in ex} == {1e-5, 1e-3}
    assert {c.input.mean for c, *_ in ex} == {0.0, 1.0, 10.0, 100.0, 1000.0}
    assert {c.input.std for c, *_ in ex} == {1.0, 0.01}
    assert {c.has_affine for c, *_ in ex} == {True, False}
    allowed = {
        "float64": {"float32"},
        "float32": {"float32"},
        "float16": {"float32", "float16"},
        "bfloat16": {"float32", "bfloat16"},
    }
    assert {(c.dtype, w) for c, _, w, _ in ex} == {(d, w) for d, ws in allowed.items() for w in ws}
    for c, *_ in ex:
        if c.dtype in ("float16", "bfloat16"):
            assert c.params_dtype == "float32"
    # every example runs; float32 working precision never overflows on these inputs
    for c, o, w, a in ex:
        inputs = generate(c)
        out = precision_outputs(c, inputs, order=o, working=w, arithmetic=a)
        assert list(out) == c.output_names()
        if w == "float32":
            assert all(np.isfinite(_f64(v)).all() for steps in out.values() for v in steps), c.id
