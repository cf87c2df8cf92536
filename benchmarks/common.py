"""Measurement helpers shared by the benchmark sections (Linux ``/proc`` where noted; nothing else).

Conventions: times are seconds in the JSON (``ms()`` rounds for display fields); CPU time is user +
system of every thread; a memory figure is bytes, a *multiple* is bytes / the case's input bytes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stats(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": [round(s, 6) for s in samples],
    }


def proc_cpu(pid: int) -> float:
    """CPU seconds of another process: the sum of its threads' ``/proc/<pid>/task/*/schedstat`` run
    times (nanoseconds; threads that ended are not counted), else utime + stime of ``/proc/<pid>/stat``
    (clock ticks, 10 ms); 0 where neither can be read."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").glob("*/schedstat"))
        if tasks:
            return sum(int(f.read_text().split()[0]) for f in tasks) / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_now(pids: list[int] | None = None, at: str = "end") -> float:
    """CPU seconds of this process (all threads) plus those of ``pids``.

    Reading the other processes' figures costs this process ~70 us of CPU (``/proc`` files), which must
    not count as the measured code's: ``at="start"`` (an interval's first reading) reads them first and
    this process's clock last, ``at="end"`` this process's clock first, so the reading itself always falls
    outside the interval."""
    if at == "start":
        others = sum(proc_cpu(p) for p in pids or ())
        return others + time.process_time()
    own = time.process_time()
    return own + sum(proc_cpu(p) for p in pids or ())


def timeit_side_by_side(fns: dict, repeat: int, warmup: int = 1) -> dict[str, dict]:
    """Wall time and CPU time (this process plus the ``cpu_of`` pids) of several functions, ``repeat``
    samples each and their medians, measured in alternating rounds: ``fns`` maps a name to ``fn`` or
    ``(fn, cpu_of)``; each round runs every function once, the order reversed every other round
    (A B, B A, ...: each runs first in half the rounds). A change in the machine's speed while they
    are measured (this VM's moves by the minute) then falls on all of them alike and their ratios
    compare like with like; measured in two blocks one after the other, a drift between the blocks
    would show as a ratio."""
    calls = {k: v if isinstance(v, tuple) else (v, None) for k, v in fns.items()}
    for _ in range(warmup):
        for fn, _pids in calls.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    order = list(calls)
    for i in range(repeat):
        for k in order if i % 2 == 0 else order[::-1]:
            fn, pids = calls[k]
            c = cpu_now(pids, at="start")
            t = time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(cpu_now(pids) - c)
    out = {}
    for k in calls:
        out[k] = stats(wall[k])
        out[k]["cpu"] = stats(cpu[k])
    return out


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far (``RUSAGE_CHILDREN``)."""
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def backend_clock(runner) -> float:
    """The CPU seconds the Runner's workers have spent inside the adapters' calls so far, as of their
    last replies (``WorkerHandle.backend_cpu``: normconf.worker.BackendClock); 0.0 if the handles changed."""
    try:
        handles = list(getattr(runner, "_all_workers", None) or ())
    except TypeError:
        return 0.0
    return float(sum(getattr(w, "backend_cpu", 0.0) or 0.0 for w in handles))


def worker_pids(runner) -> list[int]:
    """Pids of the Runner's live worker processes, found defensively (``[]`` if the handles changed)."""
    try:
        handles = list(getattr(runner, "_all_workers", None) or ())
    except TypeError:
        return []
    pids = []
    for w in handles:
        pid = getattr(getattr(w, "proc", None), "pid", None)
        if isinstance(pid, int) and Path(f"/proc/{pid}").exists():
            pids.append(pid)
    return pids


def _kb(path: str, key: str) -> int | None:
    """The ``key:`` line of a /proc file in kB, as bytes."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_hwm(pid: int | str = "self") -> int | None:
    """Peak resident set size (VmHWM) in bytes."""
    return _kb(f"/proc/{pid}/status", "VmHWM")


def read_rss(pid: int | str = "self") -> int | None:
    return _kb(f"/proc/{pid}/status", "VmRSS")


def reset_hwm(pid: int | str = "self") -> bool:
    """Reset VmHWM to the current RSS (``/proc/<pid>/clear_refs`` ← 5); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def mem_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes."""
    return _kb("/proc/meminfo", "MemAvailable")


def make_case(shape: list[int], seed: int = 0, case_id: str = "bench", **kw):
    """A float32 BatchNorm train case (one step, batch weight 0.1) on generated inputs."""
    from normconf.cases import Case, Generator, LoadedCase

    c = Case.model_validate(
        {"id": case_id, "shape": list(shape), "mode": "train", "momentum": {"batch_weight": 0.1}, **kw}
    ).model_copy(update={"input": Generator(seed=seed)})
    return LoadedCase(c, "<benchmark>", 0)


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def ms(v: float) -> float:
    return round(v * 1e3, 3)


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed if the benchmark dies
    except Exception:
        pass


@contextlib.contextmanager
def cpu_hog():
    """One CPU-bound child process (``while True: pass``) for the duration; yields its ``pid`` and
    ``cpu()``, the CPU seconds it has used.  Killed at exit, on an exception or Ctrl-C, and (Linux)
    when this process dies."""
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=_die_with_parent)
    try:
        yield types.SimpleNamespace(pid=p.pid, cpu=lambda: proc_cpu(p.pid))
    finally:
        p.kill()
        p.wait()
