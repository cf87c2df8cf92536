"""Expectation matching (precision by kind, conformance at the case's own precision) and the pair-level
corroboration of conventions (normconf.results, normconf.explain.pair)."""

from __future__ import annotations

import numpy as np
import pytest

from normconf.inputs import generate
from normconf.oracle import expected_outputs
from normconf.outputs import output_dtype
from normconf.results import because_matches, own_precision, rows_for
from normconf.worker import BackendResult
from tests.helpers import case_maker, loaded
from tests.test_explain_mutants import mutant_outputs

_case = case_maker(id="pair", shape=[4, 3, 5], steps=1, momentum={"batch_weight": 0.1}, input={"std": 2.0, "seed": 5})


def test_because_matches_precision_by_kind_and_knobs_as_a_subset():
    assert because_matches("precision=float32", ["precision=float32,variance=one_pass"])
    assert because_matches("normalize_variance=unbiased", ["normalize_variance=unbiased,precision=float32"])
    assert not because_matches("precision=float32", ["precision=float16,stats_precision=float32"])
    assert not because_matches("running_variance=unbiased", ["normalize_variance=unbiased"])


def test_own_precision_is_the_outputs_own_dtype():
    f32, f64 = _case(dtype="float32"), _case(dtype="float64")
    half = _case(dtype="float16", param_dtype="float32")
    mixed = _case(dtype="float64", param_dtype="float32")
    assert own_precision(f32, "precision=float32,variance=one_pass", "y")
    assert not own_precision(f64, "precision=float32", "y")  # float32 arithmetic on a float64 case is a departure
    assert own_precision(f64, "precision=float64,variance=one_pass", "y")
    assert own_precision(half, "precision=float16,stats_precision=float32", "y")
    assert own_precision(mixed, "precision=float32", "running_var")  # statistics held in float32 parameters
    assert not own_precision(mixed, "precision=float32", "y")
    assert not own_precision(f32, "normalize_variance=unbiased", "y")


def _rows(case, **changes):
    inputs = generate(case)
    outs = mutant_outputs(case, inputs, **changes)
    lc = loaded(case)
    return {
        (r.output, r.step): r
        for r in rows_for(lc, "m", BackendResult("m", "ok", outputs=outs), expected_outputs(case, inputs), inputs)
    }


def test_reported_variance_is_named_when_y_follows_the_case():
    """Normalizes with the biased variance, reports the unbiased one (FusedBatchNormV3): batch_var gets
    reported_variance, not normalize_variance, because y agrees with the biased normalization."""
    rows = _rows(_case(), reported_variance="unbiased")
    assert rows[("y", 1)].outcome == "pass"
    assert rows[("batch_var", 1)].explanation == "reported_variance=unbiased", rows[("batch_var", 1)].explanation_text


def test_one_convention_for_the_whole_pair():
    """tiny-dnn-like: normalizes with the unbiased variance: y and batch_var both name normalize_variance
    (on batch_var alone reported_variance gives the same numbers; the pair's y decides)."""
    rows = _rows(_case(), normalize_variance="unbiased")
    assert rows[("y", 1)].explanation == "normalize_variance=unbiased"
    assert rows[("batch_var", 1)].explanation == "normalize_variance=unbiased", rows[("batch_var", 1)].explanation_text


def test_convention_contradicted_by_another_output_is_demoted():
    """A backend whose y and batch_var disagree with any single convention: the y convention that the
    reported batch_var contradicts is not an explanation; the row names it as the closest candidate."""
    case = _case()
    inputs = generate(case)
    outs = mutant_outputs(case, inputs, normalize_variance="unbiased")
    outs["batch_var"] = mutant_outputs(case, inputs)["batch_var"]  # reports the biased variance after all
    lc = loaded(case)
    rows = {
        (r.output, r.step): r
        for r in rows_for(lc, "m", BackendResult("m", "ok", outputs=outs), expected_outputs(case, inputs), inputs)
    }
    y = rows[("y", 1)]
    assert y.outcome == "mismatch" and y.explanation == "", y.explanation_text
    assert "closest candidate, not an explanation: normalize_variance=unbiased" in y.explanation_text
    assert "contradicted by batch_var" in y.explanation_text


def test_expected_convention_indistinguishable_from_precision_still_holds():
    """On another kernel library a documented convention can sink below the float32 bound: the row is then
    precision, with the convention listed as also reproducing it, and the expectation still holds; a
    precision row that does not list it does not satisfy the expectation."""
    from normconf.results import Row, apply_expectation

    case = _case(
        expect={
            "b": {
                "outcome": "explained",
                "because": "running_variance=unbiased",
                "reason": "documented: the running variance uses the unbiased estimator",
            }
        }
    )

    def row(consistent: str) -> Row:
        return Row(
            case="pair",
            file="<t>",
            line=1,
            backend="b",
            backend_version="",
            output="running_var",
            step=1,
            outcome="explained",
            explanation="precision=float32",
            consistent=consistent,
        )

    listed, unlisted = [row("running_variance=unbiased")], [row("")]
    apply_expectation(case, "b", listed)
    apply_expectation(case, "b", unlisted)
    assert listed[0].as_expected is True
    assert unlisted[0].as_expected is False


def test_compact_expected_values_give_the_same_rows():
    """A worker holds the expected values of float32/float16/bfloat16 outputs as float32
    (``compact``): the same numbers, so every row is the same as with float64-held ones: metrics,
    outcomes, explanations, corroboration and plots, on passing and on explained pairs."""
    import numpy as np

    seen = set()
    for dtype, param in (
        ("float32", "float32"),
        ("float16", "float32"),
        ("bfloat16", "float32"),
        ("float64", "float64"),
    ):
        case = _case(dtype=dtype, param_dtype=param)
        inputs = generate(case)
        full, compact = expected_outputs(case, inputs), expected_outputs(case, inputs, compact=True)
        for name in full:
            held = np.float64 if output_dtype(case, name) == "float64" else np.float32
            for a, b in zip(full[name], compact[name]):
                assert a.dtype == np.float64 and b.dtype == held, (name, b.dtype)
                assert np.array_equal(a, b, equal_nan=True), name
        for changes in ({}, {"normalize_variance": "unbiased"}, {"eps_placement": "outside_sqrt"}):
            outs = mutant_outputs(case, inputs, **changes)
            lc = loaded(case)
            held = expected_outputs(case, inputs, compact=True)  # as a worker's cache: rows_for may widen it
            rows = [
                [vars(r) for r in rows_for(lc, "m", BackendResult("m", "ok", outputs=outs), exp, inputs)]
                for exp in (full, held)
            ]
            for r in rows[0] + rows[1]:
                r.pop("seconds", None)
            assert rows[0] == rows[1], (dtype, changes)
            seen |= {r["outcome"] for r in rows[0]}
            # BatchNorm's explainer and reviewer read the compact values (explain_reads_compact): nothing widened
            for name in held:
                assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(held[name], full[name])), name
                wide = output_dtype(case, name) == "float64"
                assert all(a.dtype == (np.float64 if wide else np.float32) for a in held[name]), (name, changes)
    assert {"pass", "explained"} <= seen


def test_hooks_that_do_not_read_compact_values_get_float64(monkeypatch):
    """An op whose explain/review hooks do not declare ``explain_reads_compact`` (a plug-in op's default) is
    given float64 expected values; the widened copy replaces the compact one (one copy held, not two)."""
    import dataclasses

    import normconf.ops as ops

    ops._load()
    spec = dataclasses.replace(ops._REGISTRY["batch_norm"], explain_reads_compact=False)
    monkeypatch.setitem(ops._REGISTRY, "batch_norm", spec)
    seen = []

    def explainer(case, inputs, name, step, observed, expected, tol, memory):
        seen.append(np.asarray(expected).dtype)
        return None

    case = _case(dtype="float32", param_dtype="float32")
    inputs = generate(case)
    held = expected_outputs(case, inputs, compact=True)
    outs = mutant_outputs(case, inputs, normalize_variance="unbiased")
    rows_for(loaded(case), "m", BackendResult("m", "ok", outputs=outs), held, inputs, explainer=explainer)
    assert seen and all(d == np.float64 for d in seen)
    assert held["y"][0].dtype == np.float64  # widened in place


_big = case_maker(id="compact", momentum={"batch_weight": 0.1}, input={"std": 2.0, "mean": 0.5, "seed": 9})


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize(
    "shape, layout, mode",
    [
        ([4, 16, 128, 128], "channels_first", "train"),  # 2**20 elements: the compiled reference's path
        ([5, 16, 130, 128], "channels_last", "eval"),  # 83 200 rows of 16: blocks of 8192 rows, the last short
        ([2, 64, 96, 96], "channels_first", "eval"),
        ([3, 5, 7], "channels_last", "train"),  # the NumPy path
    ],
)
def test_compact_expected_values_are_the_rounded_reference(dtype, shape, layout, mode):
    """The op's compact_expected (y and eval_y rounded a block at a time) gives exactly the reference
    rounded to the output dtypes and held compactly, for every output set a worker asks for."""
    from normconf.oracle import reference_outputs, round_to_output_dtypes

    case = _big(shape=shape, dtype=dtype, layout=layout, mode=mode, steps=2, eval_after=mode == "train")
    inputs = generate(case)
    for names in (None, frozenset({"y"}), frozenset({"y", "x_hat", "inv_std"})):
        got = expected_outputs(case, inputs, names, compact=True)
        want = round_to_output_dtypes(case, reference_outputs(case, inputs, outputs=names), compact=True)
        assert list(got) == list(want)
        for k in want:
            assert len(got[k]) == len(want[k])
            for g, w in zip(got[k], want[k]):
                assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes(), (k, names)


def test_compact_expected_values_of_a_large_case_need_no_float64_y(monkeypatch):
    """Memory, not time: the expected y of a 2**21-element float32 case (8 MiB as float32) is computed
    without a full-size float64 array (16 MiB): the traced peak stays below one.  (The compiled reference's
    path: the NumPy twins, NORMCONF_KERNELS=0, normalize whole arrays.)"""
    import tracemalloc

    from normconf import kernels

    monkeypatch.delenv("NORMCONF_KERNELS", raising=False)
    assert kernels.library() is not None, "the compiled kernels are part of the package build"

    case = _big(shape=[8, 16, 128, 128], dtype="float32", steps=1)
    inputs = generate(case)
    n = 8 * 16 * 128 * 128
    expected_outputs(case, inputs, frozenset({"y"}), compact=True)  # imports and the kernel library loaded
    tracemalloc.start()
    try:
        got = expected_outputs(case, inputs, frozenset({"y"}), compact=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got["y"][0].dtype == np.float32 and got["y"][0].size == n
    assert peak < 8 * n, peak  # the float32 y (4n bytes) and blocks, never a float64 y (8n)
