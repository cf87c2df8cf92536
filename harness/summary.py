"""A run's verdict: the exit code of its results and the summary printed after it (one rule, one place).

Exit codes: 0 every outcome as expected; 1 some pair not as expected; 2 bad input or usage;
3 an unexpected ``error``; 4 a requested backend unavailable, or one named on the command line
tested nothing; 5 the reports could not be written.
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_ERROR, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
#: the run finished but its reports could not be written (the previous reports are unchanged)
EXIT_WRITE = 5
#: the row message of a backend that is not available (``harness.results.rows_for``)
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
    from harness.results import SEVERITY

    counts: dict[str, dict[str, int]] = {}
    unexpected = []
    if len(df):
        for (case, backend), g in df.groupby(["case", "backend"], sort=False):
            overall = max(g["outcome"], key=lambda o: SEVERITY[o])
            counts.setdefault(backend, {}).setdefault(overall, 0)
            counts[backend][overall] += 1
            if _not_as_expected(g["as_expected"].iloc[0]):
                bad = g[g["outcome"] == overall].iloc[0]
                unexpected.append(
                    (case, backend, overall, bad["output"] or "", bad["explanation"] or "", bad["message"] or "")
                )
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


def print_summary(df, out=None, allow_unavailable: bool = False, must_test=()) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout, width=120)
    counts, unexpected, unavailable = _verdicts(df, must_test)
    table = Table(title="normconf: outcomes per backend (case × backend pairs)")
    cols = ["pass", "explained", "mismatch", "unsupported", "error"]
    table.add_column("backend")
    table.add_column("version")
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
