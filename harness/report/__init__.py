"""Writing the results of a run: results.csv, results.json (and the HTML report).

All files are written atomically (temporary file + rename), so an interrupted
run never leaves a half-written report behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import write_csv, write_json


def write_reports(df: pd.DataFrame, meta: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write every report file for ``df`` into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.csv", out / "results.json"]
    write_csv(df, written[0])
    write_json(df, written[1], meta)
    return written
