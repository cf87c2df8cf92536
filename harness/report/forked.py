"""One function run in a forked child process, its ``OSError`` handed back to the parent.

:func:`normconf.report.write_reports` writes results.csv and results.json this way while it renders
index.html itself: the three take ≈ 0.4, 0.3 and 1.1 s of one core for the BatchNorm library, and the
run's other core is idle by then (docs/performance.md, "The reports on two cores").  Same bytes either
way: the child writes from the parent's own DataFrame (a copy-on-write snapshot: only the pages it
writes to, Python objects whose reference counts change, are copied), with the same code.

Conventions:

* :func:`start` forks only where that is safe: ``os.fork`` exists and no other Python thread is alive
  (a thread holding a lock at the fork would leave it held in the child).  Otherwise, or with
  ``NORMCONF_REPORT_PROCESSES=1``, it returns ``None`` and the caller runs the function itself.
  :func:`fork` forks unchecked.  Native threads are not counted: when ``normconf run`` writes, the
  only one is NumPy's OpenBLAS pool (two threads in ``/proc/self/task``: the main one and one OpenBLAS
  worker on this 2-core machine), which OpenBLAS itself parks across a fork (its ``pthread_atfork``
  handler: one thread left right after ``os.fork``), and the child runs no BLAS, OpenMP or framework
  code; glibc resets its malloc and stdio locks in the child, CPython its own.
* The child dies with its parent (``PR_SET_PDEATHSIG`` on Linux), keeps the parent's signal handlers
  (under ``normconf run``'s deferred signals a Ctrl-C waits for the set, in both), never runs the
  parent's exit handlers or flushes its buffers (``os._exit``), and never returns into the caller's
  code.
* :meth:`Child.join` waits for it and raises what it raised: an ``OSError`` with its ``errno``,
  ``strerror`` and filename; another exception as ``RuntimeError`` carrying its traceback; a child
  ended by a signal as ``OSError(EIO)`` naming the signal.  :meth:`Child.kill` ends it (the caller's
  own failure: the child's files are about to be removed).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
import warnings
from typing import Callable

#: ``NORMCONF_REPORT_PROCESSES=1``: write every report file in this process (no child)
PROCESSES_ENV = "NORMCONF_REPORT_PROCESSES"


class Child:
    """A forked child running one function (see the module docstring)."""

    def __init__(self, pid: int, fd: int, what: str):
        self.pid, self._fd, self.what = pid, fd, what
        self._status: int | None = None  # waitpid's status once reaped (its pid may then be reused)

    def join(self) -> None:
        """Wait for the child; raise what it raised (module docstring); return if it succeeded."""
        fd, self._fd = self._fd, -1  # the file object owns (and closes) it from here on
        with os.fdopen(fd, "rb") as pipe:
            report = pipe.read()
        self._reap()
        code = os.waitstatus_to_exitcode(self._status)
        if code == 0:
            return
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            raise OSError(errno.EIO, f"the process writing {self.what} was ended by {name}")
        try:
            info = json.loads(report.decode("utf-8")) if report else {}
        except ValueError:  # cut short: the child ended while writing it
            info = {}
        if "errno" in info:
            raise OSError(info["errno"], info["strerror"], *([info["filename"]] if info.get("filename") else []))
        raise RuntimeError(f"writing {self.what} failed in its process (exit {code}):\n{info.get('traceback', '')}")

    def kill(self) -> None:
        """End the child and reap it (nothing it wrote is waited for); nothing if it was reaped."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()

    def _reap(self) -> None:
        if self._status is None:
            self._status = os.waitpid(self.pid, 0)[1]


def start(fn: Callable[[], None], what: str) -> Child | None:
    """``fn()`` in a forked child (``what``: the files it writes, for messages), or ``None`` where this
    process should call ``fn`` itself (module docstring)."""
    if not hasattr(os, "fork") or os.environ.get(PROCESSES_ENV) == "1" or threading.active_count() > 1:
        return None
    return fork(fn, what)


def fork(fn: Callable[[], None], what: str) -> Child:
    """``fn()`` in a forked child, unchecked: the caller knows that forking this process is safe."""
    for stream in (sys.stdout, sys.stderr):  # nothing buffered twice (the child never flushes)
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    parent = os.getpid()
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns of any second OS thread at a fork; here that is the OpenBLAS pool (above)
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid:
        os.close(w)
        return Child(pid, r, what)
    code, report = 2, {}
    try:  # the child: whatever happens, it ends in os._exit below
        os.close(r)
        _die_with_parent(parent)
        fn()
        code = 0
    except OSError as e:
        code = 1
        report = {"errno": e.errno, "strerror": e.strerror or str(e), "filename": e.filename and str(e.filename)}
    except BaseException:  # noqa: BLE001 - handed to the parent
        import traceback

        report = {"traceback": traceback.format_exc()}
    finally:
        try:
            os.write(w, json.dumps(report).encode("utf-8"))
        finally:
            os._exit(code)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent ends (Linux); end now if it already has."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(3)
