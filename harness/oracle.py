"""Case + inputs → the reference's float64 outputs (the expected values).

The one place where a :class:`~harness.cases.Case` is translated into the
reference's parameters; the runner, the numpy adapter and the explanation
engine all go through :func:`reference_outputs`.
"""

from __future__ import annotations

import numpy as np

from harness.cases import Case
from harness.inputs import Inputs, np_dtype
from harness.semantics import Semantics


def reference_outputs(case: Case, inputs: Inputs, semantics: Semantics | None = None, *,
                      statistics_only: bool = False) -> dict[str, list[np.ndarray]]:
    """float64 reference outputs for ``case`` under ``semantics`` (default: the case's own).

    ``statistics_only``: only the per-channel batch and running statistics (no normalization).
    """
    from references.batchnorm import batch_norm_reference

    return batch_norm_reference(
        inputs.x,
        channel_axis=case.channel_axis,
        mode=case.mode,
        eps=case.eps,
        momentum=case.momentum_weight,
        gamma=inputs.gamma,
        beta=inputs.beta,
        running_mean=inputs.running_mean,
        running_var=inputs.running_var,
        eval_after=case.eval_after,
        semantics=semantics if semantics is not None else case.semantics,
        input_dtype=np_dtype(case.dtype),
        statistics_only=statistics_only,
    )
