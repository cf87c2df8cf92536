"""The NumPy reference against values derived by hand (and docs/seed.md's seed numbers)."""

import numpy as np
import pytest

from normconf.references.batchnorm import batch_norm_reference
from normconf.semantics import Semantics
from tests.seed_values import SEED, TINY_DNN_ROW0
from tests.seed_values import SEED_Y_ROWS as SEED_Y

SEED_X = np.array(SEED, dtype=np.float32).reshape(3, 1, 1, 6)


def run(x, sem=Semantics(), mode="train", momentum=0.1, eps=1e-5, rm=(0.0,), rv=(1.0,), **kw):
    C = x.shape[1]
    return batch_norm_reference(
        [x],
        channel_axis=1,
        mode=mode,
        eps=eps,
        momentum=momentum,
        gamma=None,
        beta=None,
        running_mean=np.array(rm * C if len(rm) == 1 else rm),
        running_var=np.array(rv * C if len(rv) == 1 else rv),
        semantics=sem,
        input_dtype=x.dtype,
        **kw,
    )


def test_seed_y_matches_design_to_1e6():
    out = run(SEED_X)
    np.testing.assert_allclose(out["y"][0].reshape(3, 6), SEED_Y, atol=1e-6, rtol=0)


def test_seed_statistics():
    out = run(SEED_X)
    assert out["batch_mean"][0][0] == pytest.approx(7.863889, abs=1e-6)
    assert out["batch_var"][0][0] == pytest.approx(1946.064931, abs=1e-6)
    unb = run(SEED_X, Semantics(normalize_variance="unbiased"))
    assert unb["batch_var"][0][0] == pytest.approx(2060.539338, abs=1e-6)


def test_seed_unbiased_is_tiny_dnn_and_scaled_by_sqrt_17_18():
    biased = run(SEED_X)["y"][0]
    unbiased = run(SEED_X, Semantics(normalize_variance="unbiased"))["y"][0]
    np.testing.assert_allclose(unbiased.reshape(3, 6)[0], TINY_DNN_ROW0, atol=1e-6)
    # the ratio holds up to eps (1e-5 next to a variance of ~2000)
    np.testing.assert_allclose(unbiased / biased, np.sqrt(17 / 18), rtol=1e-8)


def test_four_values_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)
    y_b = run(x)["y"][0].ravel()
    y_u = run(x, Semantics(normalize_variance="unbiased"))["y"][0].ravel()
    # mean 2.5; biased var 1.25, unbiased var 5/3
    np.testing.assert_allclose(y_b, [-1.341635, -0.447212, 0.447212, 1.341635], atol=1e-6)
    np.testing.assert_allclose(y_u, [-1.161892, -0.387297, 0.387297, 1.161892], atol=1e-6)


def test_running_variance_after_one_step_pytorch_momentum():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)
    unb = run(x, Semantics(running_variance="unbiased"), momentum=0.1)
    bia = run(x, Semantics(running_variance="biased"), momentum=0.1)
    assert unb["running_var"][0][0] == pytest.approx(1.066667, abs=1e-6)  # 0.9*1 + 0.1*5/3
    assert bia["running_var"][0][0] == pytest.approx(1.025, abs=1e-12)  # 0.9*1 + 0.1*1.25
    assert bia["running_mean"][0][0] == pytest.approx(0.25, abs=1e-12)  # 0.9*0 + 0.1*2.5


def test_momentum_reversed_and_cumulative():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)
    rev = run(x, Semantics(momentum_direction="reversed"), momentum=0.1)
    assert rev["running_mean"][0][0] == pytest.approx(0.9 * 2.5)
    # cumulative average: step k uses weight 1/k, so after step 1 running = batch statistic
    cum = batch_norm_reference(
        [x, x + 2],
        channel_axis=1,
        mode="train",
        eps=1e-5,
        momentum=None,
        gamma=None,
        beta=None,
        running_mean=np.zeros(1),
        running_var=np.ones(1),
    )
    assert cum["running_mean"][0][0] == pytest.approx(2.5)
    assert cum["running_mean"][1][0] == pytest.approx((2.5 + 4.5) / 2)


def test_eval_uses_running_statistics_and_affine():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)
    out = batch_norm_reference(
        [x],
        channel_axis=1,
        mode="eval",
        eps=0.0 + 1e-12,
        momentum=0.1,
        gamma=np.array([2.0]),
        beta=np.array([0.5]),
        running_mean=np.array([1.0]),
        running_var=np.array([4.0]),
    )
    np.testing.assert_allclose(out["y"][0].ravel(), 2.0 * (x.ravel() - 1.0) / 2.0 + 0.5, rtol=1e-9)
    assert "running_var" not in out


def test_channels_last_equals_channels_first():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    a = batch_norm_reference(
        [x],
        channel_axis=1,
        mode="train",
        eps=1e-5,
        momentum=0.1,
        gamma=None,
        beta=None,
        running_mean=np.zeros(3),
        running_var=np.ones(3),
    )
    b = batch_norm_reference(
        [np.moveaxis(x, 1, -1)],
        channel_axis=-1,
        mode="train",
        eps=1e-5,
        momentum=0.1,
        gamma=None,
        beta=None,
        running_mean=np.zeros(3),
        running_var=np.ones(3),
    )
    np.testing.assert_allclose(np.moveaxis(b["y"][0], -1, 1), a["y"][0], rtol=1e-12)
    np.testing.assert_allclose(b["running_var"][0], a["running_var"][0], rtol=1e-12)


def test_eps_placement_and_folded_arithmetic():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)
    out = run(x, Semantics(eps_placement="outside_sqrt"), eps=0.5)
    np.testing.assert_allclose(out["y"][0].ravel(), (x.ravel() - 2.5) / (np.sqrt(1.25) + 0.5))
    folded = run(x, Semantics(arithmetic="folded"))["y"][0]
    np.testing.assert_allclose(folded, run(x)["y"][0], rtol=1e-12)


def test_statistics_of_a_read_only_batch_are_memoized_and_the_same():
    """The search reruns the reference under many alternatives on one read-only batch: its statistics
    are computed once per statistics-relevant semantics, bit for bit what a fresh computation gives."""
    import gc
    import weakref

    from normconf.references import batchnorm as bn

    x = np.random.default_rng(3).normal(2.0, 3.0, (4, 3, 5, 5)).astype(np.float32)
    fresh = {s: run(x.copy(), s) for s in (Semantics(), Semantics(variance_algorithm="one_pass"))}
    x.flags.writeable = False
    calls = []
    real = bn.batch_statistics

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    bn.batch_statistics = counting
    try:
        for sem in (Semantics(), Semantics(running_variance="unbiased"), Semantics(eps_placement="outside_sqrt")):
            out = run(x, sem)
            assert np.array_equal(out["batch_mean"][0], fresh[Semantics()]["batch_mean"][0])
        assert len(calls) == 1  # the two alternatives change nothing the statistics depend on
        out = run(x, Semantics(variance_algorithm="one_pass"))  # this one does
        assert len(calls) == 2
        for k in ("batch_mean", "batch_var", "running_var", "y"):
            assert np.array_equal(out[k][0], fresh[Semantics(variance_algorithm="one_pass")][k][0]), k
        assert not out["batch_mean"][0].flags.writeable  # no caller can change them for the next one
        w = x.copy()  # writable: never memoized (it could change between calls)
        run(w), run(w)
        assert len(calls) == 4
    finally:
        bn.batch_statistics = real
    ref = weakref.ref(x)
    del x
    gc.collect()
    assert ref() is None  # an entry holds its batch weakly


@pytest.mark.parametrize(
    "changes, w",
    [({}, 0.1), ({"momentum_override": 0.25}, 0.25), ({"momentum_direction": "reversed"}, 0.9)],
)
def test_blended_inference_blends_with_the_semantics_batch_weight(changes, w):
    """eval_statistics=blended: the given statistics updated once with the batch weight the semantics say
    (the case's momentum, an override, the reversed direction), then used; by hand on four values."""
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1)
    sem = Semantics(eval_statistics="blended").replace(**changes)
    y = run(x, sem, mode="eval", momentum=0.1, rm=(0.5,), rv=(2.0,), eps=0.0)["y"][0].ravel()
    mean, var = (1 - w) * 0.5 + w * 2.5, (1 - w) * 2.0 + w * 1.25  # batch mean 2.5, biased variance 1.25
    np.testing.assert_allclose(y, (x.ravel() - mean) / np.sqrt(var), rtol=1e-14)
