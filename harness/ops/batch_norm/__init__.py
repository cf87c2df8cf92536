"""BatchNorm (``op: batch_norm``, the default): the op spec over normconf's first op.

BatchNorm predates the op seam, so its parts keep their places and this module binds them:
the case model :class:`normconf.case_model.Case`, the knobs :class:`normconf.semantics.Semantics`,
the reference :mod:`normconf.references.batchnorm`, the inputs :func:`normconf.inputs.batch_norm_inputs`,
the explainer :mod:`normconf.explain`.  Conventions: per channel (the case's channel axis),
statistics over N × spatial; docs/cases.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from normconf.case_model import Affine, Case, Expectation, Generator, Momentum, Tolerance, _cross_checks, describe_value
from normconf.ops import OpSpec, OutputDef
from normconf.semantics import Semantics

if TYPE_CHECKING:
    from pydantic import BaseModel

    from normconf.inputs import Inputs
    from normconf.ops import ReferenceOutputs

#: the outputs, main ones in result order, then the intermediate stages (normconf.references.batchnorm's names)
OUTPUTS = (
    OutputDef("y", "element", "data", "main", "the normalized, affine-transformed output"),
    OutputDef("batch_mean", "group", "param", "main", "per-channel batch mean (train)"),
    OutputDef("batch_var", "group", "param", "main", "per-channel batch variance used to normalize (train)"),
    OutputDef("running_mean", "group", "param", "main", "running mean after the step (train)"),
    OutputDef("running_var", "group", "param", "main", "running variance after the step (train)"),
    OutputDef("eval_y", "element", "data", "main", "inference on the last batch with the final running statistics"),
    OutputDef("inv_std", "group", "param", "stage", "1/sqrt(var + eps) used to normalize"),
    OutputDef("x_hat", "element", "data", "stage", "(x - mean)·inv_std before the affine transform"),
)


def _reference(
    case: Case,
    inputs: Any,
    semantics: Semantics | None = None,
    *,
    statistics_only: bool = False,
    outputs: frozenset[str] | None = None,
    y_round: Any = None,
) -> ReferenceOutputs:
    from normconf.inputs import np_dtype
    from normconf.references.batchnorm import batch_norm_reference

    return batch_norm_reference(
        inputs.x,
        channel_axis=case.channel_axis,
        mode=case.mode,
        eps=case.eps,
        momentum=case.momentum_weight,
        gamma=inputs.gamma,
        beta=inputs.beta,
        running_mean=inputs.running_mean,
        running_var=inputs.running_var,
        eval_after=case.eval_after,
        semantics=semantics if semantics is not None else case.semantics,
        input_dtype=np_dtype(case.dtype),
        statistics_only=statistics_only,
        with_x_hat=outputs is None or "x_hat" in outputs,
        y_round=y_round,
        with_eval_y=outputs is not None and "eval_y" in outputs,
    )


def _compact_expected(
    case: Case, inputs: Any, outputs: frozenset[str] | None = None, semantics: Semantics | None = None
) -> ReferenceOutputs:
    """The expected values (under ``semantics``, default the case's) as :func:`normconf.oracle.expected_outputs`
    with ``compact`` holds them: y and eval_y rounded to the case dtype by the reference a block at a time
    (no float64 y of the whole batch), the other outputs rounded by the oracle."""
    import numpy as np

    from normconf.inputs import np_dtype
    from normconf.oracle import round_to_output_dtypes
    from normconf.outputs import output_dtype

    dt = np_dtype(output_dtype(case, "y"))
    y_round = None if dt == np.float64 else dt
    out = _reference(case, inputs, semantics, outputs=outputs, y_round=y_round)
    done = {"y", "eval_y"} if y_round is not None else set()
    rest = round_to_output_dtypes(case, {k: v for k, v in out.items() if k not in done}, compact=True)
    return {k: (v if k in done else rest[k]) for k, v in out.items()}


def _statistics_outputs(case: Case) -> frozenset[str]:
    """What the statistics-only reference computes: the batch and running statistics of a training step (in
    inference they are the inputs' running statistics, which the full run reports), and ``inv_std``; and,
    asked for it, ``eval_y`` after training (one normalization at the end: no step's ``y`` is needed for it)."""
    from normconf.references.batchnorm import STATISTICS

    if case.mode != "train":
        return frozenset(("inv_std",))
    return frozenset((*STATISTICS, "inv_std", *(("eval_y",) if case.eval_after else ())))


def _deferred_output(*args: Any) -> list[Any] | None:
    from normconf.explain.deferred import deferred_steps

    return deferred_steps(*args)


def _generate(case: Case) -> Inputs:
    from normconf.inputs import batch_norm_inputs

    return batch_norm_inputs(case)


def _output_shape(case: Case, name: str) -> tuple[int, ...]:
    group = {o.name for o in OUTPUTS if o.per == "group"}
    return (int(case.channels),) if name in group else tuple(int(d) for d in case.array_shape)


def _explain(*args: Any, **kw: Any) -> tuple[str, str] | None:
    from normconf.explain import explain

    return explain(*args, **kw)


def _review(*args: Any, **kw: Any) -> None:
    from normconf.explain import review_pair

    return review_pair(*args, **kw)


def _affected(knob: str, case: Case, sem: Semantics) -> frozenset[str]:
    from normconf.explain.catalog import affected

    return affected(knob, case.mode, sem)


def _fuzz_cases(max_elements: int, dtypes: tuple[str, ...], modes: tuple[str, ...] = ("train", "eval")) -> Any:
    from normconf.ops.batch_norm.fuzz import case_dicts

    return case_dicts(max_elements, dtypes, modes)


def _row_fields(case: Case) -> dict[str, Any]:
    return dict(
        mode=case.mode,
        layout=case.layout,
        eps=case.eps,
        momentum="cumulative" if case.momentum_weight is None else f"batch_weight={case.momentum_weight:g}",
        normalize_variance=case.normalize_variance,
        running_variance=case.running_variance,
    )


def _report_params(case: Case) -> dict[str, str]:
    p: dict[str, str] = {
        "shape (N, C, …)": " × ".join(str(d) for d in case.shape),
        "layout": case.layout,
        "dtype": case.dtype + (f" (parameters {case.params_dtype})" if case.params_dtype != case.dtype else ""),
        "mode": case.mode + (" + eval afterwards" if case.eval_after else ""),
        "eps": f"{case.eps:g}",
        "momentum": "cumulative average"
        if case.momentum_weight is None
        else f"running = (1 − {case.momentum_weight:g})·old + {case.momentum_weight:g}·batch",
        "normalize variance": case.normalize_variance,
        "running variance": case.running_variance,
        "steps": str(case.steps),
    }
    if case.has_affine:
        aff = cast("Affine | Literal[True]", case.affine)  # has_affine: not False
        p["affine"] = (
            "gamma 1, beta 0 (default)"
            if aff is True
            else f"gamma {describe_value(aff.gamma)}, beta {describe_value(aff.beta)}"
        )
    else:
        p["affine"] = "none"
    p["initial running mean"] = describe_value(case.running_mean)
    p["initial running var"] = describe_value(case.running_var)
    return p


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Fields of the nested mappings, for "did you mean" hints on unknown keys."""
    if len(loc) == 1:
        return sorted(Case.model_fields)
    top = loc[0]
    model = cast(
        "type[BaseModel] | None",
        {
            "affine": Affine,
            "momentum": Momentum,
            "tolerance": Tolerance,
            "input": Generator,
            "running_mean": Generator,
            "running_var": Generator,
        }.get(top),
    )
    if top == "affine" and len(loc) == 3:
        model = Generator
    if top == "expect" and len(loc) == 3:
        model = Expectation
    return sorted(model.model_fields) if model else []


#: Semantics fields a backend profile may fix (conventions; not the numbers the explainer solves and
#: not the reference's emulation knobs)
PROFILE_KNOBS = (
    "normalize_variance",
    "reported_variance",
    "running_variance",
    "momentum_direction",
    "running_average",
    "eps_placement",
    "train_statistics",
    "eval_statistics",
    "affine",
    "initial_running",
)

SPEC = OpSpec(
    name="batch_norm",
    title="Batch normalization: per-channel statistics over N × spatial, running statistics",
    case_model=Case,
    outputs=OUTPUTS,
    semantics=Semantics,
    generate=_generate,
    reference=_reference,
    compact_expected=_compact_expected,
    statistics_outputs=_statistics_outputs,
    deferred_output=_deferred_output,
    output_names=lambda case: case.output_names(),
    output_shape=_output_shape,
    output_steps=lambda case, name: 1 if name == "eval_y" else int(case.steps),
    explain=_explain,
    review=_review,
    explain_reads_compact=True,  # normconf.explain converts a block at a time (tests/test_expectations.py)
    report_params=_report_params,
    row_fields=_row_fields,
    plot_axis=lambda case: case.channel_axis,
    profile_knobs=PROFILE_KNOBS,
    affected=_affected,
    cross_checks=_cross_checks,
    allowed_keys=_allowed_keys,
    fuzz_cases=_fuzz_cases,
    docs="docs/cases.md",
)
