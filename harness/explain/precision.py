"""Precision models: one hypothesis each of where a backend computed the statistics and the
normalization, and how (working dtype, one- or two-pass variance, folded arithmetic), with the
unit roundoffs and the summation error factor the bounds (:mod:`normconf.explain.bounds`) use.

References: N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed. (SIAM 2002),
§4.2 (summation, γ_n); N. J. Higham and T. Mary, "A new approach to probabilistic rounding error
analysis", SIAM J. Sci. Comput. 41 (2019) (the λ·√n·u factor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: probabilistic summation bound multiplier λ (Higham & Mary 2019); λ = 5 fails with probability
#: below 2·exp(−12.5)·n ≈ 7e−6·n per sum under their model of independent rounding errors
LAMBDA = 5.0

#: the shape check's allowance (BatchNorm: :mod:`normconf.explain.channel_shape`; LayerNorm:
#: ``normconf.ops.layer_norm.bounds``), in units of the rounding-only bound + tolerance.  A
#: least-squares fit is not the minimax fit (its residual can exceed the best achievable one), and a
#: threshold at the rounding level would let the verdict depend on the backend's summation order,
#: i.e. on the machine; a statistics error of another grouping (wrong axes, another sample's or row's
#: statistics) leaves residuals of the size of the error itself, orders of magnitude above this.
SHAPE_MARGIN = 4.0

#: unit roundoff of each working dtype (half the distance from 1 to the next number)
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
#: smallest subnormal of each dtype (the absolute floor of one rounding)
_TINY = {"float64": 5e-324, "float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}
#: largest finite value of each dtype
_MAX = {
    "float64": 1.7976931348623157e308,
    "float32": 3.4028234663852886e38,
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
}


@dataclass(frozen=True)
class Model:
    """One precision hypothesis: where the statistics and the normalization are computed, and how."""

    stats: str  # working dtype of the sums, mean and variance
    compute: str  # working dtype of the normalization arithmetic
    variance: str  # "two_pass" | "one_pass"
    arithmetic: str  # "unfolded" | "folded" (x·a + b, with or without a fused multiply-add)

    def label(self) -> str:
        parts = [f"precision={self.compute}"]
        if self.stats != self.compute:
            parts.append(f"stats_precision={self.stats}")
        if self.variance != "two_pass":
            parts.append(f"variance={self.variance}")
        if self.arithmetic != "unfolded":
            parts.append(f"arithmetic={self.arithmetic}")
        return ",".join(parts)

    def describe(self, statistic: bool = False) -> str:
        """In words; ``statistic``: for a batch or running statistic (no normalization arithmetic)."""
        where = (
            f"{self.compute} arithmetic"
            if self.stats == self.compute
            else f"statistics in {self.stats}, normalization in {self.compute}"
        )
        var = {"two_pass": "a two-pass variance (or Welford's)", "one_pass": "a one-pass variance E[x²]−E[x]²"}[
            self.variance
        ]
        if statistic:
            return f"{where}, {var}"
        ar = {
            "unfolded": "unfolded affine γ·(x−μ)·inv_std+β",
            "folded": "folded affine x·a+b (with or without a fused multiply-add)",
        }[self.arithmetic]
        return f"{where}, {var}, {ar}"


def models_for(dtype: str) -> list[Model]:
    """The precision hypotheses for a case of ``dtype``, cheapest (closest to the reference) first."""
    if dtype == "float64":
        precisions = [("float64", "float64"), ("float32", "float32")]
    elif dtype == "float32":
        precisions = [("float32", "float32")]
    else:  # float16 / bfloat16: float32 throughout, float32 statistics with half arithmetic, all half
        precisions = [("float32", "float32"), ("float32", dtype), (dtype, dtype)]
    out = []
    for stats, compute in precisions:
        for var in ("two_pass", "one_pass"):
            for ar in ("unfolded", "folded"):
                out.append(Model(stats, compute, var, ar))
    return out


def coarser(a: str, b: str) -> bool:
    """``a`` has fewer significand bits than ``b``."""
    return UNIT_ROUNDOFF[a] > UNIT_ROUNDOFF[b]


#: above this (n − 1)·u the probabilistic factor is not used (see :func:`sum_factor`)
STAGNATION_NU = 0.5


def sum_factor(n: int, u: float) -> float:
    """g(n): the relative error factor of a sum of ``n`` terms in unit roundoff ``u`` (any order).

    ``min(γ_{n−1}, λ·√(n−1)·u·(1 + (n−1)u))`` while ``(n − 1)·u`` < :data:`STAGNATION_NU`.  Beyond
    it a recursive sum can *stagnate* (a running total large enough that each new term is below half
    its spacing: bfloat16 from ~256 terms, float16 from ~2048): its rounding errors then all have one
    sign, which Higham & Mary's model of independent errors excludes, so only the rigorous factor
    ``(1 + u)^(n−1) − 1`` of recursive summation (Higham §4.2, before its γ simplification) holds."""
    if n <= 1:
        return 0.0
    nu = (n - 1) * u
    if nu >= STAGNATION_NU:
        return math.expm1((n - 1) * math.log1p(u))
    return min(nu / (1 - nu), LAMBDA * math.sqrt(n - 1) * u * (1 + nu))
