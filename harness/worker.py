"""Backend worker process: runs adapters of one worker group, isolated from the harness.

Started by :class:`normconf.worker_handle.WorkerHandle` as ``python -m normconf.worker``
with the group's environment (e.g. ``KERAS_BACKEND``) already set, so the
framework sees it at import.  The protocol runs over a private copy of fd 1;
fd 1 itself is pointed at stderr so that prints from frameworks or native code
cannot corrupt it.  Messages are length-prefixed pickles:

* request ``("run", Task)`` → reply ``("ok", BackendResult, clock)``; every ``"ok"`` reply ends with
  ``clock``, the CPU seconds this process has spent inside the adapters' calls so far
  (:class:`BackendClock`): the harness reports the backends' share of a worker's CPU apart
* request ``("pair", PairTask)`` → reply ``("ok", ("rows", [Row]), clock)``: the task run *and judged here*
  (comparison, explanation, expectation: :func:`normconf.results.rows_for`), next to the backend's
  output, so only rows travel back; or ``("ok", ("result", BackendResult))`` when this process's
  floating-point environment is not IEEE (a framework set flush-to-zero / denormals-are-zero:
  :func:`fpu_is_ieee`), and the harness judges; ``("internal", traceback)`` when judging itself
  failed (a normconf bug: the harness raises it)
* request ``("info", [backend ids])`` → reply ``("ok", {id: (available_reason, version)}, clock)``
* request ``("exit", None)`` → the process ends (and every process it started, kept below it as a
  child subreaper: :mod:`normconf.isolation`)

``python -P -m normconf.worker --describe`` is the short-lived describe worker: it imports the
``--adapter`` modules so the harness never does, and reports their classes' metadata as JSON
lines (:func:`_describe`).  ``-P``: the current folder is not on ``sys.path``.

A crash (signal) or hang is detected by the parent, never here.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field

from normconf.memo import case_json
from normconf.shared_objects import Missing, Receiver

#: frame header: pickle length, number of out-of-band buffers; then one ``_LEN`` per buffer, the
#: pickle, the buffers.  Arrays travel as pickle-5 out-of-band buffers: written from their own
#: memory and read straight into the receiver's, with no intermediate copies.
_HEADER = struct.Struct("<QI")
_LEN = struct.Struct("<Q")


def encode(obj) -> list:
    """The frame of ``obj`` as a list of buffers to write in order (raises if it cannot be pickled)."""
    bufs: list = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    try:
        raws = [b.raw() for b in bufs]
    except BufferError:  # a non-contiguous buffer: pickle it in-band instead
        data, raws = pickle.dumps(obj, protocol=5), []
    return [_HEADER.pack(len(data), len(raws)) + b"".join(_LEN.pack(r.nbytes) for r in raws), data, *raws]


#: parts of a frame up to this size in all are joined into one write (one wake-up of the reader)
_COALESCE = 1 << 16


def write_all(fd: int, parts: list) -> None:
    if len(parts) > 1 and sum(memoryview(p).nbytes for p in parts) <= _COALESCE:
        parts = [b"".join(parts)]
    for part in parts:
        view = memoryview(part)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def send(fd: int, obj) -> None:
    write_all(fd, encode(obj))


def recv_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError("peer closed the pipe")
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def recv(fd: int):
    n, k = _HEADER.unpack(recv_exact(fd, _HEADER.size))
    lens = [_LEN.unpack_from(recv_exact(fd, _LEN.size))[0] for _ in range(k)]
    data = recv_exact(fd, n)
    return pickle.loads(data, buffers=[bytearray(recv_exact(fd, m)) for m in lens])


@dataclass
class Task:
    """One unit of work: run one backend on one case (plain, picklable)."""

    case: object  # normconf.cases.Case
    backend: str
    index: int = 0  # position in the run, for deterministic ordering


@dataclass
class PairTask:
    """Run one backend on one case and judge the outputs in the worker (plain, picklable).  ``lc`` and
    ``profile`` may come as :mod:`normconf.shared_objects` Put/Ref (sent once, referred to after)."""

    lc: object  # normconf.cases.LoadedCase
    backend: str
    profile: object = None  # normconf.profiles.Profile: the backend's declared conventions


#: the note of a result judged in the harness because the backend left the FPU flushing subnormals
FTZ_NOTE = (
    "the backend's process flushes subnormals to zero (FTZ/DAZ set in the x86 MXCSR): its outputs were "
    "judged in the harness process, under IEEE arithmetic"
)


def fpu_is_ieee() -> bool:
    """Whether this thread computes with IEEE subnormals: no flush-to-zero (a subnormal result
    stays subnormal) and no denormals-are-zero (a subnormal operand is read as itself), in float32
    and float64.  A framework may change the x86 MXCSR (``torch.set_flush_denormal``, libraries
    built with ``-ffast-math``); the reference and the comparison must not run under it."""
    import numpy as np

    smallest64 = np.array([2.2250738585072014e-308])
    smallest32 = np.array([1.1754944e-38], np.float32)
    sub32 = np.array([1.4e-45], np.float32)
    return bool((smallest64 / 2.0)[0] != 0 and (smallest32 / np.float32(2))[0] != 0 and (sub32 * np.float32(1))[0] != 0)


@dataclass
class BackendResult:
    """What a worker sends back for one task."""

    backend: str
    status: str  # "ok" | "unsupported" | "unavailable" | "error"
    outputs: dict = field(default_factory=dict)  # name -> [arrays per step]
    notes: list = field(default_factory=list)
    message: str = ""
    version: str = ""
    seconds: float = 0.0


def case_key(case) -> str:
    """The case's cache key in this worker: its canonical JSON (equal cases, equal keys)."""
    return case_json(case)


def _read_only(inputs):
    """``inputs`` with every array it holds made read-only: every backend of the group runs on these
    same arrays and the expected values are computed from them after the first backend ran, so a
    backend writing into one (an in-place ``x -= mean``) would change the case for itself and for
    every later backend.  NumPy refuses such a write (an error row for that backend); native code
    given the pointer is bound by the ABI's ``const``."""
    import numpy as np

    for value in vars(inputs).values():
        for a in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
    return inputs


class BackendClock:
    """CPU time of this process spent inside the adapters' calls, summed over the worker's life: loading
    and asking an adapter (``available``, ``version``, ``unsupported``: a framework's import happens in
    them) and its ``run_case`` (the adapter's translation and the framework's call).  Everything else the
    worker does (inputs, the reference, judging, the protocol) is normconf's own.  All threads of the
    process count (``time.process_time``); a framework's own threads run in its calls."""

    def __init__(self) -> None:
        self.total = 0.0
        self._since: float | None = None

    def start(self) -> None:
        if self._since is None:  # already running: keeps counting from its start
            self._since = time.process_time()

    def stop(self) -> None:
        if self._since is not None:
            self.total += time.process_time() - self._since
            self._since = None


class _Host:
    """Holds the adapter instances and an input cache inside the worker."""

    def __init__(self, extra_specs: tuple[str, ...], native_paths: tuple[str, ...]):
        self.extra_specs = extra_specs
        self.native_paths = native_paths
        self._adapters: dict[str, object] = {}
        self._inputs: OrderedDict[str, object] = OrderedDict()
        self._expected: OrderedDict[str, tuple[frozenset[str], dict]] = OrderedDict()
        self._versions: dict[str, str] = {}
        self.shared = Receiver()  # the cases and profiles of pair tasks, sent once (normconf.shared_objects)
        self.clock = BackendClock()  # sent with every reply: the harness reports the backends' CPU apart

    def adapter(self, backend: str):
        if backend not in self._adapters:
            from normconf.adapters import get_adapter

            self._adapters[backend] = get_adapter(backend, self.extra_specs, self.native_paths)
        return self._adapters[backend]

    def inputs(self, case, key: str | None = None):
        """The case's inputs (read-only), generated once and cached; ``key`` is :func:`case_key` of
        ``case`` where the caller has it (a pair computes it once)."""
        key = case_key(case) if key is None else key
        if key not in self._inputs:
            from normconf.ops import spec_for

            self._inputs[key] = _read_only(spec_for(case).generate(case))
            while len(self._inputs) > 2:
                self._inputs.popitem(last=False)
        self._inputs.move_to_end(key)
        return self._inputs[key]

    def version(self, backend: str, adapter) -> str:
        """The adapter's version, asked once per worker (tiny-dnn's runs ``dpkg-query``)."""
        if backend not in self._versions:
            self._versions[backend] = adapter.version()
        return self._versions[backend]

    def expected(self, case, names, key: str | None = None) -> dict:
        """The case's expected values (float64 reference rounded to the output dtypes; those of float32,
        float16 and bfloat16 outputs held as float32, exact: ``compact``) of at least the outputs
        ``names``, cached like the inputs: every backend of this worker group judged on one
        case shares them.  Only the outputs some backend returned are computed (a stage output no
        backend returns, e.g. ``x_hat``, is never materialized); a backend returning one more output
        than those cached recomputes the case's reference with it."""
        key = case_key(case)
        want = frozenset(names)
        cached = self._expected.get(key)
        if cached is None or not want <= cached[0]:
            from normconf.explain.refcache import CACHE
            from normconf.oracle import expected_outputs

            need = want | (cached[0] if cached else frozenset())
            inputs = self.inputs(case, key)
            self._expected[key] = (need, expected_outputs(case, inputs, need, compact=True))
            # the explanation engine's reference under the case's semantics is these values: not a second copy
            CACHE.adopt_expected(case, inputs, self._expected[key][1])
            while len(self._expected) > 2:
                self._expected.popitem(last=False)
        self._expected.move_to_end(key)
        return self._expected[key][1]

    def pair(self, task: PairTask):
        """``("rows", rows)``: ``task`` run and judged here; ``("result", BackendResult)``: run only, for
        the harness to judge (this process's floating-point environment is not IEEE)."""
        key = case_key(task.lc.case)  # type: ignore[attr-defined]
        res = self.run(Task(task.lc.case, task.backend), key)  # type: ignore[attr-defined]
        if task.lc.case.model_dump_json() != key:  # type: ignore[attr-defined]
            # the adapter changed the case object in place (a list field: its frozen model cannot stop
            # that): its result is an error, and the next backends get the case as it was sent
            task.lc.case = type(task.lc.case).model_validate_json(key)  # type: ignore[attr-defined]
            res = BackendResult(
                task.backend,
                "error",
                message="the adapter changed the case it was given (in place); a backend must not modify its case",
                version=res.version,
                seconds=res.seconds,
            )
        if not fpu_is_ieee():
            res.notes = [*res.notes, FTZ_NOTE]
            return "result", res
        from normconf.results import rows_for

        if res.status != "ok":
            return "rows", rows_for(task.lc, task.backend, res, None, None, task.profile)
        case = task.lc.case  # type: ignore[attr-defined]
        expected = self.expected(case, res.outputs, key)
        return "rows", rows_for(task.lc, task.backend, res, expected, self.inputs(case, key), task.profile)

    def info(self, backends: list[str]) -> dict[str, tuple[str | None, str]]:
        out = {}
        for b in backends:
            self.clock.start()
            try:
                a = self.adapter(b)
                reason = a.available()
                out[b] = (reason, "" if reason else a.version())
            except Exception as e:  # a broken adapter is reported, not fatal
                out[b] = (f"{type(e).__name__}: {e}", "")
            finally:
                self.clock.stop()
        return out

    def run(self, task: Task, key: str | None = None) -> BackendResult:
        """Run one task; the result meets the case's output spec and size bound, or is an ``error``
        that says why (:mod:`normconf.validate_outputs`).  ``key``: as :meth:`inputs`."""
        try:
            res = self._run(task, key)
        finally:
            self.clock.stop()  # wherever the adapter's part ended (a refusal, an exception)
        try:
            return _bounded(task, res)
        except Exception as e:  # a result too strange even to measure
            return BackendResult(
                task.backend,
                "error",
                message=f"backend returned an unmeasurable result: {type(e).__name__}: {_short(str(e))}",
                seconds=res.seconds,
            )

    def _run(self, task: Task, key: str | None = None) -> BackendResult:
        from normconf import validate_outputs
        from normconf.adapters.base import Unsupported

        t0 = time.perf_counter()
        version = ""
        self.clock.start()
        try:
            a = self.adapter(task.backend)
            reason = a.available()
            if reason:
                return BackendResult(task.backend, "unavailable", message=reason)
            version = self.version(task.backend, a)
            why = a.unsupported(task.case)
            if why:
                return BackendResult(task.backend, "unsupported", message=why, version=version)
            self.clock.stop()
            inputs = self.inputs(task.case, key)
            t0 = time.perf_counter()
            self.clock.start()
            obs = a.run_case(task.case, inputs)
            self.clock.stop()
            dt = time.perf_counter() - t0
            if not hasattr(obs, "outputs"):
                msg = (
                    f"backend returned invalid outputs: run() returned {type(obs).__name__}, "
                    "not an Observed(outputs, notes)"
                )
                return BackendResult(task.backend, "error", message=msg, version=version, seconds=dt)
            outputs = obs.outputs
            bad = validate_outputs.check(task.case, outputs)  # before anything else touches the arrays
            if bad:
                return BackendResult(task.backend, "error", message=_short(bad), version=version, seconds=dt)
            outputs = {name: list(steps) for name, steps in outputs.items()}  # plain containers only
            notes = _notes_problem(obs.notes)
            if isinstance(notes, str):
                return BackendResult(task.backend, "error", message=notes, version=version, seconds=dt)
            return BackendResult(task.backend, "ok", outputs=outputs, notes=notes, version=version, seconds=dt)
        except Unsupported as e:
            return BackendResult(
                task.backend, "unsupported", message=str(e), version=version, seconds=time.perf_counter() - t0
            )
        except SystemExit as e:  # an adapter (or its framework) called sys.exit(): report it, keep serving
            return BackendResult(
                task.backend,
                "error",
                message=f"the backend called sys.exit({e.code!r})",
                version=version,
                seconds=time.perf_counter() - t0,
            )
        except Exception as e:
            tb = traceback.extract_tb(e.__traceback__)
            where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
            if isinstance(e, ValueError) and "read-only" in str(e):
                where += "; the case's input arrays are read-only: a backend must not write into them"
            return BackendResult(
                task.backend,
                "error",
                message=_short(f"{type(e).__name__}: {e}") + where,
                version=version,
                seconds=time.perf_counter() - t0,
            )


def _notes_problem(notes) -> list[str] | str:
    """The notes as a list of text, or what is wrong with them (an adapter's notes are strings: they
    become the rows' ``notes`` column; an object there would print its memory address)."""
    try:
        items = list(notes)
    except TypeError:
        return f"backend returned invalid notes: {type(notes).__name__}, not a list of text"
    for i, n in enumerate(items, start=1):
        if not isinstance(n, str):
            return f"backend returned invalid notes: note {i} is {type(n).__name__}, not text"
    return items


#: longest message text kept in a result (a backend's exception can carry megabytes)
_MAX_MESSAGE = 4000


def _short(text: str) -> str:
    if len(text) <= _MAX_MESSAGE:
        return text
    return f"{text[:_MAX_MESSAGE]}... ({len(text)} characters)"


def _bounded(task: Task, res: BackendResult) -> BackendResult:
    """``res``, or an ``error`` when its size exceeds the case's bound (checked before it is sent)."""
    from normconf.validate_outputs import result_bound

    try:  # the non-array part as it will travel; unpicklable: left to _reply, which reports it
        size = len(pickle.dumps((res.backend, res.status, res.notes, res.message, res.version), protocol=5))
    except Exception:
        return res
    size += sum(a.nbytes for steps in res.outputs.values() for a in steps)
    bound = result_bound(task.case)
    if size <= bound:
        return res
    return BackendResult(
        task.backend,
        "error",
        version=_short(str(res.version))[:200],
        seconds=res.seconds,
        message=f"backend result of {size} bytes exceeds the bound of {bound} bytes for this "
        f"case (4 x its float64 outputs + 1 MiB); notes and message dropped",
    )


def _reply(fd: int, backend: str | None, obj) -> None:
    """Send ``obj``; if it cannot be pickled (an adapter returned a foreign object), send an error."""
    try:
        parts = encode(obj)
    except Exception as e:
        msg = f"the backend returned something that cannot be sent back: {type(e).__name__}: {e}"
        obj = ("ok", BackendResult(backend, "error", message=msg), *obj[2:]) if backend else ("error", msg)
        parts = encode(obj)
    write_all(fd, parts)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the harness dies (even by SIGKILL), so a hung backend never outlives it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # not fatal: the parent still kills workers on timeouts and at exit
        return
    expected = os.environ.get("NORMCONF_HARNESS_PID", "")
    if expected.isdigit() and os.getppid() != int(expected):  # the harness died before prctl took effect
        os._exit(1)


def _describe(proto_out: int) -> None:
    """``--describe``: import the ``--adapter`` modules named on stdin (JSON) and write, one JSON
    line each, ``{"loading": spec}`` before each import, then ``{"described": [metadata]}`` or
    ``{"spec-error": message}``; the harness builds its proxy classes from them."""
    import json

    from normconf import isolation
    from normconf.adapters import AdapterSpecError, describe_loaded, load_spec

    init = json.loads(sys.stdin.buffer.read() or b"{}")
    isolation.install_pins(init.get("pinned", {}))

    def emit(obj) -> None:
        write_all(proto_out, [(json.dumps(obj) + "\n").encode()])

    try:
        loaded = []
        for spec in init.get("extra_specs", ()):
            emit({"loading": spec})
            loaded.append((spec, load_spec(spec)))
        emit({"described": describe_loaded(loaded)})
    except AdapterSpecError as e:
        emit({"spec-error": str(e)})
    finally:
        isolation.kill_own_descendants()


def main(argv: list[str] | None = None) -> None:
    from normconf import isolation

    argv = sys.argv[1:] if argv is None else argv
    isolation.clean_sys_path()
    _die_with_parent()
    isolation.become_subreaper()  # orphans of the adapters (setsid, double fork) stay below this process
    proto_out = os.dup(1)
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    if "--describe" in argv:
        _describe(proto_out)
        return
    proto_in = 0
    init = recv(proto_in)
    isolation.install_pins(init.get("pinned", {}))
    host = _Host(tuple(init.get("extra_specs", ())), tuple(init.get("native_paths", ())))
    try:  # import the adapter modules now, under the start-up timeout, not the first task's
        from normconf.adapters import load_adapters

        load_adapters(host.extra_specs, host.native_paths)
    except Exception:  # reported by the task that needs the adapter
        pass
    send(proto_out, ("ready", os.getpid()))
    try:
        while True:
            try:
                kind, payload = recv(proto_in)
            except EOFError:
                return
            if kind == "exit":
                return
            if kind == "run":
                _reply(proto_out, payload.backend, ("ok", host.run(payload), host.clock.total))
            elif kind == "pair":
                try:
                    payload.lc, payload.profile = host.shared.resolve(payload.lc), host.shared.resolve(payload.profile)
                except Missing as e:  # the harness sends the task again in full
                    send(proto_out, ("missing", e.token))
                    continue
                try:
                    judged = host.pair(payload)
                except Exception:  # the comparison or the explainer failed: normconf's bug, not the backend's
                    send(proto_out, ("internal", _short(traceback.format_exc())))
                    continue
                _reply(proto_out, payload.backend, ("ok", judged, host.clock.total))
            elif kind == "info":
                _reply(proto_out, None, ("ok", host.info(payload), host.clock.total))
            else:
                send(proto_out, ("error", f"unknown request {kind!r}"))
    finally:
        isolation.kill_own_descendants()  # nothing an adapter started outlives its worker


if __name__ == "__main__":
    # run the copy imported as ``normconf.worker`` so pickled classes carry that module name
    from normconf.worker import main as _main

    _main()
    # main returned: the harness asked this process to exit (or closed its pipe) and everything it started
    # is gone (main's ``finally``).  End now, without the interpreter's teardown: the frameworks' exit
    # handlers and module clean-up cost up to ~1.5 s of CPU (TensorFlow, JAX) and nothing depends on them;
    # every result has been sent.  An exception out of main still ends the normal way (traceback, status 1).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
