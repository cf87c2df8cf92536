"""Cases and profiles sent to a worker once (harness/shared_objects.py): both sides stay in step, a
reference the worker lost costs a round trip and changes no row."""

from __future__ import annotations

import dataclasses
import random

import pytest

from normconf import shared_objects as so
from normconf.runner import Runner
from tests.helpers import loaded_case


def _timeless(row) -> dict:
    return {k: v for k, v in dataclasses.asdict(row).items() if k != "seconds"}


def test_sender_and_receiver_agree_on_what_is_held():
    """Random sequences over more objects than either side keeps: every Ref resolves to its object."""
    rng = random.Random(0)
    objects = [object() for _ in range(3 * so.KEEP)]
    sender, receiver = so.Sender(), so.Receiver()
    puts = refs = 0
    for _ in range(5000):
        obj = objects[min(int(rng.expovariate(0.15)), len(objects) - 1)]  # a few hot objects, a long tail
        item = sender.share(obj)
        puts += isinstance(item, so.Put)
        refs += isinstance(item, so.Ref)
        assert receiver.resolve(item) is obj
    assert puts and refs  # both kinds happened
    assert receiver.resolve("plain") == "plain"  # anything else stands for itself


def test_a_lost_reference_is_reported_and_both_sides_start_over():
    sender, receiver = so.Sender(), so.Receiver()
    a, b = object(), object()
    receiver.resolve(sender.share(a))
    receiver.resolve(sender.share(b))
    receiver._held.pop(so.token_of(a))  # a receiver out of step (a bug)
    with pytest.raises(so.Missing) as e:
        receiver.resolve(sender.share(a))
    assert e.value.token == so.token_of(a) and not receiver._held
    sender.forget()  # what the runner does on ("missing", token)
    assert isinstance(sender.share(b), so.Put)


def test_a_pair_sends_its_case_once_and_recovers_a_lost_one(monkeypatch):
    sent: list = []
    with Runner() as r:
        lc = loaded_case(id="shared")
        first = r.run_pair(lc, "numpy")
        w = r._worker("numpy")
        real_call = w.call
        monkeypatch.setattr(w, "call", lambda req, *a, **k: sent.append(req[1]) or real_call(req, *a, **k))
        again = r.run_pair(lc, "numpy")
        assert isinstance(sent[-1].lc, so.Ref) and isinstance(sent[-1].profile, so.Ref)
        lost = loaded_case(id="lost", shape=[3, 2, 4, 4])
        w.shared._held[so.token_of(lost)] = None  # the harness believes the worker holds it: it does not
        sent.clear()
        rows = r.run_pair(lost, "numpy")
        assert [type(t.lc) for t in sent] == [so.Ref, so.Put]  # refused, then sent in full
        fresh = Runner()
        with fresh:
            assert [_timeless(x) for x in rows] == [_timeless(x) for x in fresh.run_pair(lost, "numpy")]
    assert [x.outcome for x in first] == [x.outcome for x in again] and all(x.outcome == "pass" for x in first)


def _after_a_bad_neighbour(case_id: str, bad_backend: str):
    """(the bad backend's first row, the harness's case) on one 2x3x4x5 case, after checking that the
    neighbour run next in the same worker gives the rows it gives in a fresh one (all pass)."""
    lc = loaded_case(id=case_id, shape=[2, 3, 4, 5])
    with Runner(("tests.judging_adapters:ADAPTERS",)) as r:
        (bad, *_) = r.run_pair(lc, bad_backend)
        after = r.run_pair(lc, "mutator-neighbour")
    with Runner(("tests.judging_adapters:ADAPTERS",)) as fresh:
        alone = fresh.run_pair(loaded_case(id=case_id, shape=[2, 3, 4, 5]), "mutator-neighbour")
    assert [_timeless(x) for x in after] == [_timeless(x) for x in alone]
    assert all(x.outcome == "pass" for x in after)
    return bad, lc


def test_an_adapter_changing_its_case_is_an_error_and_the_next_backend_gets_the_case_as_sent():
    """The worker holds one case object for every backend of its group: an adapter that changes it in
    place (a list field: the frozen model cannot stop that) gets an error row, and the case is restored."""
    bad, lc = _after_a_bad_neighbour("mutated", "case-mutator")
    assert bad.outcome == "error" and "changed the case it was given" in bad.message
    assert lc.case.shape == [2, 3, 4, 5]  # the harness's own object was never touched


def test_an_adapter_writing_into_its_inputs_is_refused_and_changes_nothing_for_the_next_backend():
    """Inputs are cached per case for every backend of a worker group, and the expected values are
    computed from them: they are read-only, so an in-place write is that backend's error and nobody
    else's (before: the writer passed against a reference of its own doubled x, its neighbours ran on it)."""
    bad, _lc = _after_a_bad_neighbour("written", "input-writer")
    assert bad.outcome == "error" and "read-only" in bad.message and "must not write into them" in bad.message
