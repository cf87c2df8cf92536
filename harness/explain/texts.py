"""The sentences of an explanation: a precision verdict, a convention with its residual
(``best`` and ``others`` are :class:`normconf.explain.search.Candidate`)."""

from __future__ import annotations

from typing import Any

from normconf.explain import bounds as bd
from normconf.explain.catalog import describe_change, docs_for
from normconf.references.batchnorm import STATISTICS as STATS
from normconf.semantics import Semantics


def _precision_text(case, v: "bd.Verdict", plain_max_abs: float, output: str, around: str = "") -> str:
    kappa = v.kappa
    where = f" around {around}" if around else ""
    statistic = output in STATS
    text = (
        f"consistent with {v.model.describe(statistic)}{where}: the largest error {v.max_err:.3g} is {v.fraction:.2g}× "
        f"its allowance (derived forward-error bound {v.bound_at_worst:.3g} + tolerance) at {list(v.worst_index)}"
    )
    if v.vacuous:
        text += "; the bound is unbounded in some channel (the variance can lose every digit there)"
    if v.overflowed:
        text += (
            f"; {v.overflowed} element(s) are what an overflowed sum gives (a {v.model.stats} sum of these "
            "inputs may leave the dtype's range in some summation order: ±inf/NaN, or β where inv_std = 1/√inf = 0)"
        )
    if kappa is not None:
        text += f"; condition number of the variance κ = √(E[x²]/var) = {kappa:.3g}"
    text += (
        f"; not within tolerance of the float64 reference (error {plain_max_abs:.3g}): a precision effect, "
        "not a convention [bounds: Higham, Accuracy and Stability of Numerical Algorithms §4; "
        "Chan, Golub & LeVeque 1983; docs/explain.md]"
    )
    return text


def _fmt_tol(tol) -> str:
    return f"tolerance atol {tol.atol:g} + rtol {tol.rtol:g}·|expected|"


def _explained_text(case, base: Semantics, best: Any, others: list[Any], output: str, tol, plain_max_abs: float) -> str:
    text = describe_change(case, base, best.semantics, output)
    if best.note:
        text += f" ({best.note})"
    text += (
        f"; residual after this correction {best.max_abs:.2g} (max {best.score:.2g}× the {_fmt_tol(tol)}), "
        f"error without it {plain_max_abs:.3g}"
    )
    if best.equivalents:
        text += f"; indistinguishable on this output from {', '.join(best.equivalents)}"
    if others:
        text += "; also consistent: " + ", ".join(f"{c.label} (residual {c.max_abs:.2g})" for c in others[:3])
    docs = docs_for(base, best.semantics)
    if docs:
        text += f". {docs}"
    return text
