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
import errno
import math
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError, ValidationInfo, field_validator

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
#: float64 copies of every input element while a case runs: the float64 draw of the input, and the
#: float64 reference y and x_hat (see :func:`bytes_per_element`)
FLOAT64_COPIES = 3
#: copies in the case dtype: the input handed to backends and a backend's output
DTYPE_COPIES = 2
#: bytes of one element in each case dtype
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
#: largest finite float64; every number in a case file must lie within ±this
FLOAT64_MAX = sys.float_info.max
#: largest shape entry and seed: a signed 64-bit integer (NumPy, PyTorch and ONNX sizes are int64)
MAX_INT64 = 2**63 - 1
#: integer literals longer than this many characters are refused while reading (far beyond float64,
#: and below Python's 4300-digit limit on converting decimal text to int)
MAX_INT_LITERAL_CHARS = 1000
#: problems of one kind listed for one file before the rest are counted (control characters)
MAX_LISTED = 20
#: folders visited when a case folder is searched (symbolic links are followed; loops are refused)
MAX_FOLDERS = 10_000


def bytes_per_element(dtype: str) -> int:
    """Estimated bytes of memory per input element while a case of ``dtype`` runs."""
    return FLOAT64_COPIES * 8 + DTYPE_COPIES * DTYPE_BYTES[dtype]


#: the estimate for float32, the default dtype (32 bytes)
BYTES_PER_ELEMENT = bytes_per_element("float32")

StrictFloat = Annotated[float, Strict()]
Number = Union[Annotated[int, Strict()], StrictFloat]


def _not_blank(v: str) -> str:
    if len(v.strip()) < 3:
        raise ValueError(f"a reason must say why, in words (got {v!r})")
    return v


def _short_repr(v: Any, limit: int = 60) -> str:
    """``repr(v)``, shortened; an integer of hundreds of digits is shown by its first digits and length
    (``repr`` of a huge int is slow, and refused above 4300 digits)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        if v.bit_length() > 4 * MAX_INT_LITERAL_CHARS:
            return f"an integer of {v.bit_length()} bits"
        digits = str(abs(v))
        return f"{'-' if v < 0 else ''}{digits[:6]}…{digits[-3:]} ({len(digits)} digits)"
    rep = repr(v)
    return rep if len(rep) <= limit else rep[: limit - 3] + "..."


def _number_problem(v: Any) -> str | None:
    """Why ``v`` (an int or float from a case) is not a finite number within float64 range."""
    if isinstance(v, int) and not isinstance(v, bool):
        if -FLOAT64_MAX <= v <= FLOAT64_MAX:
            return None
        return f"must be a finite number within float64 range (got {_short_repr(v)}, beyond ±1.8e308)"
    if isinstance(v, float) and not math.isfinite(v):
        return f"must be a finite number within float64 range (got {v!r})"
    return None


def _finite(v: Any) -> Any:
    problem = _number_problem(v)
    if problem:
        raise ValueError(problem)
    return v


#: the magnitude from which a number rounds to infinity in each dtype (the largest finite value plus
#: half an ulp): 65520 for float16
_OVERFLOW_AT = {"float16": 2.0**15 * (2 - 2.0**-11), "bfloat16": 2.0**127 * (2 - 2.0**-8),
                "float32": 2.0**127 * (2 - 2.0**-24), "float64": math.inf}


def _output_name(v: str) -> str:
    from references.batchnorm import OUTPUT_NAMES

    if v not in OUTPUT_NAMES:
        hint = difflib.get_close_matches(v, OUTPUT_NAMES, n=1)
        raise ValueError(f"unknown output (got {v!r})" + (f"; did you mean {hint[0]!r}?" if hint else "")
                         + f" The outputs are {', '.join(OUTPUT_NAMES)}")
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

    @field_validator("mean", "std", "low", "value")
    @classmethod
    def _finite_number(cls, v: Any) -> Any:
        return _finite(v)

    @field_validator("high")
    @classmethod
    def _high_above_low(cls, v: Any, info: ValidationInfo) -> Any:
        _finite(v)
        low, dist = info.data.get("low"), info.data.get("dist", "normal")
        if dist == "uniform" and low is not None:
            if v < low:
                raise ValueError(f"high must be ≥ low for dist: uniform (got low {low!r}, high {v!r})")
            if not math.isfinite(float(v) - float(low)):
                raise ValueError(f"high - low must be within float64 range (got low {low!r}, high {v!r})")
        return v

    @field_validator("seed")
    @classmethod
    def _seed_in_range(cls, v: int) -> int:
        if v > MAX_INT64:
            raise ValueError(f"a seed must be at most {MAX_INT64} (2**63 - 1) (got {_short_repr(v)})")
        return v


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
    #: outputs it applies to (default: all); names from ``references.batchnorm.OUTPUT_NAMES``
    outputs: list[Annotated[str, AfterValidator(_output_name)]] | None = None

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, v: str) -> str:
        return _not_blank(v)

    @field_validator("rtol", "atol")
    @classmethod
    def _finite_tolerance(cls, v: Any) -> Any:
        if isinstance(v, float) and math.isinf(v):
            raise ValueError("must be a finite number within float64 range (got inf): "
                             "an infinite tolerance accepts any result")
        return _finite(v)

    @field_validator("outputs")
    @classmethod
    def _some_outputs(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("an empty list applies the tolerance to no output: leave 'outputs' out to apply it to all")
        return v


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
    affine: Annotated[bool, Strict()] | Affine = True
    running_mean: ValueSpec = 0.0
    running_var: ValueSpec = 1.0
    #: training steps, each on its own batch (eval cases: batches)
    steps: Annotated[int, Strict(), Field(ge=1, le=1000)] = 1
    #: after the training steps, run inference on the last batch (output ``eval_y``)
    eval_after: Annotated[bool, Strict()] = False
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
        if isinstance(v, int) and _number_problem(v):
            raise ValueError(f"must be a finite number within float64 range (got {_short_repr(v)}); eps must be a finite number > 0")
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

    @property
    def footprint_elements(self) -> int:
        """Elements counted with every zero dimension as 1 (× steps): what a case with an empty
        batch still allocates, since the per-channel arrays and backends' buffers are sized by the
        other dimensions.  Equal to :attr:`n_elements` when no dimension is 0."""
        return math.prod(d for d in self.shape if d != 0) * self.steps

    def output_names(self) -> list[str]:
        """Outputs a complete backend produces for this case."""
        if self.mode == "eval":
            return ["y"]
        names = ["y", "batch_mean", "batch_var", "running_mean", "running_var"]
        return names + (["eval_y"] if self.eval_after else [])


# ----------------------------------------------------------------------------------------
# Errors


_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_text(s: str) -> str:
    """``s`` with every character a terminal could act on written as an escape: control characters
    (``\\x1b`` starts terminal escape sequences, ``\\x07`` rings the bell), format characters
    (bidirectional overrides), line and paragraph separators, surrogates (undecodable file names)."""
    if s.isprintable():
        return s
    out = []
    for c in s:
        if c.isprintable():
            out.append(c)
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
        else:
            o = ord(c)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


@dataclass
class CaseError:
    """One problem in a case file, with its position (1-based line and column).

    The file name, field and message are stored escaped (:func:`escape_text`): text from a case file
    never reaches a terminal raw.
    """

    file: str
    line: int
    column: int
    field: str
    message: str

    def __post_init__(self) -> None:
        self.file = escape_text(str(self.file))
        self.field = escape_text(str(self.field))
        self.message = escape_text(str(self.message))

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
    """Memory a case needs while running, estimated before anything is allocated: its
    :attr:`~Case.footprint_elements` × :func:`bytes_per_element` of its dtype."""
    return case.footprint_elements * bytes_per_element(case.dtype)


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (``None`` where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _size_problem(case: Case, max_elements: int) -> str | None:
    """Why the case is too large to run (checked on the shape alone, before allocating)."""
    n = case.footprint_elements
    nbytes = estimated_bytes(case)
    shape = "×".join(str(d) for d in case.shape) + (f" × {case.steps} steps" if case.steps > 1 else "")
    if n == case.n_elements:
        count = f"{shape} = {n} elements"
    else:  # an empty batch: nothing to normalize, but the other dimensions are still allocated
        count = (f"{shape} = 0 elements, but {n} with the zero dimension counted as 1 (the per-channel "
                 f"arrays and backends' buffers are sized by the other dimensions)")
    if n > MAX_INT64:
        return (f"{count} overflows a 64-bit element count; "
                f"estimated memory {nbytes} bytes: refused before allocating")
    mem = physical_memory()
    if mem is not None and nbytes > mem:
        return (f"{count} needs an estimated {nbytes} bytes ({_gib(nbytes)}), more than "
                f"this machine's {mem} bytes ({_gib(mem)}) of memory: refused before allocating")
    if n > max_elements:
        return (f"{count} exceeds the limit of {max_elements} elements "
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


# YAML 1.2 core schema.  PyYAML implements YAML 1.1, which reads plain scalars that YAML 1.2 (and
# most other tools today) read differently: `yes`/`on` are booleans, `010` is octal 8, `1:30` is the
# sexagesimal 90, `1_000` is 1000, `2024-01-01` a date.  normconf reads every plain scalar as YAML 1.2's
# core schema does (null, true/false, decimal / 0o octal / 0x hexadecimal integers, floats); a plain
# scalar that YAML 1.1 would read as a different non-string value is refused with a message saying
# both readings, since whoever wrote it may have meant either.  Merge keys (`<<`), a YAML 1.1
# extension that most YAML 1.2 loaders keep, are kept.  The YAML 1.1-only tags (!!set, !!binary,
# !!omap, !!pairs, !!timestamp) are refused.

_CORE = "tag:yaml.org,2002:"
#: the tag given to a plain scalar that YAML 1.1 and YAML 1.2 read differently (refused)
_YAML11_TAG = "tag:normconf,2024:yaml11-ambiguous"
_INT12 = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT12 = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_BOOL12 = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULL12 = ("", "~", "null", "Null", "NULL")
#: YAML 1.1 booleans that are strings in YAML 1.2.  The YAML 1.1 type repository lists y/Y/n/N too;
#: PyYAML reads them as strings, and `y` is the name of BatchNorm's output (`outputs: [y]`), so they
#: are read as strings here as well
_BOOL11_ONLY = {w: b for b, words in ((True, "yes Yes YES on On ON"), (False, "no No NO off Off OFF"))
                for w in words.split()}
#: numbers that YAML 1.1 and 1.2 read alike (or that YAML 1.1 reads as a string): the fast path
_SAME_NUMBER = re.compile(r"[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
#: PyYAML's YAML 1.1 regular expressions, by tag
_RESOLVERS11 = {tag: rx for lst in yaml.resolver.Resolver.yaml_implicit_resolvers.values() for tag, rx in lst}
_CONSTRUCTOR11 = yaml.constructor.SafeConstructor()


def _yaml12_value(v: str) -> Any:
    """How YAML 1.2's core schema reads the plain scalar ``v`` (for numbers; anything else: the text)."""
    if _INT12.fullmatch(v):
        return int(v[2:], 16 if v[1] == "x" else 8) if v.startswith(("0x", "0o")) else int(v)
    if _FLOAT12.fullmatch(v):
        low = v.lower()
        return (-math.inf if v[0] == "-" else math.inf) if low.endswith(".inf") else math.nan if low == ".nan" else float(v)
    return v


def _yaml11_problem(v: str) -> str | None:
    """Why the plain scalar ``v`` is refused: YAML 1.1 reads it as a non-string value other than
    YAML 1.2's reading (``None``: both read it alike)."""
    if v in _BOOL11_ONLY:
        b = "true" if _BOOL11_ONLY[v] else "false"
        return (f"YAML 1.1 reads {v} as the boolean {b}, YAML 1.2 as the string {v!r}: write {b}, "
                f"or quote it ({v!r}) if you mean the text")
    if not v or v[0] not in "0123456789+-." or len(v) > MAX_INT_LITERAL_CHARS or _SAME_NUMBER.fullmatch(v):
        return None
    if _LEADING_ZERO.fullmatch(v):
        return f"{v}: a leading zero is ambiguous (octal in YAML 1.1, decimal in 1.2): write {int(v.replace('_', ''))}"
    for kind in ("int", "float", "timestamp"):
        if _RESOLVERS11[_CORE + kind].match(v):
            if kind == "timestamp":
                return f"YAML 1.1 reads {v} as a date, YAML 1.2 as the string {v!r}: quote it ({v!r})"
            try:
                old = getattr(_CONSTRUCTOR11, f"construct_yaml_{kind}")(yaml.ScalarNode(_CORE + kind, v))
            except (ValueError, ArithmeticError):  # pragma: no cover - the regex admits only numbers
                return None
            new = _yaml12_value(v)
            if type(new) is type(old) and (new == old or (isinstance(old, float) and math.isnan(old) and math.isnan(new))):
                return None
            as12 = f"the string {v!r}" if isinstance(new, str) else f"the number {new!r}"
            if ":" in v:
                return (f"YAML 1.1 reads {v} as the sexagesimal (base 60) number {old!r}, YAML 1.2 as {as12}: "
                        f"write {old!r}, or quote it ({v!r}) if you mean the text")
            return f"YAML 1.1 reads {v} as the number {old!r}, YAML 1.2 as {as12}: write {old!r}"
    return None


class _Yaml12:
    """Resolver mix-in: YAML 1.2 core schema; plain scalars YAML 1.1 reads otherwise get :data:`_YAML11_TAG`."""

    yaml_implicit_resolvers: dict = {}

    def resolve(self, kind, value, implicit):  # noqa: D102 - called by the parser for untagged nodes
        if kind is yaml.ScalarNode and implicit[0] and _yaml11_problem(value) is not None:
            return _YAML11_TAG
        return super().resolve(kind, value, implicit)


class _Loader(_Yaml12, yaml.SafeLoader):
    """SafeLoader reading YAML 1.2's core schema (see above): ``1e-5`` is a float, ``on`` a string."""

    yaml_implicit_resolvers: dict = {}


for _tag, _rx, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", _INT12.pattern, "-+0123456789"),
    ("float", _FLOAT12.pattern, "-+0123456789."),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("merge", r"<<", "<"),
):
    _Loader.add_implicit_resolver(_CORE + _tag, re.compile(f"^(?:{_rx})$"), list(_first))


def _reading_problem(loader: Any, node: yaml.Node, msg: str) -> None:
    """Note a problem with how a scalar is read; reported with its position once the file is loaded."""
    loader.__dict__.setdefault("reading_problems", []).append((node, msg))


def _construct_int(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if not _INT12.fullmatch(v):
        _reading_problem(loader, node, f"!!int {v!r} is not a YAML 1.2 integer (decimal, 0o octal or 0x hexadecimal)")
        return v
    if len(v) > MAX_INT_LITERAL_CHARS:
        _reading_problem(loader, node, f"an integer of {len(v)} characters is far beyond float64 range: "
                                       "must be a finite number within float64 range")
        return math.inf
    problem = _yaml11_problem(v)  # `!!int 010`: implicit scalars never get here with a problem
    if problem:
        _reading_problem(loader, node, problem)
    return _yaml12_value(v)


def _construct_float(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if not _FLOAT12.fullmatch(v):
        _reading_problem(loader, node, f"!!float {v!r} is not a YAML 1.2 float")
        return v
    f = float(_yaml12_value(v))
    text = v if len(v) <= 40 else v[:20] + "…" + v[-10:]
    if math.isinf(f) and "inf" not in v.lower():
        _reading_problem(loader, node, f"{text} is beyond float64 range (largest: 1.7976931348623157e+308): "
                                       "must be a finite number within float64 range (write .inf for infinity)")
    elif f == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", v)[0]):
        _reading_problem(loader, node, f"{text} is below float64's smallest positive number (5e-324) and "
                                       "would read as 0: must be a number within float64 range (write 0 if you mean 0)")
    return f


def _construct_bool(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if v not in _BOOL12:
        _reading_problem(loader, node, f"!!bool {v!r}: YAML 1.2 booleans are true and false")
        return v
    return _BOOL12[v]


def _construct_null(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if v not in _NULL12:
        _reading_problem(loader, node, f"!!null {v!r}: YAML 1.2 nulls are null and ~")
        return v
    return None


def _construct_yaml11(loader: Any, node: yaml.ScalarNode) -> str:
    _reading_problem(loader, node, _yaml11_problem(node.value) or "read differently by YAML 1.1 and 1.2")
    return node.value  # YAML 1.2's reading: a string


def _not_core(name: str, hint: str):
    def construct(loader: Any, node: yaml.Node) -> None:
        _reading_problem(loader, node, f"!!{name} is a YAML 1.1 type, not part of the YAML 1.2 core schema: refused ({hint})")
        return None

    return construct


for _tag, _fn in (("int", _construct_int), ("float", _construct_float), ("bool", _construct_bool),
                  ("null", _construct_null)):
    _Loader.add_constructor(_CORE + _tag, _fn)
_Loader.add_constructor(_YAML11_TAG, _construct_yaml11)
for _name, _hint in (("set", "write a list"), ("omap", "write a mapping"), ("pairs", "write a mapping"),
                     ("binary", "case files hold numbers and text"), ("timestamp", "quote it: a string")):
    _Loader.add_constructor(_CORE + _name, _not_core(_name, _hint))

if getattr(yaml, "__with_libyaml__", False):

    class _FastLoader(_Yaml12, yaml.CSafeLoader):
        """The same loader on libyaml (about 10× faster; nesting limited to 1000 by libyaml)."""

    _FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    _FastLoader.yaml_constructors = _Loader.yaml_constructors
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
        msg += f" (got {_short_repr(err['input'])})"
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


def _per_channel_problems(loc: tuple[Any, ...], spec: Any, dtype: str) -> list[tuple[tuple[Any, ...], str]]:
    """gamma, beta and the running statistics: finite, within the parameter dtype; a variance ≥ 0."""
    variance = loc[-1] == "running_var"
    if isinstance(spec, Generator):
        if not variance:
            return []
        if spec.dist == "uniform" and spec.low < 0:
            return [((*loc, "low"), f"a variance must be ≥ 0: low must be ≥ 0 (got {spec.low!r})")]
        if spec.dist == "constant" and spec.value < 0:
            return [((*loc, "value"), f"a variance must be ≥ 0 (got {spec.value!r})")]
        if spec.dist == "normal" and (spec.std > 0 or spec.mean < 0):
            return [(loc, "a variance must be ≥ 0, and a normal distribution draws negative values: "
                          "use {dist: uniform, low: 0, high: ...} or {dist: constant, value: ...}")]
        return []
    items = [(loc, spec)] if not isinstance(spec, list) else [((*loc, i), v) for i, v in enumerate(spec)]
    out: list[tuple[tuple[Any, ...], str]] = []
    for where, v in items:
        problem = _number_problem(v)
        if problem:
            out.append((where, ("a variance " + problem) if variance else problem))
        elif abs(v) >= _OVERFLOW_AT[dtype]:
            out.append((where, f"{_short_repr(v)} overflows {dtype} (it would be inf): must be a finite number in {dtype}"))
        elif variance and v < 0:
            out.append((where, f"a variance must be a finite number ≥ 0 (got {v!r})"))
    return out


def _cross_checks(case: Case) -> list[tuple[tuple[Any, ...], str]]:
    """Checks that need several fields: (loc, message) pairs."""
    errs: list[tuple[tuple[Any, ...], str]] = []
    for i, d in enumerate(case.shape):
        if d < 0 or (d == 0 and i != 0):
            errs.append((("shape", i), f"dimension must be > 0 (got {_short_repr(d)}); only N (the batch) may be 0"))
        elif d > MAX_INT64:
            errs.append((("shape", i), f"dimension must be at most {MAX_INT64} (a signed 64-bit size) "
                                       f"(got {_short_repr(d)})"))
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
        errs.extend(_per_channel_problems(loc, spec, case.params_dtype))
    if case.data is not None:
        rows = [((), case.data)] if not (case.data and isinstance(case.data[0], list)) else \
            [((j,), lst) for j, lst in enumerate(case.data)]
        for pre, lst in rows:
            for i, v in enumerate(lst):  # NaN and ±inf are allowed in data (trap cases); huge integers are not
                if type(v) is int and not -FLOAT64_MAX <= v <= FLOAT64_MAX:
                    errs.append((("data", *pre, i), _number_problem(v)))
    if isinstance(case.momentum, Momentum):
        n_set = (case.momentum.batch_weight is not None) + (case.momentum.running_weight is not None)
        if n_set != 1:
            errs.append((("momentum",), "give exactly one of batch_weight (PyTorch direction) or running_weight (Keras/ONNX direction)"))
    if case.mode == "eval" and case.eval_after:
        errs.append((("eval_after",), "only meaningful for mode: train"))
    return errs


def _pseudo_file(real: str, st: os.stat_result) -> bool:
    """Whether ``real`` lives on the kernel's /proc or /sys pseudo-filesystems: "regular" files there
    report 0 bytes and may block on reading (``/proc/kmsg``) or never end."""
    if real in ("/proc", "/sys") or real.startswith(("/proc/", "/sys/")):
        return True
    for mount in ("/proc", "/sys"):
        try:
            if os.stat(mount).st_dev == st.st_dev:
                return True
        except OSError:
            pass
    return False


def _link_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the symbolic link ``path`` cannot be followed (``None``: it resolves, or is no link)."""
    try:
        os.stat(path)
        return None
    except OSError as e:
        if not os.path.islink(path):
            return None
        try:
            target = os.readlink(path)
        except OSError:  # pragma: no cover - removed meanwhile
            target = "?"
        if e.errno == errno.ELOOP:
            return f"symbolic link loop (→ {target!r}): refused"
        if e.errno == errno.ENOENT:
            return f"dangling symbolic link: its target {target!r} does not exist"
        return f"cannot follow the symbolic link (→ {target!r}): {e.strerror or e}"


def _read_case_file(path: str | os.PathLike[str], fname: str) -> bytes:
    """The file's bytes: a regular file within :data:`MAX_FILE_BYTES`, checked before reading.

    Symbolic links are resolved first and the target is checked: a FIFO, a device, a folder or a
    file of /proc or /sys is never opened (opening a FIFO blocks, reading a device may never end).
    The file is opened non-blocking and checked again on the open descriptor (the same file, still
    regular), and it is read only up to the size it reported.
    """
    def refuse(msg: str) -> CaseFileError:
        return CaseFileError([CaseError(fname, 1, 1, "", msg)])

    link = _link_problem(path)
    if link:
        raise refuse(link)
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
        via = f" (a symbolic link to {real})" if os.path.islink(path) else ""
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"not a regular file (a folder, device or pipe){via}: expected a YAML case file")
        if _pseudo_file(real, st):
            raise refuse(f"a file of the kernel's /proc or /sys pseudo-filesystem{via}: expected a YAML case file")
        if st.st_size > MAX_FILE_BYTES:
            raise refuse(f"file is {st.st_size} bytes; case files are limited to {MAX_FILE_BYTES} bytes "
                         "(generate large inputs with 'input:' instead of writing 'data:')")
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
        try:
            st2 = os.fstat(fd)
            if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(st2.st_mode):
                raise refuse("the file was replaced while it was opened: refused")
            chunks, left = [], min(st2.st_size, MAX_FILE_BYTES) + 1  # one byte more shows a file that grew
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    except OSError as e:
        raise refuse(f"cannot read: {e.strerror or e}") from None
    raw = b"".join(chunks)
    if len(raw) > st2.st_size:
        raise refuse(f"the file reports {st2.st_size} bytes but holds more (a pseudo-file, or a file being "
                     "written): refused")
    return raw


#: characters refused in a case file before parsing.  YAML 1.2 allows no C0 control character but
#: tab, LF and CR, no DEL, no C1 control character but NEL, no surrogate and no U+FFFE/U+FFFF.  NEL,
#: U+2028 and U+2029 are line breaks in YAML 1.1 (and in libyaml, which reads the file) but not in
#: YAML 1.2, and a CR without LF is a line break to YAML but not to most other tools: each would make
#: line numbers disagree with an editor's.
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]|\r(?!\n)")
_LINE_BREAKS_11 = {"\x85": "NEXT LINE (NEL)", "\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR"}


def _char_problems(text: str, fname: str) -> list[CaseError]:
    """One error per refused character (the first :data:`MAX_LISTED`, then a count), at its line and
    column (lines end at LF; columns count characters)."""
    errors: list[CaseError] = []
    n = 0
    for m in _BAD_CHAR.finditer(text):
        n += 1
        if n > MAX_LISTED:
            continue
        off = m.start()
        c = text[off]
        line, col = text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1) + 1
        if c == "\x00":
            msg = "NUL byte: expected YAML text"
        elif c in _LINE_BREAKS_11:
            msg = (f"U+{ord(c):04X} {_LINE_BREAKS_11[c]}: YAML 1.1 (and libyaml) read it as a line break, "
                   f"YAML 1.2 does not, so lines would be counted differently; remove it, or write "
                   f"\\u{ord(c):04x} inside a double-quoted string")
        elif c == "\r":
            msg = r"a carriage return (\r) not followed by a line feed: use \n (or \r\n) line ends"
        else:
            msg = (f"control character U+{ord(c):04X} ({escape_text(c)}) is not allowed in YAML text: write "
                   f"it as an escape inside a double-quoted string (\"{escape_text(c)}\")")
        errors.append(CaseError(fname, line, col, "", msg))
    if n > MAX_LISTED:
        errors.append(CaseError(fname, errors[-1].line, errors[-1].column, "",
                                f"... and {n - MAX_LISTED} more such characters"))
    return errors


def _node_paths(root: yaml.Node, wanted: set[int]) -> dict[int, str]:
    """``cases[2](id).field[3]``-style paths of the nodes whose ``id()`` is in ``wanted``."""
    out: dict[int, str] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack and len(out) < len(wanted):
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in wanted:
            out.setdefault(id(node), path)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                kp = f"{path}.{k.value}" if isinstance(k, yaml.ScalarNode) else path
                kp = kp.lstrip(".")
                if id(k) in wanted:
                    out.setdefault(id(k), kp)
                stack.append((v, kp))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                p = f"{path}[{i}]"
                idn = _child(v, "id") if path == "cases" else None
                if isinstance(idn, yaml.ScalarNode) and idn.value:
                    p += f"({idn.value})"
                stack.append((v, p))
    return out


def _parse(text: str, fname: str) -> tuple[Any, yaml.Node, list[CaseError]]:
    """(data, root node, reading problems) of a YAML document, checked for bombs, depth and duplicate
    keys.  Reading problems (a scalar YAML 1.1 and 1.2 read differently, a number beyond float64, a
    YAML 1.1 tag) do not stop loading: they are reported together with the other errors of the file."""
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
            found = loader.__dict__.get("reading_problems", [])
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as e:  # pragma: no cover - _char_problems refuses these characters first
        off = e.position if isinstance(e.position, int) else 0
        line, col = text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1) + 1
        raise CaseFileError([CaseError(fname, line, col, "", f"YAML error: {e.reason}")]) from None
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
    paths = _node_paths(root, {id(n) for n, _ in found}) if found else {}
    reading = [CaseError(fname, *_mark(n), paths.get(id(n), ""), msg) for n, msg in found]
    return data, root, reading


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
    bad_chars = _char_problems(text, fname)
    if bad_chars:
        raise CaseFileError(bad_chars)
    data, root, reading = _parse(text, fname)

    if not isinstance(data, dict):
        wrong = CaseError(fname, *_mark(root), "", "expected a mapping with 'cases:' (and optional 'defaults:')")
        raise CaseFileError(reading + ([wrong] if (wrong.line, wrong.column) not in {(e.line, e.column) for e in reading} else []))
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
    elif not cases_raw:
        err(cnode, "cases", "no cases: the list is empty (a case file must hold at least one case; "
                            "an empty run would test nothing)")

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
        checks = _cross_checks(case)
        for loc, msg in checks:
            report(loc, msg)
        too_big = None if any(loc[0] == "shape" for loc, _ in checks) else _size_problem(case, max_elements)
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
    if reading:  # a value read wrongly also fails its field's checks: one message, the reading problem
        at = {(e.line, e.column) for e in reading}
        errors = reading + [e for e in errors if (e.line, e.column) not in at]
    if errors:
        errors.sort(key=lambda e: (e.line, e.column))
        raise CaseFileError(errors)
    return loaded


def _walk(folder: Path, files: list[Path], errors: list[CaseError], ancestors: tuple[tuple[int, int], ...],
          budget: list[int]) -> None:
    """Collect the ``*.yaml``/``*.yml`` entries under ``folder``, following symbolic links; a link
    that is dangling or loops, or points back to a folder above it, is an error naming it."""
    budget[0] -= 1
    if budget[0] < 0:
        if budget[0] == -1:
            errors.append(CaseError(str(folder), 1, 1, "", f"more than {MAX_FOLDERS} folders to search: refused"))
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        errors.append(CaseError(str(folder), 1, 1, "", f"cannot list the folder: {e.strerror or e}"))
        return
    for entry in entries:
        path = folder / entry.name
        if entry.is_symlink():
            problem = _link_problem(path)
            if problem:
                errors.append(CaseError(str(path), 1, 1, "", problem))
                continue
        try:
            st = path.stat()
        except OSError as e:
            errors.append(CaseError(str(path), 1, 1, "", f"cannot read: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                errors.append(CaseError(str(path), 1, 1, "", f"symbolic link loop: {path} leads back to the "
                                                             f"folder {os.path.realpath(path)} that contains it"))
                continue
            _walk(path, files, errors, (*ancestors, key), budget)
        elif path.suffix in (".yaml", ".yml"):
            files.append(path)  # not a regular file (a FIFO, a device): refused when read, never opened


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """YAML files named by ``paths`` (files, or folders searched recursively), sorted.

    Symbolic links are followed.  A dangling link, a link loop or a folder that cannot be listed is
    an error naming the path (never silently skipped), as is a path that does not exist.
    """
    files: list[Path] = []
    errors: list[CaseError] = []
    budget = [MAX_FOLDERS]
    for p in paths:
        p = Path(p)
        problem = _link_problem(p)
        if problem:
            errors.append(CaseError(str(p), 1, 1, "", problem))
        elif p.is_dir():
            st = p.stat()
            found: list[Path] = []
            _walk(p, found, errors, ((st.st_dev, st.st_ino),), budget)
            files.extend(sorted(found))
        elif os.path.lexists(p):
            files.append(p)
        else:
            errors.append(CaseError(str(p), 1, 1, "", "no such file or folder"))
    if errors:
        raise CaseFileError(errors)
    return files


def load_paths(paths: Iterable[str | os.PathLike[str]], max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[LoadedCase]:
    """Load every case under ``paths``; ids must be unique across all files.

    Errors of every file are collected and raised together.
    """
    errors: list[CaseError] = []
    out: list[LoadedCase] = []
    first: dict[str, LoadedCase] = {}
    paths = list(paths)
    files = discover(paths)
    if not files:
        raise CaseFileError([CaseError(", ".join(map(str, paths)) or ".", 1, 1, "",
                                       "no case files (*.yaml, *.yml): no cases to run")])
    for f in files:
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
