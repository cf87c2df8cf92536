"""What the CLI's commands share: the usage error and argument helpers."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input or usage: printed without a traceback, exit code 2."""


def _csv_list(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


# --------------------------------------------------------------------------------------
# normconf run


def _select_backends(runner, requested: list[str]) -> list[str]:
    known = runner.adapters
    if not requested:
        return sorted(known)
    unknown = [b for b in requested if b not in known]
    if unknown:
        raise UsageError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return list(dict.fromkeys(requested))
