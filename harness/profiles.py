"""Backend convention profiles: the conventions a backend follows, stated once, as data.

A backend's profile (``Adapter.conventions``) is a tuple of :class:`Convention` entries,
each with its evidence (a documentation page or a source file).  Two kinds:

* a **convention knob**: a :class:`~normconf.semantics.Semantics` field and the value the
  backend always uses, whatever the case asks (``running_variance: unbiased`` for torch);
* a **working precision**: ``working_precision: float32`` for cases whose dtype is finer
  (``applies_to``), optionally only on some outputs (``outputs``): Keras 3 on
  torch/JAX/NumPy computes a float64 case in float32.

The expected outcome of a case × backend pair is *derived* (:func:`judge_pair`): the
reference under the case's semantics overridden by the profile is what the backend
should produce.  A row explained by the profile's knobs (and, where a working precision
is declared, by precision at that dtype) or agreeing with that reference conforms; the
difference from the case is the expected explanation.  The profile is itself under test:
an entry whose effect is visible in a case (the overridden reference differs from the
case's by more than twice the tolerance on an output) but absent from the backend's
output (that output agrees with the case's reference) fails the pair, naming the entry.

A per-case ``expect:`` entry replaces the derived expectation for its pair: it is for
real exceptions (a framework bug, a documented limitation), each with its reason.
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from normconf.semantics import DTYPES, Semantics

#: BatchNorm's Semantics fields a profile may fix (conventions; not the numbers solved by the explainer
#: and not the emulation knobs of the reference); any op: ``OpSpec.profile_knobs``
PROFILE_KNOBS = (
    "normalize_variance",
    "reported_variance",
    "running_variance",
    "momentum_direction",
    "running_average",
    "eps_placement",
    "train_statistics",
    "eval_statistics",
    "affine",
    "initial_running",
)
#: the working-precision entry's knob name
PRECISION_KNOB = "working_precision"
#: numeric attributes held in another dtype (ONNX float attributes are float32): the momentum and eps the
#: backend applies are the case's rounded to it (``Semantics.momentum_override`` / ``eps_override``)
ATTRIBUTE_KNOB = "attribute_dtype"
#: finest first (unit roundoff order)
_FINENESS = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3}
#: label parts that belong to a precision explanation (``precision=float32,variance=one_pass``)
_PRECISION_PARTS = ("precision", "stats_precision", "variance", "arithmetic")


#: every knob a BatchNorm profile entry may name
ALL_KNOBS = PROFILE_KNOBS + (ATTRIBUTE_KNOB, PRECISION_KNOB)


def op_knobs(op: str) -> tuple[str, ...]:
    """Every knob a profile entry for ``op`` may name: the op's profile knobs, attribute dtype, precision."""
    from normconf import ops

    return tuple(ops.get(op).profile_knobs) + (ATTRIBUTE_KNOB, PRECISION_KNOB)


def knob_values(knob: str, op: str = "batch_norm") -> tuple[str, ...]:
    """The values ``knob`` can take (from the annotations of the op's semantics class)."""
    if knob in (PRECISION_KNOB, ATTRIBUTE_KNOB):
        return DTYPES
    from normconf import ops

    hints = typing.get_type_hints(ops.get(op).semantics)
    args = typing.get_args(hints[knob])
    if hints[knob] is bool or set(args) == {True, False}:
        return ("true", "false")
    return tuple(str(v) for v in args)


def _knob_value(text: str, current: Any) -> Any:
    """A profile value (text) as the semantics field's type."""
    return text == "true" if isinstance(current, bool) else text


@dataclass(frozen=True)
class Convention:
    """One profile entry: ``knob`` is always ``value`` in this backend, because ``reason`` (``evidence``)."""

    knob: str
    value: str
    reason: str
    #: where it is documented or implemented: a URL, or a source path (and function)
    evidence: str
    #: working precision only: the case dtypes it applies to (empty: every finer dtype)
    applies_to: tuple[str, ...] = ()
    #: working precision only: the outputs it covers (empty: all)
    outputs: tuple[str, ...] = ()
    #: the op the entry is about (:mod:`normconf.ops`)
    op: str = "batch_norm"
    #: working precision only: the case modes (``train``, ``eval``) it applies to (empty: every mode)
    modes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = op_knobs(self.op)
        if self.knob not in known:
            raise ValueError(f"unknown profile knob {self.knob!r} for op {self.op} (known: {', '.join(known)})")
        if self.value not in knob_values(self.knob, self.op):
            raise ValueError(f"{self.knob}: {self.value!r} is not one of {', '.join(knob_values(self.knob, self.op))}")
        if not self.reason.strip() or not self.evidence.strip():
            raise ValueError(f"{self.knob}={self.value}: a profile entry needs a reason and its evidence")

    @property
    def label(self) -> str:
        return f"{self.knob}={self.value}"

    @property
    def scope(self) -> str:
        """Where a working-precision entry applies, ``float64 cases; running_mean, running_var; eval``
        (``""``: everywhere)."""
        parts = []
        if self.applies_to:
            parts.append(", ".join(self.applies_to) + " cases")
        if self.outputs:
            parts.append(", ".join(self.outputs))
        if self.modes:
            parts.append(", ".join(self.modes))
        return "; ".join(parts)


def convention(knob: str, value: str, reason: str, evidence: str, op: str = "batch_norm", **kw: Any) -> Convention:
    return Convention(knob, value, reason, evidence, op=op, **{k: tuple(v) for k, v in kw.items()})


@dataclass(frozen=True)
class Profile:
    """A backend's conventions (``name``: whose they are, for messages)."""

    name: str
    entries: tuple[Convention, ...] = ()

    def __post_init__(self) -> None:
        knobs = [(e.op, e.knob) for e in self.entries if e.knob != PRECISION_KNOB]
        dup = sorted({f"{o}.{k}" if o != "batch_norm" else k for o, k in knobs if knobs.count((o, k)) > 1})
        if dup:
            raise ValueError(f"profile {self.name}: {', '.join(dup)} declared twice")

    def for_op(self, op: str) -> tuple[Convention, ...]:
        """The entries about ``op``."""
        return tuple(e for e in self.entries if e.op == op)

    def overrides(self, case) -> dict[str, Any]:
        """Semantics fields whose value under the profile differs from what ``case`` asks for."""
        return {f: v for f, (v, _) in self._fields(case).items()}

    def _fields(self, case) -> dict[str, tuple[Any, Convention]]:
        """{Semantics field: (value under the profile, the entry that sets it)} where it differs from the case."""
        base = case.semantics
        out: dict[str, tuple[Any, Convention]] = {}
        for e in self.for_op(case.op):
            if e.knob == PRECISION_KNOB:
                continue
            if e.knob == ATTRIBUTE_KNOB:
                dt = np.dtype(e.value) if e.value != "bfloat16" else None
                if dt is None or dt == np.float64:
                    continue
                if case.op == "batch_norm" and self._uses_momentum(case) and case.momentum_weight is not None:
                    # the framework's momentum attribute is 1 - w, held in dt; it blends with 1 - fl(1 - w)
                    w = 1.0 - float(dt.type(1.0 - case.momentum_weight))
                    if w != case.momentum_weight:
                        out["momentum_override"] = (w, e)
                eps = float(dt.type(case.eps))
                if eps != case.eps:
                    out["eps_override"] = (eps, e)
            elif getattr(base, e.knob) != _knob_value(e.value, getattr(base, e.knob)):
                out[e.knob] = (_knob_value(e.value, getattr(base, e.knob)), e)
        return out

    def _uses_momentum(self, case) -> bool:
        """BatchNorm's momentum changes an output: in training, and in inference with blended statistics."""
        if case.mode == "train":
            return True
        e = self.entry("eval_statistics", case.op)
        return (e.value if e is not None else case.semantics.eval_statistics) == "blended"

    def entry_for(self, case, field: str) -> Convention | None:
        """The entry behind an overridden Semantics field."""
        hit = self._fields(case).get(field)
        return hit[1] if hit else self.entry(field, case.op)

    def semantics(self, case) -> Semantics:
        """The case's semantics with the profile's conventions in force."""
        return case.semantics.replace(**self.overrides(case))

    def entry(self, knob: str, op: str = "batch_norm") -> Convention | None:
        return next((e for e in self.entries if e.knob == knob and e.op == op), None)

    def precision(self, case, output: str) -> str | None:
        """The declared working dtype for ``output`` of ``case`` (None: the case's own)."""
        for e in self.for_op(case.op):
            if e.knob != PRECISION_KNOB or (e.outputs and output not in e.outputs):
                continue
            if (e.applies_to and case.dtype not in e.applies_to) or _FINENESS[e.value] <= _FINENESS[case.dtype]:
                continue
            if e.modes and getattr(case, "mode", None) not in e.modes:
                continue
            return e.value
        return None

    def describe(self) -> str:
        """``knob=value, …`` per op, ops in declaration order: ``batch_norm: …; layer_norm: …``; an entry with a
        scope names it, ``working_precision=float32 (float64 cases; y; eval)``."""

        def one(e: Convention) -> str:
            return f"{e.label} ({e.scope})" if e.scope else e.label

        ops = list(dict.fromkeys(e.op for e in self.entries))
        parts = [f"{op}: " + ", ".join(one(e) for e in self.for_op(op)) for op in ops]
        return "; ".join(parts) or "the case's conventions"


def profile_of(adapter_cls) -> Profile:
    """The profile an adapter class declares (``conventions``; empty: it follows the case)."""
    return Profile(adapter_cls.id, tuple(getattr(adapter_cls, "conventions", ()) or ()))


def parse_conventions(spec: str, known: Mapping[str, type]) -> Profile:
    """``--conventions``: a built-in backend's id (borrow its profile) or ``knob=value[,knob=value]``.

    Raises ValueError with a message for the user.
    """
    spec = spec.strip()
    if "=" not in spec:
        if spec not in known:
            raise ValueError(
                f"--conventions {spec!r}: not a backend id nor knob=value pairs "
                f"(backends: {', '.join(sorted(known))}; knobs: {', '.join(ALL_KNOBS)})"
            )
        p = profile_of(known[spec])
        if not p.entries:
            raise ValueError(f"--conventions {spec!r}: that backend declares no conventions (it follows the case)")
        return Profile(f"{spec}'s conventions", p.entries)
    entries = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        knob, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--conventions: {part!r} is not knob=value")
        # an entry for every op that has the knob (normalize_variance: BatchNorm and LayerNorm)
        from normconf import ops

        made, first_error = 0, None
        for op in ops.names():
            try:
                entries.append(
                    Convention(knob.strip(), value.strip(), "declared with --conventions", "command line", op=op)
                )
                made += 1
            except ValueError as e:
                first_error = first_error or e
        if not made:
            raise ValueError(f"--conventions: {first_error}") from None
    try:
        return Profile("--conventions", tuple(entries))
    except ValueError as e:
        raise ValueError(f"--conventions: {e}") from None


# ----------------------------------------------------------------------------------------
# Judging one pair against its profile


def _parts(label: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in label.split(",") if "=" in p)


def _precision_ok(parts: dict[str, str], allowed: str) -> bool:
    """The precision parts of a label name working dtypes no coarser than ``allowed``."""
    for k in ("precision", "stats_precision"):
        if k in parts and _FINENESS.get(parts[k], 9) > _FINENESS[allowed]:
            return False
    return True


def label_conforms(label: str, allowed_conventions: Iterable[str], allowed_precision: str | None) -> bool:
    """``label`` names only the profile's convention changes, and precision no coarser than declared."""
    if not label:
        return False
    parts = _parts(label)
    conv = {f"{k}={v}" for k, v in parts.items() if k not in _PRECISION_PARTS}
    prec = {k: v for k, v in parts.items() if k in _PRECISION_PARTS}
    if not conv <= set(allowed_conventions):
        return False
    if prec:
        return allowed_precision is not None and "precision" in prec and _precision_ok(prec, allowed_precision)
    return True


def _coarser(a: str | None, b: str) -> str:
    return b if a is None or _FINENESS[b] >= _FINENESS[a] else a


def _own_dtype(case, output: str, output_dtype) -> str:
    """The precision a conforming backend may compute ``output`` in: its dtype; for the statistics the
    coarser of the data and parameter dtypes (statistics of float16 data held in float32 parameters)."""
    own = output_dtype(case, output)
    from normconf.ops import spec_for

    return own if output in spec_for(case).data_outputs else _coarser(case.dtype, own)


@dataclass
class PairVerdict:
    """The derived expectation of one pair: conforming or not, and why not."""

    as_expected: bool
    #: the expected explanation (the profile's changes on this case), "" if none
    expected_because: str
    note: str = ""


def _fmt_value(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _semantics_of(base: Semantics, parts: Mapping[str, str]) -> Semantics | None:
    """``base`` with a label's convention parts applied (None when a part is not a Semantics field)."""
    fields = {f.name: f for f in dataclasses.fields(type(base))}
    changes: dict[str, Any] = {}
    for k, v in parts.items():
        if k not in fields:
            return None
        cur = getattr(base, k)
        if isinstance(cur, bool):
            changes[k] = v == "true"
        elif isinstance(cur, float) or cur is None:
            try:
                changes[k] = float(v)
            except ValueError:
                return None
        else:
            changes[k] = v
    try:
        return base.replace(**changes)
    except (TypeError, ValueError):
        return None


def judge_pair(
    case,
    inputs,
    profile: Profile,
    rows: list,
    observed: Mapping[str, list] | None,
    own_precision,
    tolerance_for,
    output_dtype,
) -> PairVerdict:
    """The derived expectation of ``rows`` (one pair) under ``profile``.

    A row conforms when it passes; when it is explained by precision at the case's own dtype
    or by a label that names only the profile's changes (plus precision no coarser than the
    declared working precision); when its label is *equivalent* to the profile on that output
    (the reference under the label and under the profile give the same numbers: tiny-dnn's
    unbiased normalization shows on ``batch_var`` as ``reported_variance=unbiased``); or when the
    output agrees with the reference under the profile within the tolerance.
    ``own_precision(case, label, output)``, ``tolerance_for(case, output)`` and
    ``output_dtype(case, output)`` are the results module's rules (passed in: one direction).
    """
    from normconf.compare import close_blockwise
    from normconf.explain.arrays import identical
    from normconf.explain.refcache import CACHE
    from normconf.ops import spec_for

    spec = spec_for(case)

    def affected(knob: str, _mode: Any, sem: Any) -> frozenset[str]:
        return spec.affected(knob, case, sem)

    mode = getattr(case, "mode", None)  # BatchNorm's train/eval; other ops have none

    base = case.semantics
    names = {r.output for r in rows if r.output}
    # the profile's changes that can show in this pair's outputs (torch's running variance: not in eval), under
    # all of the profile's conventions (the momentum shows in inference where the statistics are blended)
    every = profile.overrides(case)
    sem_every = base.replace(**every)
    over = {k: v for k, v in every.items() if affected(k, mode, sem_every) & names}
    allowed = {base.replace(**{k: v}).label(base) for k, v in over.items()}
    sem_p = base.replace(**over)
    problems: list[str] = []
    errors = 0

    def ref(sem: Semantics, name: str, step: int) -> np.ndarray | None:
        # the reference under ``sem`` rounded to the output dtype (round_to_output_dtypes), cached next to the
        # reference: shared by every backend judged on this case
        steps = CACHE.rounded(case, inputs, sem, name) if inputs is not None else None
        return None if steps is None else steps[step - 1]

    def equivalent(label: str, name: str, step: int, prec: str) -> bool:
        parts = _parts(label)
        conv = {k: v for k, v in parts.items() if k not in _PRECISION_PARTS}
        pprec = {k: v for k, v in parts.items() if k in _PRECISION_PARTS}
        if not over or not conv or (pprec and not _precision_ok(pprec, prec)):
            return False
        sem_l = _semantics_of(base, conv)
        if sem_l is None:
            return False
        a, b = ref(sem_l, name, step), ref(sem_p, name, step)
        return a is not None and b is not None and identical(a, b)  # a chunk at a time (deferred outputs)

    for r in rows:
        if r.outcome in ("pass", "unsupported"):
            continue
        where = f"{r.output}" + (f" step {r.step}" if r.step and case.steps > 1 else "")
        if r.outcome == "error":
            errors += 1
            continue
        prec = _coarser(profile.precision(case, r.output), _own_dtype(case, r.output, output_dtype))
        labels = [lab for lab in (r.explanation.split(";") + r.consistent.split(";")) if lab]
        if r.outcome == "explained" and any(
            own_precision(case, lab, r.output) or label_conforms(lab, allowed, prec) for lab in labels
        ):
            continue
        if r.step is not None and inputs is not None:
            if r.outcome == "explained" and any(equivalent(lab, r.output, r.step, prec) for lab in labels):
                continue
            if over and observed is not None and r.output in observed:
                p_ref = ref(sem_p, r.output, r.step)
                if p_ref is not None and close_blockwise(
                    np.asarray(observed[r.output][r.step - 1]),
                    p_ref,
                    tolerance_for(case, r.output),
                    output_dtype(case, r.output),
                ):
                    continue  # agrees with the reference under the profile
        problems.append(f"{where}: {r.explanation or r.outcome}")

    # the profile under test: an entry visible in this case must show in the backend's outputs.  Visible:
    # the reference with that one change differs from the case's by more than twice the tolerance
    visible: dict[str, list[tuple[str, int]]] = {}
    for field, value in over.items() if inputs is not None else ():
        alt = base.replace(**{field: value})
        outs = affected(field, mode, base)
        for r in rows:
            if r.output not in outs or r.step is None:
                continue
            t = tolerance_for(case, r.output)
            seen = _visible(case, inputs, alt, base, r.output, r.step, t, output_dtype(case, r.output), ref)
            if seen is None:
                continue
            if seen:
                visible.setdefault(field, []).append((r.output, r.step))
                if r.outcome == "pass":
                    ent = profile.entry_for(case, field)
                    who = f"{ent.knob}={ent.value}" if ent else f"{field}={value}"
                    problems.append(
                        f"profile entry {profile.name}.{who} not shown: {r.output}"
                        + (f" step {r.step}" if case.steps > 1 else "")
                        + f" agrees with the case's {field}={_fmt_value(getattr(base, field))}"
                        + (f" (the entry says: {ent.reason}; {ent.evidence})" if ent else "")
                    )
                    break
    expected_because = ",".join(sorted(base.replace(**{f: over[f]}).label(base) for f in visible))
    if not problems and not errors:
        return PairVerdict(True, expected_because)
    if not problems:  # an error is not as expected; its row says what happened
        return PairVerdict(False, expected_because)
    want = f"expected per {profile.name} profile: {expected_because or 'pass'}"
    return PairVerdict(False, expected_because, f"{want}; got {'; '.join(dict.fromkeys(problems))}")


#: :func:`_visible`'s answers for the last (case JSON, inputs object) judged: every backend of a worker group
#: judged on that case asks the same questions (one entry per profile change × output × step)
_VISIBLE: dict = {"owner": None, "answers": {}}
_VISIBLE_LOCK = threading.Lock()


def _visible(case, inputs, alt, base, output: str, step: int, t, dtype: str, ref) -> bool | None:
    """The reference under ``alt`` differs from the case's (``base``) at ``output`` step ``step`` by more than
    twice the tolerance ``t`` (None: the reference cannot run one of them).  A pure function of the case,
    the inputs and the arguments, memoized per case."""
    from normconf.compare import Tolerance, close_blockwise
    from normconf.explain.refcache import _case_key

    owner = (_case_key(case), inputs)
    key = (alt, base, output, step, t.rtol, t.atol, dtype)
    with _VISIBLE_LOCK:
        cur = _VISIBLE["owner"]
        if cur is None or cur[0] != owner[0] or cur[1] is not inputs:
            _VISIBLE["owner"], _VISIBLE["answers"] = owner, {}
        answers = _VISIBLE["answers"]
        if key in answers:
            return answers[key]
    a, e = ref(alt, output, step), ref(base, output, step)
    if a is None or e is None:
        seen = None
    else:
        wide = Tolerance(2 * t.rtol, 2 * t.atol, "profile visibility")
        seen = not close_blockwise(a, e, wide, dtype)
    with _VISIBLE_LOCK:
        if _VISIBLE["answers"] is answers:
            answers[key] = seen
    return seen


def profile_table(profiles: Mapping[str, Profile]) -> list[dict[str, str]]:
    """One row per entry (for the docs and ``normconf backends --conventions``)."""
    out = []
    for b, p in sorted(profiles.items()):
        for e in p.entries:
            row = dataclasses.asdict(e)
            row["backend"] = b
            out.append(row)
    return out
