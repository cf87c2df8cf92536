"""The adapter interface: how a backend plugs into normconf.

An adapter *translates* a :class:`~normconf.cases.Case` into its framework's
arguments (momentum direction, eps, axis/layout, initial running statistics),
runs the framework on the shared :class:`~normconf.inputs.Inputs` and returns
what the framework produced.  It never corrects results.

Contract:

* ``id``: stable backend id (``torch``, ``ort-init``, ...), unique.
* ``framework``: the distribution it needs (shown in ``normconf backends``).
* ``worker``: name of the worker-process group it runs in.  Adapters of one
  group share a process (and its imports); different groups never share one,
  so frameworks that fight each other stay apart.  ``worker_env`` is applied
  to that process before anything is imported (e.g. ``KERAS_BACKEND``): the
  group's adapters' variables joined, so adapters of one group must not depend
  on each other's; two that set one variable differently run in two processes
  (:func:`normconf.worker_env.worker_groups`).
* ``available()``: ``None`` when usable, else the reason (e.g. "install torch").
  Must import lazily: importing an adapter module never imports its framework.
* ``version()``: the framework's version string.
* ``unsupported(case)``: ``None`` or the reason this case cannot be expressed
  (declared capabilities: dtypes, layouts, modes, ranks, ...).
* ``conventions``: the backend's convention profile (:class:`normconf.profiles.Convention`
  entries, each with a reason and evidence): the expected outcome of every case is derived
  from it.
* ``ops``: the ops it implements (:mod:`normconf.ops`; default BatchNorm only, ``("*",)``: every
  registered op, all through ``run``).  A case of another op is ``unsupported`` without running anything.
* ``run(case, inputs)``: BatchNorm; ``run_<op>(case, inputs)`` (``run_layer_norm``) for the
  other ops — one function per op.  Each returns an :class:`Observed` with one list per
  output (one array per step), in the case's layout; raise :class:`Unsupported` when the
  framework itself refuses (decided by trying, message kept).  The worker calls
  :meth:`Adapter.run_case`, which picks the function by the case's op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from normconf.cases import Case
from normconf.inputs import Inputs


class Unsupported(Exception):
    """The backend cannot express this case; the message says why."""


@dataclass
class Observed:
    """What a backend produced: ``outputs[name]`` is a list with one array per step.

    ``notes`` are shown with the results (e.g. "transposed NHWC→NCHW").
    """

    outputs: dict[str, list[np.ndarray]]
    notes: list[str] = field(default_factory=list)


class Adapter:
    """Base class; subclasses set the class attributes and implement ``run``."""

    id: ClassVar[str] = ""
    framework: ClassVar[str] = ""
    worker: ClassVar[str] = "default"
    worker_env: ClassVar[dict[str, str]] = {}
    #: estimated CPU cost: (seconds its worker group takes to start: imports, first programs;
    #: milliseconds per case), measured on a 2-core x86-64 machine (docs/performance.md).  Only the
    #: scheduler reads it (costliest work first, so that a run does not end on one core); a wrong
    #: estimate costs wall time, never a result
    cpu_estimate: ClassVar[tuple[float, float]] = (1.0, 5.0)
    description: ClassVar[str] = ""
    #: declared capabilities; checked by the default :meth:`unsupported`
    dtypes: ClassVar[tuple[str, ...]] = ("float16", "bfloat16", "float32", "float64")
    layouts: ClassVar[tuple[str, ...]] = ("channels_first", "channels_last")
    modes: ClassVar[tuple[str, ...]] = ("train", "eval")
    ranks: ClassVar[tuple[int, ...]] = (2, 3, 4, 5)
    #: the conventions this backend always follows, whatever the case asks, each with its evidence
    #: (:mod:`normconf.profiles`); empty: it follows the case's conventions
    conventions: ClassVar[tuple] = ()
    #: the ops this backend implements (``("*",)``: every registered op)
    ops: ClassVar[tuple[str, ...]] = ("batch_norm",)
    #: the dtypes per op where they differ from ``dtypes`` ({op: dtypes})
    op_dtypes: ClassVar[dict[str, tuple[str, ...]]] = {}

    def supports(self, op: str) -> bool:
        return "*" in self.ops or op in self.ops

    def available(self) -> str | None:
        return None

    def version(self) -> str:
        return ""

    def unsupported(self, case: Case) -> str | None:
        op = getattr(case, "op", "batch_norm")
        if not self.supports(op):
            return f"op {op} not implemented by {self.id} (implements {', '.join(self.ops)})"
        dtypes = self.op_dtypes.get(op, self.dtypes)
        if case.dtype not in dtypes:
            return f"dtype {case.dtype} not supported by {self.id} (supports {', '.join(dtypes)})"
        if op != "batch_norm":
            return None
        if case.layout not in self.layouts:
            return f"layout {case.layout} not supported by {self.id}"
        if case.mode not in self.modes:
            return f"mode {case.mode} not supported by {self.id}"
        if case.rank not in self.ranks:
            return f"rank {case.rank} not supported by {self.id} (supports ranks {self.ranks})"
        return None

    def run(self, case: Case, inputs: Inputs) -> Observed:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_case(self, case, inputs) -> Observed:
        """Run any op's case: :meth:`run` for BatchNorm, ``run_<op>`` for the others."""
        op = getattr(case, "op", "batch_norm")
        if op == "batch_norm":
            return self.run(case, inputs)
        fn = getattr(self, f"run_{op}", None)
        if fn is None and "*" in self.ops:  # an every-op adapter: run() takes any op's case
            fn = self.run
        if fn is None:
            raise Unsupported(f"op {op} not implemented by {self.id} (it has no run_{op})")
        return fn(case, inputs)


def module_version(module_name: str) -> str:
    """``__version__`` of an importable module, or "" (imports it)."""
    import importlib

    try:
        return str(getattr(importlib.import_module(module_name), "__version__", ""))
    except Exception:
        return ""


def missing(module_name: str, install_hint: str) -> str | None:
    """``None`` if ``module_name`` can be found without importing it, else a reason."""
    import importlib.util

    if importlib.util.find_spec(module_name) is None:
        return f"{module_name} is not installed: {install_hint}"
    return None
