"""From a backend's outputs to result rows; the results table and its files.

One row per (case, backend, output, step).  A backend that produced nothing
comparable (unsupported, unavailable, error) gets one row with an empty
``output``.  Outcomes: ``pass``, ``explained``, ``mismatch``, ``unsupported``,
``error``.  A (case, backend) pair is *as expected* when it matches the case's
``expect`` entry for that backend, or — without one — when it is ``pass`` or
``unsupported``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from normconf.cases import Case, LoadedCase
from normconf.compare import compare
from normconf.inputs import Inputs
from normconf.outputs import DATA_OUTPUTS, RESULT_ORDER, output_dtype, tolerance_for  # noqa: F401 (API)

if TYPE_CHECKING:  # pandas is imported where a frame is built: workers judge rows without it
    import pandas as pd

#: the columns of results.csv, in order
COLUMNS = [
    "case",
    "file",
    "line",
    "backend",
    "backend_version",
    "output",
    "step",
    "outcome",
    "max_abs_err",
    "max_rel_err",
    "max_ulp",
    "mismatched",
    "mismatched_frac",
    "worst_index",
    "atol",
    "rtol",
    "tolerance_reason",
    "explanation",
    "explanation_text",
    "expected_outcome",
    "expected_because",
    "expectation_reason",
    "as_expected",
    "message",
    "notes",
    "seconds",
    "dtype",
    "param_dtype",
    "mode",
    "shape",
    "layout",
    "steps",
    "eps",
    "momentum",
    "normalize_variance",
    "running_variance",
    "seed",
    "op",
]
#: columns read back as text, whatever they look like (a case id such as ``1e5`` stays a string)
TEXT_COLUMNS = {
    "case",
    "file",
    "backend",
    "backend_version",
    "output",
    "outcome",
    "worst_index",
    "tolerance_reason",
    "explanation",
    "explanation_text",
    "expected_outcome",
    "expected_because",
    "expectation_reason",
    "message",
    "notes",
    "dtype",
    "param_dtype",
    "mode",
    "shape",
    "layout",
    "momentum",
    "normalize_variance",
    "running_variance",
    "seed",
    "op",
}
#: columns that change from run to run (excluded from reproducibility checks)
TIMING_COLUMNS = ["seconds"]
#: worst first: how a (case, backend) pair's rows combine into one outcome
SEVERITY = {"error": 4, "mismatch": 3, "explained": 2, "pass": 1, "unsupported": 0}


@dataclass
class Row:
    case: str
    file: str
    line: int
    backend: str
    backend_version: str
    output: str
    step: int | None
    outcome: str
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_ulp: float | None = None
    mismatched: int | None = None
    mismatched_frac: float | None = None
    worst_index: str = ""
    atol: float | None = None
    rtol: float | None = None
    tolerance_reason: str = ""
    explanation: str = ""
    explanation_text: str = ""
    expected_outcome: str = ""
    expected_because: str = ""
    expectation_reason: str = ""
    as_expected: bool | None = None
    message: str = ""
    notes: str = ""
    seconds: float | None = None
    dtype: str = ""
    param_dtype: str = ""
    mode: str = ""
    shape: str = ""
    layout: str = ""
    steps: int = 1
    eps: float | None = None
    momentum: str = ""
    normalize_variance: str = ""
    running_variance: str = ""
    seed: str = ""
    op: str = ""
    #: small per-mismatch error summary for the report's plots (not a CSV column)
    plot: dict | None = field(default=None, repr=False)
    #: conventions that also reproduce this explained output ("a;b"; not a results column): the label's
    #: equivalents on it, or the conventions a precision bound won against
    consistent: str = field(default="", repr=False)


def _case_fields(lc: LoadedCase) -> dict[str, Any]:
    """The parameter columns of a case's rows: what every op shares, then its op spec's ``row_fields``."""
    from normconf.ops import spec_for

    c = lc.case
    if c.data is not None:
        seed = "explicit data"
    else:
        seed = str(c.input.seed) if c.input is not None else "0"
    fields = dict(
        case=c.id,
        file=lc.file,
        line=lc.line,
        dtype=c.dtype,
        param_dtype=c.params_dtype,
        shape="x".join(str(d) for d in c.shape),
        steps=c.steps,
        seed=seed,
        op=c.op,
    )
    fields.update({k: v for k, v in spec_for(c).row_fields(c).items() if k in _PARAMETER_COLUMNS})
    return fields


#: the columns an op's ``row_fields`` may fill
_PARAMETER_COLUMNS = ("mode", "layout", "eps", "momentum", "normalize_variance", "running_variance")


class PairMemory(list):
    """What the explainer found for one case × backend pair: the conventions it found (the list, for
    recall on later outputs) and, per (output, step), the candidate behind each row (``rows``), for the
    pair-level corroboration.  One per pair: nothing leaks between backends."""

    def __init__(self):
        super().__init__()
        self.rows: dict = {}
        #: (output, step) -> labels of conventions that also reproduce that output, "a;b"
        self.consistent: dict = {}


#: ``rows_for(explainer=OP_DEFAULT)``: the case's op spec's explainer (and its pair reviewer)
OP_DEFAULT = "op"


def rows_for(
    lc: LoadedCase,
    backend: str,
    result: Any,  # normconf.worker.BackendResult
    expected: dict[str, list[np.ndarray]] | None,
    inputs: Inputs | None,
    profile: Any = None,  # normconf.profiles.Profile: the backend's declared conventions
    explainer: Any = OP_DEFAULT,
    reviewer: Any = OP_DEFAULT,
) -> list[Row]:
    """Rows of one (case, backend) pair, including the expectation verdict (derived from
    ``profile`` unless the case has an ``expect`` entry for the backend).

    ``explainer(case, inputs, output, step, observed, expected, tol, memory) -> (label, text) | None``
    is asked about every mismatching output (label ``""``: still a mismatch, the text says what the
    error looks like; ``memory`` is one :class:`PairMemory` per pair, never shared); ``reviewer(case,
    inputs, rows, observed, expected, memory)`` then checks the pair's rows together (corroboration,
    localization).  Default: the case's op spec's (:class:`normconf.ops.OpSpec` ``explain``/``review``);
    ``None``: no explanation.

    ``expected`` may hold an output's steps as float32 where its values are float32 numbers
    (:func:`normconf.oracle.expected_outputs` with ``compact``, as a worker holds them): the
    comparison reads them as they are, and the plots, the explainer and the reviewer get them as
    float64, so every number is the same.  The widening happens only for an output that
    mismatches, and it replaces the output's entry in ``expected`` (same values; a worker's cache
    then holds the float64 copy alone, not both).
    """
    from normconf.ops import spec_for
    from normconf.oracle import as_float64

    case = lc.case
    spec = spec_for(case)
    if explainer == OP_DEFAULT:
        explainer = spec.explain
    if reviewer == OP_DEFAULT:
        reviewer = spec.review
    base = dict(
        _case_fields(lc),
        backend=backend,
        backend_version=result.version,
        notes="; ".join(str(n) for n in (result.notes or ())),
    )
    rows: list[Row] = []

    def for_hooks(name: str) -> list[np.ndarray]:
        """``expected[name]`` for the explainer and reviewer: as it is held where the op's hooks read compact
        values (``explain_reads_compact``), else as float64, stored back in ``expected`` (the same numbers), so
        that a worker's cache holds one copy from then on, not two."""
        steps = expected[name]  # type: ignore[index]
        if not spec.explain_reads_compact and any(np.asarray(a).dtype != np.float64 for a in steps):
            expected[name] = steps = as_float64(steps)  # type: ignore[index]
        return steps

    if result.status != "ok":
        outcome = {"unavailable": "unsupported", "unsupported": "unsupported"}.get(result.status, "error")
        msg = f"backend unavailable: {result.message}" if result.status == "unavailable" else result.message
        rows.append(Row(**base, output="", step=None, outcome=outcome, message=msg, seconds=result.seconds))
    else:
        from normconf.validate_outputs import array_problem

        # defence in depth (the worker checks results against normconf.validate_outputs first): an array that
        # slipped through strange becomes an error row; nothing below raises on it
        outputs = result.outputs if isinstance(result.outputs, dict) else {}
        observed = dict(outputs)  # what the reviewer and the expectation see: outputs with no invalid step
        names = [n for n in _ordered(outputs, spec.result_order) if expected is not None and n in expected]
        memory = PairMemory()  # what explained this pair's earlier outputs (never shared across pairs)
        ignored = sorted(str(n) for n in set(outputs) - set(names))
        if not isinstance(result.outputs, dict):
            rows.append(
                Row(
                    **base,
                    output="",
                    step=None,
                    outcome="error",
                    seconds=result.seconds,
                    message=f"backend returned invalid outputs: {type(result.outputs).__name__}, not a dict",
                )
            )
        elif not names:
            rows.append(
                Row(
                    **base,
                    output="",
                    step=None,
                    outcome="error",
                    seconds=result.seconds,
                    message=f"backend returned no comparable output (got {ignored or 'nothing'})",
                )
            )
        for name in names:
            obs_steps, exp_steps = outputs[name], expected[name]
            tol = tolerance_for(case, name)
            dt = output_dtype(case, name)
            if not isinstance(obs_steps, (list, tuple)):
                observed.pop(name, None)
                rows.append(
                    Row(
                        **base,
                        output=name,
                        step=None,
                        outcome="error",
                        seconds=result.seconds,
                        message=f"backend returned invalid outputs: {name}: "
                        f"{type(obs_steps).__name__}, not a list of steps",
                    )
                )
                continue
            if len(obs_steps) != len(exp_steps):
                rows.append(
                    Row(
                        **base,
                        output=name,
                        step=None,
                        outcome="error",
                        seconds=result.seconds,
                        message=f"{len(obs_steps)} steps returned, {len(exp_steps)} expected",
                    )
                )
                continue
            del exp_steps  # by index below: a step widened to float64 (for_hooks()) leaves no compact copy alive
            for k, o in enumerate(obs_steps, start=1):
                e = expected[name][k - 1]  # type: ignore[index]
                bad = array_problem(name, o, np.shape(e))
                cmp = None
                if bad is None:
                    try:
                        cmp = compare(o, e, tol, dt)
                    except Exception as ex:  # noqa: BLE001 - a strange array must not end the run
                        bad = f"cannot be compared ({type(ex).__name__}: {ex})"
                del e
                if cmp is None:
                    observed.pop(name, None)
                    rows.append(
                        Row(
                            **base,
                            output=name,
                            step=k,
                            outcome="error",
                            seconds=result.seconds,
                            message=f"backend returned invalid outputs: {name} step {k}: {bad}",
                        )
                    )
                    continue
                plot = None
                axis = spec.plot_axis(case)
                if not cmp.close and axis is not None:
                    from normconf.report.plots import plot_data

                    try:  # no plot rather than no report: the row keeps its metrics
                        plot = plot_data(o, expected[name][k - 1], axis)  # type: ignore[index]  # converts in blocks
                    except Exception:  # noqa: BLE001
                        plot = None
                outcome, expl, expl_text = ("pass" if cmp.close else "mismatch"), "", ""
                if not cmp.close and explainer is not None and inputs is not None:
                    found = explainer(case, inputs, name, k, np.asarray(o), for_hooks(name)[k - 1], tol, memory)
                    if found is not None:
                        expl, expl_text = found
                        outcome = "explained" if expl else "mismatch"
                rows.append(
                    Row(
                        **base,
                        output=name,
                        step=k,
                        outcome=outcome,
                        max_abs_err=_f(cmp.max_abs_err),
                        max_rel_err=_f(cmp.max_rel_err),
                        max_ulp=_f(cmp.max_ulp),
                        mismatched=cmp.mismatched,
                        mismatched_frac=cmp.mismatched_frac,
                        worst_index="" if cmp.worst_index is None else str(list(cmp.worst_index)),
                        atol=tol.atol,
                        rtol=tol.rtol,
                        tolerance_reason=tol.reason,
                        explanation=expl,
                        explanation_text=expl_text,
                        message=cmp.message,
                        seconds=result.seconds,
                        plot=plot,
                        consistent=memory.consistent.get((name, k), ""),
                    )
                )
    ok = result.status == "ok"
    if reviewer is not None and any(r.outcome in ("mismatch", "explained") for r in rows):
        hook_expected = None if expected is None else {n: for_hooks(n) for n in list(expected)}
        reviewer(case, inputs, rows, observed if ok else result.outputs, hook_expected, memory if ok else None)
    apply_expectation(
        case,
        backend,
        rows,
        unavailable=result.status == "unavailable",
        profile=profile,
        inputs=inputs,
        observed=observed if ok else None,
    )
    return rows


def _ordered(outputs: dict, order: tuple[str, ...] = RESULT_ORDER) -> list[str]:
    return [n for n in order if n in outputs] + sorted((n for n in outputs if n not in order), key=str)


def _f(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def pair_outcome(rows: Iterable[Row]) -> str:
    """The worst outcome over a (case, backend) pair's rows."""
    return max((r.outcome for r in rows), key=lambda o: SEVERITY[o], default="unsupported")


#: unit roundoff order of the dtypes (finest first), for "at least the case's own precision"
_FINER_OR_EQUAL = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3}


def _labels(label: str) -> set[str]:
    """The ``knob=value`` parts of one explanation label."""
    return {p for p in label.split(",") if p}


def own_precision(case: Case, label: str, output: str = "") -> bool:
    """``label`` is a precision explanation at the output's own dtype or finer (``precision=float32`` on a
    float32 case): the backend computed in the precision the case asks for and stayed within its derived
    error bound, which is conformance, not a discrepancy.  The own dtype of the batch and running
    statistics is the coarser of the data and parameter dtypes (statistics held in float32 parameters);
    that of ``y``, ``x_hat`` and ``eval_y`` the data dtype."""
    if not label.startswith("precision="):
        return False
    parts = dict(p.split("=", 1) for p in label.split(",") if "=" in p)
    dt = parts.get("precision", "")
    stats = parts.get("stats_precision", dt)
    from normconf.ops import spec_for

    limit = _FINER_OR_EQUAL.get(case.dtype, 0)
    if output not in spec_for(case).data_outputs:
        limit = max(limit, _FINER_OR_EQUAL.get(case.params_dtype, 0))
    return _FINER_OR_EQUAL.get(dt, 9) <= limit and _FINER_OR_EQUAL.get(stats, 9) <= limit


def because_matches(because: str, labels: Iterable[str]) -> bool:
    """An expected ``because`` holds when some row's label contains all of its ``knob=value`` parts
    (``precision=float32`` matches ``precision=float32,variance=one_pass``: precision matches by kind)."""
    want = _labels(because)
    return any(want <= _labels(lab) for lab in labels)


def apply_expectation(
    case: Case,
    backend: str,
    rows: list[Row],
    unavailable: bool = False,
    profile: Any = None,
    inputs: Inputs | None = None,
    observed: dict | None = None,
) -> None:
    """Fill the expectation columns and ``as_expected`` of one pair's rows (in place).

    With an ``expect`` entry for the backend, the pair must match it.  Without one, the
    expectation is derived from the backend's convention ``profile``
    (:func:`normconf.profiles.judge_pair`): every row ``pass`` or ``unsupported``, ``explained``
    by precision at the case's own dtype or finer (:func:`own_precision`), or explained by the
    profile's conventions (and its declared working precision); an entry the backend does not
    show fails the pair.  No profile: the backend follows the case.
    """
    from normconf.profiles import Profile, judge_pair

    exp = case.expect.get(backend)
    overall = pair_outcome(rows)
    derived = None
    if unavailable:
        verdict, note = None, ""
    elif exp is None:
        derived = judge_pair(
            case,
            inputs,
            profile if profile is not None else Profile(backend),
            rows,
            observed,
            own_precision,
            tolerance_for,
            output_dtype,
        )
        verdict, note = derived.as_expected, derived.note
    else:
        verdict = overall == exp.outcome
        note = ""
        if verdict and exp.because:
            labels = {lab for r in rows for lab in r.explanation.split(";") if lab}
            # a convention that also reproduces a row — the same numbers as its label on that output, or within
            # the tolerance where a precision bound covers it too (the data cannot tell them apart there, e.g.
            # on another kernel library) — still holds as expected
            consistent = {lab for r in rows if r.outcome == "explained" for lab in r.consistent.split(";") if lab}
            verdict = because_matches(exp.because, labels | consistent)
            if not verdict:
                note = f"expected explanation {exp.because!r}, got {sorted(labels) or 'none'}"
        elif not verdict:
            note = f"expected {exp.outcome} ({exp.reason}), got {overall}"
    for r in rows:
        r.as_expected = verdict
        if exp is not None:
            r.expected_outcome, r.expected_because, r.expectation_reason = exp.outcome, exp.because or "", exp.reason
        elif derived is not None and derived.expected_because:
            r.expected_outcome, r.expected_because = "explained", derived.expected_because
            r.expectation_reason = f"{profile.name} profile" if profile is not None else ""
        if note and r.outcome == overall:
            r.message = f"{note}; {r.message}" if r.message else note


def to_frame(rows: Iterable[Row]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame([vars(r) for r in rows], columns=COLUMNS)
    df["step"] = df["step"].astype("Int64")
    df["mismatched"] = df["mismatched"].astype("Int64")
    df["as_expected"] = df["as_expected"].astype("boolean")
    return df


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written).

    The file is fsynced before the rename and its folder after it (best effort), so after a crash or
    power loss ``path`` is the old file or the new one.  On any error (a full disk shows as ENOSPC at
    the write or the fsync) the temporary file is removed and the error re-raised; ``path`` is then
    unchanged.  A set of files that must change together: :func:`normconf.report.write_reports`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make shared reports unreadable
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            fd = -1  # owned (and closed) by f from here on
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)  # the rename itself
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_csv(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def write_json(df: pd.DataFrame, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """``{"meta": meta, "results": [one object per row]}``, compact.  The rows are pandas' own
    ``to_json`` text (floats to 15 significant digits, NaN/Inf as ``null``) spliced in as it is:
    parsing and re-serializing it cost 0.45 s for the library's 24 000 rows."""
    records = df.to_json(orient="records", double_precision=15)
    if _pandas_escapes_slashes():  # every "/" as "\/" (a backslash as "\\", so "\\\/" before one): undo it
        records = records.replace("\\/", "/")
    head = json.dumps(meta, separators=(",", ":"), allow_nan=False)
    atomic_write_text(path, '{"meta":' + head + ',"results":' + records + "}")


@functools.cache
def _pandas_escapes_slashes() -> bool:
    return "\\/" in __import__("pandas").DataFrame({"s": ["/"]}).to_json(orient="records")


def read_results(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read results.csv or results.json back into (DataFrame, meta)."""
    import pandas as pd

    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        df = pd.DataFrame(data.get("results", []), columns=COLUMNS)
        meta = data.get("meta", {})
    else:
        text = [c for c in COLUMNS if c in TEXT_COLUMNS]
        df = pd.read_csv(
            path,
            keep_default_na=False,
            dtype={c: str for c in text},
            na_values={c: [""] for c in COLUMNS if c not in text},
        )
        meta = {}
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df[COLUMNS], meta
