"""An alternative's y computed where it is read (normconf.explain.deferred): the full run's bits, the same
findings as whole arrays, never one whole array in the search; the statistics a block at a time."""

import numpy as np
import pytest

from normconf.compare import Tolerance, close_blockwise, compare
from normconf.explain import deferred as dfr
from normconf.explain import refcache as rc
from normconf.explain.arrays import blocks_of, columns, sample_columns
from normconf.inputs import generate
from normconf.ops import spec_for
from tests.helpers import case_maker

_case = case_maker(
    id="deferred",
    shape=[6, 5, 7, 9],
    input={"dist": "normal", "mean": 3.0, "std": 2.0, "seed": 5},
    affine={"gamma": {"dist": "uniform", "low": -1.5, "high": 1.5, "seed": 2}, "beta": {"dist": "normal", "seed": 3}},
    momentum={"batch_weight": 0.3},
)

SEMANTICS = [
    {},
    {"arithmetic": "folded"},
    {"arithmetic": "folded_fma"},
    {"eps_placement": "outside_sqrt", "eps_override": 1e-3},
    {"affine": "beta_only"},
    {"normalize_variance": "unbiased", "compute_dtype": "float32"},
    {"train_statistics": "blended"},
    {"eval_statistics": "blended"},
]


def _full(case, inputs, sem):
    """The rounded y of every step as the cache computes it for a large case (the op's compact hook)."""
    return spec_for(case).compact_expected(case, inputs, frozenset({"y"}), sem)["y"]


@pytest.mark.parametrize("group", [64, 1 << 16])
@pytest.mark.parametrize("changes", SEMANTICS)
@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"layout": "channels_last", "dtype": "float16"},
        {"dtype": "bfloat16", "steps": 2},
        {"dtype": "float64", "mode": "eval"},
        {"mode": "eval"},
        {"shape": [4, 30]},
    ],
)
def test_deferred_y_is_the_full_runs_bit_for_bit(monkeypatch, fields, changes, group):
    # blocks normalized with their channels' statistics (many small groups, or one), or elements gathered
    # with their channel's: all must be the full run's numbers at every position, however a reader asks
    monkeypatch.setattr(dfr, "GROUP", group)
    case = _case(**fields)
    inputs = generate(case)
    sem = case.semantics.replace(**changes)
    cache = rc.ReferenceCache()
    steps = cache.deferred(case, inputs, sem, "y")
    assert steps is not None and len(steps) == case.steps
    for d, full in zip(steps, _full(case, inputs, sem)):
        assert (len(d._groups) > 1) is (group < full.size)
        assert d.shape == full.shape and d.dtype == full.dtype
        before = dfr.DeferredOutput.materialized
        np.testing.assert_array_equal(d[1:3], full[1:3])
        flat = d.reshape(-1)
        np.testing.assert_array_equal(flat[5 : full.size - 3], full.reshape(-1)[5:-3])
        idx = np.array([0, 7, full.size - 1, 3, 7])
        np.testing.assert_array_equal(flat[idx], full.reshape(-1)[idx])
        ax = case.channel_axis % full.ndim
        cols = np.array([0, 2, 3])
        np.testing.assert_array_equal(columns(d, ax, cols), columns(full, ax, cols))
        for index, _ch in blocks_of(full.shape, ax, 50):  # blocks, as the judge reads them
            np.testing.assert_array_equal(d[index], full[index])
        assert dfr.DeferredOutput.materialized == before  # none of these computed the whole array
        np.testing.assert_array_equal(np.asarray(d), full)
        assert dfr.DeferredOutput.materialized == before + 1


def test_no_deferred_output_where_the_channel_axis_changes_or_for_other_outputs():
    case = _case()
    inputs = generate(case)
    cache = rc.ReferenceCache()
    assert cache.deferred(case, inputs, case.semantics.replace(channel_axis_swapped=True), "y") is None
    assert cache.deferred(case, inputs, case.semantics, "x_hat") is None


def test_close_blockwise_is_compares_verdict():
    case = _case(shape=[8, 4, 33, 17])
    inputs = generate(case)
    sem = case.semantics.replace(normalize_variance="unbiased")
    d = rc.ReferenceCache().deferred(case, inputs, sem, "y")[0]
    full = _full(case, inputs, sem)[0]
    base = _full(case, inputs, case.semantics)[0]
    for tol in (Tolerance(1e-6, 1e-6), Tolerance(1e-1, 1e-1)):
        for block in (7, 1 << 17):
            want = compare(full, base, tol, "float32").close
            assert close_blockwise(d, base, tol, "float32", block) == want
            assert close_blockwise(base, d, tol, "float32", block) == compare(base, full, tol, "float32").close
    assert close_blockwise(full, base, Tolerance(1e-1, 1e-1), "float32")  # plain arrays: compare itself


@pytest.fixture
def large_regime(monkeypatch):
    """The process cache behaving as for a case too large to keep its float64 outputs (any size here)."""
    monkeypatch.setattr(rc.CACHE, "floor", 0)
    monkeypatch.setattr(rc.CACHE, "multiple", 1.0)
    monkeypatch.setattr(rc.CACHE, "_budget_of", None)
    rc.CACHE.clear()
    yield rc.CACHE
    rc.CACHE.clear()


MUTANTS = [
    ("unbiased normalization", {"normalize_variance": "unbiased"}, 0.0),
    ("eps 1e-2", {"eps_override": 1e-2}, 0.0),
    ("folded + noise", {"arithmetic": "folded"}, 3e-7),
    ("running statistics in train", {"train_statistics": "running"}, 0.0),
]


@pytest.mark.parametrize("name,changes,noise", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_search_on_deferred_alternatives_finds_what_whole_arrays_find(monkeypatch, large_regime, name, changes, noise):
    # a large output (above the sampling threshold): the screens, the full scores, the envelope and the
    # effect all read the alternatives; with DEFER the search never holds one whole, and finds the same
    from normconf.explain.search import explain_output
    from normconf.outputs import tolerance_for

    case = _case(shape=[16, 4, 80, 64], steps=1)  # 327 680 elements
    inputs = generate(case)
    cache = large_regime
    expected = spec_for(case).compact_expected(case, inputs, frozenset({"y"}), None)["y"][0]
    obs = spec_for(case).compact_expected(case, inputs, frozenset({"y"}), case.semantics.replace(**changes))["y"][0]
    obs = obs.astype(np.float32)
    if noise:
        obs = obs * (1 + noise * np.random.default_rng(1).standard_normal(obs.shape)).astype(np.float32)
    assert cache._serves_compact(case, inputs, "y")
    made = []
    real = cache.deferred
    monkeypatch.setattr(cache, "deferred", lambda *a: made.append(a[2]) or real(*a))
    found = {}
    for defer in (True, False):
        monkeypatch.setattr(rc, "DEFER", defer)
        cache.clear()
        before = dfr.DeferredOutput.materialized
        f = explain_output(case, inputs, "y", 1, obs, expected, tolerance_for(case, "y"), [])
        if defer:
            assert dfr.DeferredOutput.materialized == before, "the search computed a whole alternative"
        found[defer] = (f.label, f.text, f.kind, [c.label for c in f.closest])
        if defer:
            assert made, "no alternative was deferred"
    assert found[True] == found[False]
    print(name, found[True][0], found[True][2])


def test_the_workers_expected_values_are_the_caches_own(large_regime):
    # the worker's expected values are the reference under the case's semantics, rounded: the cache answers
    # with those arrays (no second copy), and they are what it would have computed
    from normconf.worker import _Host

    case = _case(shape=[4, 3, 16, 16])
    host = _Host((), ())
    exp = host.expected(case, {"y", "batch_mean"})
    inputs = host.inputs(case)
    got = large_regime.rounded(case, inputs, case.semantics, "y")
    assert got is exp["y"]
    large_regime.clear()
    np.testing.assert_array_equal(large_regime.rounded(case, inputs, case.semantics, "y")[0], exp["y"][0])


@pytest.mark.parametrize(
    "shape,ax",
    [
        ([32, 8, 40, 40], 1),
        ([8, 40, 40, 32], 3),
        ([64, 5000], 0),
        ([300000, 3], 1),
        ([2, 3, 250, 250], 1),
        ([1, 6, 300, 300], 1),
        ([1, 300, 300, 6], 3),
    ],
)
def test_channel_statistics_a_block_at_a_time(shape, ax):
    # float64 sums over blocks of the leading axis: within a few float64 roundings of one NumPy reduction
    from normconf.explain import stat_bounds as sb

    x = (np.random.default_rng(0).standard_normal(shape) * 3 + 50).astype(np.float32)
    assert x.size >= sb.BLOCKWISE_ABOVE
    a = sb._channel_data(x, ax)
    axes = tuple(i for i in range(x.ndim) if i != ax)
    shp = [1] * x.ndim
    shp[ax] = -1
    b = sb._channel_data_whole(x, axes, shp, x.size // x.shape[ax])
    assert a.m == b.m
    for f in ("mean", "var_b", "e2", "s1"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-13, atol=0)


@pytest.mark.parametrize("shape,ax", [((32, 8, 64, 64), 1), ((1, 8, 512, 256), 1), ((1, 512, 256, 8), 3)])
def test_channel_statistics_hold_no_full_size_float64_temporary(shape, ax):
    # a batch of one (a leading row larger than a block) included
    import tracemalloc

    from normconf.explain import stat_bounds as sb

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)  # 4 MiB
    tracemalloc.start()
    sb._channel_data(x, ax)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < x.nbytes, peak  # the whole-array path's float64 deviations alone were 2× the input


def test_sampling_columns_of_a_deferred_output_reads_only_them(large_regime):
    case = _case(shape=[16, 4, 80, 64])
    inputs = generate(case)
    sem = case.semantics.replace(eps_override=1e-3)
    d = large_regime.deferred(case, inputs, sem, "y")[0]
    cols = sample_columns(d.shape, 1, 4096)
    before = dfr.DeferredOutput.materialized
    np.testing.assert_array_equal(columns(d, 1, cols), columns(_full(case, inputs, sem)[0], 1, cols))
    assert dfr.DeferredOutput.materialized == before


@pytest.mark.parametrize(
    "shape, axis",
    [((6, 5, 7, 9), 1), ((6, 5, 7, 9), -1), ((2, 3), 0), ((1, 40, 3), 1), ((3, 0, 4), 1), ((7,), 0), ((4, 5, 6), 2)],
)
@pytest.mark.parametrize("limit", [1, 5, 13, 63, 10**6])
def test_blocks_of_cover_memory_in_order_with_their_channels(shape, axis, limit):
    # every element once, in C order, each block one contiguous run of at most `limit` elements (a single
    # element when limit is 1), with the channels it covers: the facts the judge and the deferred output use
    pos = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    chan = np.indices(shape)[axis % len(shape)] if pos.size else pos
    seen = []
    for index, ch in blocks_of(shape, axis, limit):
        block = pos[index]
        assert block.ndim == len(shape) and 0 < block.size <= max(limit, 1)
        flat = block.reshape(-1)
        np.testing.assert_array_equal(flat, np.arange(flat[0], flat[0] + flat.size))
        np.testing.assert_array_equal(np.unique(chan[index]), np.arange(chan.shape[axis % len(shape)])[ch])
        seen.append(flat)
    got = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    np.testing.assert_array_equal(got, np.arange(pos.size))
