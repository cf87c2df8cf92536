"""A toy op registered from tests/ alone: ``center`` (y = x − mean over the last axis), the op seam's proof.

Nothing in harness/ knows it; the registry, the case loader, the numpy backend, the comparison and
the results handle it through its :class:`normconf.ops.OpSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, Strict

from normconf.case_model import CaseBase, common_checks, tolerance_model
from normconf.inputs import draw_x
from normconf.ops import OpSpec, OutputDef


@dataclass(frozen=True)
class CenterSemantics:
    """``subtract``: the mean (the definition) or nothing."""

    subtract: Literal["mean", "nothing"] = "mean"

    def replace(self, **kw):
        return replace(self, **kw)

    def label(self, base=None) -> str:
        return "" if self == (base or CenterSemantics()) else f"subtract={self.subtract}"


class CenterCase(CaseBase):
    op: Literal["center"]
    shape: Annotated[list[Annotated[int, Strict()]], Field(min_length=1, max_length=3)]
    tolerance: tolerance_model(("y", "mean"), "center") | None = None

    @property
    def semantics(self) -> CenterSemantics:
        return CenterSemantics()

    def output_names(self) -> list[str]:
        return ["y", "mean"]


@dataclass(frozen=True)
class CenterInputs:
    x: tuple[np.ndarray, ...]

    def digest(self) -> str:
        return str(hash(tuple(a.tobytes() for a in self.x)))


def _reference(case, inputs, semantics=None, *, statistics_only=False, outputs=None):
    sem = semantics or case.semantics
    out = {"y": [], "mean": []}
    for x in inputs.x:
        m = np.asarray(x, np.float64).mean(axis=-1, keepdims=True)
        out["mean"].append(m)
        out["y"].append(np.asarray(x, np.float64) - (m if sem.subtract == "mean" else 0.0))
    return out


SPEC = OpSpec(
    name="center",
    title="Centering: x minus its mean over the last axis",
    case_model=CenterCase,
    outputs=(
        OutputDef("y", "element", "data", "main", "x − mean"),
        OutputDef("mean", "group", "param", "main", "the mean over the last axis"),
    ),
    semantics=CenterSemantics,
    generate=lambda case: CenterInputs(draw_x(case)),
    reference=_reference,
    output_names=lambda case: case.output_names(),
    output_shape=lambda case, name: tuple(case.shape[:-1]) + (1,) if name == "mean" else tuple(case.shape),
    cross_checks=lambda case: common_checks(case),
)
