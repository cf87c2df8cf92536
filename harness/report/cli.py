"""``normconf report`` and ``normconf diff`` (registered by normconf.cli through ``add_parser``).

Exit codes: ``report`` 0 on success; ``diff`` 0 when NEW has no new failures, 1
when it has (see :mod:`normconf.report.diff`); both 2 on bad input (a missing or
unreadable results file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _usage_error(msg: str) -> Exception:
    from normconf.cli import UsageError

    return UsageError(msg)


#: the largest results file read back (a run of the whole library writes a few MB); a bigger one is
#: refused before it is read, so a mistaken path cannot exhaust memory
MAX_RESULTS_BYTES = 2 << 30


def resolve_results(path: str) -> Path:
    """A results file, or the results.json (else results.csv) inside a folder."""
    p = Path(path)
    if p.is_dir():
        for name in ("results.json", "results.csv"):
            if (p / name).is_file():
                return resolve_results(str(p / name))
        raise _usage_error(f"{path}: no results.json or results.csv in this folder")
    if not p.is_file():
        raise _usage_error(f"{path}: no such results file")
    if p.suffix.lower() not in (".json", ".csv"):
        raise _usage_error(f"{path}: expected a results .json or .csv file")
    size = p.stat().st_size
    if size > MAX_RESULTS_BYTES:
        raise _usage_error(f"{path}: {size} bytes; results files are limited to {MAX_RESULTS_BYTES} bytes")
    return p


def load(path: str) -> tuple[Any, dict[str, Any], Path]:
    """(DataFrame, meta, file) of a results file or folder; bad content is a usage error."""
    import json

    import pandas as pd

    from normconf.report.model import OUTCOMES
    from normconf.results import read_results

    p = resolve_results(path)
    try:
        df, meta = read_results(p)
    except (
        ValueError,
        KeyError,
        AttributeError,
        TypeError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
    ) as e:
        raise _usage_error(f"{p}: not a normconf results file ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        meta = {}
    if len(df) and (df["case"].isna().all() or df["backend"].isna().all()):
        raise _usage_error(f"{p}: not a normconf results file (no case/backend columns)")
    bad = sorted({str(o) for o in df["outcome"].dropna().unique()} - set(OUTCOMES))
    if bad or df["outcome"].isna().any():
        raise _usage_error(f"{p}: unknown outcome(s) {bad or ['(empty)']}; expected one of {', '.join(OUTCOMES)}")
    return df, meta, p


def cmd_report(args: argparse.Namespace) -> int:
    from normconf.report.html import write_html

    df, meta, p = load(args.results)
    out = Path(args.out) if args.out else p.parent
    target = write_html(df, meta, out / "index.html", title=args.title)
    print(f"wrote {target} ({len(df)} rows, {target.stat().st_size / 1e6:.2f} MB)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from normconf.report.diff import diff, format_html, format_text
    from normconf.results import atomic_write_text

    old_df, old_meta, op = load(args.old)
    new_df, new_meta, np_ = load(args.new)
    d = diff(old_df, new_df, old_meta, new_meta, old_name=str(op), new_name=str(np_))
    if args.json:
        from normconf.report.diff import as_json
        from normconf.summary import print_json

        print_json(as_json(d))
    elif args.quiet:
        print(format_text(d, limit=0).rstrip("\n").rsplit("\n", 1)[-1])
    else:
        sys.stdout.write(format_text(d, limit=args.limit))
    if args.html:
        atomic_write_text(args.html, format_html(d))
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
    return d.exit_code


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="re-render index.html from a results.csv/.json (nothing is rerun)",
        description="Re-render the HTML report from a results file without rerunning anything.",
    )
    p.add_argument("results", help="results.json or results.csv (or a folder holding one)")
    p.add_argument("--out", "-o", help="folder for index.html (default: the results file's folder)")
    p.add_argument("--title", default="normconf report", help="page title")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "diff",
        help="what changed between two runs (exit 1 on new failures)",
        description="Compare two results files: new failures, fixed ones, changed explanations, "
        "changed versions.  Exit code 0: no new failures; 1: new failures; 2: bad input.",
    )
    p.add_argument("old", help="results.json/.csv of the earlier run (or its folder)")
    p.add_argument("new", help="results.json/.csv of the later run (or its folder)")
    p.add_argument("--html", metavar="FILE", help="also write the diff as a self-contained HTML page")
    p.add_argument("--limit", type=int, default=200, help="most lines per section in the text output (default 200)")
    p.add_argument("--quiet", "-q", action="store_true", help="only the verdict line")
    p.add_argument("--json", action="store_true", help="the diff as JSON on stdout (nothing else there)")
    p.set_defaults(func=cmd_diff)
