"""Objects a worker is sent once per run and referred to afterwards (the cases and profiles of pairs).

Every backend of a worker group is judged on the same case object, and the benchmark's warm loop
repeats one pair: sending a :class:`Ref` instead of pickling the case and the profile again saves
the pickling on both sides, and the worker then holds *one* object per case, so that everything it
memoizes per case object (:mod:`normconf.memo`: the case key, the output spec, the size bound) is
computed once per case, not once per pair.

Protocol: :meth:`Sender.share` gives a :class:`Put` (the object, with a token) the first time and
a :class:`Ref` (the token) while the receiver still holds it.  Both sides keep the last
:data:`KEEP` tokens in least-recently-used order and apply the same operations in the same order
(one :meth:`Sender.share` per :meth:`Receiver.resolve`), so the sender knows what the receiver holds.
Should they ever disagree (a bug), :meth:`Receiver.resolve` raises :class:`Missing`, both sides
forget everything, the worker answers ``("missing", token)`` and the harness sends the task again
with every object in full (:meth:`normconf.runner.Runner.run_pair`): a lost reference costs a
round trip, never a result.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from normconf.memo import by_identity

#: objects each side keeps (a pair task refers to two: its case and its profile)
KEEP = 16


@dataclass(frozen=True)
class Put:
    """The object ``value`` under ``token``, for the receiver to keep."""

    token: int
    value: Any


@dataclass(frozen=True)
class Ref:
    """The object the receiver keeps under ``token``."""

    token: int


class Missing(Exception):
    """A :class:`Ref` to a token the receiver does not hold."""

    def __init__(self, token: int):
        super().__init__(f"shared object {token} is not held by this worker")
        self.token = token


_COUNTER = itertools.count(1)
_COUNTER_LOCK = threading.Lock()


@by_identity(maxsize=4 * KEEP)
def token_of(obj: Any) -> int:
    """A token unique to ``obj`` in this process (an object whose memo entry was dropped gets a new
    one when seen again: it is then sent again, which is only slower)."""
    with _COUNTER_LOCK:
        return next(_COUNTER)


class Sender:
    """The harness side of one worker connection: which tokens the worker holds."""

    def __init__(self) -> None:
        self._held: OrderedDict[int, None] = OrderedDict()

    def share(self, obj: Any) -> Put | Ref:
        token = token_of(obj)
        if token in self._held:
            self._held.move_to_end(token)
            return Ref(token)
        self._held[token] = None
        while len(self._held) > KEEP:
            self._held.popitem(last=False)
        return Put(token, obj)

    def forget(self) -> None:
        """Assume the receiver holds nothing (after it reported a :class:`Missing`)."""
        self._held.clear()


class Receiver:
    """The worker side: the objects it was sent."""

    def __init__(self) -> None:
        self._held: OrderedDict[int, Any] = OrderedDict()

    def resolve(self, item: Any) -> Any:
        """The object ``item`` stands for (anything not a :class:`Put` or :class:`Ref` is itself)."""
        if isinstance(item, Put):
            self._held.pop(item.token, None)  # (re)inserted last, as the sender did
            self._held[item.token] = item.value
            while len(self._held) > KEEP:
                self._held.popitem(last=False)
            return item.value
        if isinstance(item, Ref):
            if item.token not in self._held:
                self._held.clear()  # the sender forgets too, and sends everything again
                raise Missing(item.token)
            self._held.move_to_end(item.token)
            return self._held[item.token]
        return item
