"""The output vocabulary and how each output of a case is judged: its dtype and its tolerance.

``y``, ``x_hat`` and ``eval_y`` are in the case dtype; the batch and running statistics
(and ``inv_std``) in the parameter dtype.  A case's ``tolerance`` override applies to the
outputs it names (all, by default); otherwise the dtype default of :mod:`harness.compare`.
Used by the results, the explanation engine and the profiles (one rule, one place).
"""

from __future__ import annotations

from harness.cases import Case
from harness.compare import Tolerance, default_tolerance
from references.batchnorm import (  # noqa: F401 (the output vocabulary, re-exported)
    DATA_OUTPUTS, MAIN_OUTPUTS, OUTPUT_NAMES, PER_CHANNEL_OUTPUTS, STAGE_OUTPUTS, STATISTICS)

__all__ = ["DATA_OUTPUTS", "MAIN_OUTPUTS", "OUTPUT_NAMES", "PER_CHANNEL_OUTPUTS", "RESULT_ORDER", "STAGE_OUTPUTS",
           "STATISTICS", "output_dtype", "tolerance_for"]

#: the order rows of one pair are listed in
RESULT_ORDER = MAIN_OUTPUTS + STAGE_OUTPUTS


def output_dtype(case: Case, output: str) -> str:
    """The dtype a backend returns ``output`` in."""
    return case.dtype if output in DATA_OUTPUTS else case.params_dtype


def tolerance_for(case: Case, output: str) -> Tolerance:
    """The case's override when it covers ``output``, else the default of the output's dtype."""
    t = case.tolerance
    if t is not None and (t.outputs is None or output in t.outputs):
        return Tolerance(float(t.rtol), float(t.atol), t.reason)
    return default_tolerance(output_dtype(case, output))
