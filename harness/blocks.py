"""C-order blocks of an array: bounded temporaries for a pass over a large one, in memory order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def blocks_of(shape, channel_axis: int, limit: int) -> Iterator[tuple[tuple[slice, ...], slice]]:
    """Blocks of an array of ``shape`` in C order, each of at most ``limit`` elements: ``(index, channels)``
    pairs.  ``index`` is a tuple of slices, one per axis (every axis kept, so per-channel factors of shape
    ``[1, …, C, …, 1]`` broadcast); for a C-contiguous array each block is one contiguous run of memory,
    and the blocks follow each other in memory order; an empty array has none.  ``channels`` is the
    slice of the channel axis the block covers (the factors' slice).  Leading axes are split first: a
    block is whole rows of the leading axis where one row fits ``limit``, else a run along the first
    axis whose trailing elements fit."""
    shape = tuple(int(d) for d in shape)
    nd = len(shape)
    if 0 in shape:  # no elements, no blocks
        return
    if not nd:
        yield (), slice(None)
        return
    ax = channel_axis % nd
    tails = [int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(nd)]
    d = next(i for i in range(nd) if tails[i] <= max(1, limit))
    per = max(1, max(1, limit) // max(1, tails[d]))
    rest = (slice(None),) * (nd - d - 1)
    for prefix in np.ndindex(*shape[:d]):
        head = tuple(slice(p, p + 1) for p in prefix)
        for j0 in range(0, shape[d], per):
            j1 = min(shape[d], j0 + per)
            index = (*head, slice(j0, j1), *rest)
            if ax < d:
                ch = slice(prefix[ax], prefix[ax] + 1)
            elif ax == d:
                ch = slice(j0, j1)
            else:
                ch = slice(None)
            yield index, ch
