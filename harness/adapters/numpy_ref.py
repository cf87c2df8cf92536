"""``numpy``: the reference itself, run through the adapter path (must always pass).

It computes in float64 with the case's own conventions and rounds each output to
the dtype a framework would return (``y`` in the case dtype, statistics in the
parameter dtype), so it exercises the comparison exactly like a real backend.
"""

from __future__ import annotations

import numpy as np

from harness.adapters.base import Adapter, Observed
from harness.cases import Case
from harness.inputs import Inputs, np_dtype
from harness.oracle import reference_outputs


class NumpyReference(Adapter):
    id = "numpy"
    framework = "numpy"
    worker = "numpy"
    description = "the NumPy float64 reference through the adapter path"

    def version(self) -> str:
        return np.__version__

    def run(self, case: Case, inputs: Inputs) -> Observed:
        ref = reference_outputs(case, inputs)
        out_dt = np_dtype(case.dtype)
        par_dt = np_dtype(case.params_dtype)
        outputs = {}
        for name in case.output_names():
            dt = out_dt if name in ("y", "eval_y") else par_dt
            with np.errstate(over="ignore", invalid="ignore"):
                outputs[name] = [a.astype(dt) for a in ref[name]]
        # intermediate stages for per-stage localization
        for name in ("inv_std", "x_hat"):
            outputs[name] = [a.astype(np.float64) for a in ref[name]]
        return Observed(outputs)


ADAPTERS = [NumpyReference]
