"""What a backend may return for a case: the output spec, and the checks against it (one place).

A backend's result is checked in its worker process (:mod:`normconf.worker`), right after the
adapter returns and before anything is sent back; a violation turns the result into an
``error`` whose message says what was wrong, and the run goes on.  The harness bounds the size
of each reply by :func:`reply_bound` before reading it (:class:`normconf.worker_handle.WorkerHandle`).

The spec of a case (:func:`output_spec`):

* names: the outputs the reference produces for the case (``references/batchnorm.py``
  ``OUTPUT_NAMES``): ``y``, ``inv_std`` and ``x_hat`` always; in train mode also ``batch_mean``,
  ``batch_var``, ``running_mean`` and ``running_var``; ``eval_y`` with ``eval_after``.  Any other
  name is an error (a ``y`` returned as ``"Y"`` is not silently ignored);
* ``y`` is required (every backend returns it); the others are optional (Keras reports no batch
  statistics, tf-nn no running statistics, eval mode has none);
* steps: one array per step (``case.steps``), ``eval_y`` one;
* shapes: ``y``, ``x_hat`` and ``eval_y`` exactly the case's ``array_shape`` (the layout of ``x``),
  the per-channel outputs ``(C,)`` — a flattened, 0-d, squeezed or transposed array is an error;
* values: a ``numpy.ndarray`` (not a list, scalar or subclass) of a real floating dtype —
  float16, bfloat16 (``ml_dtypes.bfloat16``), float32 or float64, any byte order.  Complex,
  integer, boolean, object and structured arrays are errors.  The dtype need not be the case's
  (the comparison reads any of them as float64); NaN and Inf are values, not errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from normconf.memo import by_identity
from normconf.references.batchnorm import DATA_OUTPUTS, OUTPUT_NAMES, STATISTICS  # the one output vocabulary

#: outputs every backend must return
REQUIRED_OUTPUTS = ("y",)
#: the dtypes an output may arrive in
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
#: slack on top of the outputs' bytes in the worker-side bound (notes, the pickle's framing)
RESULT_SLACK = 1 << 20
#: how many problems a message lists before "and N more"
MAX_LISTED = 4


@dataclass(frozen=True)
class OutputSpec:
    name: str
    shape: tuple[int, ...]
    steps: int
    required: bool


@by_identity()
def output_spec(case: Any) -> Mapping[str, OutputSpec]:
    """The outputs a backend may return for ``case`` (any op's validated case), by name: the names its
    op spec lists (BatchNorm: the statistics only in train mode, ``eval_y`` only with ``eval_after``),
    each with its shape (:meth:`normconf.ops.OpSpec.output_shape`) and number of steps."""
    from normconf.ops import spec_for

    spec = spec_for(case)
    if case.op == "batch_norm":
        names = ["y"]
        if case.mode == "train":
            names += list(STATISTICS)
        names += ["inv_std", "x_hat"]
        if case.mode == "train" and case.eval_after:
            names.append("eval_y")
    else:
        names = list(dict.fromkeys([*case.output_names(), *spec.stage_outputs]))
    return {
        n: OutputSpec(
            n, tuple(int(d) for d in spec.output_shape(case, n)), int(spec.output_steps(case, n)), n in REQUIRED_OUTPUTS
        )
        for n in names
    }


@by_identity()
def expected_bytes(case: Any) -> int:
    """Bytes of every output the spec allows, in float64."""
    return sum(8 * s.steps * math.prod(s.shape) for s in output_spec(case).values())


def result_bound(case: Any) -> int:
    """Largest reply (encoded frame, bytes) a worker sends for ``case``: 4 x :func:`expected_bytes` + 1 MiB."""
    return 4 * expected_bytes(case) + RESULT_SLACK


def reply_bound(case: Any) -> int:
    """Largest reply the harness reads for ``case``: the worker's bound plus 1 MiB (framing, an error text)."""
    return result_bound(case) + RESULT_SLACK


def _kind(v: Any) -> str:
    t = type(v)
    return t.__name__ if t.__module__ in ("builtins", "numpy") else f"{t.__module__}.{t.__qualname__}"


def _a(v: Any) -> str:
    k = _kind(v)
    return f"{'an' if k[:1].lower() in 'aeiou' else 'a'} {k}"


def _dtype_problem(dt: np.dtype) -> str | None:
    if dt.kind == "f" and dt.itemsize in (2, 4, 8) and dt.fields is None and dt.subdtype is None:
        return None
    if _is_bfloat16(dt):
        return None
    what = {
        "O": "an object array",
        "c": "complex",
        "b": "boolean",
        "i": "integer",
        "u": "integer",
        "U": "a string array",
        "S": "a bytes array",
        "M": "a datetime array",
        "m": "a timedelta array",
    }
    how = what.get(dt.kind, "not one of them")
    return f"dtype {dt} ({how}); expected a real floating dtype ({', '.join(FLOAT_DTYPES)})"


def _is_bfloat16(dt: np.dtype) -> bool:
    if dt.name != "bfloat16":
        return False
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes is a dependency
        return False
    return dt == np.dtype(ml_dtypes.bfloat16)


def problems(case: Any, outputs: Any) -> list[str]:
    """What is wrong with ``outputs`` (``Observed.outputs``) for ``case``; empty when it meets the spec."""
    if not isinstance(outputs, dict):
        return [f"outputs are {_a(outputs)}, not a dict of output name -> list of arrays"]
    from normconf.ops import spec_for

    spec = output_spec(case)
    data_names = spec_for(case).data_outputs
    found: list[str] = []
    for name in outputs:
        if not isinstance(name, str):
            found.append(f"output name {name!r} is {_a(name)}, not a string")
        elif name not in spec:
            allowed = ", ".join(spec)
            hint = f"; did you mean {name.lower()!r}?" if name.lower() in spec else ""
            why = ""
            if case.op == "batch_norm":
                why = (
                    " (not produced in eval mode)"
                    if name in OUTPUT_NAMES and case.mode == "eval"
                    else (" (only with eval_after)" if name == "eval_y" else "")
                )
            found.append(f"unknown output {name!r}{why}{hint} (allowed for this case: {allowed})")
    for name in REQUIRED_OUTPUTS:
        if name not in outputs:
            found.append(f"{name} missing (every backend must return {name})")
    for name, s in spec.items():
        if name not in outputs:
            continue
        steps = outputs[name]
        if not isinstance(steps, (list, tuple)):
            found.append(f"{name}: {_a(steps)}, not a list with one array per step")
            continue
        if len(steps) != s.steps:
            found.append(f"{name}: {len(steps)} steps returned but the case has {s.steps}")
            continue
        for k, a in enumerate(steps, start=1):
            p = array_problem(name, a, s.shape, data=None if case.op == "batch_norm" else name in data_names)
            if p:
                found.append(f"{name} step {k}: {p}")
    return found


def array_problem(name: str, a: Any, shape: tuple[int, ...], data: bool | None = None) -> str | None:
    """What is wrong with one step ``a`` of output ``name`` that must have ``shape``; ``None`` if nothing.
    ``data``: the output is shaped like ``x`` (default: BatchNorm's data outputs)."""
    if type(a) is not np.ndarray:
        return f"{_a(a)}, not a numpy.ndarray"
    p = _dtype_problem(a.dtype)
    if p:
        return p
    if tuple(a.shape) == tuple(shape):
        return None
    if data if data is not None else name in DATA_OUTPUTS:
        return f"shape {tuple(a.shape)} but the case's x is {tuple(shape)}"
    return f"shape {tuple(a.shape)} but a per-{'channel' if data is None else 'group'} output is {tuple(shape)}"


def message(found: list[str]) -> str:
    """The ``error`` result's text for the problems ``found`` (the first few, then a count)."""
    more = len(found) - MAX_LISTED
    text = "; ".join(found[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
    return f"backend returned invalid outputs: {text}"


def check(case: Any, outputs: Any) -> str | None:
    """``None`` when ``outputs`` meet the spec of ``case``, else the error message."""
    found = problems(case, outputs)
    return message(found) if found else None
