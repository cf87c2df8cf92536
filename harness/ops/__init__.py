"""The op registry: an op (``batch_norm``, ``layer_norm``, ...) is the unit of extension.

Everything op-specific lives behind one :class:`OpSpec`: the case model (the ``op:`` field of a
case selects it), the knobs (a frozen dataclass of conventions), the float64 reference, the input
generator, the output spec (:class:`OutputDef`: the one list of the op's output names), the
explainer and the report's parameter columns.  The runner, the comparison, the results, the
report, the pytest plugin and the profiles read the spec and never name an op.

Built-in ops live in ``harness/ops/<op>/`` and are registered on first use; a plug-in op
calls :func:`register` (in-process) or is named by a ``normconf.ops`` entry point
(``module:SPEC``), which every process (harness and workers) loads.  docs/ops.md ("Adding an
op") lists the files an op touches.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeAlias, cast

if TYPE_CHECKING:  # numpy only for the annotations (the registry imports nothing heavy)
    import numpy as np
    import numpy.typing as npt

    #: what a reference returns: {output: [float64 array per step]}
    ReferenceOutputs: TypeAlias = dict[str, list[npt.NDArray[np.float64]]]

__all__ = ["OpSpec", "OutputDef", "UnknownOp", "all_ops", "get", "names", "register", "spec_for"]

#: the built-in ops and the modules that define their ``SPEC``
BUILTIN = {"batch_norm": "normconf.ops.batch_norm", "layer_norm": "normconf.ops.layer_norm"}


class UnknownOp(KeyError):
    """No op of that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown op"


@dataclass(frozen=True)
class OutputDef:
    """One output of an op.

    ``per``: ``element`` (shaped like ``x``) or ``group`` (one value per reduction group: per
    channel for BatchNorm, per normalized row for LayerNorm); ``dtype``: ``data`` (the case
    dtype) or ``param`` (the parameter dtype); ``stage``: ``main`` (what a complete backend
    reports, in this order) or ``stage`` (an intermediate, for per-stage localization).
    """

    name: str
    per: Literal["element", "group"]
    dtype: Literal["data", "param"]
    stage: Literal["main", "stage"]
    meaning: str


def _no_explainer(*_a: Any, **_k: Any) -> None:
    return None


def _no_review(*_a: Any, **_k: Any) -> None:
    return None


def _NO_STATISTICS(case: Any) -> frozenset[str]:  # noqa: N802 - a sentinel: replaced by the group outputs
    return frozenset()


@dataclass(frozen=True)
class OpSpec:
    """Everything the op-agnostic machinery needs to know about one op.

    Callables take the op's validated case (an instance of ``case_model``) and its inputs
    (what ``generate`` returns: an object with ``x``, a tuple of one array per step, and
    ``digest()``).
    """

    name: str
    #: one line for ``normconf backends`` and the docs
    title: str
    #: the pydantic model of one case (its ``op`` field is ``Literal[name]``)
    case_model: type
    #: every output, main outputs first in result order, then the stages
    outputs: tuple[OutputDef, ...]
    #: the op's conventions: a frozen dataclass whose default instance is the op's definition
    semantics: type
    #: case → inputs (deterministic: the same bits on every machine)
    generate: Callable[[Any], Any]
    #: (case, inputs, semantics=None, *, statistics_only=False, outputs=None) → {output: [array per step]},
    #: float64; ``outputs``: the names the caller needs (None: all), the op may leave out the others
    reference: Callable[..., ReferenceOutputs]
    #: case → the outputs a complete backend produces for it
    output_names: Callable[[Any], list[str]]
    #: (case, output) → the shape of that output at one step
    output_shape: Callable[[Any, str], tuple[int, ...]]
    #: steps an output has (eval_y: 1)
    output_steps: Callable[[Any, str], int] = lambda case, name: int(case.steps)
    #: optional (case, inputs, outputs=None, semantics=None) → the expected values held compactly, exactly
    #: ``normconf.oracle.round_to_output_dtypes(case, reference(case, inputs, semantics, outputs=outputs),
    #: compact=True)`` but computed without a full-size float64 intermediate (BatchNorm: y rounded a block
    #: at a time); ``None``: the oracle rounds the reference's outputs
    compact_expected: Callable[..., ReferenceOutputs] | None = None
    #: case → the outputs the reference's ``statistics_only`` path computes (no normalization pass per step: what
    #: the explanation cache asks of it for those outputs; an output outside the per-group ones is computed only
    #: when ``outputs`` names it, e.g. BatchNorm's ``eval_y``); default: the per-group outputs
    statistics_outputs: Callable[[Any], frozenset[str]] = _NO_STATISTICS
    #: optional (case, inputs, semantics, output, statistics) → one array-like per step of ``output`` under
    #: ``semantics`` that computes the elements a reader asks for (``statistics(case, inputs, semantics)``:
    #: the cached statistics-only reference), bit for bit what ``compact_expected`` gives, or None where it
    #: does not apply: how the explanation search scores an alternative of a case too large to keep its
    #: float64 outputs without one whole array (BatchNorm's ``y``: normconf.explain.deferred); None: the
    #: alternative's output is computed whole
    deferred_output: Callable[..., list[Any] | None] | None = None
    #: (case, inputs, output, step, observed, expected, tol, memory) → (label, text) | None
    explain: Callable[..., tuple[str, str] | None] = _no_explainer
    #: (case, inputs, rows, observed, expected, memory) → None: pair-level corroboration (edits rows)
    review: Callable[..., None] = _no_review
    #: ``explain`` and ``review`` read expected values held compactly (float32 for float32, float16 and
    #: bfloat16 outputs: the same numbers) and convert before any arithmetic; False: they are given
    #: float64 copies (what a plug-in op's hooks get unless they say otherwise)
    explain_reads_compact: bool = False
    #: case → {parameter: text} for the report's case panel
    report_params: Callable[[Any], dict[str, str]] = lambda case: {}
    #: case → values of the results table's parameter columns (missing ones stay empty)
    row_fields: Callable[[Any], dict[str, Any]] = lambda case: {}
    #: case → the axis that indexes the groups of an element output (plots), or None
    plot_axis: Callable[[Any], int | None] = lambda case: None
    #: semantics fields a backend profile may fix for this op
    profile_knobs: tuple[str, ...] = ()
    #: (knob, case, semantics) → the outputs a change of that knob can move
    affected: Callable[[str, Any, Any], frozenset[str]] = lambda knob, case, sem: frozenset()
    #: case → [(loc, message)]: checks that need several fields (after the model validated)
    cross_checks: Callable[[Any], list[tuple[tuple[Any, ...], str]]] = lambda case: []
    #: loc → the keys allowed at that nested mapping ("did you mean" hints)
    allowed_keys: Callable[[tuple[Any, ...]], list[str]] = lambda loc: []
    #: optional fuzz hook: (max_elements=, dtypes=, plus the op's own keyword options, e.g. BatchNorm's
    #: ``modes``) → a Hypothesis strategy of case mappings (no ``id``) for ``normconf fuzz --op``;
    #: ``None``: the op is not fuzzed (docs/ops.md)
    fuzz_cases: Callable[..., Any] | None = None
    #: path of the op's documentation, relative to the repository
    docs: str = ""
    #: derived views of ``outputs`` (filled in ``__post_init__``)
    names: tuple[str, ...] = field(default=(), init=False)
    data_outputs: tuple[str, ...] = field(default=(), init=False)
    group_outputs: tuple[str, ...] = field(default=(), init=False)
    main_outputs: tuple[str, ...] = field(default=(), init=False)
    stage_outputs: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "names", tuple(o.name for o in self.outputs))
        set_(self, "data_outputs", tuple(o.name for o in self.outputs if o.dtype == "data"))
        set_(self, "group_outputs", tuple(o.name for o in self.outputs if o.per == "group"))
        set_(self, "main_outputs", tuple(o.name for o in self.outputs if o.stage == "main"))
        set_(self, "stage_outputs", tuple(o.name for o in self.outputs if o.stage == "stage"))
        if self.statistics_outputs is _NO_STATISTICS:
            group = frozenset(self.group_outputs)
            set_(self, "statistics_outputs", lambda case: group)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"op {self.name}: output names repeat: {self.names}")

    @property
    def result_order(self) -> tuple[str, ...]:
        """The order rows of one pair are listed in: main outputs, then stages."""
        return self.main_outputs + self.stage_outputs

    def output_dtype(self, case: Any, output: str) -> str:
        """The dtype a backend returns ``output`` in (unknown outputs: the parameter dtype)."""
        return cast(str, case.dtype if output in self.data_outputs else case.params_dtype)


_REGISTRY: dict[str, OpSpec] = {}
_LOCK = threading.RLock()
_LOADED = False


def register(spec: OpSpec, *, replace: bool = False) -> OpSpec:
    """Add ``spec`` to the registry (``replace``: allow re-registering a plug-in op of that name)."""
    with _LOCK:
        _load()
        prev = _REGISTRY.get(spec.name)
        if prev is not None and prev is not spec and not replace:
            raise ValueError(f"op {spec.name!r} is already registered ({prev.case_model.__module__})")
        if spec.name in BUILTIN and prev is not None and prev is not spec:
            raise ValueError(f"op {spec.name!r} is a built-in op; a plug-in cannot replace it")
        _REGISTRY[spec.name] = spec
    return spec


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        _LOADED = True
        for name, module in BUILTIN.items():
            _REGISTRY[name] = importlib.import_module(module).SPEC
        from importlib.metadata import entry_points

        for ep in entry_points(group="normconf.ops"):
            spec = ep.load()
            if not isinstance(spec, OpSpec):
                raise TypeError(f"entry point normconf.ops {ep.name} ({ep.value}) is not an OpSpec")
            register(spec)


def get(name: str) -> OpSpec:
    """The spec of op ``name``; :class:`UnknownOp` names the known ones."""
    _load()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownOp(f"unknown op {name!r}; known ops: {', '.join(sorted(_REGISTRY))}") from None


def spec_for(case: Any) -> OpSpec:
    """The spec of a validated case (its ``op`` field)."""
    return get(case.op)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def all_ops() -> list[OpSpec]:
    _load()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
