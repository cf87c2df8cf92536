"""The output vocabulary and how each output of a case is judged: its dtype and its tolerance.

``y``, ``x_hat`` and ``eval_y`` are in the case dtype; the batch and running statistics
(and ``inv_std``) in the parameter dtype.  A case's ``tolerance`` override applies to the
outputs it names (all, by default); otherwise the dtype default of :mod:`normconf.compare`.
Used by the results, the explanation engine and the profiles (one rule, one place).
"""

from __future__ import annotations

from normconf.cases import Case
from normconf.compare import Tolerance, default_tolerance
from normconf.references.batchnorm import (  # noqa: F401 (the output vocabulary, re-exported)
    DATA_OUTPUTS,
    MAIN_OUTPUTS,
    OUTPUT_NAMES,
    PER_CHANNEL_OUTPUTS,
    STAGE_OUTPUTS,
    STATISTICS,
)

__all__ = [
    "DATA_OUTPUTS",
    "MAIN_OUTPUTS",
    "OUTPUT_NAMES",
    "PER_CHANNEL_OUTPUTS",
    "RESULT_ORDER",
    "STAGE_OUTPUTS",
    "STATISTICS",
    "data_outputs",
    "output_dtype",
    "tolerance_for",
]

#: the order rows of one BatchNorm pair are listed in (any op: ``OpSpec.result_order``)
RESULT_ORDER = MAIN_OUTPUTS + STAGE_OUTPUTS


def output_dtype(case: Case, output: str) -> str:
    """The dtype a backend returns ``output`` in (the case's op spec decides)."""
    from normconf.ops import spec_for

    return spec_for(case).output_dtype(case, output)


def data_outputs(case: Case) -> tuple[str, ...]:
    """The case's op's outputs shaped like ``x`` (in the case dtype)."""
    from normconf.ops import spec_for

    return spec_for(case).data_outputs


def tolerance_for(case: Case, output: str) -> Tolerance:
    """The case's override when it covers ``output``, else the default of the output's dtype."""
    t = case.tolerance
    if t is not None and (t.outputs is None or output in t.outputs):
        return Tolerance(float(t.rtol), float(t.atol), t.reason)
    return default_tolerance(output_dtype(case, output))
