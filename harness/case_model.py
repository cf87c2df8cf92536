"""The pydantic case model (:class:`Case` and its parts) and the checks that need several fields."""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationInfo, field_validator

from normconf.case_errors import _short_repr
from normconf.case_limits import FLOAT64_MAX, MAX_INT64, bytes_per_element, physical_memory
from normconf.references.batchnorm import OUTPUT_NAMES as _BN_OUTPUTS
from normconf.semantics import Semantics, interned

#: outcomes a result can have (``explained`` is added by the explanation engine)
OUTCOMES = ("pass", "explained", "mismatch", "unsupported", "error")

StrictFloat = Annotated[float, Strict()]
Number = Union[Annotated[int, Strict()], StrictFloat]


def _not_blank(v: str) -> str:
    if len(v.strip()) < 3:
        raise ValueError(f"a reason must say why, in words (got {v!r})")
    return v


def _number_problem(v: Any) -> str | None:
    """Why ``v`` (an int or float from a case) is not a finite number within float64 range."""
    if isinstance(v, int) and not isinstance(v, bool):
        if -FLOAT64_MAX <= v <= FLOAT64_MAX:
            return None
        return f"must be a finite number within float64 range (got {_short_repr(v)}, beyond ±1.8e308)"
    if isinstance(v, float) and not math.isfinite(v):
        return f"must be a finite number within float64 range (got {v!r})"
    return None


def _not_nan(v: Any) -> Any:
    """Run before a field's bounds (``ge``/``le``), which would say "greater than or equal to 0" of a NaN."""
    if isinstance(v, float) and math.isnan(v):
        raise ValueError("must be a finite number within float64 range (got nan)")
    return v


def _finite(v: Any) -> Any:
    problem = _number_problem(v)
    if problem:
        raise ValueError(problem)
    return v


#: the magnitude from which a number rounds to infinity in each dtype (the largest finite value plus
#: half an ulp): 65520 for float16
_OVERFLOW_AT = {
    "float16": 2.0**15 * (2 - 2.0**-11),
    "bfloat16": 2.0**127 * (2 - 2.0**-8),
    "float32": 2.0**127 * (2 - 2.0**-24),
    "float64": math.inf,
}


def _output_name_check(names: tuple[str, ...]):
    def check(v: str) -> str:
        if v not in names:
            hint = difflib.get_close_matches(v, names, n=1)
            raise ValueError(
                f"unknown output (got {v!r})"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" The outputs are {', '.join(names)}"
            )
        return v

    return check


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

    @field_validator("std", mode="before")
    @classmethod
    def _std_not_nan(cls, v: Any) -> Any:
        return _not_nan(v)

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
    """Scale (gamma) and shift (beta): per channel (BatchNorm), over the normalized shape (LayerNorm)."""

    gamma: ValueSpec = 1.0
    beta: ValueSpec = 0.0


class Momentum(_Model):
    """Exactly one of the two directions (see :mod:`normconf.semantics`).

    ``batch_weight: 0.1`` (PyTorch's ``momentum=0.1``) and ``running_weight: 0.9``
    (Keras'/ONNX's ``momentum=0.9``) both mean ``running = 0.9*running + 0.1*batch``.
    """

    batch_weight: Annotated[Number, Field(ge=0, le=1)] | None = None
    running_weight: Annotated[Number, Field(ge=0, le=1)] | None = None

    @field_validator("batch_weight", "running_weight", mode="before")
    @classmethod
    def _weight_not_nan(cls, v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            raise ValueError("a momentum weight must be a finite number in [0, 1] (got nan)")
        return v

    @property
    def weight(self) -> float:
        """The batch weight ``w`` in ``running = (1-w)*running + w*batch``."""
        if self.batch_weight is not None:
            return float(self.batch_weight)
        return 1.0 - float(self.running_weight)


def tolerance_model(output_names: tuple[str, ...], op: str, module: str = __name__) -> type[BaseModel]:
    """The ``tolerance:`` model of an op whose outputs are ``output_names``.  Assign it to a module-level
    ``Tolerance`` of ``module`` (cases travel to workers by pickle, which finds the class by that name)."""

    class Tolerance(_Model):
        """A per-case tolerance override; ``reason`` is required."""

        rtol: Annotated[Number, Field(ge=0)]
        atol: Annotated[Number, Field(ge=0)]
        reason: Annotated[str, Field(min_length=3)]
        #: outputs it applies to (default: all); names from the op's output spec
        outputs: list[Annotated[str, AfterValidator(_output_name_check(output_names))]] | None = None

        @field_validator("reason")
        @classmethod
        def _reason_not_blank(cls, v: str) -> str:
            return _not_blank(v)

        @field_validator("rtol", "atol", mode="before")
        @classmethod
        def _tolerance_not_nan(cls, v: Any) -> Any:
            return _not_nan(v)

        @field_validator("rtol", "atol")
        @classmethod
        def _finite_tolerance(cls, v: Any) -> Any:
            if isinstance(v, float) and math.isinf(v):
                raise ValueError(
                    "must be a finite number within float64 range (got inf): an infinite tolerance accepts any result"
                )
            return _finite(v)

        @field_validator("outputs")
        @classmethod
        def _some_outputs(cls, v: list[str] | None) -> list[str] | None:
            if v is not None and not v:
                raise ValueError(
                    "an empty list applies the tolerance to no output: leave 'outputs' out to apply it to all"
                )
            return v

    Tolerance.__qualname__ = Tolerance.__name__ = "Tolerance"
    Tolerance.__module__ = module
    return Tolerance


#: BatchNorm's ``tolerance:`` model
Tolerance = tolerance_model(_BN_OUTPUTS, "batch_norm")


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


#: the dtypes a case may name
DType = Literal["float16", "bfloat16", "float32", "float64"]


class CaseBase(_Model):
    """The fields and views every op's case shares (an op's model adds its own and sets ``op``).

    ``shape`` is the logical shape; ``input`` or ``data`` gives ``x`` (one array per step);
    ``tolerance``, ``expect`` and ``tags`` mean the same for every op.
    """

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", max_length=200)]
    description: str = ""
    op: str
    shape: list[Annotated[int, Strict()]]
    dtype: DType = "float32"
    #: dtype of the parameters and statistics (default: the case dtype)
    param_dtype: DType | None = None
    #: steps, each on its own input
    steps: Annotated[int, Strict(), Field(ge=1, le=1000)] = 1
    #: the input, generated ...
    input: Generator | None = None
    #: ... or explicit: a flat list in logical row-major order, or one list per step
    data: list[Number] | list[list[Number]] | None = None
    expect: dict[str, Expectation] = Field(default_factory=dict)
    #: free labels; ``slow`` marks heavy cases for pytest (``-m slow``)
    tags: list[str] = Field(default_factory=list)

    @property
    def params_dtype(self) -> str:
        return self.param_dtype or self.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def array_shape(self) -> tuple[int, ...]:
        """Shape of ``x`` as handed to backends."""
        return tuple(self.shape)

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape) * self.steps

    @property
    def footprint_elements(self) -> int:
        """Elements counted with every zero dimension as 1 (× steps): what a case with an empty
        batch still allocates, since the per-channel arrays and backends' buffers are sized by the
        other dimensions.  Equal to :attr:`n_elements` when no dimension is 0."""
        return math.prod(d for d in self.shape if d != 0) * self.steps

    def output_names(self) -> list[str]:  # pragma: no cover - every op defines it
        raise NotImplementedError


class Case(CaseBase):
    """One BatchNorm test case (``op: batch_norm``, the default), fully validated."""

    op: Literal["batch_norm"] = "batch_norm"
    #: logical shape (N, C, *spatial), rank 2–5, whatever the layout
    shape: Annotated[list[Annotated[int, Strict()]], Field(min_length=2, max_length=5)]
    layout: Literal["channels_first", "channels_last"] = "channels_first"
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
    #: after the training steps, run inference on the last batch (output ``eval_y``)
    eval_after: Annotated[bool, Strict()] = False
    tolerance: Tolerance | None = None

    @field_validator("eps")
    @classmethod
    def _eps_positive(cls, v: float) -> float:
        if isinstance(v, int) and _number_problem(v):
            raise ValueError(
                f"must be a finite number within float64 range (got {_short_repr(v)}); eps must be a finite number > 0"
            )
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError("eps must be a finite number > 0")
        return float(v)

    # --- derived, convenient views -------------------------------------------------
    @property
    def momentum_weight(self) -> float | None:
        """Batch weight ``w`` (``None`` = cumulative average); see :mod:`normconf.semantics`."""
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
    def has_affine(self) -> bool:
        return self.affine is not False

    @property
    def semantics(self) -> Semantics:
        """The conventions this case asks for."""
        return interned(Semantics, normalize_variance=self.normalize_variance, running_variance=self.running_variance)

    def output_names(self) -> list[str]:
        """Outputs a complete backend produces for this case."""
        if self.mode == "eval":
            return ["y"]
        names = ["y", "batch_mean", "batch_var", "running_mean", "running_var"]
        return names + (["eval_y"] if self.eval_after else [])


def _overflows(v: Any, dtype: str, rule: str = "must be a finite number in") -> str:
    return f"{_short_repr(v)} overflows {dtype} (it would be inf): {rule} {dtype}"


#: the most values the overflow check of a ``dist: normal`` parameter draws (about 0.1 s)
_MAX_DRAWN = 1 << 22


def _normal_peak(g: Generator, n: int) -> float:
    """The largest magnitude among the ``n`` values ``g`` (``dist: normal``) draws, drawn exactly as
    :func:`normconf.inputs.parameter` draws them (in chunks: the same stream)."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(g.seed))
    peak, left = 0.0, n
    while left > 0:
        k = min(left, 1 << 20)
        peak = max(peak, float(np.max(np.abs(rng.standard_normal(k) * float(g.std) + float(g.mean)))))
        left -= k
    return peak


def _generator_problems(
    loc: tuple[Any, ...], g: Generator, n: int | None, dtype: str, variance: bool
) -> list[tuple[tuple[Any, ...], str]]:
    """A generated parameter: a variance draws no negative value; no value overflows ``dtype``
    (``n``: how many values it draws; ``None`` when the shape is wrong, then the draw is not checked)."""
    out: list[tuple[tuple[Any, ...], str]] = []
    if variance:
        if g.dist == "uniform" and g.low < 0:
            out.append(((*loc, "low"), f"a variance must be ≥ 0: low must be ≥ 0 (got {g.low!r})"))
        if g.dist == "constant" and g.value < 0:
            out.append(((*loc, "value"), f"a variance must be ≥ 0 (got {g.value!r})"))
        if g.dist == "normal" and (g.std > 0 or g.mean < 0):
            out.append(
                (
                    loc,
                    "a variance must be ≥ 0, and a normal distribution draws negative values: "
                    "use {dist: uniform, low: 0, high: ...} or {dist: constant, value: ...}",
                )
            )
    top = _OVERFLOW_AT[dtype]
    if g.dist == "constant" and abs(g.value) >= top:
        out.append(((*loc, "value"), _overflows(g.value, dtype)))
    elif g.dist == "uniform":
        # low is drawn, high is not (the range is [low, high))
        for part, v, over in (("low", g.low, abs(g.low) >= top), ("high", g.high, abs(g.high) > top)):
            if over and not any(where == (*loc, part) for where, _ in out):
                out.append(((*loc, part), _overflows(v, dtype, "the range [low, high) must lie within")))
    elif g.dist == "normal" and n and abs(g.mean) + 40 * g.std >= top:  # |standard normal draws| < 40
        # drawn as the run draws them; beyond _MAX_DRAWN values (a case too large anyway), the bound
        peak = _normal_peak(g, n) if n <= _MAX_DRAWN else abs(g.mean) + 40 * g.std
        drawn = f"draws {peak:.6g}" if n <= _MAX_DRAWN else f"may draw up to {peak:.6g} (|mean| + 40·std)"
        if peak >= top:
            msg = f"{describe_value(g)} {drawn} among its {n} values, which overflows {dtype} (it would be inf)"
            out.append((loc, msg + f": every drawn value must be a finite number in {dtype}"))
    return out


def _per_channel_problems(
    loc: tuple[Any, ...], spec: Any, dtype: str, variance: bool, n: int | None = None
) -> list[tuple[tuple[Any, ...], str]]:
    """gamma, beta and the running statistics: finite, within the parameter dtype (literal values and
    the values a generator draws, ``n`` of them); a variance ≥ 0."""
    if isinstance(spec, Generator):
        return _generator_problems(loc, spec, n, dtype, variance)
    items = [(loc, spec)] if not isinstance(spec, list) else [((*loc, i), v) for i, v in enumerate(spec)]
    out: list[tuple[tuple[Any, ...], str]] = []
    for where, v in items:
        problem = _number_problem(v)
        if problem:
            out.append((where, ("a variance " + problem) if variance else problem))
        elif abs(v) >= _OVERFLOW_AT[dtype]:
            out.append((where, _overflows(v, dtype)))
        elif variance and v < 0:
            out.append((where, f"a variance must be a finite number ≥ 0 (got {v!r})"))
    return out


def common_checks(
    case: CaseBase, zero_ok: tuple[int, ...] = (0,), zero_words: str | None = None
) -> list[tuple[tuple[Any, ...], str]]:
    """Checks every op shares: the shape's dimensions (only the axes in ``zero_ok`` may be 0; ``zero_words``
    says which in the op's words, e.g. "only N (the batch) may be 0"), ``data`` or ``input`` (not both),
    the number of explicit values, and huge integers in ``data``."""
    errs: list[tuple[tuple[Any, ...], str]] = []
    for i, d in enumerate(case.shape):
        if d < 0 or (d == 0 and i not in zero_ok):
            only = zero_words or (
                "no dimension may be 0" if not zero_ok else f"only axes {', '.join(map(str, zero_ok))} may be 0"
            )
            errs.append((("shape", i), f"dimension must be > 0 (got {_short_repr(d)}); {only}"))
        elif d > MAX_INT64:
            errs.append(
                (("shape", i), f"dimension must be at most {MAX_INT64} (a signed 64-bit size) (got {_short_repr(d)})")
            )
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
    if case.data is not None:
        rows = (
            [((), case.data)]
            if not (case.data and isinstance(case.data[0], list))
            else [((j,), lst) for j, lst in enumerate(case.data)]
        )
        for pre, lst in rows:
            for i, v in enumerate(lst):  # NaN and ±inf are allowed in data (trap cases); huge integers are not
                if type(v) is int and not -FLOAT64_MAX <= v <= FLOAT64_MAX:
                    errs.append((("data", *pre, i), _number_problem(v)))
    return errs


def parameter_problems(
    loc: tuple[Any, ...], spec: Any, n: int | None, dtype: str, what: str = "channels", variance: bool = False
) -> list[tuple[tuple[Any, ...], str]]:
    """A parameter ``spec`` (number, list or generator) for ``n`` values: the list's length, finite
    values within ``dtype`` (also those a generator draws), and (``variance``) no negative value.
    ``n`` is ``None`` when the shape that sizes it is wrong (reported there): no length check."""
    errs: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(spec, list) and n is not None and len(spec) != n:
        errs.append((loc, f"{len(spec)} values for {what}"))
    errs.extend(_per_channel_problems(loc, spec, dtype, variance, n))
    return errs


def _cross_checks(case: Case) -> list[tuple[tuple[Any, ...], str]]:
    """BatchNorm's checks that need several fields: (loc, message) pairs."""
    errs = common_checks(case, zero_words="only N (the batch) may be 0")
    C = case.shape[1] if len(case.shape) > 1 else 0
    n = C if 0 < C <= MAX_INT64 else None  # a wrong C is reported on shape[1], not again on each parameter
    specs: list[tuple[tuple[Any, ...], Any]] = [
        (("running_mean",), case.running_mean),
        (("running_var",), case.running_var),
    ]
    if isinstance(case.affine, Affine):
        specs += [(("affine", "gamma"), case.affine.gamma), (("affine", "beta"), case.affine.beta)]
    for loc, spec in specs:
        errs.extend(parameter_problems(loc, spec, n, case.params_dtype, f"C = {C} channels", loc[-1] == "running_var"))
    if isinstance(case.momentum, Momentum):
        n_set = (case.momentum.batch_weight is not None) + (case.momentum.running_weight is not None)
        if n_set != 1:
            errs.append(
                (
                    ("momentum",),
                    "give exactly one of batch_weight (PyTorch direction) or running_weight (Keras/ONNX direction)",
                )
            )
    if case.mode == "eval" and case.eval_after:
        errs.append((("eval_after",), "only meaningful for mode: train"))
    return errs


#: the fields a check on a field reads, by the check's first ``loc`` element (the size limit: ``shape``).
#: When a case fails field validation, the checks still run on a repaired case (the failed fields at
#: their defaults, normconf.cases); an error is kept only when none of the fields its check reads failed.
CHECK_READS: dict[str, frozenset[str]] = {
    k: frozenset(v)
    for k, v in {
        "shape": ("shape", "steps", "dtype", "axes"),
        "data": ("data", "shape", "steps", "input"),
        "axes": ("axes", "shape"),
        "running_mean": ("running_mean", "shape", "dtype", "param_dtype", "layout"),
        "running_var": ("running_var", "shape", "dtype", "param_dtype", "layout"),
        "affine": ("affine", "shape", "axes", "dtype", "param_dtype", "bias", "rms_scaling", "layout"),
        "momentum": ("momentum",),
        "eval_after": ("eval_after", "mode"),
    }.items()
}


def reads_failed(field: Any, failed: set[Any]) -> bool:
    """Whether the check on ``field`` reads a field in ``failed`` (a field not in CHECK_READS: any)."""
    reads = CHECK_READS.get(field)
    return bool(failed) and (field in failed or bool(failed & (reads if reads is not None else failed)))


def describe_value(v: Any) -> str:
    """A ValueSpec (number, per-channel list, generator) in words."""
    if v is None:
        return ""
    if hasattr(v, "model_dump"):
        d = v.model_dump()
        dist = d.get("dist")
        if dist == "normal":
            return f"normal(mean={d['mean']:g}, std={d['std']:g}, seed={d['seed']})"
        if dist == "uniform":
            return f"uniform({d['low']:g}, {d['high']:g}, seed={d['seed']})"
        return f"constant {d['value']:g}"
    if isinstance(v, list):
        s = ", ".join(f"{x:g}" for x in v[:8])
        return f"[{s}{', …' if len(v) > 8 else ''}] ({len(v)} values)"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def estimated_bytes(case: CaseBase) -> int:
    """Memory a case needs while running, estimated before anything is allocated: its
    :attr:`~Case.footprint_elements` × :func:`bytes_per_element` of its dtype."""
    return case.footprint_elements * bytes_per_element(case.dtype)


def _size_problem(case: CaseBase, max_elements: int) -> str | None:
    """Why the case is too large to run (checked on the shape alone, before allocating)."""
    n = case.footprint_elements
    nbytes = estimated_bytes(case)
    shape = "×".join(str(d) for d in case.shape) + (f" × {case.steps} steps" if case.steps > 1 else "")
    if n == case.n_elements:
        count = f"{shape} = {n} elements"
    else:  # an empty batch: nothing to normalize, but the other dimensions are still allocated
        count = (
            f"{shape} = 0 elements, but {n} with the zero dimension counted as 1 (the per-channel "
            f"arrays and backends' buffers are sized by the other dimensions)"
        )
    if n > MAX_INT64:
        return f"{count} overflows a 64-bit element count; estimated memory {nbytes} bytes: refused before allocating"
    mem = physical_memory()
    if mem is not None and nbytes > mem:
        return (
            f"{count} needs an estimated {nbytes} bytes ({_gib(nbytes)}), more than "
            f"this machine's {mem} bytes ({_gib(mem)}) of memory: refused before allocating"
        )
    if n > max_elements:
        return (
            f"{count} exceeds the limit of {max_elements} elements "
            f"(estimated memory {nbytes} bytes, {_gib(nbytes)}); raise the limit with --max-elements"
        )
    return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"
