"""Reference outputs under alternative semantics: a small byte-bounded LRU shared by one process."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from normconf.memo import case_json
from normconf.semantics import Semantics

#: an alternative's full-size output of a case too large to keep its float64 outputs is what the op's
#: ``deferred_output`` hook gives (BatchNorm's ``y``: a :class:`normconf.explain.deferred.DeferredOutput`,
#: computed where it is read); False: one whole array (the tests compare the two)
DEFER = True
#: the byte budget is this many times the case's input bytes (``x`` over every step, in the case dtype, plus the
#: per-channel parameters), so the cache grows with the case and no more.  A full-size output is kept only
#: within a quarter of the budget: where the multiple governs (inputs above BUDGET_FLOOR / 4 = 48 MiB) a
#: float32 case's float64 ``y`` / ``x_hat`` (2× its input bytes each) is never kept, the cache holds the
#: per-channel outputs only, and a large case's search reruns the reference where it reads a full output again
#: (rare: its alternatives are screened on samples; 32×64×56×56 float32, y explained: 8 reference runs, 7 with
#: an unbounded cache)
BUDGET_MULTIPLE = 4
#: ... but never below this (the fixed budget of earlier versions): a multi-step case's search reads every
#: alternative's full outputs again at every step (steps100_slow: ~15 alternatives × 100 steps of 8×8×8×16),
#: so with less room the LRU cycles and reruns the 100-step reference each time (tiny-dnn over the BatchNorm
#: library: 6.8 s of CPU at 192 MiB, 10.3 s at 128, 24 s at 64, 34 s at 16)
BUDGET_FLOOR = 192 << 20


#: what a reference raises for a semantics it cannot run (the cache then answers None for it)
_REFUSED = (ValueError, ZeroDivisionError, FloatingPointError, OverflowError)


def input_bytes(inputs) -> int:
    """Bytes of ``inputs``' arrays: ``x`` over every step, then the per-channel parameters (0 if none)."""
    total = 0
    for a in (
        *getattr(inputs, "x", ()),
        *(getattr(inputs, f, None) for f in ("gamma", "beta", "running_mean", "running_var")),
    ):
        total += int(getattr(a, "nbytes", 0) or 0)
    return total


class ReferenceCache:
    """LRU of reference outputs keyed by (case JSON, inputs identity, semantics), for any op.

    What is op-specific comes from the case's :class:`normconf.ops.OpSpec`: its ``group_outputs`` (one value
    per channel or group), ``statistics_outputs`` (what the statistics-only reference computes),
    ``compact_expected`` and ``deferred_output``.  Per-group outputs are small and always kept; full-size arrays (y, x_hat,
    eval_y) only while the cache stays under its byte budget: ``max_bytes`` when given, else
    :data:`BUDGET_MULTIPLE` × the input bytes of the case being stored (at least
    :data:`BUDGET_FLOOR`), so the cache's memory scales with the case.  An entry keeps its
    ``inputs`` object alive so the identity in the key cannot be reused.
    """

    def __init__(
        self,
        max_bytes: int | None = None,
        max_entries: int = 256,
        multiple: float = BUDGET_MULTIPLE,
        floor: int = BUDGET_FLOOR,
    ):
        self._fixed = max_bytes
        self.multiple, self.floor = multiple, floor
        self.max_bytes = max_bytes if max_bytes is not None else floor  # the budget now in force
        self.max_entries = max_entries
        self._d: OrderedDict[tuple, tuple[Any, dict[str, list[np.ndarray]], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.computed = 0  # reference runs (for tests and measurements)
        self._budget_of: tuple[int, Any, int] | None = None  # (id(inputs), inputs, budget): the last one sized

    def budget(self, inputs) -> int:
        """The byte budget while ``inputs``' case is being stored (``max_bytes`` when fixed)."""
        if self._fixed is not None:
            return self._fixed
        hit = self._budget_of
        if hit is not None and hit[1] is inputs:
            return hit[2]
        b = max(int(self.floor), int(self.multiple * input_bytes(inputs)))
        self._budget_of = (id(inputs), inputs, b)
        return b

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def get(self, case, inputs, sem: Semantics, output: str) -> list[np.ndarray] | None:
        """The ``output`` steps under ``sem`` (float64; for ``y``/``eval_y`` of a case too large to keep its
        float64 outputs, :meth:`rounded`'s compact values: :meth:`_serves_compact`); ``None`` if the reference
        cannot run this semantics."""
        key = (_case_key(case), id(inputs), sem)
        with self._lock:
            hit = self._d.get(key)
            if hit is not None and output in hit[1]:
                self._d.move_to_end(key)
                return hit[1][output]
            if hit is not None and hit[1].get("__error__") is not None:
                return None
        if self._serves_compact(case, inputs, output):
            return self.rounded(case, inputs, sem, output)
        from normconf.oracle import reference_outputs

        self.computed += 1
        from normconf.ops import spec_for

        stats_only = output in spec_for(case).statistics_outputs(case)  # no normalization pass per step
        # every output when the full-size ones can be kept (a later get of another one is a hit); else only
        # ``output`` and the per-channel ones (a stage output such as x_hat is then never written: 2x a
        # float32 input's bytes less at the search's peak).  A statistics-only run names its output (BatchNorm's
        # eval_y is computed there only when asked for: the search reads it of ~10 alternatives per step of a
        # multi-step case, whose every step's y would otherwise be normalized for it)
        need = (
            None if self._keeps_full_size(case, inputs) and not stats_only else frozenset({output, *self._small(case)})
        )
        try:
            with np.errstate(all="ignore"):
                out = reference_outputs(case, inputs, sem, statistics_only=stats_only, outputs=need)
        except _REFUSED:
            self._store(key, inputs, {"__error__": [np.zeros(0)]}, case)
            return None
        result = out.get(output)
        keep = self._keepable(case, inputs, out)
        self._store(key, inputs, keep, case)
        return result

    def prefix(self, case, inputs, sem: Semantics, output: str, steps: int) -> list[np.ndarray] | None:
        """:meth:`get`'s first ``steps`` steps of ``output`` under ``sem``, for a semantics read once, at one step
        (a number the search solved from that step's output): from a reference run over those steps only, not
        kept.  The same values: the steps run in order, each from the ones before it, so the first ``steps``
        of a run do not depend on the steps after them (an output of every step, not ``eval_y``; an op's
        reference refuses a semantics before its first step, so a shorter run fails where the full one
        does).  An entry this cache holds, a case whose full-size outputs it holds compactly, an output
        not computed at every step and the last step are :meth:`get`'s."""
        from normconf.ops import spec_for

        key = (_case_key(case), id(inputs), sem)
        with self._lock:
            hit = self._d.get(key)
            held = hit is not None and (output in hit[1] or hit[1].get("__error__") is not None)
        spec = spec_for(case)
        xs = getattr(inputs, "x", None)
        if (
            held
            or not isinstance(xs, tuple)
            or not 0 < steps < len(xs)
            or spec.output_steps(case, output) != len(xs)
            or self._serves_compact(case, inputs, output)
        ):
            return self.get(case, inputs, sem, output)
        from normconf.oracle import reference_outputs

        self.computed += 1
        head = dataclasses.replace(inputs, x=xs[:steps])
        stats_only = output in spec.statistics_outputs(case)
        try:
            with np.errstate(all="ignore"):
                out = reference_outputs(case, head, sem, statistics_only=stats_only, outputs=frozenset({output}))
        except _REFUSED:
            return None
        return out.get(output)

    @staticmethod
    def _small(case) -> frozenset[str]:
        """The outputs of one value per channel (group): always kept."""
        from normconf.ops import spec_for

        return frozenset(spec_for(case).group_outputs)

    def _keepable(self, case, inputs, out: dict) -> dict:
        """The outputs of ``out`` worth keeping: every per-channel one, a full-size one within a quarter of the budget."""
        small = self._small(case)
        budget = self.budget(inputs)
        return {k: v for k, v in out.items() if k in small or sum(a.nbytes for a in v) * 4 <= budget}

    def _keeps_full_size(self, case, inputs) -> bool:
        """A full-size float64 output of ``case`` (the size of ``x`` over every step) fits :meth:`_keepable`'s rule."""
        full = sum(8 * int(getattr(a, "size", 0) or 0) for a in getattr(inputs, "x", ()))
        return full * 4 <= self.budget(inputs)

    def _serves_compact(self, case, inputs, output: str) -> bool:
        """:meth:`get` of ``output`` answers with :meth:`rounded`'s compact values: a full-size output that a
        backend returns (``y``, ``eval_y``; not a stage such as ``x_hat``, which the eps solver reads in
        float64) of a case whose float64 outputs this cache cannot keep, of an op with a ``compact_expected``
        hook whose search reads compact arrays.  An alternative's float64 reference (twice a float32 case's
        input bytes) then never exists: every reader compares it with a backend's output in that output's
        dtype, as it reads the expected values; an alternative's values are scored and dropped, as its
        float64 ones were (32×64×56×56 on torch with a search: the worker's peak 6.61 → 6.04× the input)."""
        from normconf.ops import spec_for

        spec = spec_for(case)
        return (
            spec.compact_expected is not None
            and spec.explain_reads_compact
            and output in case.output_names()
            and output not in self._small(case)
            and not self._keeps_full_size(case, inputs)
        )

    def rounded(self, case, inputs, sem: Semantics, output: str) -> list[np.ndarray] | None:
        """:meth:`get` rounded to the output's dtype (:func:`normconf.oracle.round_to_output_dtypes`), cached
        next to it (the expected values under ``sem``); ``None`` if the reference cannot run ``sem``.  Held
        compactly (float32 for float32, float16 and bfloat16 outputs: the same numbers in half the bytes of
        float64), as a worker holds its expected values; :func:`normconf.compare.compare` and ``np.array_equal``
        read them as values."""
        from normconf.oracle import round_to_output_dtypes

        key = (_case_key(case), id(inputs), sem)
        name = _ROUNDED + output
        with self._lock:
            hit = self._d.get(key)
            if hit is not None and name in hit[1]:
                self._d.move_to_end(key)
                return hit[1][name]
            if hit is not None and hit[1].get("__error__") is not None:
                return None
        if sem != case.semantics and self._serves_compact(case, inputs, output) and DEFER:
            # an alternative's (the search's, the profile check's): never one whole array, never kept
            steps = self.deferred(case, inputs, sem, output)
            if steps is not None:
                return steps
        value = self._compact_direct(case, inputs, sem, output)
        if value is _FAILED:  # the reference cannot run ``sem``
            self._store(key, inputs, {"__error__": [np.zeros(0)]}, case)
            return None
        if self._serves_compact(case, inputs, output):
            if value is None:  # not an output of ``sem`` here (eval_y without eval_after)
                return None
            if sem != case.semantics:  # an alternative's (the search's, the profile check's): not kept
                return value
        if value is None:
            steps = self.get(case, inputs, sem, output)
            if steps is None:
                return None
            value = round_to_output_dtypes(case, {output: steps}, compact=True)[output]
            extra = 0 if value is steps else sum(a.nbytes for a in value)
        else:
            extra = sum(a.nbytes for a in value)
        if extra and not self._keepable(case, inputs, {output: value}):
            return value
        with self._lock:
            hit = self._d.get(key)
            if hit is None:  # the direct path stored no reference entry: one for this rounded output
                hit = self._d[key] = (inputs, {}, 0)
            if name in hit[1]:
                return value
            hit[1][name] = value
            self._d[key] = (hit[0], hit[1], hit[2] + extra)
            self._d.move_to_end(key)
            self._bytes += extra
            self._evict(self.budget(inputs), _pinned(case, inputs))
        return value

    def adopt_expected(self, case, inputs, expected: dict) -> None:
        """Keep ``expected`` (:func:`normconf.oracle.expected_outputs` of ``case`` on ``inputs`` with ``compact``:
        what :meth:`rounded` computes for the case's own semantics, by the same hook) as those rounded
        outputs, for the full-size outputs :meth:`rounded` would compute again (the pair review's and the
        profile check's reference under the case's semantics: a second copy of the expected values, 1× a
        float32 input's bytes, in a large case's worker).  The arrays are shared, not copied."""
        keep = {_ROUNDED + name: steps for name, steps in expected.items() if self._serves_compact(case, inputs, name)}
        if keep:
            self._store((_case_key(case), id(inputs), case.semantics), inputs, keep, case)

    def _compact_direct(self, case, inputs, sem: Semantics, output: str) -> Any:
        """``output`` under ``sem`` rounded by the op's ``compact_expected`` (no float64 full-size output), where
        the cache could not keep the float64 one anyway and the op has that hook; None: take the rounding path
        (or no such output); :data:`_FAILED`: the reference cannot run ``sem``."""
        from normconf.ops import spec_for

        direct = spec_for(case).compact_expected
        if direct is None or output in self._small(case) or self._keeps_full_size(case, inputs):
            return None
        self.computed += 1
        try:
            with np.errstate(all="ignore"):
                return direct(case, inputs, frozenset({output, *self._small(case)}), sem).get(output)
        except _REFUSED:
            return _FAILED

    def statistics(self, case, inputs, sem: Semantics) -> dict | None:
        """The op's statistics-only reference under ``sem`` (``reference(..., statistics_only=True)``: its
        per-group outputs, no normalization pass; BatchNorm's also the ``norm_mean``/``norm_var`` each step
        normalizes with), kept like the per-group outputs; None where the reference cannot run ``sem``."""
        from normconf.oracle import reference_outputs

        key = (_case_key(case), id(inputs), sem, "__statistics__")
        with self._lock:
            hit = self._d.get(key)
            if hit is not None:
                self._d.move_to_end(key)
                return None if "__error__" in hit[1] else hit[1]
        self.computed += 1
        try:
            with np.errstate(all="ignore"):
                value = reference_outputs(case, inputs, sem, statistics_only=True)
        except _REFUSED:
            self._store(key, inputs, {"__error__": [np.zeros(0)]}, case)
            return None
        self._store(key, inputs, value, case)
        return value

    def deferred(self, case, inputs, sem: Semantics, output: str) -> list | None:
        """``output`` under ``sem`` by the op's ``deferred_output`` hook: one array-like per step that computes the
        elements a reader asks for, the values :meth:`rounded` would compute (BatchNorm's ``y``:
        :class:`normconf.explain.deferred.DeferredOutput`), or None where the op has no such hook or it does not
        apply (then the full run decides)."""
        from normconf.ops import spec_for

        hook = spec_for(case).deferred_output
        return None if hook is None else hook(case, inputs, sem, output, self.statistics)

    def _store(self, key, inputs, value: dict, case=None) -> None:
        """Add ``value``'s outputs to ``key``'s entry (an error replaces it: the reference cannot run that
        semantics)."""
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
                if "__error__" not in value and "__error__" not in old[1]:
                    value = {**old[1], **value}
            nb = sum(a.nbytes for v in value.values() for a in v)
            self._d[key] = (inputs, value, nb)
            self._bytes += nb
            self._evict(self.budget(inputs), _pinned(case, inputs))

    def _evict(self, budget: int, pinned: tuple | None = None) -> None:
        """Drop the least recently used entries until under ``budget`` and ``max_entries`` (lock held),
        ``pinned`` last: the case's own semantics, which every output's search reads again."""
        self.max_bytes = budget
        while self._d and (self._bytes > budget or len(self._d) > self.max_entries):
            k = next(iter(self._d))
            if k == pinned and len(self._d) > 1:
                self._d.move_to_end(k)  # the pinned entry goes last, dropped only if alone and still over
                continue
            self._bytes -= self._d.pop(k)[2]


def _pinned(case, inputs) -> tuple | None:
    """The key of ``case``'s own semantics (kept while its case is stored), None without a case."""
    return None if case is None else (_case_key(case), id(inputs), case.semantics)


#: :meth:`ReferenceCache._compact_direct`'s answer where the reference raised for the semantics
_FAILED = object()

#: the name prefix of a rounded output in an entry (:meth:`ReferenceCache.rounded`)
_ROUNDED = "__rounded__:"


def _case_key(case) -> str:
    """The case's canonical JSON (:func:`normconf.memo.case_json`: once per case object)."""
    return case_json(case)


#: the process-wide cache (one per worker process)
CACHE = ReferenceCache()
_ReferenceCache = ReferenceCache  # the name tests and tools used
