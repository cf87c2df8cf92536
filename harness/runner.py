"""Cases × backends → result rows, each backend group in its own worker process.

The unit of work is a :class:`~normconf.worker.Task` (one case, one backend): a
plain picklable object.  Tasks of one *worker group* (``Adapter.worker``) run in
a ``python -m normconf.worker`` subprocess started with the group's environment;
a crash there becomes ``error: crashed (SIGSEGV)``, a task running past the
timeout becomes ``error: timeout after N s`` (the worker is killed and a fresh
one serves the next task), and the run goes on.

Each worker judges its own tasks (issue 18): it regenerates the (deterministic)
inputs, computes the reference once per case for every backend of its group,
runs the adapter, compares and explains, and sends back rows only — no array
travels in either direction.  Only a worker whose floating-point environment is
not IEEE hands its outputs over to be judged here (:meth:`Runner.judge`, with the
reference cached in :meth:`Runner.expected`).  ``jobs > 1`` runs the schedule's
chunks (:meth:`Runner.schedule`: one worker group's tasks each) on that many
threads, each driving its own workers; rows are sorted back into case × backend
order, so a parallel run's results equal a serial run's.  Workers start with one
thread per framework (:func:`normconf.worker_env.thread_env`) and JAX's persistent compilation cache
(:func:`normconf.worker_env.cache_env`).

Isolation (issue 17, :mod:`normconf.isolation`): workers run as ``python -P -m normconf.worker``
with a clean ``sys.path`` (the package root and an explicitly set ``PYTHONPATH``, never the
current folder; ``--adapter`` modules found there are pinned one by one); the ``--adapter``
modules are imported in workers only (``self.adapters`` holds proxies for them, built from a
describe worker, :func:`normconf.adapters.all_adapters`); a worker is a child subreaper and
:meth:`WorkerHandle.kill`/:meth:`~WorkerHandle.close` (:mod:`normconf.worker_handle`) and the
harness's exit end its whole process tree.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from normconf import isolation
from normconf import schedule as scheduling
from normconf import worker as proto
from normconf.adapters import all_adapters, cpu_estimate
from normconf.cases import LoadedCase
from normconf.inputs import Inputs, generate
from normconf.oracle import expected_outputs
from normconf.profiles import Profile, parse_conventions, profile_of
from normconf.results import Row, rows_for
from normconf.shared_objects import Missing
from normconf.validate_outputs import reply_bound
from normconf.worker_env import thread_env, worker_groups
from normconf.worker_handle import EXIT_WAIT_S, JudgingError, WorkerFailure, WorkerHandle

__all__ = ["DEFAULT_TIMEOUT", "EXIT_WAIT_S", "JudgingError", "Runner", "RunSummary", "WorkerFailure", "WorkerHandle"]

#: default per-task timeout in seconds (``--timeout``)
DEFAULT_TIMEOUT = 300.0
#: how long a worker may take to start, and the describe worker to import the --adapter modules
#: (``normconf.isolation.startup_timeout()``: ``$NORMCONF_STARTUP_TIMEOUT`` overrides it)
STARTUP_TIMEOUT = isolation.STARTUP_TIMEOUT


@dataclass
class RunSummary:
    rows: list[Row]
    partial: bool = False
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    #: CPU seconds of the worker processes by worker group (Linux; measured when each worker closes)
    worker_cpu: dict[str, float] = field(default_factory=dict)
    #: the part of it spent inside the adapters' calls (framework imports and calls included), by worker group
    #: (:class:`normconf.worker.BackendClock`, as of each worker's last reply)
    backend_cpu: dict[str, float] = field(default_factory=dict)


class Runner:
    """Runs (case, backend) pairs; holds worker processes and the per-case reference cache.

    Use as a context manager (workers are closed at exit).
    """

    def __init__(
        self,
        extra_specs: tuple[str, ...] = (),
        native_paths: tuple[str, ...] = (),
        timeout: float = DEFAULT_TIMEOUT,
        cache_size: int = 4,
        conventions: str | None = None,
    ):
        """``conventions``: the profile of the ``--adapter``/``--native`` backends (a built-in backend's
        id or ``knob=value,...``, :func:`normconf.profiles.parse_conventions`); raises ValueError (so
        does a malformed ``$NORMCONF_WORKER_THREADS``)."""
        thread_env()  # a malformed $NORMCONF_WORKER_THREADS is the caller's error (ValueError), before any worker
        self.extra_specs = tuple(extra_specs)
        self.native_paths = tuple(str(Path(p).resolve()) for p in native_paths)
        self.timeout = timeout
        self.adapters = all_adapters(self.extra_specs, self.native_paths)
        #: {backend: (worker group, its environment)}: adapters naming one ``worker`` share a process
        self._group_table = worker_groups(self.adapters)
        #: backends named with --adapter/--native (the ones ``conventions`` applies to)
        self.user_backends = set(self.adapters) - set(all_adapters()) if (extra_specs or native_paths) else set()
        self.user_profile = None
        if conventions:
            if not self.user_backends:
                raise ValueError("--conventions applies to the backends of --native and --adapter; none was given")
            self.user_profile = parse_conventions(conventions, self.adapters)
        self._profiles: dict[str, Profile] = {}
        self._cache: OrderedDict[str, tuple[Inputs, dict]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._case_locks: dict[str, threading.Lock] = {}
        self._local = threading.local()
        self._all_workers: list[WorkerHandle] = []
        self._workers_lock = threading.Lock()
        #: CPU seconds used by the workers closed so far, by worker group, and the adapters' part of them
        self.worker_cpu: dict[str, float] = {}
        self.backend_cpu: dict[str, float] = {}
        self.stop = threading.Event()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End every worker: all asked to exit, then each waited for (one deadline): the exits overlap."""
        with self._workers_lock:
            workers, self._all_workers = self._all_workers, []
        for w in workers:
            w.ask_to_exit()
        deadline = time.monotonic() + EXIT_WAIT_S
        for w in workers:
            w.finish_close(deadline)

    def kill_workers(self) -> None:
        """Kill every worker now (on an interrupt: their tasks are abandoned)."""
        with self._workers_lock:
            workers = list(self._all_workers)
        for w in workers:
            w.kill()

    # -- shared per-case data -----------------------------------------------------------
    def expected(self, lc: LoadedCase) -> tuple[Inputs, dict[str, list[np.ndarray]]]:
        """(inputs, reference outputs) for a case, computed once and cached."""
        key = lc.case.model_dump_json()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            lock = self._case_locks.setdefault(key, threading.Lock())
        with lock:
            with self._cache_lock:
                if key in self._cache:
                    return self._cache[key]
            inputs = generate(lc.case)
            ref = expected_outputs(lc.case, inputs)
            with self._cache_lock:
                self._cache[key] = (inputs, ref)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return inputs, ref

    # -- workers ----------------------------------------------------------------------
    def group_of(self, backend: str) -> tuple[str, dict[str, str]]:
        """(worker group, its environment) of ``backend`` (:func:`normconf.worker_env.worker_groups`)."""
        group, env = self._group_table[backend]
        return group, dict(env)

    def _workers(self) -> dict[str, WorkerHandle]:
        """This thread's live workers by group (pytest: one per group for the whole session)."""
        ws = getattr(self._local, "workers", None)
        if ws is None:
            ws = self._local.workers = {}
        return ws

    def _worker(self, backend: str) -> WorkerHandle:
        group, env = self.group_of(backend)
        ws = self._workers()
        w = ws.get(group)
        if w is not None and not w.alive():
            self._forget(w)
            w = None
        if w is None:
            w = WorkerHandle(group, env, self.extra_specs, self.native_paths)
            with self._workers_lock:
                self._all_workers.append(w)
            ws[group] = w
        return w

    def _account(self, w: WorkerHandle) -> None:
        cpu = w.cpu_seconds()
        with self._workers_lock:
            if cpu is not None:
                self.worker_cpu[w.group] = self.worker_cpu.get(w.group, 0.0) + cpu
            self.backend_cpu[w.group] = self.backend_cpu.get(w.group, 0.0) + w.backend_cpu

    def _forget(self, w: WorkerHandle) -> None:
        self._account(w)
        w.kill()
        w.close()
        with self._workers_lock:
            if w in self._all_workers:
                self._all_workers.remove(w)
        ws = self._workers()
        if ws.get(w.group) is w:
            del ws[w.group]

    def _drop_worker(self, backend: str) -> None:
        w = self._workers().get(self.group_of(backend)[0])
        if w is not None:
            self._forget(w)

    def run_backend(self, lc: LoadedCase, backend: str) -> proto.BackendResult:
        """Run one task in the backend's worker; failures become an ``error`` result."""
        t0 = time.perf_counter()
        try:
            w = self._worker(backend)
            return w.call(
                ("run", proto.Task(lc.case, backend)), self.timeout, f"{lc.id} on {backend}", limit=reply_bound(lc.case)
            )
        except WorkerFailure as e:
            self._drop_worker(backend)
            return proto.BackendResult(backend, "error", message=str(e), seconds=time.perf_counter() - t0)

    def run_pair(self, lc: LoadedCase, backend: str) -> list[Row]:
        """Rows for one (case, backend) pair (the pytest plugin's unit).

        The worker runs the backend *and judges its outputs* (``("pair", PairTask)``,
        :mod:`normconf.worker`): only rows travel back, and the comparison and explanation run in
        that process, in parallel with the other workers.  A worker whose floating-point
        environment is not IEEE sends the outputs instead, and they are judged here."""
        profile = self.profile(backend)
        if backend not in self.adapters:
            res = proto.BackendResult(backend, "error", message=f"unknown backend {backend!r}")
            return rows_for(lc, backend, res, None, None)
        t0 = time.perf_counter()
        try:
            w = self._worker(backend)
            for attempt in (1, 2):  # the second sends the case and profile in full
                task = proto.PairTask(w.shared.share(lc), backend, w.shared.share(profile))
                try:
                    judged = w.call(("pair", task), self.timeout, f"{lc.id} on {backend}", limit=reply_bound(lc.case))
                    break
                except Missing:
                    if attempt == 2:
                        raise WorkerFailure(f"the worker lost {lc.id}'s case twice") from None
        except WorkerFailure as e:
            self._drop_worker(backend)
            res = proto.BackendResult(backend, "error", message=str(e), seconds=time.perf_counter() - t0)
            return rows_for(lc, backend, res, None, None, profile)
        if isinstance(judged, tuple) and len(judged) == 2 and judged[0] == "rows":
            return list(judged[1])
        res = judged[1] if isinstance(judged, tuple) else judged  # ("result", BackendResult): judge it here
        return self.judge(lc, backend, res, profile)

    def judge(
        self, lc: LoadedCase, backend: str, res: proto.BackendResult, profile: Profile | None = None
    ) -> list[Row]:
        """Rows of a backend result judged in this process (the reference computed and cached here)."""
        profile = self.profile(backend) if profile is None else profile
        if res.status == "ok":
            inputs, ref = self.expected(lc)
            return rows_for(lc, backend, res, ref, inputs, profile)
        return rows_for(lc, backend, res, None, None, profile)

    def profile(self, backend: str) -> Profile:
        """The conventions ``backend`` declares (or was given with ``conventions``); one object per
        backend (sent to its worker once)."""
        if backend not in self._profiles:
            if self.user_profile is not None and backend in self.user_backends:
                self._profiles[backend] = Profile(f"{backend} ({self.user_profile.name})", self.user_profile.entries)
            else:
                cls = self.adapters.get(backend)
                self._profiles[backend] = profile_of(cls) if cls is not None else Profile(backend)
        return self._profiles[backend]

    def backend_info(self, backends: list[str]) -> dict[str, tuple[str | None, str]]:
        """{backend: (unavailable reason or None, version)}, asked of each group's worker."""
        out: dict[str, tuple[str | None, str]] = {}
        by_group: dict[str, list[str]] = {}
        for b in backends:
            by_group.setdefault(self.group_of(b)[0], []).append(b)
        for group, bs in by_group.items():
            try:
                out.update(self._worker(bs[0]).call(("info", bs), self.timeout, f"probing {group}"))
            except WorkerFailure as e:
                self._drop_worker(bs[0])
                out.update({b: (f"worker failed: {e}", "") for b in bs})
        return out

    # -- whole runs ----------------------------------------------------------------------
    def cpu_estimate(self, backend: str) -> tuple[float, float]:
        """(start seconds of its worker group, milliseconds per case): the adapter's estimate."""
        return cpu_estimate(self.adapters[backend])

    def schedule(self, tasks: list, jobs: int) -> list[list]:
        """Chunks of ``tasks`` (``(case index, backend index, case, backend)``) for ``jobs`` threads, in
        the order they are taken (:func:`normconf.schedule.chunks`)."""
        return scheduling.chunks(tasks, jobs, lambda b: self.group_of(b)[0], self.cpu_estimate)

    def run(
        self,
        cases: list[LoadedCase],
        backends: list[str],
        jobs: int = 1,
        progress: Callable[[int, int, str], None] | None = None,
        on_tail: Callable[[], None] | None = None,
    ) -> RunSummary:
        """Every case on every backend.  Interrupted runs return what finished (``partial``).

        ``on_tail`` is called once, in the first thread that finds no work left: from then on a core
        is free (the caller can prepare what follows the run there)."""
        t_start = time.perf_counter()
        tasks = [(ci, bi, lc, b) for ci, lc in enumerate(cases) for bi, b in enumerate(backends)]
        chunks: queue.Queue = queue.Queue()
        for part in self.schedule(tasks, jobs):
            chunks.put(part)
        results: dict[tuple[int, int], list[Row]] = {}
        lock = threading.Lock()
        total = len(tasks)
        tail = [on_tail]

        def work() -> None:
            try:
                while not self.stop.is_set():
                    try:
                        part = chunks.get_nowait()
                    except queue.Empty:
                        with lock:
                            callback, tail[0] = tail[0], None
                        if callback is not None:
                            callback()
                        return
                    for ci, bi, lc, b in part:
                        if self.stop.is_set():
                            return
                        try:
                            rows = self.run_pair(lc, b)
                        except Exception:
                            if self.stop.is_set():  # torn down by an interrupt while it ran: abandoned
                                return
                            raise
                        with lock:
                            if self.stop.is_set() and any(r.outcome == "error" for r in rows):
                                # failed while stopping: its worker was probably killed by the interrupt
                                return
                            results[(ci, bi)] = rows
                            if progress:
                                progress(len(results), total, f"{lc.id} [{b}]")
            except BaseException:  # KeyboardInterrupt (SIGINT/SIGTERM) in the main thread
                self.stop.set()
                raise
            finally:
                for w in list(self._workers().values()):
                    self._forget(w)

        partial = False
        if jobs <= 1:
            try:
                work()
            except KeyboardInterrupt:
                with lock:
                    self.stop.set()
                partial = True
        else:
            threads = [threading.Thread(target=work, daemon=True) for _ in range(jobs)]
            for th in threads:
                th.start()
            try:
                for th in threads:
                    while th.is_alive():
                        th.join(0.2)
            except KeyboardInterrupt:
                with lock:
                    self.stop.set()
                partial = True
                self.kill_workers()  # busy workers: kill, don't wait for their tasks
                for th in threads:
                    th.join(5)
        if self.stop.is_set():
            partial = True
        with lock:
            done = dict(results)
        rows = [r for key in sorted(done) for r in done[key]]
        versions = {r.backend: r.backend_version for r in rows if r.backend_version}
        cpu = {g: round(v, 3) for g, v in sorted(self.worker_cpu.items())}
        backend = {g: round(v, 3) for g, v in sorted(self.backend_cpu.items())}
        return RunSummary(rows, partial, time.perf_counter() - t_start, versions, cpu, backend)
