"""``numpy``: the reference itself, run through the adapter path (must always pass).

It computes in float64 with the case's own conventions and rounds each output to
the dtype a framework would return (``y`` in the case dtype, statistics in the
parameter dtype), so it exercises the comparison exactly like a real backend.
"""

from __future__ import annotations

import numpy as np

from normconf.adapters.base import Adapter, Observed
from normconf.cases import Case
from normconf.inputs import Inputs, np_dtype
from normconf.oracle import reference_outputs


class NumpyReference(Adapter):
    id = "numpy"
    framework = "numpy"
    worker = "numpy"
    cpu_estimate = (0.5, 1.0)
    description = "the NumPy float64 reference through the adapter path"
    ops = ("*",)
    ranks = (1, 2, 3, 4, 5)

    def version(self) -> str:
        return np.__version__

    def run(self, case: Case, inputs: Inputs) -> Observed:
        """Any op (``ops = ("*",)``): the reference's outputs rounded to the op spec's output dtypes; the intermediate
        stages in float64 (for per-stage localization)."""
        from normconf.ops import spec_for

        spec = spec_for(case)
        ref = reference_outputs(case, inputs)
        outputs = {}
        for name in case.output_names():
            dt = np_dtype(spec.output_dtype(case, name))
            with np.errstate(over="ignore", invalid="ignore"):
                outputs[name] = [a.astype(dt) for a in ref[name]]
        for name in spec.stage_outputs:
            if name in ref and name not in outputs:
                outputs[name] = [a.astype(np.float64) for a in ref[name]]
        return Observed(outputs)


ADAPTERS = [NumpyReference]
