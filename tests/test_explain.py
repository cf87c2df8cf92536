"""The explanation engine: no false explanations, texts with numbers, results columns, localization.

Mutant backends (one knob changed) are in tests/test_explain_mutants.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from normconf import explain as ex
from normconf.cases import load_file
from normconf.compare import compare
from normconf.explain import error_shape, explain_output, localize
from normconf.inputs import generate
from normconf.oracle import reference_outputs
from normconf.results import output_dtype, read_results, rows_for, to_frame, tolerance_for, write_csv, write_json
from normconf.worker import BackendResult
from tests.helpers import case_maker, loaded
from tests.test_explain_mutants import mutant_outputs

_case = case_maker(
    id="explain_fault",
    shape=[4, 3, 5, 5],
    steps=2,
    momentum={"batch_weight": 0.1},
    affine={
        "gamma": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": 3},
        "beta": {"dist": "normal", "std": 0.5, "seed": 4},
    },
    input={"std": 2.0, "mean": 0.5, "seed": 41},
)


def _framework_like(case, inputs):
    """The reference rounded to the dtypes a framework returns (what the numpy adapter does)."""
    return mutant_outputs(case, inputs)


# ----------------------------------------------------------------------------------------
# faults outside the catalog stay mismatch, with no false explanation


def _fault_finding(case, output, fault):
    inputs = generate(case)
    exp = reference_outputs(case, inputs)
    obs = fault(_framework_like(case, inputs)[output][0].copy())
    tol = tolerance_for(case, output)
    assert not compare(obs, exp[output][0], tol, output_dtype(case, output)).close, "the fault must be visible"
    return explain_output(case, inputs, output, 1, obs, exp[output][0], tol)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_random_noise_is_not_explained(dtype):
    case = _case(dtype=dtype, param_dtype="float32" if dtype == "float16" else None)
    rng = np.random.default_rng(0)
    # noise 50x the absolute tolerance plus 5x the relative one: clearly out of tolerance, but no convention.
    # In float16 that is within what float16 arithmetic can do (its derived bound is ~8 units of 2^-11 on
    # these values): the noise there is 20x the relative tolerance, beyond any precision bound too
    tol = tolerance_for(case, "y")
    sigma = 20 * tol.rtol if dtype == "float16" else 50 * tol.atol + 5 * tol.rtol
    f = _fault_finding(case, "y", lambda y: (y.astype(np.float64) + rng.normal(0, sigma, y.shape)).astype(y.dtype))
    assert not f.explained and f.label == "", f.text
    assert "no convention of the catalog reproduces it" in f.text or "no single convention" in f.text


@pytest.mark.parametrize("output", ["y", "running_mean"])
def test_sign_flip_is_not_explained(output):
    case = _case(running_mean=0.7)
    f = _fault_finding(case, output, lambda a: -a)
    assert not f.explained, f.text
    assert "sign is flipped" in f.text


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_permuted_channels_are_not_explained(layout):
    case = _case(layout=layout)
    ax = case.channel_axis
    f = _fault_finding(case, "y", lambda y: np.roll(y, 1, axis=ax))
    assert not f.explained, f.text
    assert "permuted channels" in f.text


def test_permuted_running_mean_is_not_explained():
    case = _case(running_mean={"dist": "normal", "std": 1.0, "seed": 9})
    f = _fault_finding(case, "running_mean", lambda v: v[::-1].copy())
    assert not f.explained, f.text
    assert "permuted channels" in f.text


@pytest.mark.parametrize("output", ["y", "running_var"])
def test_one_corrupted_element_is_not_explained(output):
    case = _case()

    def corrupt(a):
        a.reshape(-1)[7 % a.size] += 0.5
        return a

    f = _fault_finding(case, output, corrupt)
    assert not f.explained, f.text
    assert "only 1 of" in f.text


def test_nan_positions_are_described():
    case = _case()

    def nan(a):
        a.reshape(-1)[[3, 17]] = np.nan
        return a

    f = _fault_finding(case, "y", nan)
    assert not f.explained
    assert "2 NaN where finite values were expected" in f.text and "[0, 0, 0, 3]" in f.text


def test_uniform_scale_and_per_channel_offset_are_described():
    case = _case()
    inputs = generate(case)
    e = reference_outputs(case, inputs)["y"][0]
    tol = tolerance_for(case, "y")
    assert "uniform scale: observed ≈ 1.1 × expected" in error_shape(case, "y", e * 1.1, e, tol)
    off = np.array([0.0, 0.3, -0.2]).reshape(1, 3, 1, 1)
    assert "per-channel offset" in error_shape(case, "y", e + off, e, tol)
    scale = np.array([1.0, 1.2, 0.9]).reshape(1, 3, 1, 1)
    text = error_shape(case, "y", e * scale + off, e, tol)
    assert "per-channel scale and offset" in text and "a = [1, 1.2, 0.9]" in text and "b = [0, 0.3, -0.2]" in text, text


def test_shape_change_is_not_explained():
    case = _case()
    inputs = generate(case)
    e = reference_outputs(case, inputs)["y"][0]
    f = explain_output(case, inputs, "y", 1, e[:, :2], e, tolerance_for(case, "y"))
    assert not f.explained and "shape" in f.text


# ----------------------------------------------------------------------------------------
# texts, pairs, ranking


def _seed(case_id="seed_article"):
    lc = next(lc for lc in load_file("cases/seed_article.yaml") if lc.id == case_id)
    return lc, generate(lc.case)


def test_seed_unbiased_text_has_the_numbers():
    lc, inputs = _seed()
    case = lc.case
    obs = mutant_outputs(case, inputs, normalize_variance="unbiased")["y"][0]
    exp = reference_outputs(case, inputs)["y"][0]
    # docs/seed.md: real tiny-dnn's first row is the reference times sqrt(17/18)
    np.testing.assert_allclose(
        obs.reshape(3, 6)[0], [0.071291, -0.221705, 0.340054, 1.025179, 1.115501, -0.538933], atol=1e-6
    )
    f = explain_output(case, inputs, "y", 1, obs, exp, tolerance_for(case, "y"))
    assert f.label == "normalize_variance=unbiased"
    assert "divides by m−1 = 17, not m = 18" in f.text and "√(17/18) = 0.971825" in f.text
    assert "residual after this correction" in f.text and "pytorch.org" in f.text
    # with C = 1 an eps of var/17 also rescales the single channel: ranked below the structural knob
    assert all(m.kind != "structural" for m in f.matches[1:])


def test_pair_when_no_single_knob_suffices():
    case = _case(input={"std": 0.05, "seed": 42})
    inputs = generate(case)
    obs = mutant_outputs(case, inputs, normalize_variance="unbiased", eps_override=1e-3)["y"][0]
    exp = reference_outputs(case, inputs)["y"][0]
    f = explain_output(case, inputs, "y", 1, obs, exp, tolerance_for(case, "y"))
    assert f.explained, f.text
    assert set(f.label.split(",")) == {"normalize_variance=unbiased", "eps_override=0.001"}, f.text


def test_reversed_momentum_ranks_above_the_equivalent_solved_weight():
    case = _case(momentum={"batch_weight": 0.99}, running_mean={"dist": "normal", "std": 1.0, "seed": 9})
    inputs = generate(case)
    obs = mutant_outputs(case, inputs, momentum_direction="reversed")
    exp = reference_outputs(case, inputs)
    f = explain_output(
        case,
        inputs,
        "running_mean",
        2,
        obs["running_mean"][1],
        exp["running_mean"][1],
        tolerance_for(case, "running_mean"),
    )
    assert f.label == "momentum_direction=reversed"
    assert "momentum_override=0.01" in f.matches[0].equivalents
    assert "batch weight 0.01 instead of 0.99" in f.text


def test_equal_to_reference_gets_no_explanation():
    case = _case()
    inputs = generate(case)
    lc_rows = rows_for(
        _loaded(case),
        "equal",
        BackendResult("equal", "ok", outputs=_framework_like(case, inputs)),
        reference_outputs(case, inputs),
        inputs,
    )
    assert lc_rows and all(r.outcome == "pass" and r.explanation == "" and r.explanation_text == "" for r in lc_rows)


def _unbiased_running_var(shape, offsets):
    """Labels of a running variance updated with the unbiased estimator, shifted by ``f``·tolerance
    (alternating signs) for each ``f`` in ``offsets``: a backend's rounding landing nearer or farther."""
    case = case_maker(id="stability", shape=shape, momentum={"batch_weight": 0.1}, input={"std": 2.0, "seed": 7})()
    inputs = generate(case)
    exp = reference_outputs(case, inputs)["running_var"][0]
    conv = mutant_outputs(case, inputs, running_variance="unbiased")["running_var"][0].astype(np.float64)
    tol = tolerance_for(case, "running_var")
    t = tol.atol + tol.rtol * np.abs(conv)
    sign = np.where(np.arange(conv.size) % 2, 1.0, -1.0).reshape(conv.shape)
    effect = float((np.abs(conv - exp) / t).max())
    found = [
        explain_output(case, inputs, "running_var", 1, (conv + f * t * sign).astype(np.float32), exp, tol)
        for f in offsets
    ]
    return effect, found


def test_convention_within_the_envelope_does_not_follow_the_rounding():
    """m = 16384: the unbiased running variance moves it by 2 tolerances, inside float32's envelope.  Whether
    a backend reproduces it to 0.04 or 0.15 of the tolerance is its summation order (tf-fused with and
    without oneDNN); the label must not follow it: precision, the convention named as indistinguishable."""
    effect, found = _unbiased_running_var([16, 8, 32, 32], (0.0, 0.05, 0.15))
    assert 1.5 < effect < 10, effect  # the regime this test is about
    assert [f.label for f in found] == ["precision=float32"] * 3, [f.label for f in found]
    assert all("indistinguishable from precision" in f.text and "running_variance=unbiased" in f.text for f in found)


def test_convention_with_a_large_effect_is_named_whatever_the_rounding():
    effect, found = _unbiased_running_var([3, 4, 2, 3], (0.0, 0.05, 0.15, 0.3))
    assert effect > 100, effect
    assert [f.label for f in found] == ["running_variance=unbiased"] * 4, [f.label for f in found]


def _loaded(case):
    return loaded(case, "cases/test.yaml")


# ----------------------------------------------------------------------------------------
# rows, files, pytest messages, localization


def test_rows_csv_json_carry_the_explanation(tmp_path):
    case = _case(steps=1)
    inputs = generate(case)
    outs = mutant_outputs(case, inputs, running_variance="unbiased")
    outs["y"] = [-outs["y"][0]]  # and an unexplainable fault on y
    rows = rows_for(
        _loaded(case), "mutant", BackendResult("mutant", "ok", outputs=outs), reference_outputs(case, inputs), inputs
    )
    by = {r.output: r for r in rows}
    assert by["running_var"].outcome == "explained" and by["running_var"].explanation == "running_variance=unbiased"
    assert by["y"].outcome == "mismatch" and by["y"].explanation == "" and "sign is flipped" in by["y"].explanation_text
    df = to_frame(rows)
    write_csv(df, tmp_path / "results.csv")
    write_json(df, tmp_path / "results.json", {})
    for name in ("results.csv", "results.json"):
        back, _ = read_results(tmp_path / name)
        rv = back[back.output == "running_var"].iloc[0]
        assert rv.explanation == "running_variance=unbiased"
        assert "divides by m−1 = 99" in rv.explanation_text
    data = json.loads((tmp_path / "results.json").read_text())
    assert any(r["explanation"] == "running_variance=unbiased" for r in data["results"])
    from normconf.pytest_plugin import _describe

    msg = _describe(rows)
    assert "explanation: running_variance=unbiased: updates the running variance" in msg


def test_localization_names_the_first_diverging_stage():
    case = _case(steps=1)
    inputs = generate(case)
    outs = mutant_outputs(case, inputs, eps_override=0.5)  # y diverges; batch statistics agree
    ref = reference_outputs(case, inputs)
    outs["inv_std"] = [ref["inv_std"][0] * 0 + mutant_outputs_inv(case, inputs, eps_override=0.5)]
    rows = rows_for(_loaded(case), "mutant", BackendResult("mutant", "ok", outputs=outs), ref, inputs)
    y = next(r for r in rows if r.output == "y")
    assert y.outcome == "explained" and y.explanation == "eps_override=0.5"
    assert (
        "[first diverging stage: inv_std (step 1); agree before it: batch_mean, batch_var; also differ: y]"
        in y.explanation_text
    )


def mutant_outputs_inv(case, inputs, **changes):
    return reference_outputs(case, inputs, case.semantics.replace(**changes))["inv_std"][0]


def test_localize_single_stage_adds_nothing():
    class R:
        def __init__(self, output, step, outcome):
            self.output, self.step, self.outcome, self.explanation_text = output, step, outcome, ""

    rows = [R("y", 1, "mismatch")]
    assert localize(None, rows) == "" and rows[0].explanation_text == ""


def test_engine_error_never_crashes():
    case = _case()
    inputs = generate(case)
    label, text = ex.explain(case, inputs, "y", 1, np.zeros(3), None, tolerance_for(case, "y"))
    assert label == "" and text


# ----------------------------------------------------------------------------------------
# cost: lazy, bounded


def test_cache_is_byte_bounded_and_reused():
    cache = ex._ReferenceCache(max_bytes=4 << 20)
    case = _case(shape=[16, 4, 32, 32], steps=1)  # y is 0.5 MiB in float64
    inputs = generate(case)
    for alt in (
        {},
        {"normalize_variance": "unbiased"},
        {"eps_placement": "none"},
        {"affine": "none"},
        {"stats_dtype": "float32"},
        {"compute_dtype": "float32"},
        {"arithmetic": "folded"},
    ):
        cache.get(case, inputs, case.semantics.replace(**alt), "y")
    assert cache._bytes <= cache.max_bytes
    n = cache.computed
    cache.get(case, inputs, case.semantics.replace(arithmetic="folded"), "running_var")  # per-channel: kept
    assert cache.computed == n
    # a float64 y (0.5 MiB) over a quarter of the budget is never kept: y is then answered compactly (rounded,
    # float32-held: 0.25 MiB, kept for the case's own semantics), the per-channel outputs from one statistics pass
    big = ex._ReferenceCache(max_bytes=1 << 20)
    y = big.get(case, inputs, case.semantics, "y")
    assert y[0].dtype == np.float32 and big.get(case, inputs, case.semantics, "y") is y
    assert big.computed == 1 and big._bytes < (1 << 20)
    big.get(case, inputs, case.semantics, "batch_mean")
    big.get(case, inputs, case.semantics, "batch_var")
    assert big.computed == 2
    # an alternative's y: computed where it is read (normconf.explain.deferred) from its per-channel statistics,
    # one statistics-only run, kept; never a whole array in the cache
    from normconf.explain import refcache as rc
    from normconf.explain.deferred import DeferredOutput

    alt = case.semantics.replace(normalize_variance="unbiased")
    assert isinstance(big.get(case, inputs, alt, "y")[0], DeferredOutput)
    big.get(case, inputs, alt, "y")
    assert big.computed == 3 and big._bytes < (1 << 20)
    rc.DEFER = False  # as whole arrays: scored, not kept (each get computes it again)
    try:
        alt2 = case.semantics.replace(eps_placement="none")
        assert isinstance(big.get(case, inputs, alt2, "y")[0], np.ndarray)
        big.get(case, inputs, alt2, "y")
        assert big.computed == 5 and big._bytes < (1 << 20)
    finally:
        rc.DEFER = True


def test_irrelevant_knobs_are_not_evaluated():
    case = _case(steps=1)
    inputs = generate(case)
    obs = mutant_outputs(case, inputs, running_variance="unbiased")["running_var"][0]
    exp = reference_outputs(case, inputs)["running_var"][0]
    f = explain_output(case, inputs, "running_var", 1, obs, exp, tolerance_for(case, "running_var"))
    assert f.label == "running_variance=unbiased"
    # eps, affine, arithmetic and compute-precision knobs cannot change running_var: not run
    assert all(
        not any(k in c.label for k in ("eps_", "affine", "arithmetic", "compute_dtype")) for c in f.matches + f.closest
    )
    assert f.evaluated <= 16
    assert math.isfinite(f.matches[0].score)


# ----------------------------------------------------------------------------------------
# cases/explain_momentum.yaml through the runner (worker processes, expectations)


#: the expectation cases/explain_momentum.yaml documents for the two test-only backends (the case file
#: itself may only name registered backends, so it is added here)
REVERSED = {
    "outcome": "explained",
    "because": "momentum_direction=reversed",
    "reason": "reads the momentum as the weight of the old running value",
}


def _run_momentum_cases(backends):
    from normconf.cases import Expectation, LoadedCase
    from normconf.runner import Runner

    cases = []
    for lc in load_file("cases/explain_momentum.yaml"):
        expect = dict(lc.case.expect)
        for b in ("mutant-keras-momentum-reading", "keras-tf-literal-momentum"):
            expect[b] = Expectation(**REVERSED)
        cases.append(LoadedCase(lc.case.model_copy(update={"expect": expect}), lc.file, lc.line))
    with Runner(extra_specs=("tests.test_explain_mutants:MOMENTUM_ADAPTERS",)) as r:
        return r.run(cases, backends).rows


def test_momentum_cases_reversed_reading_is_explained():
    rows = _run_momentum_cases(["numpy", "mutant-keras-momentum-reading"])
    assert rows and all(r.as_expected for r in rows), [
        (r.case, r.backend, r.outcome, r.message) for r in rows if not r.as_expected
    ]
    mut = [r for r in rows if r.backend == "mutant-keras-momentum-reading" and r.output == "running_mean"]
    assert len(mut) == 9 and all(r.explanation == "momentum_direction=reversed" for r in mut)
    k099 = next(r for r in mut if r.case == "momentum_keras_099_as_batch_weight" and r.step == 1)
    assert "batch weight 0.01 instead of 0.99" in k099.explanation_text
    assert "indistinguishable on this output from momentum_override=0.01" in k099.explanation_text
    assert all(r.outcome == "pass" for r in rows if r.backend == "numpy")


@pytest.mark.slow
def test_momentum_cases_on_keras_tf():
    """keras-tf translates the case's momentum (consistent running statistics); the same layer handed the
    batch weight untranslated is explained by the reversed momentum."""
    pytest.importorskip("tensorflow")
    rows = _run_momentum_cases(["keras-tf", "keras-tf-literal-momentum"])
    if any(r.outcome == "unsupported" for r in rows):
        pytest.skip("keras-tf unavailable: " + next(r.message for r in rows if r.outcome == "unsupported"))
    assert all(r.outcome == "pass" for r in rows if r.backend == "keras-tf"), [
        (r.case, r.output, r.step, r.outcome, r.message)
        for r in rows
        if r.backend == "keras-tf" and r.outcome != "pass"
    ]
    lit = [r for r in rows if r.backend == "keras-tf-literal-momentum"]
    assert all(r.as_expected for r in lit)
    assert {r.explanation for r in lit if r.output in ("running_mean", "running_var")} == {
        "momentum_direction=reversed"
    }


def test_all_zeros_and_negative_offset_are_described():
    case = _case()
    inputs = generate(case)
    e = reference_outputs(case, inputs)["y"][0]
    tol = tolerance_for(case, "y")
    assert "the output is (nearly) all zeros" in error_shape(case, "y", np.zeros_like(e), e, tol)
    assert "a uniform offset: observed ≈ expected − 0.25" in error_shape(case, "y", e - 0.25, e, tol)


def test_eval_y_eps_is_solved_and_momentum_is_recalled():
    case = _case(steps=2, eval_after=True, input={"std": 0.05, "seed": 43})
    inputs = generate(case)
    exp = reference_outputs(case, inputs)
    tol = tolerance_for(case, "eval_y")
    obs = mutant_outputs(case, inputs, eps_override=1e-3)["eval_y"][0]
    f = explain_output(case, inputs, "eval_y", 1, obs, exp["eval_y"][0], tol, memory=[])
    assert f.label == "eps_override=0.001", f.text  # solved from eval_y itself
    # a solved momentum cannot be read off eval_y; the one found on running_mean of the same pair is reused
    mut = mutant_outputs(case, inputs, momentum_override=0.3)
    pair_memory: list = []  # one pair's memory: what explained its earlier outputs
    alone = explain_output(case, inputs, "eval_y", 1, mut["eval_y"][0], exp["eval_y"][0], tol, memory=pair_memory)
    assert not alone.explained
    rm = explain_output(
        case,
        inputs,
        "running_mean",
        2,
        mut["running_mean"][1],
        exp["running_mean"][1],
        tolerance_for(case, "running_mean"),
        memory=pair_memory,
    )
    assert rm.label == "momentum_override=0.3"
    again = explain_output(case, inputs, "eval_y", 1, mut["eval_y"][0], exp["eval_y"][0], tol, memory=pair_memory)
    assert again.label == "momentum_override=0.3" and "the convention found for running_mean step 2" in again.text
    # another pair (a fresh memory) never sees it: results do not depend on which backend ran before
    other = explain_output(case, inputs, "eval_y", 1, mut["eval_y"][0], exp["eval_y"][0], tol, memory=[])
    assert not other.explained


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_statistics_only_reference_path_equals_the_full_run(mode):
    """The statistics-only path (no normalization pass) gives the full run's statistics and inv_std, bit
    for bit, under the semantics that change how they are computed."""
    case = _case(steps=3, eval_after=mode == "train", mode=mode, **({"running_var": 2.0} if mode == "eval" else {}))
    inputs = generate(case)
    base = case.semantics
    sems = [
        base,
        base.replace(train_statistics="blended", running_variance="unbiased"),
        base.replace(eps_placement="outside_sqrt", compute_dtype="float32"),
        base.replace(normalize_variance="unbiased", stats_dtype="float32", eps_override=1e-3),
    ]
    if mode == "eval":
        sems += [base.replace(eval_statistics="batch"), base.replace(eval_statistics="blended")]
    for sem in sems:
        full = reference_outputs(case, inputs, sem)
        stats = reference_outputs(case, inputs, sem, statistics_only=True)
        names = {"batch_mean", "batch_var", "running_mean", "running_var"} if mode == "train" else set()
        assert set(stats) == names | {"norm_mean", "norm_var", "inv_std"}
        for k, v in stats.items():
            if k.startswith("norm_"):
                continue
            assert len(v) == len(full[k])
            for a, b in zip(v, full[k]):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "mode,changes",
    [
        ("train", {}),
        ("train", {"train_statistics": "blended"}),
        ("train", {"normalize_variance": "unbiased", "eps_override": 1e-3}),
        ("eval", {}),
        ("eval", {"eval_statistics": "batch"}),
        ("eval", {"eval_statistics": "blended", "affine": "beta_only"}),
    ],
)
def test_sampled_alternative_is_bit_identical_to_the_full_run(mode, changes):
    """The search screens alternatives on a sample of elements (statistics-only reference + normalize on the
    sample): those values must be the full run's, bit for bit, or a screen could reject a true explanation."""
    from normconf.explain.arrays import channel_view
    from normconf.explain.deferred import sample

    case = _case(mode=mode, steps=2)
    inputs = generate(case)
    sem = case.semantics.replace(**changes)
    full = reference_outputs(case, inputs, sem)
    for output in ("y", "x_hat"):
        for step in (1, 2):
            cols = np.array([0, 3, 7, 20, 74])
            s = sample(case, inputs, sem, output, step, cols)
            np.testing.assert_array_equal(s, channel_view(full[output][step - 1], case.channel_axis)[:, cols])
