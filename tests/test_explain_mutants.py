"""Mutant backends: the reference with one convention changed; the engine must name that convention.

Each mutant is the float64 reference run under ``case.semantics`` with one knob
changed, rounded to the dtypes a framework returns (``y`` in the case dtype,
statistics in the parameter dtype) exactly like the ``numpy`` adapter does.
For every output a mutant gets *wrong* (compare() says not close), the
explanation engine must rank the mutated knob first — or an alternative that
produces the bit-identical output on that output (e.g. a reversed momentum and
the solved batch weight ``1 - w`` are the same numbers; the text lists it as
"indistinguishable").

This module also defines adapter classes (``MOMENTUM_ADAPTERS``) for
``cases/explain_momentum.yaml``: load them with
``--adapter tests.test_explain_mutants:MOMENTUM_ADAPTERS``.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.adapters.base import Adapter, Observed
from harness.cases import Case
from harness.compare import compare
from harness.explain import explain_output
from harness.inputs import Inputs, generate, np_dtype
from harness.oracle import reference_outputs
from harness.results import _ordered, output_dtype, tolerance_for

# ----------------------------------------------------------------------------------------
# Mutant adapters (also usable from the command line / YAML expectations)


def mutant_outputs(case: Case, inputs: Inputs, **changes) -> dict[str, list[np.ndarray]]:
    """The reference under ``case.semantics.replace(**changes)``, rounded like a framework's outputs."""
    ref = reference_outputs(case, inputs, case.semantics.replace(**changes))
    out = {}
    for name in case.output_names():
        dt = np_dtype(output_dtype(case, name))
        with np.errstate(over="ignore", invalid="ignore"):
            out[name] = [a.astype(dt) for a in ref[name]]
    return out


def mutant_adapter(adapter_id: str, description: str, **changes) -> type[Adapter]:
    """An adapter class: the reference with ``changes`` applied to the case's semantics."""

    class _Mutant(Adapter):
        id = adapter_id
        framework = "numpy"
        worker = "numpy"

        def version(self) -> str:
            return "mutant"

        def run(self, case: Case, inputs: Inputs) -> Observed:
            return Observed(mutant_outputs(case, inputs, **changes), [description])

    _Mutant.__name__ = _Mutant.__qualname__ = "Mutant_" + adapter_id.replace("-", "_")
    _Mutant.description = description
    return _Mutant


def _keras_literal_momentum() -> type[Adapter] | None:
    """keras-tf given the case's *batch weight* as Keras' ``momentum`` (a porting bug, on the real framework).

    The case's ``momentum: {batch_weight: w}`` is handed to Keras as if it were
    Keras' own momentum (the weight of the old value), i.e. the translation
    PyTorch→Keras is forgotten.  With ``batch_weight: 0.99`` Keras then uses
    batch weight 0.01.
    """
    try:
        from harness.adapters.tensorflow import KerasTF
    except Exception:  # pragma: no cover - tensorflow adapter module missing
        return None
    from harness.cases import Momentum

    class KerasLiteralMomentum(KerasTF):
        id = "keras-tf-literal-momentum"
        description = "keras-tf handed the case's batch weight as Keras momentum (untranslated; a porting bug)"

        def run(self, case: Case, inputs: Inputs) -> Observed:
            if case.momentum_weight is not None:
                case = case.model_copy(update={"momentum": Momentum(running_weight=float(case.momentum_weight))})
            obs = super().run(case, inputs)
            obs.notes.append("momentum passed untranslated: Keras momentum = the case's batch weight")
            return obs

    return KerasLiteralMomentum


#: for cases/explain_momentum.yaml
MOMENTUM_ADAPTERS = [
    mutant_adapter("mutant-keras-momentum-reading", "reference whose momentum is read as the weight of the old value",
                   momentum_direction="reversed"),
    *([k] if (k := _keras_literal_momentum()) is not None else []),
]

# ----------------------------------------------------------------------------------------
# The matrix: cases (shapes, dtypes, layouts) × knobs


def _case(**kw) -> Case:
    base = dict(id="explain_mutant", steps=2, momentum={"batch_weight": 0.1},
                affine={"gamma": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": 3},
                        "beta": {"dist": "normal", "std": 0.5, "seed": 4}},
                running_mean={"dist": "normal", "std": 0.3, "seed": 5},
                running_var={"dist": "uniform", "low": 0.5, "high": 1.5, "seed": 6})
    base.update(kw)
    return Case.model_validate(base)


#: (name, case) — several ranks, layouts and dtypes; inputs with std 2 and a mean offset, so that the
#: running-statistics knobs are visible in every dtype.  Eps knobs run on the same case with std 0.05
#: (var 0.0025), where an eps of 1e-3 instead of 1e-5 is visible (see _for_knob).
CASES = {
    "f64_2d": _case(shape=[6, 3], dtype="float64", input={"std": 2.0, "mean": 0.5, "seed": 11}),
    "f32_4d": _case(shape=[4, 3, 5, 5], dtype="float32", eval_after=True, input={"std": 2.0, "mean": 0.5, "seed": 12}),
    "f32_3d_last": _case(shape=[5, 4, 6], layout="channels_last", dtype="float32",
                         input={"std": 2.0, "mean": 0.5, "seed": 13}),
    "f16_4d_last": _case(shape=[2, 3, 3, 3], layout="channels_last", dtype="float16", param_dtype="float32",
                         input={"std": 2.0, "mean": 0.5, "seed": 14}),
    "bf16_3d": _case(shape=[2, 3, 4], dtype="bfloat16", param_dtype="float32",
                     input={"std": 2.0, "mean": 0.5, "seed": 15}),
}


def _for_knob(case: Case, label: str) -> Case:
    if label.startswith("eps_"):
        return case.model_copy(update={"input": case.input.model_copy(update={"std": 0.05, "mean": 0.0})})
    return case


#: (label the engine must report, semantics changes) — every knob of the catalog
KNOBS = [
    ("normalize_variance=unbiased", dict(normalize_variance="unbiased")),
    ("running_variance=unbiased", dict(running_variance="unbiased")),
    ("momentum_direction=reversed", dict(momentum_direction="reversed")),
    ("running_average=cumulative", dict(running_average="cumulative")),
    ("momentum_override=0.01", dict(momentum_override=0.01)),
    ("eps_override=0.001", dict(eps_override=1e-3)),
    ("eps_placement=outside_sqrt", dict(eps_placement="outside_sqrt")),
    ("eps_placement=none", dict(eps_placement="none")),
    ("train_statistics=running", dict(train_statistics="running")),
    ("train_statistics=blended", dict(train_statistics="blended")),
    ("apply_affine=false", dict(apply_affine=False)),
    ("initial_running=zeros", dict(initial_running="zeros")),
]


def _check_mutant(case: Case, label: str, changes: dict, min_outputs: int = 1) -> list[str]:
    """Run the engine on every output the mutant gets wrong; return the outputs checked."""
    inputs = generate(case)
    exp = reference_outputs(case, inputs)
    mut = mutant_outputs(case, inputs, **changes)
    checked = []
    memory: list = []  # one case x backend pair: outputs in the order harness.results.rows_for visits them
    for name in _ordered(mut):
        steps = mut[name]
        tol = tolerance_for(case, name)
        for k, (o, e) in enumerate(zip(steps, exp[name]), start=1):
            if compare(o, e, tol, output_dtype(case, name)).close:
                continue
            f = explain_output(case, inputs, name, k, o, e, tol, memory=memory)
            assert f.explained, f"{label}: {name} step {k} not explained: {f.text}"
            top = f.matches[0]
            assert label == top.label or label in top.equivalents, (
                f"{label}: {name} step {k} explained as {top.label} (equivalents {top.equivalents}): {f.text}")
            assert "residual after this correction" in f.text
            checked.append(f"{name}@{k}")
    assert len(checked) >= min_outputs, f"{label}: the mutant differs from the reference on no output"
    return checked


@pytest.mark.parametrize("label,changes", KNOBS, ids=[k[0] for k in KNOBS])
@pytest.mark.parametrize("case_name", list(CASES))
def test_mutant_knob_is_named(case_name, label, changes):
    case = _for_knob(CASES[case_name], label)
    _check_mutant(case, label, changes)


def test_eval_statistics_mutant():
    case = _case(shape=[4, 3, 5], mode="eval", steps=1, input={"std": 0.05, "mean": 0.3, "seed": 21})
    assert _check_mutant(case, "eval_statistics=batch", dict(eval_statistics="batch")) == ["y@1"]


def test_eval_mode_eps_and_zeros():
    case = _case(shape=[4, 3, 5], mode="eval", steps=1, running_var=0.003, input={"std": 0.05, "seed": 22})
    _check_mutant(case, "eps_override=0.001", dict(eps_override=1e-3))
    _check_mutant(case, "initial_running=zeros", dict(initial_running="zeros"))


def test_channel_axis_swapped_mutant():
    # the other layout's channel axis has C (3) elements too, so a reader that takes the wrong axis still runs
    for layout, shape in (("channels_first", [4, 3, 5, 3]), ("channels_last", [4, 3, 3, 5])):
        case = _case(shape=shape, layout=layout, input={"std": 1.0, "seed": 23})
        _check_mutant(case, "channel_axis_swapped=true", dict(channel_axis_swapped=True), min_outputs=3)


def test_eval_after_momentum_mutant():
    case = _case(shape=[8, 2, 3], steps=3, eval_after=True, input={"std": 1.0, "mean": 1.0, "seed": 24})
    checked = _check_mutant(case, "momentum_direction=reversed", dict(momentum_direction="reversed"), min_outputs=4)
    assert "eval_y@1" in checked


def test_cumulative_case_with_exponential_backend():
    """A case asking for the cumulative average; the backend uses batch weight 0.1 (solved and named)."""
    case = _case(shape=[6, 3], steps=3, momentum="cumulative", input={"std": 1.0, "mean": 2.0, "seed": 25})
    checked = _check_mutant(case, "momentum_override=0.1", dict(momentum_override=0.1), min_outputs=2)
    assert any(c.startswith("running_mean") for c in checked)


def test_solved_momentum_not_a_default():
    case = _case(shape=[6, 3], steps=2, input={"std": 1.0, "mean": 2.0, "seed": 26})
    _check_mutant(case, "momentum_override=0.237", dict(momentum_override=0.237))


def test_solved_eps_not_a_default():
    case = _case(shape=[6, 3], steps=1, input={"std": 0.05, "seed": 27})
    _check_mutant(case, "eps_override=0.0042", dict(eps_override=0.0042))


# --- precision and arithmetic variants ------------------------------------------------------


def test_one_pass_float32_variance():
    """E[x²]−E[x]² in float32 on data with a large mean: catastrophic cancellation the engine recognizes."""
    case = _case(shape=[16, 2, 8], dtype="float32", input={"std": 1.0, "mean": 3000.0, "seed": 31})
    lab = "variance_algorithm=one_pass,stats_dtype=float32"
    inputs = generate(case)
    exp = reference_outputs(case, inputs)
    mut = mutant_outputs(case, inputs, variance_algorithm="one_pass", stats_dtype="float32")
    tol = tolerance_for(case, "y")
    assert not compare(mut["y"][0], exp["y"][0], tol, "float32").close
    f = explain_output(case, inputs, "y", 1, mut["y"][0], exp["y"][0], tol)
    top = f.matches[0]
    # clamping changes nothing when the float32 variance stays positive: both labels are the same numbers
    assert lab in [top.label, *top.equivalents], f.text


def test_float16_statistics_and_folded_arithmetic():
    case = _case(shape=[32, 2, 16], dtype="float16", param_dtype="float32", steps=1,
                 input={"std": 1.0, "mean": 20.0, "seed": 32})
    for lab, changes in [("stats_dtype=input", dict(stats_dtype="input")),
                         ("arithmetic=folded,compute_dtype=input", dict(arithmetic="folded", compute_dtype="input"))]:
        inputs = generate(case)
        exp = reference_outputs(case, inputs)
        mut = mutant_outputs(case, inputs, **changes)
        tol = tolerance_for(case, "y")
        if compare(mut["y"][0], exp["y"][0], tol, "float16").close:
            pytest.fail(f"{lab}: mutant not distinguishable on this input; choose another")
        f = explain_output(case, inputs, "y", 1, mut["y"][0], exp["y"][0], tol)
        assert f.explained, f.text
        top = f.matches[0]
        assert lab in [top.label, *top.equivalents], f.text


def test_sequential_float32_summation_with_unbiased_variance():
    """A naive C++ loop (two-pass, float accumulators, one element at a time) that also divides by m−1:
    the structural knob nearly explains it, the rest is the working precision (a near-miss pair)."""
    case = _case(shape=[8, 2, 64, 64], dtype="float32", steps=1, input={"std": 50.0, "seed": 33})
    inputs = generate(case)
    exp = reference_outputs(case, inputs)
    mut = mutant_outputs(case, inputs, normalize_variance="unbiased", stats_dtype="float32", stats_summation="sequential")
    tol = tolerance_for(case, "batch_var")
    assert not compare(mut["batch_var"][0], exp["batch_var"][0], tol, "float32").close
    f = explain_output(case, inputs, "batch_var", 1, mut["batch_var"][0], exp["batch_var"][0], tol)
    top = f.matches[0] if f.matches else None
    assert top is not None, f.text
    assert top.semantics.normalize_variance == "unbiased" and top.semantics.stats_summation == "sequential", f.text
    assert "sums one element at a time" in f.text


def test_momentum_held_in_float32():
    """ONNX attributes are float32: momentum 0.9 becomes batch weight 1 − float32(0.9) = 0.10000002384185791."""
    case = _case(shape=[6, 3], dtype="float64", steps=1, momentum={"running_weight": 0.9},
                 input={"std": 1.0, "mean": 1000.0, "seed": 34})
    w32 = 1.0 - float(np.float32(0.9))
    label = f"momentum_override={w32!r}"
    _check_mutant(case, label, dict(momentum_override=w32))
    inputs = generate(case)
    exp = reference_outputs(case, inputs)
    mut = mutant_outputs(case, inputs, momentum_override=w32)
    f = explain_output(case, inputs, "running_mean", 1, mut["running_mean"][0], exp["running_mean"][0],
                       tolerance_for(case, "running_mean"))
    assert "the momentum held in float32" in f.text and "batch weight 0.10000002384185791 instead of 0.1" in f.text
