"""Over one case × backend pair: corroborate each convention by every output it touches, then localize.

A convention that explained one output is an explanation only if the pair's other
outputs (every step) that it can change agree with it: each must be reproduced under
that convention (alone, or together with the convention that explained that output), or
lie within a precision bound around it.  A convention that reproduces ``y`` but
contradicts the reported ``batch_var`` or ``running_var`` is demoted to ``mismatch`` and
named as the closest candidate, not as an explanation.  Precision explanations are per
output and need no corroboration.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from normconf.explain import bounds as bd
from normconf.explain.arrays import _identical, as_exact, residual
from normconf.explain.catalog import affected, describe_change, differences
from normconf.explain.localize import localize
from normconf.explain.refcache import CACHE


def _consistent(case, inputs, sem, own, output: str, step: int, obs, tol) -> tuple[bool, str]:
    """Is ``obs`` (``output`` at ``step``) reproduced under ``sem`` (or ``sem`` ∪ ``own``), or within a bound?"""
    from normconf.explain.bounds_cache import bounds_for

    alt_steps = CACHE.get(case, inputs, sem, output)
    if alt_steps is None or len(alt_steps) < step:
        return False, "the reference cannot run it"
    alt = alt_steps[step - 1]
    o = as_exact(np.asarray(obs), alt.shape)  # the backend's own array: residual and the bounds convert blocks
    if o is None:
        return False, "shape differs"
    score, max_abs = residual(o, alt, tol.atol, tol.rtol)
    if score <= 1.0:
        return True, ""
    if own is not None:
        combined = own.replace(**sem.differences(case.semantics))
        c_steps = CACHE.get(case, inputs, combined, output)
        if (
            c_steps is not None
            and len(c_steps) >= step
            and residual(o, c_steps[step - 1], tol.atol, tol.rtol)[0] <= 1.0
        ):
            return True, ""
    v, _ = bd.cheapest(bounds_for(case, inputs, sem), output, step, o, alt, tol)
    if v is not None:
        return True, ""
    return False, f"leaves {max_abs:.3g} ({score:.3g}× tolerance)"


def corroborate(case, inputs, rows: Sequence[Any], observed: dict, expected: dict, memory) -> None:
    """Demote (in place) each row whose convention is contradicted by another output of the pair."""
    from normconf.outputs import tolerance_for

    found = getattr(memory, "rows", None)
    if not found:
        return
    base = case.semantics
    by_key = {(r.output, r.step): r for r in rows if getattr(r, "step", None)}
    #: (semantics, output, step) -> what that output says of the semantics: None (nothing against it) or the
    #: contradiction; the same for every row it is asked for (it depends on neither the row nor its text)
    verdicts: dict = {}
    for r in rows:
        if r.outcome != "explained" or not r.explanation or r.explanation.startswith("precision="):
            continue
        cand = found.get((r.output, r.step))
        if cand is None:
            continue
        contradiction = ""
        options = [(cand.semantics, cand.label), *zip(cand.equivalent_semantics, cand.equivalents)]
        # an equivalent (identical numbers on this output) that explains another output of the pair first:
        # one convention for the whole pair (normalize_variance on y and batch_var, not reported_variance)
        elsewhere = {x.explanation for x in rows if x is not r and x.outcome == "explained"}
        options.sort(key=lambda o: 0 if any(e == o[1] or e.startswith(o[1] + ",") for e in elsewhere) else 1)
        for sem, label in options:
            contradiction = _contradiction(
                case, inputs, sem, r, by_key, observed, expected, found, tolerance_for, verdicts
            )
            if not contradiction:
                if label != cand.label and r.explanation != label:
                    # an equivalent on this output that the pair's other outputs corroborate
                    r.explanation = label
                    r.explanation_text = (
                        f"{describe_change(case, base, sem, r.output)} (the alternative, identical on "
                        f"{r.output}, that the pair's other outputs corroborate); [{r.explanation_text}]"
                    )
                break
        if contradiction:
            label = r.explanation
            r.outcome = "mismatch"
            r.explanation = ""
            r.explanation_text = (
                f"closest candidate, not an explanation: {label} reproduces {r.output} but is contradicted "
                f"by {contradiction}; [{r.explanation_text}]"
            )


def _contradiction(case, inputs, sem, r, by_key, observed, expected, found, tolerance_for, verdicts=None) -> str:
    """The first other output of the pair that contradicts ``sem`` ("" when none does).

    ``verdicts``: memo of :func:`_verdict` per (semantics, output, step), shared by one pair's rows."""
    base = case.semantics
    knobs = differences(sem, base)
    touched = set().union(*(affected(k, case.mode, sem) for k in knobs)) if knobs else set()
    for o_name, k in by_key:
        if (o_name, k) == (r.output, r.step) or o_name not in touched or o_name not in observed:
            continue
        key = (sem, o_name, k)
        if verdicts is not None and key in verdicts:
            why = verdicts[key]
        else:
            why = _verdict(case, inputs, sem, o_name, k, observed, found, tolerance_for)
            if verdicts is not None:
                verdicts[key] = why
        if why is not None:
            return f"{o_name}" + (f" step {k}" if case.steps > 1 and o_name != "eval_y" else "") + f" ({why})"
    return ""


def _verdict(case, inputs, sem, o_name: str, k: int, observed, found, tolerance_for) -> str | None:
    """Why ``o_name`` at step ``k`` contradicts ``sem``, or None (unchanged by it, or consistent with it)."""
    base = case.semantics
    alt_steps = CACHE.get(case, inputs, sem, o_name)
    base_steps = CACHE.get(case, inputs, base, o_name)
    if alt_steps is None or len(alt_steps) < k or base_steps is None:
        return None
    if _identical(alt_steps[k - 1], base_steps[k - 1]):
        return None  # the convention does not change this output
    own = found.get((o_name, k))
    ok, why = _consistent(
        case,
        inputs,
        sem,
        own.semantics if own is not None else None,
        o_name,
        k,
        observed[o_name][k - 1],
        tolerance_for(case, o_name),
    )
    return None if ok else why


def review_pair(case, inputs, rows: Sequence[Any], observed: dict, expected: dict, memory) -> None:
    """The :data:`normconf.results.REVIEWER` hook: corroboration, then per-stage localization."""
    try:
        corroborate(case, inputs, rows, observed, expected, memory)
    except Exception as e:  # noqa: BLE001 - the engine must never turn a result into a crash
        for r in rows:
            if r.outcome == "explained":
                r.explanation_text += f" [corroboration failed: {type(e).__name__}: {e}]"
    localize(case, rows)
