"""The LayerNorm case model (``op: layer_norm``).

Conventions the case states (what a conforming backend computes), per *row* — the elements
that share every index outside the normalized ``axes``:

    mean = mean(x over axes),  var = mean((x − mean)²)  (biased; ``normalize_variance: unbiased``
    divides by m − 1),  y = gamma · (x − mean) / sqrt(var + eps) + beta,

with ``gamma``/``beta`` shaped like the normalized dimensions (``normalized_shape``).
``rms_scaling: true`` (Keras 3's option) asks for root-mean-square scaling instead:
``y = gamma · x / sqrt(mean(x²) + eps)``, no centering and no beta.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import Field, Strict, field_validator

from normconf.case_errors import _short_repr
from normconf.case_model import (
    Affine,
    CaseBase,
    Expectation,
    Generator,
    StrictFloat,
    _number_problem,
    common_checks,
    parameter_problems,
    tolerance_model,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from normconf.ops.layer_norm.semantics import LayerNormSemantics

#: every LayerNorm output, in stage order (the one list; normconf.ops.layer_norm.OUTPUTS describes them)
OUTPUT_NAMES = ("y", "mean", "inv_std", "x_hat")

Tolerance = tolerance_model(OUTPUT_NAMES, "layer_norm", __name__)


class LayerNormCase(CaseBase):
    """One LayerNorm test case, fully validated."""

    op: Literal["layer_norm"]
    #: the array's shape (no layout: LayerNorm has no channel axis), rank 1–5
    shape: Annotated[list[Annotated[int, Strict()]], Field(min_length=1, max_length=5)]
    #: the normalized axes (negative: from the end); default the last one.  Any set of axes; torch and
    #: ONNX express only trailing ones (the others are ``unsupported`` there)
    axes: Annotated[list[Annotated[int, Strict()]], Field(min_length=1, max_length=5)] = Field(
        default_factory=lambda: [-1]
    )
    eps: StrictFloat | Annotated[int, Strict()] = 1e-5
    normalize_variance: Literal["biased", "unbiased"] = "biased"
    #: ``true`` (gamma 1, beta 0), ``false`` (no affine parameters) or explicit values (a number, a flat
    #: list over the normalized dimensions in row-major order, or a generator)
    affine: Annotated[bool, Strict()] | Affine = True
    #: ``false``: gamma only, no beta (torch ``bias=False``, Keras ``center=False``, Flax ``use_bias=False``)
    bias: Annotated[bool, Strict()] = True
    #: root-mean-square scaling instead of centering and the variance (Keras 3's ``rms_scaling``)
    rms_scaling: Annotated[bool, Strict()] = False
    # a model class made at run time: mypy cannot use it as a type (the field is Any to it)
    tolerance: Tolerance | None = None  # type: ignore[valid-type]

    @field_validator("eps")
    @classmethod
    def _eps_positive(cls, v: float) -> float:
        if isinstance(v, int) and _number_problem(v):
            raise ValueError(
                f"must be a finite number within float64 range (got {_short_repr(v)}); eps must be a finite number > 0"
            )
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError("eps must be a finite number > 0")
        return float(v)

    # --- derived views -----------------------------------------------------------------
    @property
    def norm_axes(self) -> tuple[int, ...]:
        """The normalized axes, non-negative and sorted."""
        r = len(self.shape)
        return tuple(sorted({a % r for a in self.axes}))

    @property
    def normalized_shape(self) -> tuple[int, ...]:
        """The dimensions of the normalized axes (the shape of gamma and beta)."""
        return tuple(self.shape[a] for a in self.norm_axes)

    @property
    def trailing(self) -> bool:
        """The normalized axes are the last k (what torch's ``normalized_shape`` and ONNX's ``axis`` express)."""
        k = len(self.norm_axes)
        return self.norm_axes == tuple(range(self.rank - k, self.rank))

    @property
    def row_size(self) -> int:
        """m: the elements of one row (normalized together)."""
        return math.prod(self.normalized_shape)

    @property
    def group_shape(self) -> tuple[int, ...]:
        """The shape of ``mean``/``inv_std``: ``x``'s with the normalized axes kept as 1."""
        ax = set(self.norm_axes)
        return tuple(1 if i in ax else int(d) for i, d in enumerate(self.shape))

    @property
    def has_affine(self) -> bool:
        """gamma is applied (beta too unless ``bias: false`` or ``rms_scaling``)."""
        return self.affine is not False

    @property
    def has_bias(self) -> bool:
        return self.has_affine and self.bias and not self.rms_scaling

    @property
    def semantics(self) -> LayerNormSemantics:
        """The conventions this case asks for."""
        from normconf.ops.layer_norm.semantics import LayerNormSemantics
        from normconf.semantics import interned

        if self.rms_scaling:
            return interned(
                LayerNormSemantics,
                normalize_variance=self.normalize_variance,
                centered=False,
                scale_statistic="mean_square",
            )
        return interned(LayerNormSemantics, normalize_variance=self.normalize_variance)

    def output_names(self) -> list[str]:
        """Outputs a complete backend produces: y, and the row statistics (no mean under rms scaling)."""
        return ["y", "inv_std"] if self.rms_scaling else ["y", "mean", "inv_std"]


def cross_checks(case: LayerNormCase) -> list[tuple[tuple[Any, ...], str]]:
    """Checks that need several fields: (loc, message) pairs."""
    zero_ok = tuple(i for i in range(case.rank) if i not in case.norm_axes)
    zero_words = (
        f"only the axes that are not normalized ({', '.join(map(str, zero_ok))}) may be 0"
        if zero_ok
        else "no dimension may be 0 (every axis is normalized)"
    )
    errs = common_checks(case, zero_ok=zero_ok, zero_words=zero_words)
    r = case.rank
    seen: dict[int, int] = {}
    for i, a in enumerate(case.axes):
        if not -r <= a < r:
            errs.append((("axes", i), f"axis {a} is out of range for rank {r} (valid: {-r}..{r - 1})"))
        elif a % r in seen:
            errs.append((("axes", i), f"axis {a} repeats axis {case.axes[seen[a % r]]}"))
        else:
            seen[a % r] = i
    if any(loc[0] in ("shape", "axes") for loc, _ in errs):  # the normalized shape is unknown
        return errs
    if isinstance(case.affine, Affine):
        n = case.row_size
        shape = "×".join(str(d) for d in case.normalized_shape)
        for part in ("gamma", "beta"):
            errs.extend(
                parameter_problems(
                    ("affine", part),
                    getattr(case.affine, part),
                    n,
                    case.params_dtype,
                    f"the normalized shape {shape} ({n} values)",
                )
            )
        if case.rms_scaling and case.affine.beta != 0.0:
            errs.append(
                (("affine", "beta"), "rms_scaling has no beta (y = gamma·x/sqrt(mean(x²)+eps)): leave beta out")
            )
        if not case.bias and case.affine.beta != 0.0:
            errs.append((("affine", "beta"), "bias: false has no beta: leave beta out"))
    return errs


def allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Fields of the nested mappings, for "did you mean" hints on unknown keys."""
    if len(loc) == 1:
        return sorted(LayerNormCase.model_fields)
    top = loc[0]
    model = cast("type[BaseModel] | None", {"affine": Affine, "tolerance": Tolerance, "input": Generator}.get(top))
    if top == "affine" and len(loc) == 3:
        model = Generator
    if top == "expect" and len(loc) == 3:
        model = Expectation
    return sorted(model.model_fields) if model else []
