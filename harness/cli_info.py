"""The information commands of the CLI: ``normconf backends`` and ``schema``.

``normconf backends`` answers from metadata (:func:`normconf.adapters.static_info`: installed
distributions via importlib.metadata, a native library's file), importing no framework;
``--probe`` starts each backend's worker, which imports its framework and reports what it finds.
"""

from __future__ import annotations

import argparse
import sys

from normconf.cli_common import UsageError, _csv_list, _select_backends
from normconf.summary import EXIT_OK, make_console, print_json


def _probe(args: argparse.Namespace, backends_wanted: list[str]):
    """(adapters, {backend: (available, version, reason)}, profile_of) asked of the workers."""
    from normconf.runner import Runner

    with Runner(tuple(args.adapter or ()), tuple(args.native or ()), timeout=args.timeout) as runner:
        backends = _select_backends(runner, backends_wanted)
        info = runner.backend_info(backends)
        out = {}
        for b in backends:
            reason, version = info.get(b, ("not probed", ""))
            out[b] = (not reason, version, reason or "")
        return runner.adapters, backends, out


def cmd_backends(args: argparse.Namespace) -> int:
    from normconf.adapters import all_adapters, static_info
    from normconf.profiles import profile_of

    wanted = _csv_list(args.backend)
    if args.probe:
        adapters, backends, info = _probe(args, wanted)
    else:
        if args.timeout <= 0:
            raise UsageError(f"--timeout must be a number of seconds > 0 (got {args.timeout:g})")
        adapters = all_adapters(tuple(args.adapter or ()), tuple(args.native or ()))
        backends = _select_backends(adapters, wanted)
        info = {b: static_info(adapters[b]) for b in backends}
    from normconf.worker_env import worker_groups

    groups = worker_groups(adapters)  # the process each backend runs in (a split group: worker#2)
    records = []
    for b in backends:
        cls = adapters[b]
        available, version, reason = info[b]
        records.append(
            {
                "backend": b,
                "framework": cls.framework,
                "worker": groups[b][0] if b in groups else cls.worker,
                "ops": list(getattr(cls, "ops", ("batch_norm",))),
                "available": available,
                "version": version,
                "reason": reason,
                "conventions": profile_of(cls).describe(),
                "description": cls.description,
            }
        )
    if args.json:
        print_json({"command": "backends", "probed": bool(args.probe), "backends": records})
        return EXIT_OK
    if args.quiet:
        n = sum(1 for r in records if r["available"])
        print(f"{n} of {len(records)} backend(s) available")
        return EXIT_OK
    from rich.table import Table

    table = Table(title="normconf backends" + (" (probed)" if args.probe else ""))
    for col in ("backend", "framework", "worker", "available", "version"):
        table.add_column(col, no_wrap=True)
    table.add_column("conventions (profile)")
    table.add_column("reason / description")
    yes_no = {True: "yes", False: "no", None: "?"}
    for r in records:
        table.add_row(
            r["backend"],
            r["framework"],
            r["worker"],
            yes_no[r["available"]],
            r["version"],
            r["conventions"],
            r["reason"] or r["description"],
        )
    make_console(sys.stdout).print(table)
    if not args.probe:
        print("availability from installed distributions (nothing imported); --probe imports each framework")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from normconf.cases import json_schema
    from normconf.results import atomic_write_text

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    return EXIT_OK
