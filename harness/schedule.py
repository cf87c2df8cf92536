"""The ``-j`` schedule: which (case, backend) tasks a runner thread takes together, in which order.

A chunk is one worker group's tasks in case order (the worker keeps its framework imported and its
inputs and reference cached), so each framework is imported once per run; only a group holding more
than a thread's share of all tasks is cut, into that many shares (its import then paid once per
share).  With more than one thread, chunks go costliest first by the adapters' ``cpu_estimate``
(the group's start-up plus its cases): list scheduling, longest first, so that the last chunks are
the cheap ones and the threads finish together.  The order changes wall time, never a result.
"""

from __future__ import annotations

import math
from typing import Any, Callable

#: one task: (case index, backend index, case, backend)
Task = tuple[int, int, Any, str]


def chunks(
    tasks: list[Task],
    jobs: int,
    group_of: Callable[[str], str],
    cpu_estimate: Callable[[str], tuple[float, float]],
) -> list[list[Task]]:
    """``tasks`` cut into chunks, in the order the threads take them.  ``group_of(backend)``: its worker
    group; ``cpu_estimate(backend)``: (its group's start-up in seconds, milliseconds per case)."""
    by_group: dict[str, list[Task]] = {}
    for t in sorted(tasks, key=lambda t: (t[0], t[1])):
        by_group.setdefault(group_of(t[3]), []).append(t)
    groups = sorted(by_group.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    if jobs <= 1:  # one thread: the order does not change the time
        return [ts for _g, ts in groups]
    share = max(1, math.ceil(len(tasks) / jobs))
    out: list[tuple[float, int, list[Task]]] = []
    for order, (_g, ts) in enumerate(groups):
        estimates = {b: cpu_estimate(b) for b in {t[3] for t in ts}}
        start = max(s for s, _ in estimates.values())
        n = math.ceil(len(ts) / share)
        size = math.ceil(len(ts) / n)
        for i in range(0, len(ts), size):
            part = ts[i : i + size]
            out.append((start + sum(estimates[t[3]][1] for t in part) / 1000, order, part))
    out.sort(key=lambda c: (-c[0], c[1]))
    return [part for _cost, _order, part in out]
