"""Name selection shared by the CLI and the pytest plugin: globs (``fnmatch``) and ``!`` negation.

``select_names(["ort*", "!ort-opset9*"], names)`` keeps the names matching a positive pattern (every
name when there is none), then drops those matching a negative one.  Matching is case-sensitive
(:func:`fnmatch.fnmatchcase`).  Order: the positive patterns' order, each one's matches in ``names``
order (so exact names keep the order they were given in).  A pattern matching none of ``names`` is
a :class:`SelectionError` naming it, with a "did you mean" when a name is close.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable, Sequence

__all__ = ["SelectionError", "select_names", "split_patterns"]


class SelectionError(ValueError):
    """A pattern matched no name (the message names the pattern and suggests close names)."""

    def __init__(self, message: str, patterns: list[str]):
        super().__init__(message)
        self.patterns = patterns


def split_patterns(values: Iterable[str] | None) -> list[str]:
    """Comma-separated option values (``-b a,b -b c``) as one list of patterns, blanks dropped."""
    return [p.strip() for v in values or () for p in str(v).split(",") if p.strip()]


def _suggest(pattern: str, names: Sequence[str]) -> str:
    bare = pattern.strip("*?[]!")
    close = difflib.get_close_matches(bare, list(names), n=3, cutoff=0.5) if bare else []
    if not close and bare:
        close = [n for n in names if bare.lower() in n.lower()][:3]
    if not close and bare:  # the names sharing the longest prefix (at least 3 characters) with it
        best = max((len(os.path.commonprefix([bare, n])) for n in names), default=0)
        close = [n for n in names if best >= 3 and n.startswith(bare[:best])][:3]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def select_names(patterns: Iterable[str], names: Iterable[str], what: str = "name") -> list[str]:
    """The ``names`` selected by ``patterns`` (see the module docstring); raises :class:`SelectionError`."""
    names = list(dict.fromkeys(names))
    pats = [p for p in patterns if p]
    positive = [p for p in pats if not p.startswith("!")]
    negative = [p[1:] for p in pats if p.startswith("!")]

    def matches(p: str) -> bool:
        return any(fnmatch.fnmatchcase(n, p) for n in names)

    unmatched = [p for p in positive if not matches(p)]
    unmatched += [f"!{p}" for p in negative if not p or not matches(p)]
    if unmatched:
        lines = [f"{what} pattern {p!r} matches no {what}{_suggest(p, names)}" for p in unmatched]
        raise SelectionError("; ".join(lines), unmatched)
    chosen: dict[str, None] = {}
    for p in positive or ["*"]:
        chosen.update((n, None) for n in names if fnmatch.fnmatchcase(n, p))
    return [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in negative)]
