"""The backends' part of a worker's CPU (issue 18): :class:`normconf.worker.BackendClock` counts this
process's CPU inside the adapters' calls only (loading and asking an adapter, its ``run_case``), never
normconf's own work around them (the inputs, the reference, judging); a run reports it by worker group
beside the workers' whole CPU (``RunSummary.backend_cpu``, ``meta.timing.backend_cpu_seconds``).

The adapters here are stubs that burn a known amount of CPU (``time.process_time`` advances by it),
so each claim is about accounting, not speed: a clock that also counts the worker's own work, or misses
the adapter's, fails one of them."""

from __future__ import annotations

import time

import pytest

from normconf import worker
from normconf.adapters.base import Adapter, Observed
from normconf.oracle import reference_outputs
from tests.helpers import loaded_case

BURN = 0.2  # CPU seconds


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class _Stub(Adapter):
    """The reference's own outputs (so the pair passes), after ``burn_in_run`` s of CPU."""

    id = "stub-clock"
    framework = "test"
    burn_in_run = 0.0
    burn_in_version = 0.0

    def version(self) -> str:
        _burn(self.burn_in_version)
        return "1"

    def run(self, case, inputs) -> Observed:
        _burn(self.burn_in_run)
        ref = reference_outputs(case, inputs)
        return Observed({"y": [a.astype("float32") for a in ref["y"]]})


def _host(adapter: Adapter) -> worker._Host:
    host = worker._Host((), ())
    host._adapters[adapter.id] = adapter
    return host


def _pair(host: worker._Host) -> list:
    lc = loaded_case(shape=[4, 3, 2], mode="eval", dtype="float32")
    kind, rows = host.pair(worker.PairTask(lc, "stub-clock"))
    assert kind == "rows" and {r.outcome for r in rows} == {"pass"}
    return rows


@pytest.mark.parametrize("where", ["run", "version"])
def test_the_adapters_calls_are_counted(where):
    """CPU burned in ``run_case`` or in ``version`` (where a framework is imported) is the backend's."""
    stub = _Stub()
    setattr(stub, f"burn_in_{where}", BURN)
    host = _host(stub)
    t = time.process_time()
    _pair(host)
    spent = time.process_time() - t
    assert BURN <= host.clock.total <= spent


@pytest.mark.parametrize("where", ["inputs", "judging"])
def test_normconfs_own_work_is_not_counted(where, monkeypatch):
    """CPU burned drawing the inputs or judging the outputs is normconf's, not the backend's (a clock
    around the whole task counts the first; one around the pair, the second)."""
    host = _host(_Stub())
    if where == "inputs":
        real = host.inputs

        def slow_inputs(case, key=None):
            _burn(BURN)
            return real(case, key)

        monkeypatch.setattr(host, "inputs", slow_inputs)
    else:
        from normconf import results

        real_rows = results.rows_for

        def slow_rows(*a, **k):
            _burn(BURN)
            return real_rows(*a, **k)

        monkeypatch.setattr(results, "rows_for", slow_rows)
    t = time.process_time()
    _pair(host)
    assert time.process_time() - t >= BURN
    assert host.clock.total < BURN / 2


def test_a_refusal_stops_the_clock():
    """An adapter that refuses the case (``unsupported``) ends its part there: the worker's later work
    (here: burning CPU outside any adapter call) is not counted."""

    class Refusing(_Stub):
        def unsupported(self, case):
            return "not this one"

    host = _host(Refusing())
    lc = loaded_case(shape=[4, 3, 2], mode="eval", dtype="float32")
    kind, rows = host.pair(worker.PairTask(lc, "stub-clock"))
    assert kind == "rows" and [r.outcome for r in rows] == ["unsupported"]
    before = host.clock.total
    _burn(BURN / 2)
    assert host.clock.total == before


def test_a_run_reports_the_backends_cpu_by_group():
    """End to end: every worker's clock travels with its replies and the summary adds them by group,
    never more than the group's whole CPU (``/proc``'s clock ticks: 10 ms of rounding)."""
    from normconf.runner import Runner

    cases = [loaded_case(id=f"clock{i}", shape=[8, 4, 4], mode="train") for i in range(3)]
    with Runner() as runner:
        summary = runner.run(cases, ["numpy", "torch"])
    assert set(summary.backend_cpu) >= {"numpy", "torch"}
    for g in ("numpy", "torch"):
        assert 0 < summary.backend_cpu[g] <= summary.worker_cpu[g] + 0.02
    assert summary.backend_cpu["torch"] > 0.1  # importing torch happens inside the adapter's calls
