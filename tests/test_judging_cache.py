"""The judging caches are exact and bounded: memoized values equal fresh computations bit for bit,
and the reference cache's budget follows the case's input bytes."""

from __future__ import annotations

import numpy as np
import pytest

from normconf.explain import bounds as bd
from normconf.explain import bounds_cache, refcache, solve
from normconf.explain.arrays import _CHUNK, _identical
from normconf.explain.catalog import differences
from normconf.inputs import generate
from normconf.oracle import reference_outputs, round_to_output_dtypes
from normconf.references.batchnorm import PER_CHANNEL_OUTPUTS
from tests.helpers import case_maker

_case = case_maker(
    id="judging_cache",
    shape=[4, 3, 5, 5],
    steps=3,
    momentum={"batch_weight": 0.1},
    affine={"gamma": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": 3}, "beta": {"seed": 4}},
    input={"std": 2.0, "mean": 0.5, "seed": 41},
    eval_after=True,
)


def _same(a, b) -> bool:
    """Bit for bit (NaN = NaN, -0.0 ≠ 0.0)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_budget_is_a_multiple_of_the_input_bytes_with_a_floor():
    small = generate(_case())
    assert refcache.ReferenceCache().budget(small) == refcache.BUDGET_FLOOR
    big = generate(_case(shape=[16, 8, 32, 32], steps=2))
    nbytes = refcache.input_bytes(big)
    assert nbytes == sum(a.nbytes for a in big.x) + sum(
        a.nbytes for a in (big.gamma, big.beta, big.running_mean, big.running_var)
    )
    cache = refcache.ReferenceCache(floor=1 << 20)
    assert cache.budget(big) == refcache.BUDGET_MULTIPLE * nbytes > 1 << 20
    assert cache.budget(small) == 1 << 20
    assert refcache.ReferenceCache(max_bytes=1 << 20).budget(big) == 1 << 20  # a fixed budget stays fixed


@pytest.mark.parametrize("dtype, kept", [("float32", False), ("float64", True)])
def test_full_size_outputs_within_a_quarter_of_the_budget(dtype, kept):
    """Where the multiple governs, a float32 case's float64 y (2× its input bytes) exceeds a quarter of the
    budget (4× the input bytes) and is not kept: y is then answered compactly (rounded, float32-held, 1×,
    kept for the case's own semantics); a float64 case's float64 y (1×) is kept."""
    case = _case(shape=[16, 8, 32, 32], steps=1, eval_after=False, dtype=dtype)
    inputs = generate(case)
    full = reference_outputs(case, inputs)
    cache = refcache.ReferenceCache(floor=1 << 20)
    y = cache.get(case, inputs, case.semantics, "y")
    want = full["y"][0] if kept else round_to_output_dtypes(case, full, compact=True)["y"][0]
    assert _same(y[0], want)
    assert cache._bytes <= cache.max_bytes == refcache.BUDGET_MULTIPLE * refcache.input_bytes(inputs)
    n = cache.computed
    cache.get(case, inputs, case.semantics, "running_var")  # per-channel: kept from y's run, or one stats pass
    assert cache.computed == n + (0 if kept else 1)
    cache.get(case, inputs, case.semantics, "running_var")
    cache.get(case, inputs, case.semantics, "y")
    assert cache.computed == n + (0 if kept else 1)
    # x_hat (a stage, read in float64), asked for itself, is the full reference's bit for bit; where full-size
    # outputs are not kept it is computed alone (and not kept)
    x_hat = cache.get(case, inputs, case.semantics, "x_hat")
    assert cache.computed == n + (0 if kept else 2)
    assert _same(x_hat[0], full["x_hat"][0])


def test_a_get_that_cannot_keep_full_size_outputs_does_not_compute_x_hat(monkeypatch):
    """The search's memory: for ``x_hat`` of a case whose full-size outputs exceed the budget, the reference
    is asked for ``x_hat`` and the per-channel outputs only (no float64 ``y`` is kept beside it); for ``y``
    it is not asked at all (compact_expected rounds it a block at a time)."""
    import normconf.oracle as oracle

    asked = []
    real = oracle.reference_outputs

    def spy(*a, **kw):
        asked.append(kw.get("outputs"))
        return real(*a, **kw)

    monkeypatch.setattr(oracle, "reference_outputs", spy)
    case = _case(shape=[16, 8, 32, 32], steps=1, eval_after=False, dtype="float32")
    inputs = generate(case)
    refcache.ReferenceCache(floor=1 << 20).get(case, inputs, case.semantics, "y")
    assert not asked
    refcache.ReferenceCache(floor=1 << 20).get(case, inputs, case.semantics, "x_hat")
    assert asked[-1] is not None and "x_hat" in asked[-1] and "y" not in asked[-1]
    assert set(PER_CHANNEL_OUTPUTS) <= asked[-1]
    refcache.ReferenceCache().get(case, inputs, case.semantics, "y")  # 192 MiB: everything is kept
    assert asked[-1] is None


def test_the_cases_own_semantics_survives_eviction():
    case = _case()
    inputs = generate(case)
    one = sum(a.nbytes for v in reference_outputs(case, inputs).values() for a in v)
    cache = refcache.ReferenceCache(max_bytes=int(2.5 * one))  # room for two entries
    base = case.semantics
    cache.get(case, inputs, base, "y")
    for alt in ({"affine": "none"}, {"eps_placement": "none"}, {"normalize_variance": "unbiased"}):
        cache.get(case, inputs, base.replace(**alt), "y")
    assert cache._bytes <= cache.max_bytes
    n = cache.computed
    cache.get(case, inputs, base, "y")  # still there: the LRU dropped the alternatives instead
    assert cache.computed == n
    cache.get(case, inputs, base.replace(affine="none"), "y")
    assert cache.computed == n + 1


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_rounded_is_the_rounding_of_the_reference(dtype):
    case = _case(dtype=dtype)
    inputs = generate(case)
    cache = refcache.ReferenceCache()
    sem = case.semantics.replace(normalize_variance="unbiased")
    full = reference_outputs(case, inputs, sem)
    for name in ("y", "batch_var", "running_var", "eval_y"):
        # held compactly (float32 for float32/float16 outputs), as a worker holds its expected values
        want = round_to_output_dtypes(case, {name: full[name]}, compact=True)[name]
        assert all(w.dtype == (np.float64 if dtype == "float64" else np.float32) for w in want)
        got = cache.rounded(case, inputs, sem, name)
        assert len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want))
        wide = round_to_output_dtypes(case, {name: full[name]})[name]  # the same numbers as float64
        assert all(_same(np.asarray(g, np.float64), w) for g, w in zip(got, wide))
        n = cache.computed
        assert cache.rounded(case, inputs, sem, name) is got and cache.computed == n
    assert cache._bytes <= cache.max_bytes


def test_memoized_bounds_equal_fresh_ones():
    case = _case()
    inputs = generate(case)
    for sem in (case.semantics, case.semantics.replace(train_statistics="blended", running_variance="unbiased")):
        b = bd.Bounds(case, inputs, sem)
        for model in bd.models_for("float64") + bd.models_for("float32"):
            for step in (1, 2, 3):
                for out in ("batch_mean", "batch_var", "running_mean", "running_var", "inv_std"):
                    fresh = bd.Bounds(case, inputs, sem)._per_channel(model, out, step)
                    for _ in range(2):  # the computed and the remembered answer
                        got = b.per_channel(model, out, step)
                        assert all(_same(g, f) for g, f in zip(got, fresh))
                for out in ("y", "x_hat", "eval_y"):
                    fresh = bd.Bounds(case, inputs, sem)._elementwise(model, out, step)
                    for _ in range(2):
                        got = b.elementwise(model, out, step)
                        assert all(_same(g, f) for g, f in zip(got, fresh))
                    assert bd._size(b, model, out, step) == bd._size_of(bd.Bounds(case, inputs, sem), model, out, step)


def test_bounds_are_shared_by_equal_cases_and_dropped_after_two_cases():
    case, same = _case(), _case()
    inputs = generate(case)
    b = bounds_cache.bounds_for(case, inputs, case.semantics)
    assert bounds_cache.bounds_for(same, inputs, same.semantics) is b  # another backend's copy of the case
    assert bounds_cache.bounds_for(case, generate(case), case.semantics) is not b  # other inputs: not shared
    for seed in (1, 2):
        other = _case(input={"seed": seed})
        bounds_cache.bounds_for(other, generate(other), other.semantics)
    assert len(bounds_cache._BOUNDS) <= bounds_cache._BOUNDS_CASES
    assert bounds_cache.bounds_for(case, inputs, case.semantics) is not b


def test_identical_is_array_equal():
    rng = np.random.default_rng(0)
    for n in (0, 7, 1024, 5000, _CHUNK + 3):
        a = rng.standard_normal(n)
        a[::97] = np.nan
        assert _identical(a, a.copy())
        for i in {0, n // 2, n - 1} if n else ():
            b = a.copy()
            b[i] = 1.5 if not np.isnan(b[i]) or i % 2 else 2.5
            assert _identical(a, b) == np.array_equal(a, b, equal_nan=True)
        assert _identical(a.astype(np.float32), a.astype(np.float32).astype(np.float64))


def test_memoized_batch_stats_equal_fresh_ones():
    case = _case()
    inputs = generate(case)
    for sem in (case.semantics, case.semantics.replace(running_variance="unbiased", stats_dtype="float32")):
        for k in (1, 2, 3):
            first = solve._batch_stats(case, inputs, sem, k)
            assert solve._batch_stats(case, inputs, sem, k) is first
            assert all(_same(f, g) for f, g in zip(first, solve._batch_stats_of(case, inputs, sem, k)))
    other = generate(case)  # other inputs (equal numbers): answers not reused across inputs objects
    assert solve._batch_stats(case, other, case.semantics, 1) is not solve._batch_stats(case, inputs, case.semantics, 1)


def test_differences_memo_names_the_same_knobs():
    base = _case().semantics
    for alt in (base, base.replace(affine="none"), base.replace(eps_override=1e-3, momentum_override=0.5)):
        assert differences(alt, base) == alt.differences(base)
        assert differences(alt, base) is differences(alt, base)


def test_worker_computes_only_the_returned_outputs_and_extends_on_demand():
    """_Host.expected: x_hat (a stage no BatchNorm framework returns) only once a backend returns it;
    each output the same bits as the full expected values once widened to float64 (the worker holds
    float32 outputs' expected values as float32, ``compact``)."""
    from normconf.oracle import expected_outputs
    from normconf.worker import _Host

    case = _case()
    host = _Host((), ())
    full = expected_outputs(case, generate(case))
    lean = host.expected(case, ["y", "batch_mean"])
    assert "x_hat" not in lean and {"y", "batch_mean"} <= set(lean)
    more = host.expected(case, ["y", "x_hat"])
    assert "x_hat" in more and set(lean) <= set(more)
    for name, arrays in more.items():
        assert all(_same(a.astype(np.float64), b) for a, b in zip(arrays, full[name])), name
        assert all(a.dtype == np.float32 for a in arrays), name  # a float32 case: every output float32
    assert host.expected(case, ["y"]) is more  # cached: a subset asks for nothing new


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_rounded_of_a_case_too_large_to_keep_is_computed_compactly(dtype, monkeypatch):
    """Where the cache cannot keep a float64 y, ``rounded`` asks the op's compact_expected (y rounded a block
    at a time) under the semantics: the same bits as rounding the reference, kept where the compact y fits
    a quarter of the budget, and no float64 y is computed for it."""
    import normconf.oracle as oracle

    case = _case(shape=[16, 8, 32, 32], steps=1, eval_after=False, dtype=dtype)
    inputs = generate(case)
    sem = case.semantics.replace(normalize_variance="unbiased")
    want = round_to_output_dtypes(case, reference_outputs(case, inputs, sem), compact=True)["y"]
    asked = []
    real = oracle.reference_outputs
    monkeypatch.setattr(oracle, "reference_outputs", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    cache = refcache.ReferenceCache(floor=1 << 20)
    assert not cache._keeps_full_size(case, inputs)
    deferred = cache.rounded(case, inputs, sem, "y")  # an alternative's: computed where it is read ...
    assert [kw.get("statistics_only") for kw in asked] == [True]  # ... from its statistics alone
    assert len(deferred) == 1 and _same(np.asarray(deferred[0]), want[0]) and deferred[0].dtype == np.float32
    asked.clear()
    cache.clear()
    monkeypatch.setattr(refcache, "DEFER", False)  # as one whole array
    got = cache.rounded(case, inputs, sem, "y")
    assert not asked  # not through the float64 reference
    assert len(got) == 1 and _same(got[0], want[0]) and got[0].dtype == np.float32
    n = cache.computed
    again = cache.rounded(case, inputs, sem, "y")  # an alternative's: scored and dropped, never kept
    assert again is not got and _same(again[0], got[0]) and cache.computed == n + 1
    own = cache.rounded(case, inputs, case.semantics, "y")  # the case's own (the expected values) ...
    n = cache.computed
    if own[0].nbytes * 4 <= cache.budget(inputs):  # ... kept where it fits: float32, a 2 MiB budget (4 x input)
        assert cache.rounded(case, inputs, case.semantics, "y") is own and cache.computed == n
    else:  # float16: a 1 MiB budget (the floor) keeps no 512 KiB output: computed again, the same bits
        assert _same(cache.rounded(case, inputs, case.semantics, "y")[0], own[0]) and cache.computed == n + 1
    assert not asked and cache._bytes <= cache.max_bytes


@pytest.mark.parametrize("output", ["y", "eval_y"])
def test_get_of_a_case_too_large_to_keep_answers_compactly(output, monkeypatch):
    """Where the cache cannot keep a float64 y, ``get`` of a backend's full-size output (the search's
    alternatives) is the rounded reference, held as float32, through compact_expected: no float64 y exists.
    A stage (x_hat, read in float64 by the eps solver) and the per-channel outputs stay float64."""
    import normconf.oracle as oracle

    case = _case(shape=[16, 8, 32, 32], steps=2, eval_after=True, dtype="float32")
    inputs = generate(case)
    sem = case.semantics.replace(eps_override=1e-3)
    want = round_to_output_dtypes(case, reference_outputs(case, inputs, sem), compact=True)[output]
    asked = []
    real = oracle.reference_outputs
    monkeypatch.setattr(oracle, "reference_outputs", lambda *a, **kw: asked.append(kw) or real(*a, **kw))
    cache = refcache.ReferenceCache(floor=1 << 20)
    got = cache.get(case, inputs, sem, output)
    # y: computed where it is read (normconf.explain.deferred), from the statistics-only reference
    assert all(kw.get("statistics_only") for kw in asked) and len(got) == len(want)
    assert all(_same(np.asarray(a), b) for a, b in zip(got, want))
    asked.clear()
    x_hat = cache.get(case, inputs, sem, "x_hat")
    assert x_hat[0].dtype == np.float64 and asked  # through the float64 reference, as before
    assert cache.get(case, inputs, sem, "running_var")[0].dtype == np.float64


def test_explanations_are_the_same_whether_or_not_the_cache_keeps_float64_outputs(monkeypatch):
    """The labels of mismatching outputs of a case, found with a cache that keeps every float64 output
    and with one that keeps none (alternatives then compact): the same for every mutant."""
    from normconf.explain import explain_output
    from normconf.results import tolerance_for
    from tests.test_explain_mutants import mutant_outputs

    case = _case(shape=[16, 8, 16, 16], steps=2, eval_after=True, dtype="float32", input={"std": 2.0, "seed": 9})
    inputs = generate(case)
    expected = reference_outputs(case, inputs)
    mutants = [
        {"normalize_variance": "unbiased"},
        {"eps_override": 1e-2},
        {"affine": "gamma_only"},
        {"momentum_direction": "reversed"},
        {"train_statistics": "running"},
    ]
    labels = {}
    for budget in ("keeps", "compact"):
        cache = refcache.ReferenceCache() if budget == "keeps" else refcache.ReferenceCache(floor=1 << 16)
        monkeypatch.setattr(refcache.CACHE, "__dict__", cache.__dict__)
        assert refcache.CACHE._keeps_full_size(case, inputs) == (budget == "keeps")
        for m in mutants:
            obs = mutant_outputs(case, inputs, **m)
            for output in ("y", "eval_y"):
                for step in (1, 2) if output == "y" else (1,):
                    f = explain_output(
                        case,
                        inputs,
                        output,
                        step,
                        obs[output][step - 1],
                        expected[output][step - 1],
                        tolerance_for(case, output),
                        [],
                    )
                    labels.setdefault((str(m), output, step), []).append(f.label)
    assert sum(1 for v in labels.values() if v[0]) >= 5, labels  # the mutants are explained at all
    differ = {k: v for k, v in labels.items() if v[0] != v[1]}
    assert not differ, differ


_PREFIX_SEMANTICS = [
    {},
    {"momentum_override": 0.37},
    {"eps_override": 3e-3},
    {"running_variance": "unbiased"},
    {"train_statistics": "blended"},
    {"train_statistics": "running", "initial_running": "zeros"},
]


@pytest.mark.parametrize("changes", _PREFIX_SEMANTICS, ids=lambda c: ",".join(c) or "case")
def test_a_prefix_run_gives_the_first_steps_bit_for_bit_and_is_not_kept(changes):
    """:meth:`ReferenceCache.prefix` (a solved number's run, which stops at the step it was solved from):
    every output of every step but the last, bit for bit :meth:`get`'s first steps, and not kept; the last
    step and ``eval_y`` are ``get``'s (computed in full and kept)."""
    case = _case(steps=4)
    inputs = generate(case)
    sem = case.semantics.replace(**changes)
    full = refcache.ReferenceCache()
    cache = refcache.ReferenceCache()
    for output in ("y", "x_hat", "inv_std", *PER_CHANNEL_OUTPUTS):
        want = full.get(case, inputs, sem, output)
        for steps in range(1, case.steps):
            before = cache.computed
            got = cache.prefix(case, inputs, sem, output, steps)
            assert len(got) == steps and all(_same(g, w) for g, w in zip(got, want)), (output, steps)
            assert cache.computed == before + 1 and not cache._d  # run, never kept
        assert all(_same(g, w) for g, w in zip(cache.prefix(case, inputs, sem, output, case.steps), want))
        assert cache._d  # the last step: get's full run, kept
        cache.clear()
    eval_y = cache.prefix(case, inputs, sem, "eval_y", 1)
    assert _same(eval_y[0], full.get(case, inputs, sem, "eval_y")[0]) and cache._d
    held = cache.computed
    rv = full.get(case, inputs, sem, "running_var")
    assert all(_same(a, b) for a, b in zip(cache.prefix(case, inputs, sem, "running_var", 2), rv))
    assert cache.computed == held  # a kept entry answers (eval_y's: the statistics-only run, no step's y)
    assert all(_same(a, b) for a, b in zip(cache.prefix(case, inputs, sem, "y", 2), full.get(case, inputs, sem, "y")))
    assert cache.computed == held + 1


@pytest.mark.parametrize(
    "changes",
    [*_PREFIX_SEMANTICS, {"normalize_variance": "unbiased"}, {"eps_placement": "outside_sqrt"}],
    ids=lambda c: ",".join(c) or "case",
)
def test_eval_y_of_an_alternative_normalizes_no_training_step(changes, monkeypatch):
    """An alternative's ``eval_y`` (the search reads it of every single alternative when eval_y mismatches)
    comes from the statistics-only run plus the one normalization at the end: bit for bit the full run's,
    and no training step's ``y`` is computed for it; the entry's ``y`` is then a full run's, as before."""
    import normconf.references.batchnorm as rb

    case = _case(steps=4)
    inputs = generate(case)
    sem = case.semantics.replace(**changes)
    want = reference_outputs(case, inputs, sem)
    calls = []
    real = rb.normalize
    monkeypatch.setattr(rb, "normalize", lambda x, *a, **k: calls.append(x) or real(x, *a, **k))
    cache = refcache.ReferenceCache()
    got = cache.get(case, inputs, sem, "eval_y")
    assert len(got) == 1 and _same(got[0], want["eval_y"][0])
    assert len(calls) == 1 and calls[0] is inputs.x[-1]  # the last batch, once
    for name in ("running_mean", "running_var", "batch_var"):  # the statistics it ran are kept, the same bits
        assert all(_same(a, b) for a, b in zip(cache.get(case, inputs, sem, name), want[name])), name
    assert len(calls) == 1 and cache.computed == 1
    y = cache.get(case, inputs, sem, "y")
    assert all(_same(a, b) for a, b in zip(y, want["y"])) and len(calls) == 1 + case.steps + 1


def test_the_momentum_solve_continues_its_grid_bit_for_bit():
    """The momentum solve of step k+1 continues the coarse grid's state from step k (kept with the case's batch
    statistics): the same weight, resolution and note as a solve that runs every step from the start, at every
    step, for the running mean and variance, and :func:`solve._simulate` from a kept state is a fresh run's."""
    from normconf.results import tolerance_for
    from tests.test_explain_mutants import mutant_outputs

    case = _case(steps=6, momentum={"batch_weight": 0.2})
    inputs = generate(case)
    obs = mutant_outputs(case, inputs, momentum_override=0.23, running_variance="unbiased")
    for output in ("running_mean", "running_var"):
        tol = tolerance_for(case, output)
        continued, fresh = [], []
        for step in range(1, case.steps + 1):
            continued.append(
                solve.solve_momentum(case, inputs, case.semantics, output, step, obs[output][step - 1], tol)
            )
        for step in range(1, case.steps + 1):
            solve._STATS["owner"] = None  # nothing kept: every step's grid from the start
            fresh.append(solve.solve_momentum(case, inputs, case.semantics, output, step, obs[output][step - 1], tol))
        assert continued == fresh and all(w is not None for w, _r, _n in continued)
    rng = np.random.default_rng(5)
    init, stats, w = rng.random(3), [rng.random(3) for _ in range(7)], np.linspace(0.0, 1.0, 11)
    head = solve._simulate(init, stats[:4], w)
    assert _same(solve._simulate(init, stats, w, (4, head)), solve._simulate(init, stats, w))
    r = init.copy()
    for s in stats:  # the reference's own running update, one weight at a time
        r = (1.0 - w[3]) * r + w[3] * s
    assert _same(solve._simulate(init, stats, w)[3], r)


def test_a_semantics_hash_is_kept_in_its_process_only():
    """:class:`Semantics` keeps its hash after the first use (the caches' keys); equal semantics hash alike
    however made, and a pickled one carries no hash: unpickled in a process with another string hash seed it
    is found under the semantics made there."""
    import os
    import pickle
    import subprocess
    import sys

    from normconf.semantics import Semantics

    a = Semantics().replace(eps_override=1e-3, running_variance="unbiased")
    b = Semantics(running_variance="unbiased", eps_override=1e-3)
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1 and "_hash" in a.__dict__
    assert hash(a.replace(eps_override=None)) == hash(Semantics(running_variance="unbiased"))
    blob = pickle.dumps(a)
    assert "_hash" not in pickle.loads(blob).__dict__
    code = (
        "import pickle, sys; from normconf.semantics import Semantics; "
        "s = pickle.loads(sys.stdin.buffer.read()); "
        "print({Semantics(running_variance='unbiased', eps_override=1e-3): 'found'}.get(s, 'lost'))"
    )
    for seed in ("1", "2"):
        p = subprocess.run(
            [sys.executable, "-c", code], input=blob, capture_output=True, env=dict(os.environ, PYTHONHASHSEED=seed)
        )
        assert p.stdout.decode().strip() == "found", p.stderr.decode()


def test_a_cases_semantics_is_one_shared_object_per_value():
    """``case.semantics`` is interned (:func:`normconf.semantics.interned`): equal cases, BatchNorm or
    LayerNorm, get the one object, equal to the one the constructor makes; different conventions get
    different objects, and a value of another type (``1`` for ``True``) is another key."""
    from normconf.ops.layer_norm.case import LayerNormCase
    from normconf.ops.layer_norm.semantics import LayerNormSemantics
    from normconf.semantics import Semantics, interned

    mk = case_maker()
    a, b = mk(running_variance="unbiased"), mk(running_variance="unbiased")
    assert a is not b and a.semantics is b.semantics
    assert a.semantics == Semantics(running_variance="unbiased") and a.semantics != mk().semantics
    assert mk().semantics is mk().semantics and mk().semantics == Semantics()

    def ln(**fields):
        return LayerNormCase.model_validate({"id": "ln", "op": "layer_norm", "shape": [2, 3, 4], **fields})

    c, d = ln(), ln(rms_scaling=True)
    assert c.semantics is ln().semantics and c.semantics == LayerNormSemantics()
    assert d.semantics == LayerNormSemantics(centered=False, scale_statistic="mean_square")
    assert d.semantics is not c.semantics
    one = interned(Semantics, channel_axis_swapped=1)
    assert interned(Semantics, channel_axis_swapped=True) is not one
