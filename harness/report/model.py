"""The results table reshaped for reading: cases × backends, one *pair* per cell.

Used by the HTML report (:mod:`normconf.report.html`) and the run-to-run diff
(:mod:`normconf.report.diff`).  Works from the rows alone (a results.csv or
results.json written anywhere); when a row's ``file`` can be read, the case's
YAML adds its description, parameters and an input summary.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from normconf.results import SEVERITY

OUTCOMES = ["pass", "explained", "mismatch", "unsupported", "error"]
#: outcomes that count as a failure (``normconf diff``: new failures)
FAILING = ("mismatch", "error")
#: case columns (identical on every row of a case)
CASE_COLUMNS = [
    "file",
    "line",
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
]


def clean(v: Any) -> Any:
    """A cell as a plain Python value: NaN/NA/None → None, numpy scalars → Python."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return None if v != v else v
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        v = v.item()
    return v


def text(v: Any) -> str:
    v = clean(v)
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def as_bool(v: Any) -> bool | None:
    v = clean(v)
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return {"true": True, "false": False}.get(v.strip().lower())
    return bool(v)


def num(v: Any) -> float | None:
    v = clean(v)
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def worst(outcomes: list[str]) -> str:
    return max(outcomes, key=lambda o: SEVERITY.get(o, 4), default="unsupported")


def labels(expl: str) -> list[str]:
    return [x for x in (expl or "").split(";") if x]


@dataclass
class Pair:
    """One (case, backend) cell: its rows and the worst outcome."""

    case: str
    backend: str
    outcome: str
    as_expected: bool | None
    version: str
    rows: list[dict[str, Any]]
    expected_outcome: str = ""
    expected_because: str = ""
    expectation_reason: str = ""
    notes: str = ""
    seconds: float | None = None

    @property
    def explanations(self) -> list[str]:
        out: list[str] = []
        for r in self.rows:
            for lab in labels(r["explanation"]):
                if lab not in out:
                    out.append(lab)
        return out

    @property
    def worst_row(self) -> dict[str, Any]:
        """The row that decides the outcome (the worst outcome, the largest error)."""
        bad = [r for r in self.rows if r["outcome"] == self.outcome] or self.rows
        return max(bad, key=lambda r: r["max_abs_err"] if r["max_abs_err"] is not None else -1.0)

    @property
    def max_abs_err(self) -> float | None:
        errs = [r["max_abs_err"] for r in self.rows if r["max_abs_err"] is not None]
        return max(errs) if errs else None

    @property
    def summary(self) -> str:
        """One line: why this pair is not a plain pass."""
        w = self.worst_row
        head = f"{w['output']}" + (f"[step {w['step']}]" if w["step"] not in (None, 1) else "")
        if self.outcome == "explained":
            t = w["explanation_text"] or w["explanation"]
            return f"{head}: {t}" if head else t
        if self.outcome in ("mismatch",) and w["max_abs_err"] is not None:
            msg = w["message"] or f"max |err| {w['max_abs_err']:.3g}"
            return f"{head}: {msg}"
        return f"{head}: {w['message']}" if head and w["message"] else w["message"]


@dataclass
class Model:
    cases: list[str]
    backends: list[str]
    case_info: dict[str, dict[str, Any]]
    pairs: dict[tuple[str, str], Pair]
    versions: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        c = {o: 0 for o in OUTCOMES}
        for p in self.pairs.values():
            c[p.outcome] = c.get(p.outcome, 0) + 1
        return c

    def backend_counts(self) -> dict[str, dict[str, int]]:
        out = {b: {o: 0 for o in OUTCOMES} for b in self.backends}
        for p in self.pairs.values():
            out[p.backend][p.outcome] = out[p.backend].get(p.outcome, 0) + 1
        return out

    def unexpected(self) -> list[Pair]:
        return [p for p in self.pairs.values() if p.as_expected is False]


_ROW_FIELDS = [
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
    "message",
]
_NUM = {"max_abs_err", "max_rel_err", "max_ulp", "mismatched_frac", "atol", "rtol"}


_INT = ("step", "mismatched")
_TEXT = [f for f in _ROW_FIELDS if f not in _NUM and f not in _INT]


def _row(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in _TEXT:
        v = r.get(f)
        out[f] = v if type(v) is str else text(v)
    for f in _NUM:
        v = r.get(f)
        out[f] = v if type(v) is float and math.isfinite(v) else num(v)
    for f in _INT:
        n = num(r.get(f))
        out[f] = None if n is None else int(n)
    if out["outcome"] not in OUTCOMES:
        out["outcome"] = "error"
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain values (NaN/NA → None); much faster than ``to_dict`` + per-cell checks."""
    cols = {}
    for col in df.columns:
        vals = df[col].astype(object).tolist()
        cols[col] = [None if (v is None or v is pd.NA or (isinstance(v, float) and v != v)) else v for v in vals]
    names = list(cols)
    return [dict(zip(names, vs)) for vs in zip(*cols.values())] if names else []


def build(df: pd.DataFrame, meta: dict[str, Any] | None = None, read_cases: bool = True) -> Model:
    """Group the rows into pairs, in first-seen case order and the run's backend order.

    ``read_cases``: add each case's description, parameters and input summary from the run's
    ``meta["case_info"]``."""
    meta = dict(meta or {})
    records = _records(df)
    cases: list[str] = []
    seen_b: list[str] = []
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    case_info: dict[str, dict[str, Any]] = {}
    for r in records:
        c, b = text(r.get("case")), text(r.get("backend"))
        if c not in case_info:
            cases.append(c)
            case_info[c] = {k: text(r.get(k)) for k in CASE_COLUMNS}
        if b not in seen_b:
            seen_b.append(b)
        grouped.setdefault((c, b), []).append(r)
    order = [b for b in (meta.get("backends") or []) if b in seen_b]
    backends = order + [b for b in seen_b if b not in order]
    versions: dict[str, str] = {}
    pairs: dict[tuple[str, str], Pair] = {}
    for (c, b), rs in grouped.items():
        rows = [_row(r) for r in rs]
        first = rs[0]
        ver = text(first.get("backend_version"))
        if ver:
            versions.setdefault(b, ver)
        flags = [as_bool(r.get("as_expected")) for r in rs]
        ae = False if False in flags else (True if True in flags else None)
        secs = [num(r.get("seconds")) for r in rs]
        pairs[(c, b)] = Pair(
            case=c,
            backend=b,
            outcome=worst([r["outcome"] for r in rows]),
            as_expected=ae,
            version=ver,
            rows=rows,
            expected_outcome=text(first.get("expected_outcome")),
            expected_because=text(first.get("expected_because")),
            expectation_reason=text(first.get("expectation_reason")),
            notes=text(first.get("notes")),
            seconds=max((s for s in secs if s is not None), default=None),
        )
    env_versions = (meta.get("environment") or {}).get("backend_versions") or {}
    for b, v in env_versions.items():
        versions.setdefault(str(b), str(v))
    model = Model(cases, backends, case_info, pairs, versions, meta)
    if read_cases:
        _add_case_info(model)
    return model


# ----------------------------------------------------------------------------------------
# what the run recorded about each case


def _add_case_info(model: Model) -> None:
    """Description, parameters and input summary of each case, from ``meta["case_info"]`` (recorded by
    ``normconf run``, :mod:`normconf.case_info`); the report never re-reads a case file or regenerates inputs."""
    recorded = (model.meta or {}).get("case_info") or {}
    if not isinstance(recorded, dict):
        recorded = {}
    for cid in model.cases:
        info = model.case_info[cid]
        got = recorded.get(cid)
        if not isinstance(got, dict):
            info["source"] = "no case summary recorded with these results: parameters from the results only"
            continue
        info["source"] = "recorded by the run"
        info["description"] = str(got.get("description", "")).strip()
        for key in ("params", "inputs"):
            val = got.get(key)
            if isinstance(val, dict):
                info[key] = {str(k): str(v) for k, v in val.items()}


def repro_command(file: str, case: str, backend: str) -> str:
    """The command line that reruns one (case, backend) pair."""
    return " ".join(
        [
            "normconf",
            "run",
            shlex.quote(file or "cases/"),
            "--case",
            shlex.quote(case),
            "--backend",
            shlex.quote(backend),
        ]
    )
