"""YAML case files → validated :class:`Case` objects (and the JSON Schema of the format).

A case file holds ``cases:`` (a list of mappings) and an optional ``defaults:``
mapping merged into every case (a case's own keys win; ``expect`` and
``tolerance`` are merged key by key).  Loading is safe (no Python tags), every
error names ``file:line:column``, the field and what was expected, and all
errors of a file are reported together (:class:`CaseFileError`).

Defaults follow ONNX BatchNormalization-15: eps 1e-5, momentum
``{running_weight: 0.9}`` (= PyTorch's ``momentum=0.1``), biased variance for
normalizing and for the running update, train mode, channels-first, float32.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator

from harness.semantics import DTYPES, Semantics

#: outcomes a result can have (``explained`` is added by the explanation engine)
OUTCOMES = ("pass", "explained", "mismatch", "unsupported", "error")
#: largest number of input elements a case may hold unless raised (``--max-elements``)
DEFAULT_MAX_ELEMENTS = 50_000_000
#: case files larger than this are refused before parsing
MAX_FILE_BYTES = 10 * 1024 * 1024
#: YAML aliases allowed in one file (alias bombs are refused)
MAX_ALIASES = 100
#: nodes that aliases may add to a file when expanded (a "billion laughs" bomb with few aliases
#: still expands exponentially; it is refused before anything walks the expanded document)
MAX_ALIAS_EXPANSION = 1_000_000
#: deepest nesting of YAML collections accepted (a case needs 4)
MAX_DEPTH = 32
#: estimated bytes of memory per input element while a case runs: the float64 input, the float64
#: reference y and x_hat, and a backend's copy (see :func:`estimated_bytes`)
BYTES_PER_ELEMENT = 32

StrictFloat = Annotated[float, Strict()]
Number = Union[Annotated[int, Strict()], StrictFloat]


def _not_blank(v: str) -> str:
    if len(v.strip()) < 3:
        raise ValueError(f"a reason must say why, in words (got {v!r})")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Generator(_Model):
    """A deterministic random (or constant) array: NumPy ``Generator(PCG64(seed))``."""

    dist: Literal["normal", "uniform", "constant"] = "normal"
    mean: Number = 0.0
    std: Annotated[Number, Field(ge=0)] = 1.0
    low: Number = 0.0
    high: Number = 1.0
    value: Number = 0.0
    seed: Annotated[int, Strict(), Field(ge=0)] = 0


#: a per-channel value: one number for every channel, a list (one per channel), or a generator
ValueSpec = Union[Number, list[Number], Generator]


class Affine(_Model):
    """Per-channel scale (gamma) and shift (beta)."""

    gamma: ValueSpec = 1.0
    beta: ValueSpec = 0.0


class Momentum(_Model):
    """Exactly one of the two directions (see :mod:`harness.semantics`).

    ``batch_weight: 0.1`` (PyTorch's ``momentum=0.1``) and ``running_weight: 0.9``
    (Keras'/ONNX's ``momentum=0.9``) both mean ``running = 0.9*running + 0.1*batch``.
    """

    batch_weight: Annotated[Number, Field(ge=0, le=1)] | None = None
    running_weight: Annotated[Number, Field(ge=0, le=1)] | None = None

    @property
    def weight(self) -> float:
        """The batch weight ``w`` in ``running = (1-w)*running + w*batch``."""
        if self.batch_weight is not None:
            return float(self.batch_weight)
        return 1.0 - float(self.running_weight)


class Tolerance(_Model):
    """A per-case tolerance override; ``reason`` is required."""

    rtol: Annotated[Number, Field(ge=0)]
    atol: Annotated[Number, Field(ge=0)]
    reason: Annotated[str, Field(min_length=3)]
    #: outputs it applies to (default: all)
    outputs: list[str] | None = None

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, v: str) -> str:
        return _not_blank(v)


class Expectation(_Model):
    """A known discrepancy of one backend on this case (like a strict xfail)."""

    outcome: Literal["pass", "explained", "mismatch", "unsupported", "error"]
    reason: Annotated[str, Field(min_length=3)]
    #: for ``explained``: the expected explanation, e.g. ``normalize_variance=unbiased``
    because: str | None = None

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, v: str) -> str:
        return _not_blank(v)


class Case(_Model):
    """One BatchNorm test case, fully validated."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=200)]
    description: str = ""
    op: Literal["batch_norm"] = "batch_norm"
    #: logical shape (N, C, *spatial), rank 2–5, whatever the layout
    shape: Annotated[list[Annotated[int, Strict()]], Field(min_length=2, max_length=5)]
    layout: Literal["channels_first", "channels_last"] = "channels_first"
    dtype: Literal["float16", "bfloat16", "float32", "float64"] = "float32"
    #: dtype of gamma/beta/running statistics (default: the case dtype)
    param_dtype: Literal["float16", "bfloat16", "float32", "float64"] | None = None
    mode: Literal["train", "eval"] = "train"
    eps: StrictFloat | Annotated[int, Strict()] = 1e-5
    #: ``{batch_weight: w}``, ``{running_weight: 1-w}`` or ``cumulative``
    momentum: Momentum | Literal["cumulative"] = Momentum(running_weight=0.9)
    normalize_variance: Literal["biased", "unbiased"] = "biased"
    running_variance: Literal["biased", "unbiased"] = "biased"
    #: ``true`` (gamma 1, beta 0), ``false`` (no affine parameters) or explicit values
    affine: bool | Affine = True
    running_mean: ValueSpec = 0.0
    running_var: ValueSpec = 1.0
    #: training steps, each on its own batch (eval cases: batches)
    steps: Annotated[int, Strict(), Field(ge=1, le=1000)] = 1
    #: after the training steps, run inference on the last batch (output ``eval_y``)
    eval_after: bool = False
    #: the input, generated ...
    input: Generator | None = None
    #: ... or explicit: a flat list in logical (N, C, *spatial) row-major order, or one list per step
    data: list[Number] | list[list[Number]] | None = None
    tolerance: Tolerance | None = None
    expect: dict[str, Expectation] = Field(default_factory=dict)
    #: free labels; ``slow`` marks heavy cases for pytest (``-m slow``)
    tags: list[str] = Field(default_factory=list)

    @field_validator("eps")
    @classmethod
    def _eps_positive(cls, v: float) -> float:
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"eps must be a finite number > 0")
        return float(v)

    # --- derived, convenient views -------------------------------------------------
    @property
    def momentum_weight(self) -> float | None:
        """Batch weight ``w`` (``None`` = cumulative average); see :mod:`harness.semantics`."""
        return None if self.momentum == "cumulative" else self.momentum.weight

    @property
    def channel_axis(self) -> int:
        """Channel axis of the arrays handed to backends (1, or -1 for channels-last)."""
        return 1 if self.layout == "channels_first" else -1

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def array_shape(self) -> tuple[int, ...]:
        """Shape of ``x`` as handed to backends (in the case's layout)."""
        s = list(self.shape)
        if self.layout == "channels_last":
            s = [s[0], *s[2:], s[1]]
        return tuple(s)

    @property
    def params_dtype(self) -> str:
        return self.param_dtype or self.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def has_affine(self) -> bool:
        return self.affine is not False

    @property
    def semantics(self) -> Semantics:
        """The conventions this case asks for."""
        return Semantics(normalize_variance=self.normalize_variance, running_variance=self.running_variance)

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape) * self.steps

    def output_names(self) -> list[str]:
        """Outputs a complete backend produces for this case."""
        if self.mode == "eval":
            return ["y"]
        names = ["y", "batch_mean", "batch_var", "running_mean", "running_var"]
        return names + (["eval_y"] if self.eval_after else [])


# ----------------------------------------------------------------------------------------
# Errors


@dataclass
class CaseError:
    """One problem in a case file, with its position (1-based line and column)."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class CaseFileError(Exception):
    """All problems found in one or more case files."""

    def __init__(self, errors: list[CaseError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class LoadedCase:
    """A validated case with where it came from."""

    case: Case
    file: str
    line: int
    #: (line, column) of each ``expect:`` key (backend id), for errors found after loading
    expect_pos: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.case.id


def estimated_bytes(case: Case) -> int:
    """Memory a case needs while running, estimated before anything is allocated."""
    return case.n_elements * BYTES_PER_ELEMENT


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (``None`` where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _size_problem(case: Case, max_elements: int) -> str | None:
    """Why the case is too large to run (checked on the shape alone, before allocating)."""
    n = case.n_elements
    nbytes = estimated_bytes(case)
    shape = "×".join(str(d) for d in case.shape) + (f" × {case.steps} steps" if case.steps > 1 else "")
    if n > 2**63 - 1:
        return (f"{shape} = {n} elements overflows a 64-bit element count; "
                f"estimated memory {nbytes} bytes: refused before allocating")
    mem = physical_memory()
    if mem is not None and nbytes > mem:
        return (f"{shape} = {n} elements needs an estimated {nbytes} bytes ({_gib(nbytes)}), more than "
                f"this machine's {mem} bytes ({_gib(mem)}) of memory: refused before allocating")
    if n > max_elements:
        return (f"{shape} = {n} elements exceeds the limit of {max_elements} elements "
                f"(estimated memory {nbytes} bytes, {_gib(nbytes)}); raise the limit with --max-elements")
    return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def check_expectation_backends(cases: Iterable[LoadedCase], known: Iterable[str]) -> list[CaseError]:
    """Errors for ``expect:`` entries naming a backend not in ``known`` (the registry).

    The loader does not know which backends exist (adapters are plug-ins), so the
    command line checks this once the registry is loaded, before anything runs.
    """
    known = sorted(set(known))
    # one entry in defaults is inherited by many cases: one error at its position, naming them
    users: dict[tuple[str, int, int, str], list[str]] = {}
    for lc in cases:
        for backend in lc.case.expect:
            if backend not in known:
                line, col = lc.expect_pos.get(backend, (lc.line, 1))
                users.setdefault((lc.file, line, col, backend), []).append(lc.id)
    errors: list[CaseError] = []
    for (file, line, col, backend), ids in users.items():
        hint = difflib.get_close_matches(backend, known, n=1)
        who = ids[0] if len(ids) == 1 else f"{len(ids)} cases: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
        errors.append(CaseError(
            file, line, col, f"expect.{backend} ({who})",
            f"unknown backend {backend!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; known backends: {', '.join(known)} (load others with --adapter module:Name)"))
    return errors


def resolve_case_path(case_file: str | os.PathLike[str], value: str) -> Path:
    """Resolve a path written in a case file, relative to the case file's folder.

    Case files currently reference no files (inputs are generated or written
    inline), so nothing calls this yet; any path field added later must go
    through it.  Absolute paths and paths that leave the case folder (``..``,
    symbolic links pointing outside) raise :class:`ValueError`.
    """
    base = Path(case_file).resolve().parent
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError("expected a non-empty relative path")
    p = Path(value)
    if p.is_absolute() or p.drive:
        raise ValueError(f"absolute paths are not allowed ({value!r}): give a path relative to the case file")
    resolved = (base / p).resolve()
    if not resolved.is_relative_to(base):
        raise ValueError(f"path {value!r} leaves the case folder {str(base)!r}")
    return resolved


# ----------------------------------------------------------------------------------------
# YAML with positions


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-5`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

if getattr(yaml, "__with_libyaml__", False):

    class _FastLoader(yaml.CSafeLoader):
        """The same loader on libyaml (about 10× faster; nesting limited to 1000 by libyaml)."""

    _FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
else:  # pragma: no cover - PyYAML without libyaml
    _FastLoader = _Loader  # type: ignore[misc,assignment]


def _mark(node: yaml.Node | None) -> tuple[int, int]:
    if node is None:
        return (1, 1)
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _child(node: yaml.Node | None, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None


def _key_node(node: yaml.Node | None, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return k
    return None


def _collections(node: yaml.Node) -> list[yaml.Node]:
    """The mapping/sequence children of ``node`` (scalars need no walking: size 1, depth 1)."""
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv if not isinstance(n, yaml.ScalarNode)]
    if isinstance(node, yaml.SequenceNode):
        return [n for n in node.value if not isinstance(n, yaml.ScalarNode)]
    return []


def _graph_problem(root: yaml.Node) -> tuple[yaml.Node, str] | None:
    """Check the composed node graph before anything walks it recursively or builds objects.

    Aliases make the graph a DAG (or a cycle): a "billion laughs" file holds a
    few dozen nodes that expand to billions.  This walk visits each collection
    once (iteratively) and computes the expanded size, the nesting depth and
    the number of alias references to collections (an alias to a scalar adds
    one node and is harmless).
    """
    size: dict[int, int] = {}  # id -> expanded node count, for finished collections
    height: dict[int, int] = {}
    on_path: set[int] = set()
    seen: set[int] = set()
    aliases = written = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            kids = _collections(node)
            n_all = len(node.value) * (2 if isinstance(node, yaml.MappingNode) else 1)
            size[nid] = 1 + n_all - len(kids) + sum(size[id(k)] for k in kids)
            height[nid] = 1 + max((height[id(k)] for k in kids), default=1)
            on_path.discard(nid)
            continue
        if nid in seen:
            continue
        seen.add(nid)
        written += 1 + (len(node.value) * (2 if isinstance(node, yaml.MappingNode) else 1)
                        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) else 0)
        on_path.add(nid)
        if len(on_path) > MAX_DEPTH:
            return node, f"nesting deeper than {MAX_DEPTH} levels: refused"
        stack.append((node, True))
        for k in reversed(_collections(node)):
            kid = id(k)
            if kid in on_path:
                return k, "recursive YAML alias (a collection containing itself): refused"
            if kid in seen:
                aliases += 1
                if aliases > MAX_ALIASES:
                    return k, f"more than {MAX_ALIASES} YAML aliases: refused (alias bomb?)"
                continue
            stack.append((k, False))
    if not isinstance(root, (yaml.MappingNode, yaml.SequenceNode)):
        return None
    expanded = size[id(root)]
    if expanded - written > MAX_ALIAS_EXPANSION:
        return root, (f"YAML aliases expand this file to {expanded} nodes (limit: {MAX_ALIAS_EXPANSION} "
                      f"more than the {written} written): refused (alias bomb?)")
    return None


def _duplicate_keys(node: yaml.Node, path: str, out: list[tuple[yaml.Node, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    out.append((k, f"{path}.{k.value}".lstrip(".")))
                seen.add(k.value)
            if not isinstance(v, yaml.ScalarNode):
                _duplicate_keys(v, f"{path}.{k.value}" if isinstance(k, yaml.ScalarNode) else path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            if not isinstance(v, yaml.ScalarNode):
                _duplicate_keys(v, f"{path}[{i}]", out)


def _format_loc(prefix: str, loc: Iterable[Any]) -> str:
    s = prefix
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else f".{part}"
    return s


#: pydantic adds the union member it tried to ``loc``; these are not keys of the file
_UNION_TAGS = re.compile(r"^(int|float|list\[.*\]|Generator|Momentum|Affine|bool|str|function-.*|literal\[.*\]|constrained-.*|tagged-union\[.*\])$")


def _is_tag(err: dict[str, Any], i: int) -> bool:
    loc = err["loc"]
    part = loc[i]
    if not (isinstance(part, str) and _UNION_TAGS.match(part)):
        return False
    # the last element of an unknown-key error is the user's key (``input: {int: 1}``)
    return not (err["type"] == "extra_forbidden" and i == len(loc) - 1)


#: what a field accepts, said when a value fits none of the forms of a union
_UNION_HINTS = {
    "momentum": "expected {batch_weight: w} (PyTorch's momentum), {running_weight: 1-w} (Keras/ONNX momentum) or 'cumulative'",
    "data": "expected a flat list of numbers (or one list per step)",
    "affine": "expected true, false or {gamma: ..., beta: ...}",
    "per_channel": ("expected a number (every channel), a list of numbers (one per channel) or a generator "
                    "{dist: normal|uniform|constant, mean, std, low, high, value, seed}"),
    "number": "expected a number",
}
_FIELD_HINTS = {
    "momentum": _UNION_HINTS["momentum"],
    "shape": "expected a list of 2 to 5 integers (N, C, *spatial)",
    "data": _UNION_HINTS["data"],
    "affine": _UNION_HINTS["affine"],
}


def _union_hint(loc: tuple[Any, ...], branches: list[str]) -> str:
    names = [p for p in loc if isinstance(p, str)]
    last = names[-1] if names else ""
    if set(branches) <= {"int", "float"}:
        return _UNION_HINTS["number"]
    if last in ("running_mean", "running_var", "gamma", "beta"):
        return _UNION_HINTS["per_channel"]
    if last in _UNION_HINTS:
        return _UNION_HINTS[last]
    if last == "data" or (len(names) == 1 and names[0] == "data"):
        return _UNION_HINTS["data"]
    return "expected one of: " + ", ".join(branches)


def _prune_unions(errs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per problem: for a value that failed every form of a union, keep the form it was
    closest to (its errors went deepest) or, when it fits none, say what the field accepts."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for e in errs:
        i = next((j for j in range(len(e["loc"])) if _is_tag(e, j)), None)
        if i is None:
            out.append(e)
        else:
            groups.setdefault(tuple(e["loc"][:i]), []).append((i, e))
    for key, members in groups.items():
        by_branch: dict[str, list[dict[str, Any]]] = {}
        for i, e in members:
            by_branch.setdefault(e["loc"][i], []).append(e)
        depth = {b: max(len(e["loc"]) - len(key) - 1 for e in es) for b, es in by_branch.items()}
        best_depth = max(depth.values())
        if best_depth == 0 and len(by_branch) > 1:  # the value fits no form of the union
            first = members[0][1]
            out.append({"type": "union_mismatch", "loc": key, "msg": _union_hint(key, list(by_branch)),
                        "input": first.get("input")})
            continue
        branch = min((b for b in by_branch if depth[b] == best_depth), key=lambda b: len(by_branch[b]))
        stripped = [{**e, "loc": e["loc"][: len(key)] + e["loc"][len(key) + 1:]} for e in by_branch[branch]]
        out.extend(_prune_unions(stripped))
    return out


#: fields of the nested mappings, for "did you mean" hints on unknown keys
def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    if len(loc) == 1:
        return sorted(Case.model_fields)
    top = loc[0]
    model = {"affine": Affine, "momentum": Momentum, "tolerance": Tolerance, "input": Generator,
             "running_mean": Generator, "running_var": Generator}.get(top)
    if top == "affine" and len(loc) == 3:
        model = Generator
    if top == "expect" and len(loc) == 3:
        model = Expectation
    return sorted(model.model_fields) if model else []


def _describe(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    typ = err["type"]
    if typ == "extra_forbidden":
        key = loc[-1]
        allowed = _allowed_keys(loc)
        hint = difflib.get_close_matches(str(key), allowed, n=1)
        msg = f"unknown key {key!r}"
        if hint:
            return msg + f" (did you mean {hint[0]!r}?)"
        return msg + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    if typ == "missing":
        return "required field is missing"
    if typ == "string_pattern_mismatch" and loc == ("id",):
        return (f"ids are letters, digits and _ . + - and start with a letter or digit (got {err.get('input')!r})")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if "input" in err and "(got " not in msg:
        rep = repr(err["input"])
        if len(rep) > 60:
            rep = rep[:57] + "..."
        msg += f" (got {rep})"
    top = loc[0] if loc else None
    if top in _FIELD_HINTS and len(loc) == 1 and typ in ("model_type", "literal_error", "list_type", "dict_type", "bool_type", "float_type", "int_type", "too_long", "too_short"):
        msg += f"; {_FIELD_HINTS[top]}"
    return msg


def _merge(defaults: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """``case`` over ``defaults``; ``expect`` and ``tolerance`` are merged key by key."""
    merged = dict(defaults)
    for k, v in case.items():
        if k in ("expect", "tolerance") and isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = {**merged[k], **v}
            if k == "expect":  # `backend: null` drops an expectation inherited from defaults
                merged[k] = {b: e for b, e in merged[k].items() if e is not None}
        else:
            merged[k] = v
    return merged


def _cross_checks(case: Case) -> list[tuple[tuple[Any, ...], str]]:
    """Checks that need several fields: (loc, message) pairs."""
    errs: list[tuple[tuple[Any, ...], str]] = []
    for i, d in enumerate(case.shape):
        if d < 0 or (d == 0 and i != 0):
            errs.append((("shape", i), f"dimension must be > 0 (got {d}); only N (the batch) may be 0"))
    if case.input is not None and case.data is not None:
        errs.append((("data",), "give either 'data' or 'input', not both"))
    if case.data is not None and all(d >= 0 for d in case.shape):
        per_step = math.prod(case.shape)
        if case.data and isinstance(case.data[0], list):
            if len(case.data) != case.steps:
                errs.append((("data",), f"{len(case.data)} lists for {case.steps} step(s): give one list per step"))
            for j, lst in enumerate(case.data):
                if len(lst) != per_step:
                    errs.append((("data", j), f"{len(lst)} values for shape {case.shape}: expected {per_step}"))
        elif len(case.data) not in (per_step, per_step * case.steps):
            exp = f"{per_step}" + (f" (or {per_step * case.steps} for {case.steps} steps)" if case.steps > 1 else "")
            errs.append((("data",), f"{len(case.data)} values for shape {case.shape}: expected {exp}"))
    C = case.shape[1] if len(case.shape) > 1 else 0
    specs: list[tuple[tuple[Any, ...], Any]] = [(("running_mean",), case.running_mean), (("running_var",), case.running_var)]
    if isinstance(case.affine, Affine):
        specs += [(("affine", "gamma"), case.affine.gamma), (("affine", "beta"), case.affine.beta)]
    for loc, spec in specs:
        if isinstance(spec, list) and len(spec) != C:
            errs.append((loc, f"{len(spec)} values for C = {C} channels"))
    if isinstance(case.momentum, Momentum):
        n_set = (case.momentum.batch_weight is not None) + (case.momentum.running_weight is not None)
        if n_set != 1:
            errs.append((("momentum",), "give exactly one of batch_weight (PyTorch direction) or running_weight (Keras/ONNX direction)"))
    if case.mode == "eval" and case.eval_after:
        errs.append((("eval_after",), "only meaningful for mode: train"))
    return errs


def _read_case_file(path: str | os.PathLike[str], fname: str) -> bytes:
    """The file's bytes: a regular file within :data:`MAX_FILE_BYTES`, checked before reading."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise CaseFileError([CaseError(fname, 1, 1, "", "not a regular file (a folder, device or pipe): expected a YAML case file")])
        if st.st_size > MAX_FILE_BYTES:
            raise CaseFileError([CaseError(fname, 1, 1, "", f"file is {st.st_size} bytes; case files are limited to {MAX_FILE_BYTES} bytes "
                                                            "(generate large inputs with 'input:' instead of writing 'data:')")])
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # never more, even if the file grows meanwhile
    except OSError as e:
        raise CaseFileError([CaseError(fname, 1, 1, "", f"cannot read: {e.strerror or e}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise CaseFileError([CaseError(fname, 1, 1, "", f"file is larger than {MAX_FILE_BYTES} bytes: refused")])
    return raw


def _parse(text: str, fname: str) -> tuple[Any, yaml.Node]:
    """(data, root node) of a YAML document, checked for bombs, depth and duplicate keys."""
    try:
        loader = _FastLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise CaseFileError([CaseError(fname, 1, 1, "", "empty file: expected a mapping with 'cases:'")])
            problem = _graph_problem(root)
            if problem is not None:
                node, msg = problem
                raise CaseFileError([CaseError(fname, *_mark(node), "", msg)])
            dups: list[tuple[yaml.Node, str]] = []
            _duplicate_keys(root, "", dups)
            if dups:
                raise CaseFileError([CaseError(fname, *_mark(n), p, "duplicate key") for n, p in dups])
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        if context and context not in str(problem):
            problem = f"{problem} ({context})"
        if "python/" in str(e) or "could not determine a constructor" in str(problem):
            problem = f"{problem} — tags that construct objects are refused (safe loading)"
        raise CaseFileError([CaseError(fname, line, col, "", f"YAML error: {problem}")]) from None
    except RecursionError:
        raise CaseFileError([CaseError(fname, 1, 1, "", f"nesting deeper than {MAX_DEPTH} levels: refused")]) from None
    return data, root


def load_file(path: str | os.PathLike[str], max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[LoadedCase]:
    """Load and validate every case of one YAML file; raise :class:`CaseFileError` listing all problems."""
    fname = str(path)
    errors: list[CaseError] = []
    reported: set[tuple[int, int, str, str]] = set()

    def err(node: yaml.Node | None, fld: str, msg: str) -> None:
        line, col = _mark(node)
        if (line, col, fld, msg) not in reported:
            reported.add((line, col, fld, msg))
            errors.append(CaseError(fname, line, col, fld, msg))

    raw = _read_case_file(path, fname)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise CaseFileError([CaseError(fname, line, col, "", f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                                                             "case files are UTF-8 text")]) from None
    if "\x00" in text:
        off = text.index("\x00")
        raise CaseFileError([CaseError(fname, text.count("\n", 0, off) + 1, 1, "", "NUL byte: expected YAML text")])
    data, root = _parse(text, fname)

    if not isinstance(data, dict):
        raise CaseFileError([CaseError(fname, *_mark(root), "", "expected a mapping with 'cases:' (and optional 'defaults:')")])
    for key in data:
        if key not in ("cases", "defaults"):
            hint = difflib.get_close_matches(str(key), ["cases", "defaults"], n=1)
            err(_key_node(root, key), str(key), "unknown top-level key (expected 'cases' or 'defaults')"
                + (f"; did you mean {hint[0]!r}?" if hint else ""))
    defaults = data.get("defaults") or {}
    dnode = _child(root, "defaults")
    if not isinstance(defaults, dict):
        err(dnode, "defaults", "expected a mapping")
        defaults = {}
    if "id" in defaults:
        err(_key_node(dnode, "id"), "defaults.id", "ids must be unique: not allowed in defaults")
    cases_raw = data.get("cases")
    cnode = _child(root, "cases")
    if cases_raw is None:
        err(root if cnode is None else cnode, "cases", "required field is missing (a list of cases)")
        cases_raw = []
    elif not isinstance(cases_raw, list):
        err(cnode, "cases", "expected a list of cases")
        cases_raw = []

    loaded: list[LoadedCase] = []
    seen: dict[str, tuple[int, int]] = {}
    for i, raw_case in enumerate(cases_raw):
        node = _child(cnode, i)
        prefix = f"cases[{i}]"
        if not isinstance(raw_case, dict):
            err(node, prefix, "expected a mapping (a case)")
            continue
        cid = raw_case.get("id")
        if isinstance(cid, str):
            prefix = f"cases[{i}]({cid})"
        merged = _merge(defaults, raw_case)

        def locate(loc: tuple[Any, ...], node=node) -> tuple[yaml.Node | None, bool]:
            """(the deepest node along ``loc``, whether it is in ``defaults:``): in the case, or in
            defaults when the case lacks the key."""
            if not loc:
                return node, False
            in_case = _child(node, loc[0]) is not None
            in_defaults = not in_case and _child(dnode, loc[0]) is not None
            cur = dnode if in_defaults else node
            for part in loc:
                nxt = _child(cur, part)
                if nxt is None:
                    break
                cur = nxt
            return cur, in_defaults

        def report(loc: tuple[Any, ...], msg: str, key_node: bool = False, prefix=prefix, node=node) -> None:
            if key_node and len(loc) == 1:
                n, in_defaults = _key_node(node, loc[0]), False
                if n is None:
                    n, in_defaults = _key_node(dnode, loc[0]), True
            else:
                n, in_defaults = locate(loc)
            # a mistake in defaults: reported once, not once per case inheriting it
            err(n, _format_loc("defaults" if in_defaults else prefix, loc), msg)

        try:
            case = Case.model_validate(merged)
        except ValidationError as ve:
            for e in _prune_unions(ve.errors()):
                loc = tuple(e["loc"])
                report(loc, _describe(e, loc), key_node=e["type"] == "extra_forbidden")
            continue
        for loc, msg in _cross_checks(case):
            report(loc, msg)
        too_big = _size_problem(case, max_elements)
        if too_big:
            report(("shape",), too_big)
        if case.id in seen:
            report(("id",), f"duplicate id {case.id!r} (first at line {seen[case.id][0]})")
        seen[case.id] = _mark(node)
        expect_pos = {}
        for b in case.expect:
            kn = _key_node(_child(node, "expect"), b) or _key_node(_child(dnode, "expect"), b)
            expect_pos[b] = _mark(kn if kn is not None else node)
        loaded.append(LoadedCase(case, fname, _mark(node)[0], expect_pos))
    if errors:
        errors.sort(key=lambda e: (e.line, e.column))
        raise CaseFileError(errors)
    return loaded


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """YAML files named by ``paths`` (files, or folders searched recursively), sorted."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file()))
        elif p.exists():
            files.append(p)
        else:
            raise CaseFileError([CaseError(str(p), 1, 1, "", "no such file or folder")])
    return files


def load_paths(paths: Iterable[str | os.PathLike[str]], max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[LoadedCase]:
    """Load every case under ``paths``; ids must be unique across all files.

    Errors of every file are collected and raised together.
    """
    errors: list[CaseError] = []
    out: list[LoadedCase] = []
    first: dict[str, LoadedCase] = {}
    for f in discover(paths):
        try:
            cases = load_file(f, max_elements=max_elements)
        except CaseFileError as e:
            errors.extend(e.errors)
            continue
        for lc in cases:
            if lc.id in first:
                prev = first[lc.id]
                errors.append(CaseError(lc.file, lc.line, 1, f"{lc.id}.id",
                                        f"duplicate id {lc.id!r}: also defined at {prev.file}:{prev.line}"))
                continue
            first[lc.id] = lc
            out.append(lc)
    if errors:
        raise CaseFileError(errors)
    return out


def json_schema() -> dict[str, Any]:
    """JSON Schema of a case file (for editors: validation and completion)."""
    case_schema = Case.model_json_schema(ref_template="#/$defs/{model}")
    defs = case_schema.pop("$defs", {})
    # in a file, any field but `id` may come from `defaults:`
    entry_schema = dict(case_schema, required=["id"])
    entry_schema["properties"] = dict(case_schema["properties"])
    entry_schema["properties"]["expect"] = {
        "type": "object",
        "title": "Expect",
        "description": "known discrepancies per backend; `backend: null` drops one inherited from defaults",
        "additionalProperties": {"anyOf": [{"$ref": "#/$defs/Expectation"}, {"type": "null"}]},
    }
    defaults_schema = dict(case_schema, required=[], title="Defaults")
    defaults_schema["properties"] = {k: v for k, v in case_schema["properties"].items() if k != "id"}
    defs["Case"] = entry_schema
    defs["Defaults"] = defaults_schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "normconf case file",
        "description": "A list of BatchNorm test cases; 'defaults' is merged into each case.",
        "type": "object",
        "additionalProperties": False,
        "required": ["cases"],
        "properties": {
            "defaults": {"$ref": "#/$defs/Defaults"},
            "cases": {"type": "array", "items": {"$ref": "#/$defs/Case"}},
        },
        "$defs": defs,
    }
