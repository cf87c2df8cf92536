"""Memoization by object identity, for values derived from one (immutable) case object.

A pair's judging asks several questions of the same case object (its cache key, its output spec);
each answer is computed once per object.  The memo holds the object itself, so an ``id`` is never
reused while its entry lives; entries beyond ``maxsize`` are dropped oldest first (only recomputed).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any, Callable, TypeVar

R = TypeVar("R")


def by_identity(maxsize: int = 8) -> Callable[[Callable[[Any], R]], Callable[[Any], R]]:
    """Decorator: ``fn(obj)`` computed once per object ``obj`` (``obj`` must not change afterwards)."""

    def wrap(fn: Callable[[Any], R]) -> Callable[[Any], R]:
        memo: OrderedDict[int, tuple[Any, R]] = OrderedDict()

        @functools.wraps(fn)
        def call(obj: Any) -> R:
            hit = memo.get(id(obj))
            if hit is not None and hit[0] is obj:
                memo.move_to_end(id(obj))
                return hit[1]
            value = fn(obj)
            memo[id(obj)] = (obj, value)
            while len(memo) > maxsize:
                memo.popitem(last=False)
            return value

        call.cache_clear = memo.clear  # type: ignore[attr-defined]
        return call

    return wrap
