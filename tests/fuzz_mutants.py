"""Mutant backends with planted faults, for testing ``normconf fuzz`` (loaded with --adapter).

Each mutant is the NumPy reference (float64, the case's own conventions, outputs rounded to the
op spec's output dtypes like the ``numpy`` backend) with one deliberate fault.  The BatchNorm
mutants and the first two LayerNorm ones plant faults no convention explains (findings); the
third LayerNorm one follows a documented convention the case did not ask for (explained, so
never a finding).  The worker process imports this module as ``tests.fuzz_mutants`` (the runner
puts the current directory on the worker's PYTHONPATH), so run from the repository root.
"""

from __future__ import annotations

import numpy as np

from normconf.adapters.base import Adapter, Observed
from normconf.cases import Case
from normconf.inputs import Inputs, np_dtype
from normconf.oracle import reference_outputs
from normconf.outputs import output_dtype


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
        with np.errstate(over="ignore", invalid="ignore"):
            return Observed({n: [a.astype(np_dtype(output_dtype(case, n))) for a in v] for n, v in outputs.items()})


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


class _LayerNormMutant(_ReferenceMutant):
    ops = ("layer_norm",)
    ranks = (1, 2, 3, 4, 5)

    def run_layer_norm(self, case, inputs) -> Observed:
        return self.run(case, inputs)

    def mutate(self, case, outputs: dict[str, list[np.ndarray]]) -> None:
        return None  # the reference as it is (cases the fault does not touch)


class LastFeatureShift(_LayerNormMutant):
    """Planted fault: in rows of 3 or more elements, y of each row's last element is shifted by +0.5.

    The last element: every normalized axis at its last index.  The smallest case that shows it:
    rank 1, shape (3,) (one row of 3).
    """

    id = "mutant-ln-last-feature"
    description = "LayerNorm reference with y[..., -1] += 0.5 in rows of m >= 3 (planted fault)"

    def mutate(self, case, outputs: dict[str, list[np.ndarray]]) -> None:
        if case.row_size < 3:
            return
        idx = tuple(-1 if i in case.norm_axes else slice(None) for i in range(case.rank))
        for y in outputs["y"]:
            y[idx] += 0.5


class TrailingAxesOnly(_LayerNormMutant):
    """Planted fault: normalizes over the trailing k axes whatever ``axes`` says (k = how many are
    normalized), as if ``axes`` were torch's ``normalized_shape``; gamma/beta still go on the right axes.

    Only non-trailing axes show it; the smallest case has 2 elements and rank 2 (one axis of 2
    normalized, the trailing one of 1, or the other way round).
    """

    id = "mutant-ln-trailing-only"
    description = "LayerNorm reference whose statistics are over the trailing axes (planted fault)"

    def run(self, case, inputs) -> Observed:
        if case.trailing:
            return super().run(case, inputs)
        from normconf.references.layer_norm import layer_norm_reference

        k = len(case.norm_axes)
        wrong = layer_norm_reference(
            inputs.x,
            axes=tuple(range(case.rank - k, case.rank)),
            eps=case.eps,
            gamma=None,
            beta=None,
            semantics=case.semantics,
            input_dtype=np_dtype(case.dtype),
        )
        ref = reference_outputs(case, inputs)
        shape = [d if i in case.norm_axes else 1 for i, d in enumerate(case.shape)]
        g = 1.0 if inputs.gamma is None else inputs.gamma.astype(np.float64).reshape(shape)
        b = 0.0 if inputs.beta is None else inputs.beta.astype(np.float64).reshape(shape)
        outputs = {n: list(ref[n]) for n in case.output_names()}
        outputs["y"] = [xh * g + b for xh in wrong["x_hat"]]
        with np.errstate(over="ignore", invalid="ignore"):
            return Observed({n: [a.astype(np_dtype(output_dtype(case, n))) for a in v] for n, v in outputs.items()})


class UnbiasedVariance(_LayerNormMutant):
    """A documented convention, not a fault: the unbiased variance (m − 1) where the case asks for the
    biased one.  The explainer's catalog names it (``normalize_variance=unbiased``), so the fuzzer
    counts it among the explained discrepancies and never reports it as a finding."""

    id = "mutant-ln-unbiased"
    description = "LayerNorm reference with the unbiased variance (a documented convention)"

    def run(self, case, inputs) -> Observed:
        if case.rms_scaling or case.normalize_variance == "unbiased":
            return super().run(case, inputs)
        sem = case.semantics.replace(normalize_variance="unbiased")
        ref = reference_outputs(case, inputs, sem)
        with np.errstate(over="ignore", invalid="ignore"):
            return Observed(
                {n: [a.astype(np_dtype(output_dtype(case, n))) for a in ref[n]] for n in case.output_names()}
            )


MUTANTS = [ThirdChannelShift, HalfMomentumLongRun, LastFeatureShift, TrailingAxesOnly, UnbiasedVariance]
