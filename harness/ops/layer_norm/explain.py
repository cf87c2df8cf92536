"""Why does a backend's LayerNorm output differ from the reference?  (docs/explain.md, docs/layer_norm.md)

The rules of the BatchNorm explainer, on LayerNorm's knobs:

1. **Precision** first: the output lies within the derived forward-error bound
   (:mod:`.bounds`) of the cheapest working-precision model (finest precision, two-pass before
   one-pass, unfolded before folded) under the case's conventions, and the error has the shape
   statistics errors leave (two constants per row plus rounding: ``bounds.shape_fraction``) →
   ``precision=...``.  Except: a catalog convention that reproduces it within tolerance, when the
   error is at least :data:`EXACT_OVER_PRECISION` tolerances, is preferred (the bound only allows
   what the convention predicts).
2. **A convention** of the catalog below reproduces the output within the tolerance, or — when it
   at least halves the error on its own — within a precision bound under that convention → its label (``scale_statistic=variance``,
   ``eps_override=0.001``, ``...,precision=float32``).  Only discrete, documented values: eps
   is never solved freely here.
3. Otherwise ``mismatch``; the text names the closest candidates, marked as not an explanation.

The pair review (:func:`review_pair`) corroborates a convention by every other output of the
pair it changes: a label contradicted by another output is withdrawn.  The engine sees the
case, the inputs and the arrays, never a backend's name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from normconf.explain.precision import SHAPE_MARGIN
from normconf.ops.layer_norm import bounds as lb
from normconf.ops.layer_norm.semantics import LayerNormSemantics

if TYPE_CHECKING:
    from normconf.compare import Tolerance
    from normconf.explain.bounds import Verdict
    from normconf.explain.precision import Model
    from normconf.ops.layer_norm.case import LayerNormCase
    from normconf.ops.layer_norm.inputs import LayerNormInputs

#: documented eps defaults: torch/ONNX 1e-5, Flax 1e-6, Keras 1e-3, BERT-style models 1e-12
#: a catalog convention that reproduces the output within tolerance is preferred to a covering precision
#: model when the error without it is at least this many tolerances (the rule solved numbers follow,
#: docs/explain.md): an error just above the tolerance is matched by chance, a large one is not
EXACT_OVER_PRECISION = 10.0

KNOWN_EPS = {
    1e-5: "torch.nn.LayerNorm / ONNX LayerNormalization",
    1e-6: "flax LayerNorm",
    1e-3: "keras LayerNormalization",
    1e-12: "BERT-style models (HF transformers)",
}


def alternatives(case: LayerNormCase, base: LayerNormSemantics) -> list[tuple[LayerNormSemantics, str]]:
    """The catalog: single convention changes that can apply to ``case`` (semantics, in words)."""
    out: list[tuple[LayerNormSemantics, str]] = []
    flip = "unbiased" if base.normalize_variance == "biased" else "biased"
    if base.scale_statistic == "variance":
        out.append(
            (
                base.replace(normalize_variance=flip),
                f"the {flip} variance (m{'−1' if flip == 'unbiased' else ''} "
                f"= {case.row_size - (flip == 'unbiased')} instead of "
                f"{case.row_size - (flip == 'biased')})",
            )
        )
    for place, words in (
        ("outside_sqrt", "eps added outside the square root: 1/(sqrt(var) + eps)"),
        ("none", "no eps at all"),
    ):
        out.append((base.replace(eps_placement=place), words))
    for eps, who in KNOWN_EPS.items():
        if eps != case.eps:
            out.append((base.replace(eps_override=eps), f"eps = {eps:g} ({who}'s default) instead of {case.eps:g}"))
    if base.scale_statistic == "mean_square":
        out.append(
            (base.replace(scale_statistic="variance"), "the variance of x under the square root instead of mean(x²)")
        )
        out.append(
            (base.replace(centered=True, scale_statistic="variance"), "a centered LayerNorm instead of RMS scaling")
        )
    else:
        out.append((base.replace(centered=False, scale_statistic="mean_square"), "RMS scaling instead of LayerNorm"))
        out.append((base.replace(centered=False), "no mean subtracted from x (the variance still centered)"))
    if case.has_affine:
        parts = ("gamma_only", "beta_only", "none") if case.has_bias else ("none",)
        for a in parts:
            out.append(
                (
                    base.replace(affine=a),
                    {
                        "gamma_only": "beta ignored",
                        "beta_only": "gamma ignored",
                        "none": "the affine transform ignored",
                    }[a],
                )
            )
    return out


@dataclass
class Found:
    sem: LayerNormSemantics
    words: str
    label: str
    verdict: Any = None  # a precision Verdict when the bound (not plain reproduction) covers it
    residual: float = np.inf  # worst |error| / tolerance under the convention alone


def _ref(
    case: LayerNormCase, inputs: LayerNormInputs, sem: LayerNormSemantics, output: str, step: int
) -> np.ndarray | None:
    from normconf.explain.refcache import CACHE
    from normconf.oracle import round_to_output_dtypes

    # (the cache and the rounding are op-generic but still annotated with BatchNorm's Semantics and Case)
    steps = CACHE.get(case, inputs, sem, output)  # type: ignore[arg-type]
    if steps is None:
        return None
    return round_to_output_dtypes(case, {output: [steps[step - 1]]})[output][0]  # type: ignore[arg-type]


def _ratio(obs: np.ndarray, ref: np.ndarray, tol: Tolerance) -> float:
    with np.errstate(all="ignore"):
        lim = tol.atol + tol.rtol * np.abs(ref)
        err = np.abs(obs - ref)
        err = np.where((obs == ref) | (np.isnan(obs) & np.isnan(ref)), 0.0, err)
        err = np.where(np.isnan(err), np.inf, err)
        r = np.where(err == 0, 0.0, err / np.where(lim > 0, lim, np.finfo(float).tiny))
    return float(r.max()) if r.size else 0.0


def precision(
    case: LayerNormCase,
    inputs: LayerNormInputs,
    sem: LayerNormSemantics,
    output: str,
    step: int,
    obs: np.ndarray,
    ref: np.ndarray,
    tol: Tolerance,
) -> tuple[Verdict | None, Verdict | None]:
    """(the covering precision verdict with the tightest model, or None; the closest non-covering one)."""
    rb = lb.RowBounds(case, inputs, sem)
    closest = None
    for model in lb.models(case, output):
        v = lb.judge(rb, model, output, step, obs, ref, tol)
        if v is None:
            continue
        if v.covered and not v.vacuous:
            return v, closest
        if v.vacuous:
            continue  # allows anything somewhere: neither an explanation nor a near miss
        if closest is None or v.fraction < closest.fraction:
            closest = v
    return None, closest


def _precision_words(case: LayerNormCase, v: Verdict, output: str) -> str:
    kappa = f"; condition number κ = √(E[x²]/var) = {v.kappa:.3g}" if v.kappa is not None else ""
    what = v.model.describe(statistic=output == "mean")
    return (
        f"within the derived forward-error bound of {what} (worst error {v.max_err:.3g} = "
        f"{100 * v.fraction:.0f}% of bound + tolerance, at {list(v.worst_index)}){kappa}"
    )


def explain(
    case: LayerNormCase,
    inputs: LayerNormInputs,
    output: str,
    step: int,
    observed: np.ndarray,
    expected: np.ndarray,
    tol: Tolerance,
    memory: Any = None,
) -> tuple[str, str] | None:
    """(label, text) for one mismatching output; label ``""``: still a mismatch (the text says why)."""
    base = case.semantics
    obs = np.asarray(observed, np.float64)
    ref = np.asarray(expected, np.float64)
    if obs.shape != ref.shape:
        return None
    v, closest_prec = precision(case, inputs, base, output, step, obs, ref, tol)
    if v is not None:
        exact = _conventions(case, inputs, base, output, step, obs, tol, with_bounds=False)
        if exact and _ratio(obs, ref, tol) >= EXACT_OVER_PRECISION:
            # a documented convention reproduces, at float64 and within tolerance, an error many times the
            # tolerance; a precision bound that also holds it only allows it (a one-pass variance, a large
            # offset): the sharp prediction that came true is the explanation
            best = exact[0]
            _remember(memory, output, step, best, [f.label for f in exact[1:]] + [v.model.label()])
            text = (
                f"{best.words} reproduces it within tolerance (worst {100 * best.residual:.0f}% of the tolerance); "
                f"the precision hypothesis {v.model.label()} would also allow it (its bound is wider: "
                f"{100 * v.fraction:.2g}% of it used), not preferred"
            )
            return best.label, text
        label = v.model.label()
        _remember(memory, output, step, None, [f.label for f in exact])
        return label, f"precision: {_precision_words(case, v, output)}; the float64 result would be within tolerance"
    found = _conventions(case, inputs, base, output, step, obs, tol, with_bounds=True)
    if found:
        best = found[0]
        _remember(memory, output, step, best, [f.label for f in found[1:]])
        text = best.words
        if best.verdict is not None:
            text += f", and precision: {_precision_words(case, best.verdict, output)}"
        else:
            text += f" reproduces it within tolerance (worst {100 * best.residual:.0f}% of the tolerance)"
        if len(found) > 1:
            text += "; also consistent: " + ", ".join(f.label for f in found[1:4])
        return best.label, text
    near = _closest(case, inputs, base, output, step, obs, tol)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN output: nanmax is NaN, said as such
        worst = np.nanmax(np.abs(obs - ref)) if obs.size else 0.0
    parts = [f"max |error| {worst:.3g}"]
    if closest_prec is not None and closest_prec.fraction <= 1.0 and closest_prec.shape_fraction is not None:
        parts.append(
            f"the closest precision model, {closest_prec.model.label()}, allows the error's size but not its "
            f"shape: after removing the best per-row mean and scale error the worst residual is "
            f"{closest_prec.shape_fraction:.3g}× its rounding-only bound + tolerance (statistics errors leave "
            f"at most {SHAPE_MARGIN:g}×; not an explanation)"
        )
    elif closest_prec is not None:
        parts.append(
            f"the closest precision model, {closest_prec.model.label()}, is exceeded "
            f"({100 * closest_prec.fraction:.0f}% of bound + tolerance)"
        )
    if near:
        parts.append(
            "closest conventions (not explanations): "
            + ", ".join(f"{f.label} ({f.residual:.3g}× the tolerance)" for f in near)
        )
    return "", "; ".join(parts)


def _label(base: LayerNormSemantics, sem: LayerNormSemantics, model: Model | None = None) -> str:
    lab = sem.label(base)
    return f"{lab},{model.label()}" if model is not None else lab


def _conventions(
    case: LayerNormCase,
    inputs: LayerNormInputs,
    base: LayerNormSemantics,
    output: str,
    step: int,
    obs: np.ndarray,
    tol: Tolerance,
    with_bounds: bool,
) -> list[Found]:
    """Catalog entries that reproduce ``obs`` (within tolerance; ``with_bounds``: or within a precision bound
    under the convention), best first: plain reproductions, then by bound fraction."""
    plain, bounded = [], []
    base_ref = _ref(case, inputs, base, output, step)
    r0 = _ratio(obs, base_ref, tol) if base_ref is not None else np.inf
    for sem, words in alternatives(case, base):
        alt = _ref(case, inputs, sem, output, step)
        if alt is None or alt.shape != obs.shape:
            continue
        if base_ref is not None and np.array_equal(alt, base_ref, equal_nan=True):
            continue  # the change does not move this output
        r = _ratio(obs, alt, tol)
        if r <= 1.0:
            plain.append(Found(sem, words, _label(base, sem), None, r))
        elif with_bounds and r <= 0.5 * r0:  # the convention must take most of the error; precision the rest
            v, _ = precision(case, inputs, sem, output, step, obs, alt, tol)
            if v is not None:
                bounded.append(Found(sem, words, _label(base, sem, v.model), v, r))
    plain.sort(key=lambda f: f.residual)
    bounded.sort(key=lambda f: f.verdict.fraction)
    return plain + bounded


def _closest(
    case: LayerNormCase,
    inputs: LayerNormInputs,
    base: LayerNormSemantics,
    output: str,
    step: int,
    obs: np.ndarray,
    tol: Tolerance,
    n: int = 3,
) -> list[Found]:
    out = []
    for sem, words in alternatives(case, base):
        alt = _ref(case, inputs, sem, output, step)
        if alt is not None and alt.shape == obs.shape:
            out.append(Found(sem, words, _label(base, sem), None, _ratio(obs, alt, tol)))
    out.sort(key=lambda f: f.residual)
    return out[:n]


def _remember(memory: Any, output: str, step: int, found: Found | None, also: list[str]) -> None:
    if memory is None:
        return
    memory.rows[(output, step)] = found
    if also:
        memory.consistent[(output, step)] = ";".join(dict.fromkeys(also))


def review_pair(
    case: LayerNormCase,
    inputs: LayerNormInputs | None,
    rows: Sequence[Any],
    observed: dict[str, Any],
    expected: dict[str, Any],
    memory: Any,
) -> None:
    """Corroboration: a convention explaining one output must hold on every other output of the pair it
    changes (the observed output agrees with the reference under the convention — within tolerance,
    or within the precision bound the row names).  A contradicted row becomes a mismatch whose text
    names the convention as the closest fit, not an explanation."""
    if memory is None or inputs is None or not observed:
        return
    from normconf.outputs import tolerance_for

    by_key = {(r.output, r.step): r for r in rows if r.output and r.step is not None}
    for (output, step), found in list(memory.rows.items()):
        row = by_key.get((output, step))
        if found is None or row is None or row.outcome != "explained":
            continue
        for (o2, k2), other in by_key.items():
            if (o2, k2) == (output, step) or o2 not in observed or o2 not in expected:
                continue
            obs2 = np.asarray(observed[o2][k2 - 1], np.float64)
            alt = _ref(case, inputs, found.sem, o2, k2)
            plain = np.asarray(expected[o2][k2 - 1], np.float64)
            if alt is None or alt.shape != obs2.shape or np.array_equal(alt, plain, equal_nan=True):
                continue
            tol = tolerance_for(case, o2)  # type: ignore[arg-type]  # op-generic, annotated with BatchNorm's Case
            if _ratio(obs2, alt, tol) <= 1.0:
                continue
            if found.verdict is not None or other.outcome == "explained":
                v, _ = precision(case, inputs, found.sem, o2, k2, obs2, alt, tol)
                if v is not None:
                    continue
            row.outcome = "mismatch"
            row.explanation_text = (
                f"closest: {found.label} ({found.words}) — not an explanation: "
                f"contradicted by {o2}"
                + (f" step {k2}" if case.steps > 1 else "")
                + f", which does not follow it; was: {row.explanation_text}"
            )
            row.explanation = ""
            break
