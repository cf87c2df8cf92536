"""LayerNorm (``op: layer_norm``): statistics per row over the normalized axes, elementwise affine.

Everything op-specific is here: the case model (:mod:`.case`), the knobs (:mod:`.semantics`),
the inputs (:mod:`.inputs`), the explainer (:mod:`.explain`) and the spec below; the float64
reference is :mod:`normconf.references.layer_norm`.  docs/layer_norm.md describes the case format and
the conventions backends differ in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from normconf.case_model import describe_value
from normconf.ops import OpSpec, OutputDef
from normconf.ops.layer_norm.case import LayerNormCase, allowed_keys, cross_checks
from normconf.ops.layer_norm.semantics import LayerNormSemantics

if TYPE_CHECKING:
    from normconf.case_model import Affine
    from normconf.ops import ReferenceOutputs
    from normconf.ops.layer_norm.inputs import LayerNormInputs

OUTPUTS = (
    OutputDef("y", "element", "data", "main", "the normalized, affine-transformed output"),
    OutputDef("mean", "group", "param", "main", "the row means (ONNX Mean), normalized axes kept as 1"),
    OutputDef("inv_std", "group", "param", "main", "1/sqrt(var + eps) per row (ONNX InvStdDev)"),
    OutputDef("x_hat", "element", "data", "stage", "(x - mean)·inv_std before the affine transform"),
)

#: knobs a backend profile may fix for LayerNorm
PROFILE_KNOBS = ("normalize_variance", "eps_placement", "centered", "scale_statistic", "affine")


def _reference(
    case: LayerNormCase,
    inputs: Any,
    semantics: LayerNormSemantics | None = None,
    *,
    statistics_only: bool = False,
    outputs: frozenset[str] | None = None,
) -> ReferenceOutputs:
    from normconf.inputs import np_dtype
    from normconf.references.layer_norm import layer_norm_reference

    return layer_norm_reference(
        inputs.x,
        axes=case.norm_axes,
        eps=case.eps,
        gamma=inputs.gamma,
        beta=inputs.beta,
        semantics=semantics if semantics is not None else case.semantics,
        input_dtype=np_dtype(case.dtype),
        statistics_only=statistics_only,
        with_x_hat=outputs is None or "x_hat" in outputs,
    )


def _generate(case: LayerNormCase) -> LayerNormInputs:
    from normconf.ops.layer_norm.inputs import generate

    return generate(case)


def _output_shape(case: LayerNormCase, name: str) -> tuple[int, ...]:
    return case.group_shape if name in ("mean", "inv_std") else tuple(int(d) for d in case.shape)


def _explain(*args: Any, **kw: Any) -> tuple[str, str] | None:
    from normconf.ops.layer_norm.explain import explain

    return explain(*args, **kw)


def _review(*args: Any, **kw: Any) -> None:
    from normconf.ops.layer_norm.explain import review_pair

    return review_pair(*args, **kw)


def _affected(knob: str, case: LayerNormCase, sem: LayerNormSemantics) -> frozenset[str]:
    if knob == "affine":
        return frozenset({"y"})
    if knob == "centered":
        return frozenset({"y", "x_hat"})
    if knob in ("variance_algorithm", "stats_dtype", "compute_dtype", "arithmetic"):
        return frozenset(o.name for o in OUTPUTS)
    return frozenset({"y", "inv_std", "x_hat"})


def _fuzz_cases(max_elements: int, dtypes: tuple[str, ...]) -> Any:
    from normconf.ops.layer_norm.fuzz import case_dicts

    return case_dicts(max_elements, dtypes)


def _row_fields(case: LayerNormCase) -> dict[str, Any]:
    return dict(eps=case.eps, normalize_variance=case.normalize_variance)


def _report_params(case: LayerNormCase) -> dict[str, str]:
    p = {
        "shape": " × ".join(str(d) for d in case.shape),
        "normalized axes": f"{list(case.norm_axes)} (normalized shape {' × '.join(map(str, case.normalized_shape))})",
        "dtype": case.dtype + (f" (parameters {case.params_dtype})" if case.params_dtype != case.dtype else ""),
        "eps": f"{case.eps:g}",
        "variance": case.normalize_variance,
        "steps": str(case.steps),
    }
    if case.rms_scaling:
        p["scaling"] = "RMS: gamma·x/sqrt(mean(x²)+eps)"
    if not case.has_affine:
        p["affine"] = "none"
    elif case.affine is True:
        p["affine"] = "gamma 1" + (", beta 0" if case.has_bias else ", no beta") + " (default)"
    else:
        aff = cast("Affine", case.affine)  # has_affine and not True
        p["affine"] = f"gamma {describe_value(aff.gamma)}" + (
            f", beta {describe_value(aff.beta)}" if case.has_bias else ", no beta"
        )
    return p


SPEC = OpSpec(
    name="layer_norm",
    title="Layer normalization: per-row statistics over the normalized axes, elementwise affine",
    case_model=LayerNormCase,
    outputs=OUTPUTS,
    semantics=LayerNormSemantics,
    generate=_generate,
    reference=_reference,
    output_names=lambda case: case.output_names(),
    output_shape=_output_shape,
    explain=_explain,
    review=_review,
    explain_reads_compact=True,  # its explain and review convert what they read to float64 first
    report_params=_report_params,
    row_fields=_row_fields,
    plot_axis=lambda case: -1,  # the per-feature error profile along the last axis
    profile_knobs=PROFILE_KNOBS,
    affected=_affected,
    cross_checks=cross_checks,
    allowed_keys=allowed_keys,
    fuzz_cases=_fuzz_cases,
    docs="docs/layer_norm.md",
)
