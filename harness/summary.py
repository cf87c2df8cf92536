"""A run's verdict: the exit code of its results and the summary printed after it (one rule, one place).

Exit codes: 0 every outcome as expected; 1 some pair not as expected; 2 bad input or usage;
3 an unexpected ``error``; 4 a requested backend unavailable, or one named on the command line
tested nothing; 5 the reports could not be written.
"""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_ERROR, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
#: the run finished but its reports could not be written (the previous reports are unchanged)
EXIT_WRITE = 5
#: the row message of a backend that is not available (``normconf.results.rows_for``)
UNAVAILABLE_PREFIX = "backend unavailable:"


def unavailable_backends(df) -> dict[str, str]:
    """{backend: reason} for the backends of a results table that were not available (in run order)."""
    out: dict[str, str] = {}
    if not len(df):
        return out
    msgs = df["message"].fillna("").astype(str)
    hit = df[(df["outcome"] == "unsupported") & msgs.str.startswith(UNAVAILABLE_PREFIX)]
    for backend, msg in zip(hit["backend"], hit["message"]):
        out.setdefault(str(backend), str(msg)[len(UNAVAILABLE_PREFIX) :].strip())
    return out


def tested_nothing(df, backends) -> dict[str, str]:
    """{backend: reason} for the named ``backends`` that ran none of the run's cases: every pair
    ``unsupported`` (a library or adapter that refuses everything).  Not for unavailable ones."""
    out: dict[str, str] = {}
    if not len(df):
        return out
    for b in backends:
        g = df[df["backend"] == b]
        msgs = g["message"].fillna("").astype(str)
        if len(g) and (g["outcome"] == "unsupported").all() and not msgs.str.startswith(UNAVAILABLE_PREFIX).any():
            first = next((m for m in msgs if m), "no reason given")
            out[str(b)] = (
                f"ran none of the {g['case'].nunique()} selected case(s): every one unsupported (e.g. {first})"
            )
    return out


def _not_as_expected(value) -> bool:
    """``as_expected`` is False (not None/NA: an unavailable backend has no verdict)."""
    import pandas as pd

    return value is not None and value is not pd.NA and str(value) == "False"


def _verdicts(df, must_test=()) -> tuple[dict, list, dict[str, str]]:
    """(pair counts per backend and outcome, pairs not as expected, unavailable backends and the
    backends of ``must_test`` that tested nothing)."""
    from normconf.results import SEVERITY

    counts: dict[str, dict[str, int]] = {}
    unexpected = []
    if len(df):
        # vectorized: per pair (in order of first appearance) the first row of the most severe outcome
        keys = ["case", "backend"]
        sev = df["outcome"].map(SEVERITY)
        worst = sev.groupby([df[k] for k in keys], sort=False).idxmax()
        first = df.groupby(keys, sort=False).head(1)["as_expected"]  # (not .first(): it skips NA)
        rows = df.loc[worst.to_numpy()]
        for (case, backend), outcome, verdict, out, expl, msg in zip(
            worst.index, rows["outcome"], first.to_numpy(), rows["output"], rows["explanation"], rows["message"]
        ):
            counts.setdefault(backend, {}).setdefault(outcome, 0)
            counts[backend][outcome] += 1
            if _not_as_expected(verdict):
                unexpected.append((case, backend, outcome, out or "", expl or "", msg or ""))
    return counts, unexpected, {**unavailable_backends(df), **tested_nothing(df, must_test)}


def run_exit_code(df, allow_unavailable: bool = False, must_test=()) -> int:
    """The exit code of a complete run's results (see the module docstring): 4 > 3 > 1 > 0.
    ``must_test``: backends named by ``--backend``, ``--native`` or ``--adapter``, which must run at
    least one case (a backend that refuses every case tested nothing: 4, like an unavailable one)."""
    _, unexpected, unavailable = _verdicts(df, must_test)
    if unavailable and not allow_unavailable:
        return EXIT_UNAVAILABLE
    if any(overall == "error" for _, _, overall, *_ in unexpected):
        return EXIT_ERROR
    return EXIT_UNEXPECTED if unexpected else EXIT_OK


#: width of the summary where the output is not a terminal (a CI log): wide, so nothing wraps mid-token
LOG_WIDTH = 200


def output_width(file=None) -> int:
    """Columns to lay text out in: the terminal's (``shutil.get_terminal_size``, which honours
    ``$COLUMNS``) when ``file`` is one, else ``$COLUMNS`` or :data:`LOG_WIDTH`."""
    import os
    import shutil

    file = file or sys.stdout
    try:
        tty = file.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        return max(40, shutil.get_terminal_size().columns)
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return LOG_WIDTH


def make_console(file=None):
    """A rich console writing to ``file`` at :func:`output_width` (no colour codes unless a terminal)."""
    from rich.console import Console

    file = file or sys.stdout
    return Console(file=file, width=output_width(file), highlight=False)


def verdict_line(df, allow_unavailable: bool = False, must_test=()) -> str:
    """The one line ``-q`` prints: how many pairs, and whether every outcome was as expected."""
    counts, unexpected, unavailable = _verdicts(df, must_test)
    pairs = sum(sum(c.values()) for c in counts.values())
    code = run_exit_code(df, allow_unavailable, must_test)
    if code == EXIT_OK:
        tail = f"; {len(unavailable)} backend(s) skipped" if unavailable else ""
        return f"normconf: every outcome as expected ({pairs} case × backend pairs{tail})"
    parts = []
    if unexpected:
        parts.append(f"{len(unexpected)} result(s) not as expected")
    if unavailable and not allow_unavailable:
        parts.append(f"{len(unavailable)} requested backend(s) unavailable or tested nothing")
    return f"normconf: {', '.join(parts)} ({pairs} case × backend pairs; exit {code})"


def print_summary(df, out=None, allow_unavailable: bool = False, must_test=(), verbosity: int = 0) -> None:
    """The table of outcomes per backend, what was not as expected, what to install; ``verbosity``
    -1: only :func:`verdict_line`; 1: also one line per result row."""
    from rich.table import Table

    console = make_console(out or sys.stdout)
    if verbosity < 0:
        console.print(verdict_line(df, allow_unavailable, must_test), markup=False, soft_wrap=True)
        return
    counts, unexpected, unavailable = _verdicts(df, must_test)
    if verbosity > 0:
        for line in row_lines(df):
            console.print(line, markup=False, soft_wrap=True)
    table = Table(title="normconf: outcomes per backend (case × backend pairs)")
    cols = ["pass", "explained", "mismatch", "unsupported", "error"]
    table.add_column("backend", no_wrap=True)
    table.add_column("version", no_wrap=True)
    for c in cols:
        table.add_column(c, justify="right")
    versions = df.groupby("backend")["backend_version"].first().to_dict() if len(df) else {}
    for backend, cnt in counts.items():
        table.add_row(backend, str(versions.get(backend) or ""), *[str(cnt.get(c, 0) or "") for c in cols])
    console.print(table)
    if unexpected:
        console.print(f"[bold red]{len(unexpected)} result(s) not as expected:[/]")
        for case, backend, overall, output, expl, msg in unexpected[:50]:
            detail = expl or msg
            console.print(
                f"  {case} [{backend}] {overall}{' ' + output if output else ''}: {detail[:300]}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        if len(unexpected) > 50:
            console.print(f"  ... and {len(unexpected) - 50} more (see results.csv)")
    if unavailable:
        n = len(unavailable)
        if allow_unavailable:
            console.print(f"[bold yellow]{n} requested backend(s) unavailable, skipped (--allow-unavailable):[/]")
        else:
            console.print(
                f"[bold red]{n} requested backend(s) unavailable: install what each line names, "
                "or pass --allow-unavailable to skip them:[/]"
            )
        for backend, reason in unavailable.items():
            # one line each, never wrapped: the install command stays copyable
            what = "tested nothing" if reason.startswith("ran none of") else "unavailable"
            console.print(f"  {backend}: {what}: {reason}", markup=False, highlight=False, soft_wrap=True)
    if not unexpected and (allow_unavailable or not unavailable):
        tail = f" (on the available backends; {len(unavailable)} skipped)" if unavailable else ""
        console.print(f"[bold green]every outcome as expected{tail}[/]")


def row_lines(df) -> list[str]:
    """``-v``: one line per result row (case · backend · output/step · outcome, explanation or message)."""
    out = []
    for r in _records(df):
        where = r["output"] + (f"@{r['step']}" if r["step"] is not None else "")
        detail = r["explanation"] or r["message"]
        mark = "" if r["as_expected"] is not False else "  (not as expected)"
        out.append(
            f"  {r['case']} · {r['backend']} · {where or '-'} · {r['outcome']}"
            + (f": {detail}" if detail else "")
            + mark
        )
    return out


# ----------------------------------------------------------------------------------------------
# --json


def _clean(v: Any) -> Any:
    """A JSON-safe scalar: NaN/NA → None, numpy scalars → Python."""
    import math

    if v is None:
        return None
    try:
        import pandas as pd

        if v is pd.NA or (not isinstance(v, str) and pd.isna(v)):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _records(df) -> list[dict[str, Any]]:
    """The rows' essentials, plain Python (:data:`ROW_FIELDS`)."""
    if not len(df):
        return []
    out = []
    for rec in df[[c for c in ROW_FIELDS if c in df.columns]].to_dict("records"):
        r = {k: _clean(rec.get(k)) for k in ROW_FIELDS}
        for k in ("output", "explanation", "message"):
            r[k] = "" if r[k] is None else str(r[k])
        if r["step"] is not None:
            r["step"] = int(r["step"])
        if r["as_expected"] is not None:
            r["as_expected"] = str(r["as_expected"]) == "True"
        out.append(r)
    return out


#: the row fields in ``--json`` output
ROW_FIELDS = ("case", "backend", "output", "step", "outcome", "as_expected", "explanation", "message", "max_abs_err")
#: the outcomes, least to most severe (pair counts are keyed by these)
OUTCOME_NAMES = ("unsupported", "pass", "explained", "mismatch", "error")
#: ``verdict`` of ``normconf run --json`` by exit code (128 + signum: ``interrupted``)
VERDICTS = {
    EXIT_OK: "as-expected",
    EXIT_UNEXPECTED: "not-as-expected",
    EXIT_ERROR: "unexpected-error",
    EXIT_UNAVAILABLE: "unavailable",
    EXIT_WRITE: "reports-not-written",
}

_COUNTS = {
    "type": "object",
    "propertyNames": {"enum": list(OUTCOME_NAMES)},
    "additionalProperties": {"type": "integer"},
}
_STR_OR_NULL = {"type": ["string", "null"]}

#: JSON Schema of ``normconf run --json`` (one object on stdout; nothing else is written there)
JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "normconf run --json",
    "type": "object",
    "required": [
        "command",
        "normconf",
        "verdict",
        "exit_code",
        "partial",
        "pairs",
        "counts",
        "backends",
        "rows",
        "unexpected",
        "reports",
        "seconds",
    ],
    "additionalProperties": False,
    "properties": {
        "command": {"const": "run"},
        "normconf": {"type": "string"},
        "verdict": {"enum": [*VERDICTS.values(), "interrupted"]},
        "exit_code": {"type": "integer"},
        "partial": {"type": "boolean"},
        "pairs": {"type": "integer", "minimum": 0},
        "counts": _COUNTS,
        "backends": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["version", "counts", "unavailable"],
                "additionalProperties": False,
                "properties": {"version": {"type": "string"}, "counts": _COUNTS, "unavailable": _STR_OR_NULL},
            },
        },
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "required": list(ROW_FIELDS),
                "additionalProperties": False,
                "properties": {
                    "case": {"type": "string"},
                    "backend": {"type": "string"},
                    "output": {"type": "string"},
                    "step": {"type": ["integer", "null"]},
                    "outcome": {"enum": list(OUTCOME_NAMES)},
                    "as_expected": {"type": ["boolean", "null"]},
                    "explanation": {"type": "string"},
                    "message": {"type": "string"},
                    "max_abs_err": {"type": ["number", "null"]},
                },
            },
        },
        "unexpected": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["case", "backend", "outcome", "output", "detail"],
                "additionalProperties": False,
                "properties": {k: {"type": "string"} for k in ("case", "backend", "outcome", "output", "detail")},
            },
        },
        "reports": {"type": "array", "items": {"type": "string"}},
        "seconds": {"type": "number"},
        "error": {"type": "string"},
    },
}


def run_json(
    df, exit_code: int, reports=(), partial: bool = False, seconds: float = 0.0, must_test=(), error: str = ""
) -> dict[str, Any]:
    """The ``normconf run --json`` object (:data:`JSON_SCHEMA`)."""
    from normconf import __version__

    counts, unexpected, unavailable = _verdicts(df, must_test)
    versions = df.groupby("backend")["backend_version"].first().to_dict() if len(df) else {}
    total: dict[str, int] = {}
    for cnt in counts.values():
        for k, n in cnt.items():
            total[k] = total.get(k, 0) + n
    out: dict[str, Any] = {
        "command": "run",
        "normconf": __version__,
        "verdict": "interrupted" if exit_code >= 128 else VERDICTS.get(exit_code, "not-as-expected"),
        "exit_code": int(exit_code),
        "partial": bool(partial),
        "pairs": sum(total.values()),
        "counts": total,
        "backends": {
            str(b): {"version": str(versions.get(b) or ""), "counts": dict(cnt), "unavailable": unavailable.get(b)}
            for b, cnt in counts.items()
        },
        "rows": _records(df),
        "unexpected": [
            {"case": str(c), "backend": str(b), "outcome": o, "output": str(out_), "detail": str(expl or msg)}
            for c, b, o, out_, expl, msg in unexpected
        ],
        "reports": [str(p) for p in reports],
        "seconds": round(float(seconds), 3),
    }
    if error:
        out["error"] = error
    return out


def print_json(obj: dict[str, Any], out=None) -> None:
    """One JSON document on stdout (``--json``)."""
    import json

    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default)
    (out or sys.stdout).write(text + "\n")


def _json_default(o: Any) -> Any:
    """numpy scalars as Python values; anything else as its text."""
    return o.item() if hasattr(o, "item") else str(o)
