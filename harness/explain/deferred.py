"""An alternative's normalized output, computed where it is read: a block at a time, bit for bit the full run's.

The explanation search scores each alternative semantics against the backend's output.  For a case too
large to keep its float64 outputs, an alternative's ``y`` was one whole array (1× the input's bytes,
float32-held) beside the input, the backend's output and the expected values.  A
:class:`DeferredOutput` holds only the alternative's per-channel statistics (from the statistics-only
reference) and computes the elements a reader asks for, with the reference's own
:func:`normconf.references.batchnorm.normalize` and rounding: every operation of ``normalize`` after its
per-channel statistics is elementwise, so normalizing a block with each element's channel statistics
gathered gives the full run's bits there (tested on every layout, dtype, mode and arithmetic).

It reads like the array it stands for, as far as the engine's helpers read arrays: ``shape``, ``ndim``,
``size``, ``dtype``; a slice of the leading axis; a block of :func:`normconf.explain.arrays.blocks_of`
(a slice per axis: :func:`normconf.explain.bounds.judge`'s blocks);
``reshape(-1)`` with slices and integer-array gathers (:func:`normconf.explain.arrays.residual`, the
sketches); a tuple of integer index arrays (:func:`normconf.explain.arrays.columns`).  Anything else, and
``np.asarray``, computes every element (correct, and as large as the array: :attr:`materialized` counts
those, for the tests that keep the search from doing it).
"""

from __future__ import annotations

import bisect
from typing import Any, Callable

import numpy as np

from normconf.explain.arrays import blocks_of, columns

#: elements computed per pass where elements are gathered one by one (each with its channel's statistics)
BLOCK = 1 << 15
#: elements per group computed at once for ranges and slices: a block of :func:`normconf.explain.arrays.blocks_of`
#: normalized with its channels' statistics, as the reference normalizes its blocks of rows
GROUP = 1 << 16


class DeferredOutput:
    """``y`` (or ``x_hat``) of one step under one semantics, from its per-channel statistics.

    ``x``: the step's input (C-contiguous, the case layout); ``mean``/``var``: the per-channel statistics the
    step normalizes with (the statistics-only reference's ``norm_mean``/``norm_var``); ``y_round``: the
    output dtype ``y`` is rounded to and held as float32 (None: float64), as the expected values are held."""

    #: duck-typing mark for the helpers that index it instead of converting it
    deferred = True
    #: how many times any instance computed every element (np.asarray, an unsupported index)
    materialized = 0

    def __init__(
        self,
        x: np.ndarray,
        channel_axis: int,
        mean: np.ndarray,
        var: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        eps: float,
        sem: Any,
        input_dtype: np.dtype,
        y_round: np.dtype | None,
        output: str = "y",
    ):
        self._x = np.ascontiguousarray(x).reshape(-1)
        self.shape = tuple(int(d) for d in x.shape)
        self.ndim = len(self.shape)
        self.size = int(self._x.size)
        ax = channel_axis % max(self.ndim, 1)
        self._C = self.shape[ax] if self.ndim else 1
        self._inner = int(np.prod(self.shape[ax + 1 :], dtype=np.int64)) if self.ndim else 1
        self._stats = tuple(None if v is None else np.asarray(v) for v in (mean, var, gamma, beta))
        self._eps, self._sem, self._in_dt, self._round, self._output = eps, sem, input_dtype, y_round, output
        self.dtype = np.dtype(np.float32 if (y_round is not None and output == "y") else np.float64)
        self.itemsize = self.dtype.itemsize
        self.nbytes = self.size * self.itemsize
        self._nd = np.ascontiguousarray(x)
        self._ax = ax
        # the groups: contiguous runs of memory in order, (first flat position, index, channels)
        self._groups: list[tuple[int, tuple, slice]] = []
        start = 0
        for index, ch in blocks_of(self.shape, ax, GROUP) if self.ndim else ():
            self._groups.append((start, index, ch))
            start += int(np.prod([len(range(*k.indices(n))) for k, n in zip(index, self.shape)], dtype=np.int64))
        self._starts = [g[0] for g in self._groups]
        self._last: tuple[int, np.ndarray] | None = None  # the last group computed (sequential reads)

    def __len__(self) -> int:
        return self.shape[0]

    def _values(self, flat: np.ndarray) -> np.ndarray:
        """The elements at flat (C-order) positions ``flat`` (int64), computed in one call of ``normalize``
        with each element as its own channel."""
        from normconf.references.batchnorm import normalize

        ch = (flat // self._inner) % self._C
        mean, var, gamma, beta = (None if v is None else v[ch] for v in self._stats)
        with np.errstate(all="ignore"):
            y, _inv, x_hat = normalize(
                self._x[flat].reshape(1, -1),
                mean,
                var,
                gamma,
                beta,
                self._eps,
                1,
                self._sem,
                self._in_dt,
                with_x_hat=self._output == "x_hat",
                y_round=self._round if self._output == "y" else None,
            )
        out = y if self._output == "y" else x_hat
        return np.asarray(out, self.dtype).reshape(-1)

    def _group(self, g: int) -> np.ndarray:
        """Group ``g``, flat: ``normalize`` on that block with its channels' statistics (bit for bit the full
        run's: every step after the per-channel statistics is elementwise)."""
        last = self._last  # read once: another thread may replace it (the cache is shared by threads)
        if last is not None and last[0] == g:
            return last[1]
        from normconf.references.batchnorm import normalize

        _start, index, ch = self._groups[g]
        mean, var, gamma, beta = (None if v is None else v[ch] for v in self._stats)
        with np.errstate(all="ignore"):
            y, _inv, x_hat = normalize(
                self._nd[index],
                mean,
                var,
                gamma,
                beta,
                self._eps,
                self._ax,
                self._sem,
                self._in_dt,
                with_x_hat=self._output == "x_hat",
                y_round=self._round if self._output == "y" else None,
            )
        out = np.asarray(y if self._output == "y" else x_hat, self.dtype).reshape(-1)
        self._last = (g, out)
        return out

    def flat_range(self, start: int, stop: int) -> np.ndarray:
        """Elements ``start:stop`` of the flattened array (C order), a group at a time."""
        start, stop = max(0, start), min(self.size, stop)
        out = np.empty(max(0, stop - start), self.dtype)
        g = max(0, bisect.bisect_right(self._starts, start) - 1)
        pos = start
        while pos < stop and g < len(self._groups):
            g0 = self._starts[g]
            g1 = self._starts[g + 1] if g + 1 < len(self._starts) else self.size
            a, b = max(pos, g0), min(stop, g1)
            if a < b:
                out[a - start : b - start] = self._group(g)[a - g0 : b - g0]
                pos = b
            g += 1
        return out

    def _run(self, key: tuple) -> tuple[int, tuple[int, ...]] | None:
        """(first flat position, block shape) where ``key`` (a slice per axis) is one contiguous run of memory
        (axes of length one, then one range, then whole axes: a :func:`blocks_of` block), else None."""
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            return None
        starts, lens = [], []
        for k, n in zip(key, self.shape):
            a, b, st = k.indices(n)
            if st != 1:
                return None
            starts.append(a)
            lens.append(max(0, b - a))
        first = next((i for i, n in enumerate(lens) if n != 1), self.ndim)
        if any(lens[i] != self.shape[i] for i in range(first + 1, self.ndim)):
            return None
        if not all(lens):
            return 0, tuple(lens)
        return int(np.ravel_multi_index(tuple(starts), self.shape)), tuple(lens)

    def flat_take(self, index: np.ndarray) -> np.ndarray:
        """The elements at flat positions ``index`` (any shape of integers; negative counts from the end)."""
        idx = np.asarray(index, np.int64)
        flat = np.where(idx < 0, idx + self.size, idx).reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.size):
            raise IndexError(f"index out of bounds for size {self.size}")
        out = np.empty(flat.size, self.dtype)
        for s in range(0, flat.size, BLOCK):
            out[s : s + BLOCK] = self._values(flat[s : s + BLOCK])
        return out.reshape(idx.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        DeferredOutput.materialized += 1
        a = self.flat_range(0, self.size).reshape(self.shape)
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        if isinstance(key, slice) and self.ndim:  # leading-axis rows
            s0, s1, st = key.indices(self.shape[0])
            if st == 1:
                row = self.size // max(self.shape[0], 1) if self.shape[0] else 0
                s1 = max(s0, s1)
                return self.flat_range(s0 * row, s1 * row).reshape((s1 - s0, *self.shape[1:]))
        elif isinstance(key, tuple) and (run := self._run(key)) is not None:  # a block (arrays.blocks_of)
            first, lens = run
            return self.flat_range(first, first + int(np.prod(lens, dtype=np.int64))).reshape(lens)
        elif isinstance(key, tuple) and len(key) == self.ndim and all(_integer_array(k) for k in key):
            parts = np.broadcast_arrays(*(np.asarray(k, np.int64) for k in key))
            return self.flat_take(np.ravel_multi_index(tuple(parts), self.shape))
        return np.asarray(self)[key]

    def reshape(self, *shape: Any) -> Any:
        want = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        want = tuple(int(d) for d in want)
        if want in ((-1,), (self.size,)):
            return _Flat(self)
        if want == self.shape:
            return self
        return np.asarray(self).reshape(want)

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        return np.asarray(self).astype(dtype)


class _Flat:
    """``DeferredOutput.reshape(-1)``: slices and integer gathers of the flattened array."""

    deferred = True

    def __init__(self, parent: DeferredOutput):
        self._p = parent
        self.size = parent.size
        self.shape = (parent.size,)
        self.ndim = 1
        self.dtype = parent.dtype

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            s0, s1, st = key.indices(self.size)
            if st == 1:
                return self._p.flat_range(s0, max(s0, s1))
        elif _integer_array(key):
            return self._p.flat_take(key)
        return np.asarray(self)[key]

    def reshape(self, *shape: Any) -> Any:
        return self._p.reshape(*shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._p, dtype).reshape(-1)

    def astype(self, dtype: Any, copy: bool = True) -> np.ndarray:
        return np.asarray(self).astype(dtype)


def _integer_array(k: Any) -> bool:
    return isinstance(k, np.ndarray) and k.dtype.kind in "iu"


def deferred_steps(case, inputs, sem: Any, output: str, statistics: Callable[..., dict | None]) -> list | None:
    """BatchNorm's ``deferred_output`` hook (:class:`normconf.ops.OpSpec`): ``y`` under ``sem`` as one
    :class:`DeferredOutput` per step, from ``statistics(case, inputs, sem)`` (the statistics-only reference,
    :meth:`normconf.explain.refcache.ReferenceCache.statistics`); None where that does not apply: another
    output, a semantics that reads another channel axis, statistics the statistics-only reference cannot
    give (then the full run decides)."""
    from normconf.inputs import np_dtype
    from normconf.outputs import output_dtype

    if output != "y" or sem.channel_axis_swapped:
        return None
    value = statistics(case, inputs, sem)
    steps = len(inputs.x)
    if value is None or len(value.get("norm_mean", ())) != steps or len(value.get("norm_var", ())) != steps:
        return None
    dt = np_dtype(output_dtype(case, "y"))
    y_round = None if dt == np.float64 else dt
    eps = sem.eps_used(case.eps)
    return [
        DeferredOutput(x, case.channel_axis, m, v, inputs.gamma, inputs.beta, eps, sem, np_dtype(case.dtype), y_round)
        for x, m, v in zip(inputs.x, value["norm_mean"], value["norm_var"])
    ]


def sample(case, inputs, sem: Any, output: str, step: int, cols: np.ndarray) -> np.ndarray | None:
    """BatchNorm's ``output`` ("y" or "x_hat") at ``step`` under ``sem``, only at columns ``cols`` of its (C, rest)
    channel view (:func:`normconf.explain.arrays.sample_columns`): bit for bit the full run's values there,
    from the statistics-only reference (about a tenth of a full run; kept by the process's reference cache)
    and :func:`normconf.references.batchnorm.normalize` on the sampled elements.  ``None`` where the
    semantics reads another channel axis or the reference cannot run it."""
    from normconf.explain.refcache import CACHE
    from normconf.inputs import np_dtype
    from normconf.references.batchnorm import normalize

    if sem.channel_axis_swapped or output not in ("y", "x_hat"):
        return None
    value = CACHE.statistics(case, inputs, sem)
    if value is None or len(value.get("norm_mean", ())) < step or len(value.get("norm_var", ())) < step:
        return None
    ax = case.channel_axis % len(case.shape)
    x = np.asarray(inputs.x[step - 1])
    xv = columns(x, ax, cols)  # (C, K), gathered (a reshape of the moved axis would copy all of x)
    eps = sem.eps_used(case.eps)
    with np.errstate(all="ignore"):
        y, _inv, x_hat = normalize(
            np.ascontiguousarray(xv.T),
            value["norm_mean"][step - 1],
            value["norm_var"][step - 1],
            inputs.gamma,
            inputs.beta,
            eps,
            1,
            sem,
            np_dtype(case.dtype),
        )
    return (y if output == "y" else x_hat).T


def is_deferred(a: Any) -> bool:
    """``a`` is a :class:`DeferredOutput` (or its flat view): index it, do not convert it."""
    return bool(getattr(a, "deferred", False))
