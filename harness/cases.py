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

StrictFloat = Annotated[float, Strict()]
Number = Union[Annotated[int, Strict()], StrictFloat]


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


class Expectation(_Model):
    """A known discrepancy of one backend on this case (like a strict xfail)."""

    outcome: Literal["pass", "explained", "mismatch", "unsupported", "error"]
    reason: Annotated[str, Field(min_length=3)]
    #: for ``explained``: the expected explanation, e.g. ``normalize_variance=unbiased``
    because: str | None = None


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
            raise ValueError(f"eps must be a finite number > 0 (got {v!r})")
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

    @property
    def id(self) -> str:
        return self.case.id


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


def _count_aliases(text: str) -> int:
    n = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            n += 1
            if n > MAX_ALIASES:
                break
    return n


def _duplicate_keys(node: yaml.Node, path: str, out: list[tuple[yaml.Node, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    out.append((k, f"{path}.{k.value}".lstrip(".")))
                seen.add(k.value)
            _duplicate_keys(v, f"{path}.{k.value}" if isinstance(k, yaml.ScalarNode) else path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _duplicate_keys(v, f"{path}[{i}]", out)


def _format_loc(prefix: str, loc: Iterable[Any]) -> str:
    s = prefix
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else f".{part}"
    return s


#: pydantic adds the union member it tried to ``loc``; these are not keys of the file
_UNION_TAGS = re.compile(r"^(int|float|list\[.*\]|Generator|Momentum|Affine|bool|str|function-.*|literal\[.*\]|constrained-.*|tagged-union\[.*\])$")


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_TAGS.match(p)))


_FIELD_HINTS = {
    "momentum": "expected {batch_weight: w} (PyTorch's momentum), {running_weight: 1-w} (Keras/ONNX momentum) or 'cumulative'",
    "shape": "expected a list of 2 to 5 integers (N, C, *spatial)",
    "data": "expected a flat list of numbers (or one list per step)",
    "affine": "expected true, false or {gamma: ..., beta: ...}",
}


def _describe(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    typ = err["type"]
    if typ == "extra_forbidden":
        key = loc[-1]
        parent = Case if len(loc) == 1 else None
        allowed = sorted(parent.model_fields) if parent else []
        hint = difflib.get_close_matches(str(key), allowed, n=1)
        msg = f"unknown key {key!r}"
        return msg + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if typ == "missing":
        return "required field is missing"
    msg = err["msg"]
    if "input" in err and typ not in ("missing", "value_error"):
        got = err["input"]
        rep = repr(got)
        if len(rep) > 60:
            rep = rep[:57] + "..."
        msg += f" (got {rep})"
    top = loc[0] if loc else None
    if top in _FIELD_HINTS and typ in ("union_tag_invalid", "model_type", "literal_error", "list_type", "dict_type", "bool_type", "float_type", "int_type"):
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


def load_file(path: str | os.PathLike[str], max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[LoadedCase]:
    """Load and validate every case of one YAML file; raise :class:`CaseFileError` listing all problems."""
    fname = str(path)
    errors: list[CaseError] = []

    def err(node: yaml.Node | None, fld: str, msg: str) -> None:
        line, col = _mark(node)
        errors.append(CaseError(fname, line, col, fld, msg))

    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise CaseFileError([CaseError(fname, 1, 1, "", f"file is {size} bytes; case files are limited to {MAX_FILE_BYTES} bytes")])
        raw = Path(path).read_bytes()
    except OSError as e:
        raise CaseFileError([CaseError(fname, 1, 1, "", f"cannot read: {e.strerror or e}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CaseFileError([CaseError(fname, line, 1, "", f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})")]) from None
    try:
        if "*" in text and _count_aliases(text) > MAX_ALIASES:
            raise CaseFileError([CaseError(fname, 1, 1, "", f"more than {MAX_ALIASES} YAML aliases: refused (alias bomb?)")])
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise CaseFileError([CaseError(fname, 1, 1, "", "empty file: expected a mapping with 'cases:'")])
            dups: list[tuple[yaml.Node, str]] = []
            _duplicate_keys(root, "", dups)
            for node, p in dups:
                err(node, p, "duplicate key")
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(e, "problem", None) or str(e)
        if "python/" in str(e) or "could not determine a constructor" in str(problem):
            problem = f"{problem} — tags that construct objects are refused (safe loading)"
        raise CaseFileError([CaseError(fname, line, col, "", f"YAML error: {problem}")]) from None
    except RecursionError:
        raise CaseFileError([CaseError(fname, 1, 1, "", "nesting too deep")]) from None
    if errors:
        raise CaseFileError(errors)

    if not isinstance(data, dict):
        raise CaseFileError([CaseError(fname, *_mark(root), "", "expected a mapping with 'cases:' (and optional 'defaults:')")])
    for key in data:
        if key not in ("cases", "defaults"):
            err(_key_node(root, key), str(key), "unknown top-level key (expected 'cases' or 'defaults')")
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
        err(root, "cases", "required field is missing (a list of cases)")
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

        def locate(loc: tuple[Any, ...], node=node) -> yaml.Node | None:
            """The deepest node along ``loc``: in the case, or in defaults when the case lacks the key."""
            if not loc:
                return node
            in_case = _child(node, loc[0]) is not None
            cur = node if in_case or _child(dnode, loc[0]) is None else dnode
            for part in loc:
                nxt = _child(cur, part)
                if nxt is None:
                    break
                cur = nxt
            return cur

        try:
            case = Case.model_validate(merged)
        except ValidationError as ve:
            by_loc: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for e in ve.errors():
                by_loc.setdefault(_clean_loc(e["loc"]), []).append(e)
            for loc, errs in by_loc.items():
                e = errs[0]
                n = _key_node(node, loc[0]) if e["type"] == "extra_forbidden" and len(loc) == 1 else locate(loc)
                if e["type"] == "extra_forbidden" and len(loc) == 1 and n is None:
                    n = _key_node(dnode, loc[0])
                if len(errs) > 1:  # a union: one message naming what was expected
                    hint = _FIELD_HINTS.get(loc[0]) if loc else None
                    msg = f"invalid value (got {e.get('input')!r}); " + (
                        hint or "expected " + " or ".join(dict.fromkeys(x["msg"].removeprefix("Input should be ") for x in errs)))
                else:
                    msg = _describe(e, loc)
                err(n, _format_loc(prefix, loc), msg)
            continue
        for loc, msg in _cross_checks(case):
            err(locate(loc), _format_loc(prefix, loc), msg)
        if case.n_elements > max_elements:
            nbytes = case.n_elements * 8 * 4
            err(locate(("shape",)), f"{prefix}.shape",
                f"{case.n_elements} elements exceed the limit of {max_elements} "
                f"(about {nbytes / 2**30:.1f} GiB while running); raise it with --max-elements")
        if case.id in seen:
            err(locate(("id",)), f"{prefix}.id", f"duplicate id {case.id!r} (first at line {seen[case.id][0]})")
        seen[case.id] = _mark(node)
        loaded.append(LoadedCase(case, fname, _mark(node)[0]))
    if errors:
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
