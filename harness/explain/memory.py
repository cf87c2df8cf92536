"""What the explainer remembers of one pair (``normconf.results.PairMemory``): the candidate behind
each row, and the conventions that also reproduce an output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


def _remember(memory, c: Any, where: str, output: str, step: int) -> None:
    """Keep a convention that explained an output, for the later outputs of the same pair."""
    _remember_row(memory, c, output, step)
    if memory is None:
        return
    if all(sm != c.semantics for sm, *_ in memory):
        memory.append((c.semantics, c.kind, c.note, where))
        del memory[:-8]


def _remember_row(memory, c: Any, output: str, step: int) -> None:
    rows = getattr(memory, "rows", None)
    if rows is not None:
        rows[(output, step)] = c


def _remember_consistent(memory, output: str, step: int, labels: list[str]) -> None:
    """Labels that also reproduce this output (identical numbers, or within tolerance where precision won)."""
    consistent = getattr(memory, "consistent", None)
    if consistent is not None and labels:
        consistent[(output, step)] = ";".join(labels)
