"""Mutant backends with planted faults, for testing ``normconf fuzz`` (loaded with --adapter).

Each mutant is the NumPy reference (float64, the case's own conventions, outputs rounded to the
case dtypes like the ``numpy`` backend) with one deliberate fault that no convention explains.
The worker process imports this module as ``tests.fuzz_mutants`` (the runner puts the current
directory on the worker's PYTHONPATH), so run from the repository root.
"""

from __future__ import annotations

import numpy as np

from harness.adapters.base import Adapter, Observed
from harness.cases import Case
from harness.inputs import Inputs, np_dtype
from harness.oracle import reference_outputs


class _ReferenceMutant(Adapter):
    framework = "numpy"
    worker = "fuzz-mutants"

    def version(self) -> str:
        return "mutant-1"

    def mutate(self, case: Case, outputs: dict[str, list[np.ndarray]]) -> None:  # pragma: no cover
        raise NotImplementedError

    def run(self, case: Case, inputs: Inputs) -> Observed:
        ref = reference_outputs(case, inputs)
        outputs: dict[str, list[np.ndarray]] = {}
        for name in case.output_names():
            outputs[name] = [a.copy() for a in ref[name]]
        self.mutate(case, outputs)
        out_dt, par_dt = np_dtype(case.dtype), np_dtype(case.params_dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            return Observed(
                {n: [a.astype(out_dt if n in ("y", "eval_y") else par_dt) for a in v] for n, v in outputs.items()}
            )


class ThirdChannelShift(_ReferenceMutant):
    """Planted fault: with 3 or more channels, y of the third channel (index 2) is shifted by +0.5.

    The smallest case that shows it: rank 2, N = 1, C = 3 (3 elements).  Nothing else differs,
    so every case with fewer than 3 channels passes.
    """

    id = "mutant-third-channel"
    description = "reference with y[:, 2] += 0.5 when C >= 3 (planted fault)"

    def mutate(self, case: Case, outputs: dict[str, list[np.ndarray]]) -> None:
        if case.channels < 3:
            return
        ax = case.channel_axis % case.rank
        for y in outputs["y"]:
            idx = [slice(None)] * y.ndim
            idx[ax] = 2
            y[tuple(idx)] += 0.5


class HalfMomentumLongRun(_ReferenceMutant):
    """Planted fault: from the third training step on, running_mean is reported halved.

    Needs steps >= 3 in train mode: the smallest case is rank 2, (1, 1), 3 steps.
    """

    id = "mutant-step3"
    description = "reference whose running_mean is halved from step 3 on (planted fault)"

    def mutate(self, case: Case, outputs: dict[str, list[np.ndarray]]) -> None:
        if case.mode != "train":
            return
        for k, rm in enumerate(outputs["running_mean"], start=1):
            if k >= 3:
                rm *= 0.5


MUTANTS = [ThirdChannelShift, HalfMomentumLongRun]
