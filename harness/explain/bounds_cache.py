"""The precision :class:`~normconf.explain.bounds.Bounds` of a case, shared: one object per
(case, inputs, semantics), its per-channel data memoized inside it, kept for the last
:data:`_BOUNDS_CASES` (case JSON, inputs object) pairs only — every backend a worker judges on one
case shares them, and nothing outlives the next cases."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from normconf.explain import bounds as bd
from normconf.explain.refcache import _case_key
from normconf.semantics import Semantics

_BOUNDS: "OrderedDict[tuple[str, int], tuple[Any, dict[Semantics, bd.Bounds]]]" = OrderedDict()
_BOUNDS_CASES = 2
_BOUNDS_PER_CASE = 64
_BOUNDS_LOCK = threading.Lock()


def bounds_for(case, inputs, sem: Semantics) -> "bd.Bounds":
    key = (_case_key(case), id(inputs))
    with _BOUNDS_LOCK:
        hit = _BOUNDS.get(key)
        if hit is None or hit[0] is not inputs:  # (the entry holds its inputs: the id cannot be reused)
            hit = _BOUNDS[key] = (inputs, {})
            while len(_BOUNDS) > _BOUNDS_CASES:
                _BOUNDS.popitem(last=False)
        else:
            _BOUNDS.move_to_end(key)
        per = hit[1]
        b = per.get(sem)
        if b is None:
            if len(per) >= _BOUNDS_PER_CASE:
                per.clear()
            b = per[sem] = bd.Bounds(case, inputs, sem)
    return b
