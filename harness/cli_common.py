"""What the CLI's commands share: the usage error, argument helpers and backend/case selection.

Selection (``--backend``/``-b``, ``--case``/``-k``): comma-separated or repeated patterns, globs
(``ort*``) and ``!`` negation (``'!ort-opset9*'``), :func:`normconf.selection.select_names`; a
pattern that matches nothing is a usage error (exit 2) with a "did you mean".
"""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad input or usage: printed without a traceback, exit code 2."""


def _csv_list(values: list[str] | None) -> list[str]:
    from normconf.selection import split_patterns

    return split_patterns(values)


def select(patterns: list[str], names, option: str, what: str) -> list[str]:
    """:func:`normconf.selection.select_names`, its error a :class:`UsageError` naming ``option``."""
    from normconf.selection import SelectionError, select_names

    try:
        return select_names(patterns, names, what=what)
    except SelectionError as e:
        raise UsageError(f"{option}: {e}; unknown {what}(s) {', '.join(e.patterns)}") from None


def _select_backends(runner_or_adapters, requested: list[str]) -> list[str]:
    """The backends ``requested`` (patterns) selects among the known ones (sorted when none given)."""
    known = getattr(runner_or_adapters, "adapters", runner_or_adapters)
    return select(requested, sorted(known), "--backend", "backend")


def named_backends(requested: list[str], selected: list[str]) -> list[str]:
    """The backends the user *named* (a pattern without wildcard or ``!``), in ``selected``."""
    exact = {p for p in requested if not p.startswith("!") and not any(c in p for c in "*?[")}
    return [b for b in selected if b in exact]


def select_cases(cases, patterns: list[str]):
    """The loaded cases whose id the ``--case`` patterns select, in file order."""
    if not patterns:
        return list(cases)
    keep = set(select(patterns, [lc.id for lc in cases], "--case", "case"))
    return [lc for lc in cases if lc.id in keep]


def add_output_options(p: argparse.ArgumentParser, json_help: str = "machine-readable summary on stdout") -> None:
    """``-q``/``-v``/``--json`` (normconf.summary.JSON_SCHEMA describes the JSON)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quiet", "-q", action="store_true", help="only the verdict line and errors")
    g.add_argument("--verbose", "-v", action="store_true", help="also one line per result row")
    p.add_argument("--json", action="store_true", help=json_help + " (nothing else is written to stdout)")
