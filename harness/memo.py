"""Memoization by object identity, for values derived from one (immutable) case object.

A pair's judging asks several questions of the same case object (its cache key, its output spec);
each answer is computed once per object.  The memo holds the object itself, so an ``id`` is never
reused while its entry lives; entries beyond ``maxsize`` are dropped oldest first (only recomputed).
Thread-safe (the harness process judges on several threads); a value may be computed twice by two
threads at once, never returned wrong.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any, Callable, TypeVar

R = TypeVar("R")


def by_identity(maxsize: int = 8) -> Callable[[Callable[[Any], R]], Callable[[Any], R]]:
    """Decorator: ``fn(obj)`` computed once per object ``obj`` (``obj`` must not change afterwards)."""

    def wrap(fn: Callable[[Any], R]) -> Callable[[Any], R]:
        memo: OrderedDict[int, tuple[Any, R]] = OrderedDict()
        lock = threading.Lock()

        @functools.wraps(fn)
        def call(obj: Any) -> R:
            with lock:
                hit = memo.get(id(obj))
                if hit is not None and hit[0] is obj:
                    memo.move_to_end(id(obj))
                    return hit[1]
            value = fn(obj)
            with lock:
                memo[id(obj)] = (obj, value)
                while len(memo) > maxsize:
                    memo.popitem(last=False)
            return value

        call.cache_clear = memo.clear  # type: ignore[attr-defined]
        return call

    return wrap


@by_identity(maxsize=64)
def case_json(case: Any) -> str:
    """A case's canonical JSON, the key of every per-case cache (equal cases, equal keys)."""
    return str(case.model_dump_json())
