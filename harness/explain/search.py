"""The search: which convention, or which working precision, explains a mismatching output.

Two kinds of explanation (docs/explain.md):

* **conventions** (the :mod:`.catalog`): the reference rerun under the case's semantics with
  one knob changed (two when no single one does) must reproduce the backend's output within
  the tolerance.  A *solved* number (eps, batch weight) must do more: residual ≤ 0.1× the
  tolerance (plus one unit of the output dtype), error without it ≥ 10× the tolerance, no
  precision bound covering the error, and — checked over the whole pair by
  :func:`normconf.explain.pair.review_pair` — every other output it affects reproduced too;
* **precision** (:mod:`.bounds`): every element within the derived forward-error bound (plus
  the tolerance) of the cheapest working-precision model.  Independent of summation order,
  so the label is the same on every machine.

When both a convention and a precision bound account for an output, the convention wins only
when it is *sharp*: it reproduces within half the tolerance (plus one output unit), removes
at least three quarters of the error and its own output lies outside the precision envelope; or
when it reproduces to a tenth of the tolerance an effect of at least 10 tolerances (the effect
from the references alone, so that the choice does not follow the machine's rounding; where
only a coarser working dtype's bound covers the error, the tenth suffices).  Otherwise the
precision explanation stands and the text names the convention as also consistent.  When
neither does alone, a convention that removes most of the error plus a precision bound around
it is tried.  Otherwise the row stays ``mismatch`` and the text names the closest candidates,
marked as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from normconf.explain import bounds as bd
from normconf.explain.arrays import (
    _CHUNK,
    SAMPLE_ABOVE,
    _digest,
    _same_numbers,
    _sketch,
    as_exact,
    columns,
    exact_held,
    identical_rounded,
    residual,
    sample_columns,
)
from normconf.explain.bounds_cache import bounds_for
from normconf.explain.catalog import (
    affected,
    can_affect,
    describe_change,
    differences,
    docs_for,
    single_alternatives,
)
from normconf.explain.deferred import sample
from normconf.explain.memory import _remember, _remember_consistent, _remember_row
from normconf.explain.precision import SHAPE_MARGIN, coarser
from normconf.explain.refcache import CACHE
from normconf.explain.shapes import error_shape
from normconf.explain.solve import solved_alternatives
from normconf.explain.texts import _explained_text, _precision_text
from normconf.inputs import np_dtype
from normconf.references.batchnorm import STATISTICS as STATS
from normconf.semantics import Semantics

#: kind ranks: structural conventions first, then documented default values, then solved values
KIND_RANK = {"structural": 0, "known_value": 1, "solved_value": 3}
#: how many of the closest single alternatives are combined into pairs when none matches
PAIR_TOP_K = 6
#: an alternative "moves towards" the backend's output when it leaves at most this fraction of the error
REDUCES = 0.9
#: a convention is *sharp* (outranks a precision bound that also covers) when it leaves at most this
#: fraction of the error, in tolerance units ...
SHARP_REDUCTION = 0.25
#: ... and reproduces within this fraction of the tolerance (plus one unit of the output dtype)
SHARP_TOL = 0.5
#: a convention plus precision outranks precision alone when precision alone uses at least this
#: fraction of its allowance ...
COMBO_MIN_FRACTION = 0.25
#: ... and the convention leaves at most this fraction of that (it accounts for two thirds of the error)
COMBO_TIGHTER = 1 / 3
#: a solved number must reproduce within this fraction of the tolerance (plus one output unit) ...
FIT_TOL = 0.1
#: ... where the error without it is at least this many tolerances
FIT_MIN_ERROR = 10.0


@dataclass
class Candidate:
    """One alternative semantics and how well it reproduces the observed output."""

    semantics: Semantics
    label: str
    kind: str
    note: str = ""  # solver details, e.g. "solved 0.000999 from the per-channel scale"
    score: float = math.inf  # worst error in tolerance units (<= 1: reproduces the output)
    max_abs: float = math.inf
    digest: str = ""
    equivalents: list[str] = field(default_factory=list)
    equivalent_semantics: list[Semantics] = field(default_factory=list, repr=False)
    sketch: np.ndarray | None = field(default=None, repr=False)
    fit: float = math.inf  # worst error in units of (FIT_TOL·tolerance + one output unit)
    sharp: float = math.inf  # worst error in units of (SHARP_TOL·tolerance + one output unit)
    precision: "bd.Verdict | None" = None  # a precision bound around this alternative (combined label)
    screened: bool = False  # rejected on a sample: score and max_abs are lower bounds

    @property
    def n_knobs(self) -> int:
        """Conventions in the label (a precision part does not count)."""
        conv = self.label.split(",precision=")[0]
        return conv.count(",") + 1 if conv else 0

    @property
    def matches(self) -> bool:
        return self.score <= 1.0

    #: how many outputs the alternative can change (fewer: the more specific explanation of identical numbers)
    reach: int = 0

    def rank_key(self) -> tuple:
        """Fewest knobs first, a freely solved number counting as two; then kind; then the most specific
        (changes the fewest outputs); then residual."""
        return (
            self.n_knobs + (1 if self.kind == "solved_value" else 0),
            KIND_RANK.get(self.kind, 9),
            self.reach,
            self.score,
        )


@dataclass
class Finding:
    """What the engine found for one mismatching output (one step)."""

    matches: list[Candidate]
    closest: list[Candidate]
    label: str
    text: str
    evaluated: int = 0
    #: the precision verdict of the label (precision or convention+precision), else None
    precision: "bd.Verdict | None" = None
    #: the convention semantics of the label (None: precision alone, or no explanation)
    semantics: Semantics | None = None
    kind: str = ""  # "convention", "precision", "convention+precision", "" (mismatch)

    @property
    def explained(self) -> bool:
        return bool(self.label)


def _unit_scores(obs: np.ndarray, alt: np.ndarray, tol, dtype: str) -> tuple[float, float]:
    """(fit, sharp): max |obs − alt| / (f·(atol + rtol·|alt|) + one unit of ``dtype`` at |alt|) for f =
    FIT_TOL and SHARP_TOL, in one chunked pass; NaN/Inf must agree."""
    o = obs.reshape(-1)
    a = alt.reshape(-1)
    worst = [0.0, 0.0]
    with np.errstate(all="ignore"):
        for s0 in range(0, o.size, _CHUNK):  # maxima: the chunk size changes no result
            oc, ac = (v[s0 : s0 + _CHUNK].astype(np.float64, copy=False) for v in (o, a))
            err = np.abs(oc - ac)
            err[(oc == ac) | (np.isnan(oc) & np.isnan(ac))] = 0.0
            err[np.isnan(err)] = np.inf
            tl = tol.atol + tol.rtol * np.abs(ac)
            unit = bd.ulp_floor(ac, dtype)
            for i, f in enumerate((FIT_TOL, SHARP_TOL)):
                r = err / (f * tl + unit)
                worst[i] = max(worst[i], float(r.max()) if r.size else 0.0)
    return worst[0], worst[1]


def _output_dtype(case, output: str) -> str:
    from normconf.outputs import output_dtype

    return output_dtype(case, output)


def _pairs(
    singles: list[Candidate],
    base: Semantics,
    plain_max_abs: float,
    evaluate,
    solve,
    structural_sems: list[Semantics] = (),
    recalled: list[Candidate] = (),
    cheap: bool = False,
) -> list[Candidate]:
    """Two-knob alternatives, tried only when some single alternative moves the output towards the
    backend's (leaves at most ``REDUCES`` of the error): a pure fault (noise, a flipped sign) costs nothing.

    * pairs among the ``PAIR_TOP_K`` closest such alternatives;
    * each of the two closest combined with every structural alternative;
    * numeric knobs (eps, momentum) re-solved on top of every structural alternative.
    """
    reducing = sorted(
        (c for c in singles if math.isfinite(c.score) and c.max_abs < REDUCES * plain_max_abs), key=lambda c: c.score
    )
    if not reducing:
        return []
    # every structural alternative of the catalog (also those that alone cannot change this output: the
    # running-variance estimator matters to y only once another knob makes y use the running statistics)
    structural = [c for c in singles if c.kind == "structural"]
    known = {c.semantics for c in structural}
    structural += [Candidate(s, s.label(base), "structural") for s in structural_sems if s not in known]
    out: list[Candidate] = []

    def kind_of(*kinds: str) -> str:
        for k in ("solved_value", "known_value"):
            if k in kinds:
                return k
        return "structural"

    def combine(a: Candidate, b: Candidate) -> None:
        da, db = a.semantics.differences(base), b.semantics.differences(base)
        if not da or not db or set(da) & set(db):
            return
        c = evaluate(a.semantics.replace(**db), kind_of(a.kind, b.kind))
        if c is not None:
            out.append(c)

    top = reducing[:PAIR_TOP_K]
    for i, a in enumerate(top):
        for b in top[i + 1 :]:
            combine(a, b)
    # statistics are cheap to recompute (no normalization pass): every reducing alternative there
    for a in reducing if cheap else top[:3]:
        for b in [*structural, *recalled]:
            combine(a, b)
    for a in structural:
        for s, kind, note in solve(a.semantics):
            if len(differences(s, base)) == 2:
                c = evaluate(s, kind_of(kind, a.kind), note)
                if c is not None:
                    out.append(c)
    return out


def explain_output(
    case,
    inputs,
    output: str,
    step: int,
    observed: np.ndarray,
    expected: np.ndarray | None = None,
    tol=None,
    memory: list | None = None,
) -> Finding:
    """Explain ``observed`` (``output`` at 1-based ``step``): a convention, a precision bound, or neither.

    ``memory`` is the list of conventions that explained earlier outputs *of the same case ×
    backend pair* (the caller keeps one per pair, so nothing leaks between backends and the
    result does not depend on which backends ran before); ``None``: no recall.
    """
    base = case.semantics
    if tol is None:
        from normconf.outputs import tolerance_for

        tol = tolerance_for(case, output)
    if expected is None:
        expected = CACHE.get(case, inputs, base, output)[step - 1]
    expected = exact_held(expected)  # float32-held (compact) as it comes: every consumer converts
    obs = as_exact(np.asarray(observed), expected.shape)  # the backend's own array: every consumer converts
    if obs is None:
        return Finding(
            [],
            [],
            "",
            f"observed shape {tuple(np.shape(observed))} differs from the expected "
            f"{expected.shape}: no convention explains a shape change",
            0,
        )
    out_dt = _output_dtype(case, output)
    plain_score, plain_max_abs = residual(obs, expected, tol.atol, tol.rtol)
    prec, prec_closest = bd.cheapest(bounds_for(case, inputs, base), output, step, obs, expected, tol)
    if prec is not None:
        prec.kappa = _kappa_of(case, inputs, step, output)
    # an alternative whose output, rounded to the output dtype, is the expected value (itself rounded, or
    # float64) does not change this output
    np_out = np_dtype(out_dt)

    def no_effect(alt: np.ndarray, ref: np.ndarray) -> bool:
        return identical_rounded(alt, ref, np_out)

    tried: dict[Semantics, Candidate | None] = {}
    evaluated = 0

    def evaluate(sem: Semantics, kind: str, note: str = "") -> Candidate | None:
        nonlocal evaluated
        if sem in tried:
            return tried[sem]
        if sem == base or not can_affect(sem, base, output, case.mode):
            return None
        screened = _screen(sem, kind, note)
        if screened is not None:
            tried[sem] = screened
            return screened
        # a solved number is this output's own (read here once): its run stops at this step
        alt_steps = (
            CACHE.prefix(case, inputs, sem, output, step)
            if kind == "solved_value"
            else CACHE.get(case, inputs, sem, output)
        )
        evaluated += 1
        if alt_steps is None or len(alt_steps) < step or alt_steps[step - 1].shape != expected.shape:
            tried[sem] = None
            return None
        alt = alt_steps[step - 1]
        if no_effect(alt, expected):  # cannot explain a difference
            tried[sem] = None
            return None
        score, max_abs = residual(obs, alt, tol.atol, tol.rtol)
        c = Candidate(
            sem,
            sem.label(base),
            kind,
            note,
            score,
            max_abs,
            _digest(alt),
            sketch=_sketch(alt) if score <= 1.0 else None,
            reach=len(set().union(*(affected(k, case.mode, sem) for k in differences(sem, base)))),
        )
        if score <= 1.0:
            c.fit, c.sharp = _unit_scores(obs, alt, tol, out_dt)
        tried[sem] = c
        return c

    # large normalized outputs: each alternative is first screened on a sample of elements (the statistics-only
    # reference and the exact normalization of the sample, bit for bit the full run's values there).  The
    # sample's worst error is a lower bound of the whole array's, so a screen that fails cannot hide a match;
    # only alternatives that pass it are run in full.
    screen_cols = None
    if output in ("y", "x_hat") and expected.size > SAMPLE_ABOVE and expected.ndim >= 2:
        ax = case.channel_axis % expected.ndim
        screen_cols = sample_columns(expected.shape, ax)
        obs_s = columns(obs, ax, screen_cols)
        base_s = columns(expected, ax, screen_cols)

    def _screen(sem: Semantics, kind: str, note: str) -> Candidate | None:
        """A rejected candidate (its sampled error, a lower bound, is already out of tolerance), or None."""
        nonlocal evaluated
        if screen_cols is None:
            return None
        alt_s = sample(case, inputs, sem, output, step, screen_cols)
        if alt_s is None or alt_s.shape != obs_s.shape or no_effect(alt_s, base_s):
            return None
        score, max_abs = residual(obs_s, alt_s, tol.atol, tol.rtol)
        if score <= 1.0:
            return None
        evaluated += 1
        return Candidate(
            sem,
            sem.label(base),
            kind,
            note,
            score,
            max_abs,
            screened=True,
            reach=len(set().union(*(affected(k, case.mode, sem) for k in differences(sem, base)))),
        )

    def accepted(c: Candidate) -> bool:
        if not c.matches:
            return False
        if c.kind == "solved_value":  # a freely solved number: the corroboration rule
            # (not on float16/bfloat16 outputs: one unit there is as large as the tolerance, so no residual
            # can be a tenth of it and a free number would fit rounding noise)
            return c.fit <= 1.0 and plain_score >= FIT_MIN_ERROR and prec is None and out_dt in ("float32", "float64")
        return True

    recalled = []
    for sem_r, kind_r, note_r, src in list(memory) if memory is not None else []:
        if differences(sem_r, base) and len(differences(sem_r, base)) <= 3:
            c = evaluate(sem_r, kind_r, (note_r + "; " if note_r else "") + f"the convention found for {src}")
            if c is not None:
                recalled.append(c)
    singles = [c for s, kind in single_alternatives(case, base) if (c := evaluate(s, kind)) is not None]
    for s, kind, note in solved_alternatives(case, inputs, base, output, step, obs, tol):
        c = evaluate(s, kind, note)
        if c is not None:
            singles.append(c)
    cands = recalled + singles
    # pairs when no single convention is accepted, or only a freely solved number is (a pair of discrete
    # conventions outranks one fitted value: it has no free parameter)
    if not any(accepted(c) and c.kind != "solved_value" for c in cands):
        cands += _pairs(
            recalled + singles,
            base,
            plain_max_abs,
            evaluate,
            lambda sem: solved_alternatives(case, inputs, sem, output, step, obs, tol),
            [s for s, kind in single_alternatives(case, base) if kind == "structural"],
            recalled,
            cheap=output in STATS,
        )
    cands = list({id(c): c for c in cands}.values())
    matches = sorted((c for c in cands if accepted(c)), key=Candidate.rank_key)
    grouped: list[Candidate] = []
    for c in matches:  # alternatives that produce the identical output are one explanation
        same = next(
            (g for g in grouped if (g.digest and g.digest == c.digest) or _same_numbers(g.sketch, c.sketch, tol)), None
        )
        if same is not None:
            same.equivalents.append(c.label)
            same.equivalent_semantics.append(c.semantics)
        else:
            grouped.append(c)
    closest = sorted(
        (c for c in cands if not accepted(c) and c.max_abs < REDUCES * plain_max_abs),
        key=lambda c: (c.score, c.rank_key()),
    )[:3]
    where = f"{output}" + (f" step {step}" if case.steps > 1 and output != "eval_y" else "")

    if grouped:
        best = grouped[0]
        distinct = prec is None or _outside_envelope(case, inputs, base, prec, output, step, best, expected, tol)
        # a discrete convention that reproduces to a tenth of the tolerance (plus one unit of the output
        # dtype) is the explanation even where a precision bound would also allow the error: a precision
        # error does not land on a convention's numbers that closely (the false-explanation guard checks it).
        # Not on float16/bfloat16 cases, whose arithmetic rounds as coarsely as the tolerance itself
        # (and not when the match rests on NaN/Inf positions: the error without it is then infinite, and a
        # degenerate channel's NaNs can be reproduced by more than one cause).  Where the convention's
        # output lies within the envelope of arithmetic at the case's own dtype, only when its own effect
        # is large (>= FIT_MIN_ERROR tolerances, from the references alone): an effect of a few tolerances
        # is of the size of that arithmetic's rounding error, and whether a backend's rounding lands
        # within a tenth of the tolerance of it depends on the machine's summation order (tf-fused's
        # running variance at m = 16384: unbiased by 1 + 6e-5 is 2 tolerances; residual 0.04 of one
        # without oneDNN, 0.13 with it).  An envelope of a coarser working dtype (float32 for a float64
        # case) is a claim of its own, and the case dtype's rounding is far below the tenth
        exact = (
            best.kind != "solved_value"
            and best.fit <= 1.0
            and case.dtype in ("float32", "float64")
            and math.isfinite(plain_score)
            and (
                distinct
                or coarser(prec.model.stats, case.dtype)
                or coarser(prec.model.compute, case.dtype)
                or _effect(case, inputs, output, step, best, expected, tol) >= FIT_MIN_ERROR
            )
        )
        if prec is None or exact or (best.sharp <= 1.0 and best.score <= SHARP_REDUCTION * plain_score and distinct):
            _remember(memory, best, where, output, step)
            _remember_consistent(memory, output, step, best.equivalents)
            text = _explained_text(case, base, best, grouped[1:], output, tol, plain_max_abs)
            if prec is not None:
                text += f"; (a {prec.model.label()} bound would also cover the error, but this convention reproduces it sharply)"
            return Finding(grouped, closest, best.label, text, evaluated, None, best.semantics, "convention")
        text = _precision_text(case, prec, plain_max_abs, output)
        text += (
            "; also within tolerance, but indistinguishable from precision (its output lies within the bound, "
            "or it does not reproduce sharply): "
        ) + ", ".join(f"{c.label} (leaves {c.max_abs:.2g})" for c in grouped[:3])
        _remember_row(memory, None, output, step)
        _remember_consistent(memory, output, step, [lab for c in grouped[:3] for lab in [c.label, *c.equivalents]])
        return Finding([], grouped[:3], prec.model.label(), text, evaluated, prec, None, "precision")
    combo = _convention_plus_precision(case, inputs, cands, output, step, obs, tol, plain_score, plain_max_abs)
    passed_over = None
    if combo is not None and prec is not None:
        # measured against the same envelope, the convention must remove most of the error
        alt = CACHE.get(case, inputs, combo[0].semantics, output)[step - 1]
        rest = bd.judge(bounds_for(case, inputs, base), prec.model, output, step, obs, alt, tol)
        tighter = (
            prec.fraction >= COMBO_MIN_FRACTION and rest is not None and rest.fraction <= COMBO_TIGHTER * prec.fraction
        )
        if not tighter:
            # named, not chosen: precision alone allows the error (a nearly lost one-pass variance allows a
            # per-channel scale of any size), so the data do not tell the convention from precision
            passed_over, combo = combo, None
    if prec is not None and combo is None:
        _remember_row(memory, None, output, step)
        text = _precision_text(case, prec, plain_max_abs, output)
        if passed_over is not None:
            text += (
                f"; a convention with a tighter bound around it is also consistent, not distinguishable from "
                f"precision here: {passed_over[0].label} (then {passed_over[1].model.label()}, "
                f"{passed_over[1].fraction:.2g} of that allowance)"
            )
        if closest and any(c.kind == "solved_value" and c.matches for c in closest):
            fits = [c for c in closest if c.kind == "solved_value" and c.matches]
            text += "; closest fit, not an explanation (a precision bound covers the error): " + ", ".join(
                f"{c.label}" for c in fits[:2]
            )
        return Finding([], closest, prec.model.label(), text, evaluated, prec, None, "precision")
    if combo is not None:
        c, v = combo
        v.kappa = _kappa_of(case, inputs, step, output)
        label = f"{c.label},{v.model.label()}"
        comb = Candidate(c.semantics, label, c.kind, c.note, c.score, c.max_abs, precision=v)
        _remember(memory, comb, where, output, step)
        text = describe_change(case, base, c.semantics, output)
        if c.note:
            text += f" ({c.note})"
        text += f"; then {_precision_text(case, v, plain_max_abs, output, around='that convention')}"
        if prec is not None:
            text += (
                f"; precision alone ({prec.model.label()}) would use {prec.fraction:.2g} of its allowance, "
                f"this convention leaves {v.fraction:.2g}"
            )
        docs = docs_for(base, c.semantics)
        if docs:
            text += f". {docs}"
        return Finding([comb], closest, label, text, evaluated, v, c.semantics, "convention+precision")
    _remember_row(memory, None, output, step)
    shape = error_shape(case, output, obs, expected, tol)
    if not closest:
        text = (
            f"no convention of the catalog reproduces it: none of the {evaluated} alternatives tried "
            f"reduces the error (so no pairs were tried); the error is {shape}"
        )
    else:
        text = f"no single convention or pair of conventions reproduces it; the error is {shape}"
        text += f"; closest alternatives, not explanations (error without any: {plain_max_abs:.3g}): " + ", ".join(
            f"{c.label} (leaves {'≥ ' if c.screened else ''}{c.max_abs:.3g}, {c.score:.3g}× tolerance"
            + ("; a solved number that fails the corroboration rule" if c.kind == "solved_value" and c.matches else "")
            + ")"
            if math.isfinite(c.score)
            else f"{c.label} (NaN/Inf positions differ)"
            for c in closest
        )
    if prec_closest is not None and prec_closest.fraction <= 1.0 and prec_closest.shape_fraction is not None:
        text += (
            f"; not a precision effect either: the closest model ({prec_closest.model.describe(output in STATS)}) "
            f"allows the error's size ({prec_closest.fraction:.3g}× its allowance) but not its shape: after "
            "removing the best per-channel mean and scale error, the residual (or the mean or inv_std error the "
            f"fit implies) is {prec_closest.shape_fraction / SHAPE_MARGIN:.3g}× what statistics errors and rounding "
            "leave"
        )
    elif prec_closest is not None:
        text += (
            f"; not a precision effect either: the error is {prec_closest.fraction:.3g}× the allowance of "
            f"the closest model ({prec_closest.model.describe(output in STATS)})"
        )
    return Finding([], closest, "", text, evaluated)


def _convention_plus_precision(case, inputs, cands, output, step, obs, tol, plain_score, plain_max_abs):
    """A convention that removes two thirds of the error (in tolerance units) with a finite precision bound
    around it that covers the rest: (candidate, verdict) or None."""
    for c in sorted(
        (
            c
            for c in cands
            if c.kind != "solved_value"
            and math.isfinite(c.score)
            and c.score <= COMBO_TIGHTER * plain_score
            and c.max_abs <= COMBO_TIGHTER * plain_max_abs
        ),
        key=lambda c: (c.rank_key(), c.score),
    )[:PAIR_TOP_K]:
        alt = CACHE.get(case, inputs, c.semantics, output)[step - 1]
        v, _ = bd.cheapest(bounds_for(case, inputs, c.semantics), output, step, obs, alt, tol)
        if v is not None and not v.vacuous:  # an unbounded envelope around a convention proves nothing
            return c, v
    return None


def _outside_envelope(case, inputs, base, prec, output, step, c: Candidate, expected, tol) -> bool:
    """The convention's own output lies outside the precision model's envelope around the reference:
    arithmetic of that precision could not have produced it, so the data tell the two apart."""
    alt = CACHE.get(case, inputs, c.semantics, output)[step - 1]
    v = bd.judge(bounds_for(case, inputs, base), prec.model, output, step, alt, expected, tol)
    return v is None or not v.covered


def _effect(case, inputs, output, step, c: Candidate, expected, tol) -> float:
    """The convention's own effect on ``output``: its reference against the case's, in tolerance units
    (from the references alone, so the same on every machine)."""
    alt = CACHE.get(case, inputs, c.semantics, output)[step - 1]
    return residual(alt, expected, tol.atol, tol.rtol)[0]


def _kappa_of(case, inputs, step: int, output: str) -> float | None:
    k = step if output != "eval_y" else len(inputs.x)
    try:  # the channel statistics the bounds computed (memoized per case)
        b = bounds_for(case, inputs, case.semantics)
        if b.channel_axis % len(case.shape) == case.channel_axis % len(case.shape):
            return bd.condition_number_of(b.data(k))
        return bd.condition_number(inputs.x[k - 1], case.channel_axis)
    except Exception:  # noqa: BLE001 - a text detail never fails the search
        return None


def explain(
    case, inputs, output: str, step: int, observed: np.ndarray, expected: np.ndarray, tol, memory: list | None = None
) -> tuple[str, str] | None:
    """The :data:`normconf.results.EXPLAINER` hook: (label, text); label ``""`` = still a mismatch."""
    try:
        f = explain_output(case, inputs, output, step, observed, expected, tol, memory)
    except Exception as e:  # the engine must never turn a result into a crash
        return "", f"explanation engine failed: {type(e).__name__}: {e}"
    return f.label, f.text
