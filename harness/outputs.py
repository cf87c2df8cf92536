"""How each output of a case is judged: the dtype it is returned in and its tolerance.

``y``, ``x_hat`` and ``eval_y`` are in the case dtype; the batch and running statistics
(and ``inv_std``) in the parameter dtype.  A case's ``tolerance`` override applies to the
outputs it names (all, by default); otherwise the dtype default of :mod:`harness.compare`.
Used by the results, the explanation engine and the profiles (one rule, one place).
"""

from __future__ import annotations

from harness.cases import Case
from harness.compare import Tolerance, default_tolerance

#: outputs shaped like ``x`` (returned in the case dtype)
DATA_OUTPUTS = ("y", "x_hat", "eval_y")


def output_dtype(case: Case, output: str) -> str:
    """The dtype a backend returns ``output`` in."""
    return case.dtype if output in DATA_OUTPUTS else case.params_dtype


def tolerance_for(case: Case, output: str) -> Tolerance:
    """The case's override when it covers ``output``, else the default of the output's dtype."""
    t = case.tolerance
    if t is not None and (t.outputs is None or output in t.outputs):
        return Tolerance(float(t.rtol), float(t.atol), t.reason)
    return default_tolerance(output_dtype(case, output))
