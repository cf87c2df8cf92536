"""The information commands of the CLI: ``normconf backends``, ``validate`` and ``schema``."""

from __future__ import annotations

import argparse
import sys

from harness.cli_common import _csv_list, _select_backends
from harness.summary import EXIT_OK


def cmd_backends(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from harness.runner import Runner

    with Runner(tuple(args.adapter or ()), tuple(args.native or ()), timeout=args.timeout) as runner:
        backends = _select_backends(runner, _csv_list(args.backend))
        info = runner.backend_info(backends)
    table = Table(title="normconf backends")
    for col in (
        "backend",
        "framework",
        "worker",
        "available",
        "version",
        "conventions (profile)",
        "reason / description",
    ):
        table.add_column(col)
    for b in backends:
        cls = runner.adapters[b]
        reason, version = info.get(b, ("not probed", ""))
        table.add_row(
            b,
            cls.framework,
            cls.worker,
            "no" if reason else "yes",
            version,
            runner.profile(b).describe(),
            reason or cls.description,
        )
    Console(width=160).print(table)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from harness.cases import json_schema
    from harness.results import atomic_write_text

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    return EXIT_OK
