"""Case + inputs → the reference's float64 outputs (the expected values).

The one place where a :class:`~normconf.cases.Case` is translated into the
reference's parameters; the runner, the numpy adapter and the explanation
engine all go through :func:`reference_outputs`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from normconf.cases import Case
from normconf.inputs import Inputs, np_dtype
from normconf.outputs import output_dtype


def reference_outputs(
    case: Case,
    inputs: Inputs,
    semantics: Any = None,
    *,
    statistics_only: bool = False,
    outputs: frozenset[str] | None = None,
) -> dict[str, list[np.ndarray]]:
    """float64 reference outputs for ``case`` under ``semantics`` (default: the case's own), by the
    case's op (:func:`normconf.ops.spec_for`).

    ``statistics_only``: only the statistics (no normalization), where the op has such a path.
    ``outputs``: the outputs needed (None: all); others may be left out (a stage output such as
    ``x_hat`` is then never materialized), those named are always there when the op has them.
    """
    from normconf.ops import spec_for

    return spec_for(case).reference(case, inputs, semantics, statistics_only=statistics_only, outputs=outputs)


def round_to_output_dtypes(
    case: Case, outputs: dict[str, list[np.ndarray]], *, compact: bool = False
) -> dict[str, list[np.ndarray]]:
    """Each output rounded to the dtype a backend returns it in, held as float64 (``compact``: as
    float32 where that dtype is float32, float16 or bfloat16, whose numbers float32 holds exactly;
    the same values in half the bytes, for :func:`normconf.compare.compare`, which reads either).

    The expected value of a backend's output is the correctly rounded float64 result
    (IEEE round-to-nearest-even: ``inf`` where it overflows the dtype, subnormal or 0 where
    it underflows), so a backend that computes exactly and rounds once agrees with it bit
    for bit.  Each output's dtype is its op spec's rule (:meth:`normconf.ops.OpSpec.output_dtype`:
    element outputs such as ``y`` in the case dtype, the statistics in the parameter dtype).
    """
    out: dict[str, list[np.ndarray]] = {}
    for name, steps in outputs.items():
        dt = np_dtype(output_dtype(case, name))
        if dt == np.float64:
            out[name] = steps
            continue
        held = np.float32 if compact else np.float64
        with np.errstate(over="ignore", invalid="ignore"):
            out[name] = [np.asarray(a, np.float64).astype(dt).astype(held, copy=False) for a in steps]
    return out


def expected_outputs(
    case: Case, inputs: Inputs, outputs: frozenset[str] | None = None, *, compact: bool = False
) -> dict[str, list[np.ndarray]]:
    """The expected values: :func:`reference_outputs` (of ``outputs``, None: all) rounded to the
    output dtypes (``compact``: see :func:`round_to_output_dtypes`; by the op's ``compact_expected``
    where it has one, the same values without a full-size float64 intermediate)."""
    if compact:
        from normconf.ops import spec_for

        direct = spec_for(case).compact_expected
        if direct is not None:
            return direct(case, inputs, outputs)
    return round_to_output_dtypes(case, reference_outputs(case, inputs, outputs=outputs), compact=compact)


def as_float64(steps: list[np.ndarray]) -> list[np.ndarray]:
    """Expected values held compactly, as float64 (exact; float64 arrays are returned as they are)."""
    return [np.asarray(a, np.float64) for a in steps]
