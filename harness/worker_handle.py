"""The harness's handle on one worker process: start it (a clean environment and ``sys.path``, a
bounded start-up), talk to it (length-prefixed pickle frames, bounded replies, timeouts), read its CPU
time, and end it with its whole process tree (:mod:`normconf.isolation`).  Used by
:class:`normconf.runner.Runner`, which decides which worker serves which task."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import time

from normconf import isolation
from normconf import worker as proto
from normconf.shared_objects import Missing, Sender
from normconf.worker_env import worker_environment


class WorkerFailure(Exception):
    """The worker died or timed out; ``message`` is the result's error text."""


class JudgingError(RuntimeError):
    """The comparison or the explanation raised in the worker (a bug in normconf, not in the backend)."""


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except (ValueError, TypeError):
        return f"signal {-rc}"


EXIT_WAIT_S = 10.0  #: seconds closing a worker waits for it to exit on its own before it is killed


class WorkerHandle:
    """One live worker process for one worker group."""

    def __init__(self, group: str, env: dict[str, str], extra_specs: tuple[str, ...], native_paths: tuple[str, ...]):
        self.group = group
        self._stderr = tempfile.TemporaryFile()
        self._below: list | None = None  # set by ask_to_exit: the descendants to kill after the exit
        #: CPU seconds the worker has spent inside the adapters' calls (its last reply's BackendClock total)
        self.backend_cpu = 0.0
        full_env = worker_environment(env)
        # a clean sys.path: the package root and an explicitly set PYTHONPATH, never the current
        # folder (-P); the --adapter modules found in it are pinned, not the folder (normconf.isolation)
        self.token = isolation.new_token()
        self.shared = Sender()  # which cases and profiles this worker holds (normconf.shared_objects)
        self.proc = subprocess.Popen(
            isolation.worker_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=isolation.worker_env(full_env, self.token),
            start_new_session=True,
        )
        isolation.track(self.proc, self.token)
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        try:  # Linux: a 1 MiB pipe (default 64 KiB) moves large results in 16x fewer wake-ups
            import fcntl

            fcntl.fcntl(self._out, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except (ImportError, OSError):
            pass
        try:
            self._send(
                {
                    "extra_specs": list(extra_specs),
                    "native_paths": list(native_paths),
                    "pinned": isolation.pinned_modules(extra_specs),
                }
            )
            kind, _pid = self._recv(isolation.startup_timeout(), "starting the worker")
            if kind != "ready":
                raise WorkerFailure(f"worker for {group} did not start: {kind}")
        except BaseException:
            self.kill()
            self.close()
            raise

    # -- protocol -------------------------------------------------------------------
    def _send(self, obj) -> None:
        try:
            proto.send(self._in, obj)
        except (BrokenPipeError, OSError):
            raise WorkerFailure(self._death_message()) from None

    def _read(self, n: int, deadline: float, what: str) -> bytearray:
        buf = bytearray(n)  # read straight into the final buffer (no intermediate copies)
        view = memoryview(buf)
        pos = 0
        while pos < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                r, _, _ = select.select([self._out], [], [], min(left, 1.0))
                if not r:
                    if self.proc.poll() is not None:
                        raise WorkerFailure(self._death_message())
                    continue
                got = os.readv(self._out, [view[pos : pos + (1 << 20)]])
            except (OSError, ValueError) as e:  # the pipe was closed under us (an interrupt closing the workers)
                raise WorkerFailure(f"connection to the worker closed ({what}): {e}") from None
            if not got:
                raise WorkerFailure(self._death_message())
            pos += got
        return buf

    def _recv(self, timeout: float, what: str, limit: int | None = None):
        """The next reply, read within ``timeout``.  ``limit``: the most bytes the reply may take (the
        caller derives it from the case, :func:`normconf.validate_outputs.reply_bound`; default 1 GiB);
        a frame whose header announces more is refused before any of it is read: the worker is killed
        (it may be blocked writing the rest) and the reply is a :class:`WorkerFailure`."""
        import pickle

        bound = (1 << 30) if limit is None else int(limit)
        deadline = time.monotonic() + timeout

        def refuse(size: int, at_least: str = "") -> WorkerFailure:
            self.kill()
            scope = "for this case" if limit is not None else "for a reply"
            return WorkerFailure(
                f"reply of {at_least}{size} bytes exceeds the bound of {bound} bytes {scope} "
                f"({what}); the worker was killed"
            )

        try:
            n, k = proto._HEADER.unpack(self._read(proto._HEADER.size, deadline, what))
            size = proto._HEADER.size + k * proto._LEN.size + n
            if size > bound:
                raise refuse(size, "at least ")
            lens = [proto._LEN.unpack_from(self._read(proto._LEN.size, deadline, what))[0] for _ in range(k)]
            size += sum(lens)
            if size > bound:
                raise refuse(size)
            payload = self._read(n, deadline, what)
            buffers = [self._read(m, deadline, what) for m in lens]  # the arrays' memory (pickle 5)
        except TimeoutError:
            self.kill()
            raise WorkerFailure(f"timeout after {timeout:g} s ({what})") from None
        try:
            return pickle.loads(payload, buffers=buffers)
        except Exception as e:  # e.g. an adapter returned an object this process cannot rebuild
            raise WorkerFailure(f"undecodable reply from the worker: {type(e).__name__}: {e}") from None

    def call(self, request, timeout: float, what: str, limit: int | None = None):
        self._send(request)
        kind, payload, *clock = self._recv(timeout, what, limit)
        if clock:  # an "ok" reply: the worker's BackendClock total so far
            self.backend_cpu = float(clock[0])
        if kind == "internal":  # judging failed in the worker: normconf's own bug, as loud as in this process
            raise JudgingError(f"normconf failed judging {what} in the worker:\n{payload}")
        if kind == "missing":  # a shared object the worker no longer holds (normconf.shared_objects)
            self.shared.forget()
            raise Missing(payload)
        if kind != "ok":
            raise WorkerFailure(str(payload))
        return payload

    # -- lifecycle ------------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _stderr_tail(self, n: int = 800) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - n))
            return self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _death_message(self) -> str:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.returncode
        if rc is not None and rc < 0:
            msg = f"crashed ({_signal_name(rc)})"
        else:
            msg = f"crashed (exit status {rc})"
        tail = self._stderr_tail()
        return f"{msg}; worker stderr: {tail[-400:]}" if tail else msg

    def kill(self) -> None:
        """SIGKILL the worker and its whole process tree: every descendant (orphans stay below the
        worker, a child subreaper) and every process carrying its token (what a dead worker left)."""
        isolation.end_worker(self.proc, self.token)

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the worker process has used so far (Linux ``/proc``), else None."""
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def close(self, wait_s: float = EXIT_WAIT_S) -> None:
        """Ask the worker to exit, wait for it (``wait_s`` at most), then kill what is left."""
        self.ask_to_exit()
        self.finish_close(time.monotonic() + wait_s)

    def ask_to_exit(self) -> None:
        """:meth:`close`'s first half, without waiting (so that several workers' exits overlap)."""
        self._below = isolation.descendants(self.proc.pid) if self.proc.poll() is None else None
        if self._below is not None:  # the worker ends its descendants itself; the snapshot, in case it cannot
            with contextlib.suppress(OSError):
                proto.send(self._in, ("exit", None))

    def finish_close(self, deadline: float) -> None:
        """:meth:`close`'s second half: wait until ``deadline`` (monotonic), then kill the worker's rest."""
        below, self._below = self._below, None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()) if below is not None else 0)
        isolation.end_worker(self.proc, self.token, extra=below or ())  # a dead worker: what it left behind
        isolation.untrack(self.proc)
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                f.close()
            except OSError:
                pass
