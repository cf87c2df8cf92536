"""Writing the results of a run: results.csv, results.json and index.html.

All files are written atomically (temporary file + rename), so an interrupted
run never leaves a half-written report behind.  ``results.csv`` and
``results.json`` are written first: a failure while rendering the HTML never
costs the data (the error is reported and re-raised).

``meta`` is free-form; the report reads ``meta["environment"]`` (Python, OS,
CPU, backend versions, device), ``meta["backends"]`` (column order),
``meta["partial"]`` and — optional — ``meta["plot_data"]``: per non-close
result, a small summary of its error array made by
:func:`harness.report.plots.plot_data` and keyed by
:func:`harness.report.plots.plot_key` (see docs/reports.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported only when reports are written (keeps `normconf --help` fast)
    import pandas as pd


def write_reports(df: "pd.DataFrame", meta: dict[str, Any], out_dir: str | Path, html: bool = True) -> list[Path]:
    """Write every report file for ``df`` into ``out_dir``; return the paths written."""
    from harness.results import write_csv, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.csv", out / "results.json"]
    write_csv(df, written[0])
    write_json(df, written[1], meta)
    if html:
        from harness.report.html import write_html

        written.append(write_html(df, meta, out / "index.html"))
    return written
