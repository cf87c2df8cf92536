"""The LayerNorm conventions as one value object (the knobs), like :class:`normconf.semantics.Semantics`.

Conventions (the defaults are the definition, e.g. ONNX LayerNormalization-17 computed exactly):
per row (the elements sharing every index outside the normalized axes, ``m`` of them),
``mean = Σx/m``; the *biased* variance ``Σ(x − mean)²/m`` (``unbiased``: ``/(m − 1)``); eps inside
the square root; ``y = gamma·(x − mean)·inv_std + beta`` with ``inv_std = 1/sqrt(var + eps)``.
``centered: false`` drops the mean from the numerator; ``scale_statistic: mean_square`` normalizes
by ``mean(x²)`` instead of the variance (together: RMS scaling).  The precision fields make the
reference *emulate* a working precision (for mutant backends in tests); the explainer judges
precision by error bounds, never by emulation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from normconf.semantics import _fmt


@dataclass(frozen=True)
class LayerNormSemantics:
    """One complete choice of LayerNorm conventions."""

    #: variance estimator: divide by m (biased) or m − 1 (unbiased)
    normalize_variance: Literal["biased", "unbiased"] = "biased"
    #: where eps enters: sqrt(stat + eps), sqrt(stat) + eps, or not at all
    eps_placement: Literal["inside_sqrt", "outside_sqrt", "none"] = "inside_sqrt"
    #: replaces the case's eps when not None (a documented default of another framework)
    eps_override: float | None = None
    #: True: the numerator is x − mean; False: x (RMS scaling)
    centered: bool = True
    #: the statistic under the square root: the variance, or the mean of x² (RMS scaling)
    scale_statistic: Literal["variance", "mean_square"] = "variance"
    #: which parts of the affine transform are applied
    affine: Literal["gamma_beta", "gamma_only", "beta_only", "none"] = "gamma_beta"
    #: emulation: two-pass mean((x−mean)²), or one-pass E[x²]−E[x]² (unclamped / clamped at 0)
    variance_algorithm: Literal["two_pass", "one_pass", "one_pass_clamped"] = "two_pass"
    #: emulation: precision of the statistics, and of the normalization arithmetic
    stats_dtype: Literal["float64", "float32", "input"] = "float64"
    compute_dtype: Literal["float64", "float32", "input"] = "float64"
    #: emulation: unfolded gamma·(x−mean)·inv_std+beta, or folded x·a+b (a = gamma·inv_std, b = beta − mean·a)
    arithmetic: Literal["unfolded", "folded"] = "unfolded"

    def eps_used(self, eps: float) -> float:
        return float(self.eps_override if self.eps_override is not None else eps)

    def replace(self, **changes: Any) -> "LayerNormSemantics":
        return dataclasses.replace(self, **changes)

    def differences(self, other: "LayerNormSemantics") -> dict[str, object]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }

    def label(self, base: "LayerNormSemantics | None" = None) -> str:
        """``knob=value[,knob=value]`` relative to ``base`` (default: the definition)."""
        diff = self.differences(base or LayerNormSemantics())
        return ",".join(f"{k}={_fmt(v)}" for k, v in diff.items())
