"""Planted misbehaving backends for the reliability tests (never registered outside the tests).

Load with ``--adapter tests.crashy_adapters:ADAPTERS`` or ``Runner(extra_specs=(SPEC,))``.

``crashy`` (worker group ``crashy``) is the NumPy reference — it passes — unless the case
carries one of these tags, which pick a misbehaviour:

========== ============================================================================
tag        what the backend does
========== ============================================================================
hang       sleeps for an hour (the per-task timeout must end it)
segv       reads address 0 through ctypes (a real SIGSEGV)
abort      ``os.abort()`` (SIGABRT)
exit       ``os._exit(3)`` (the process vanishes without a signal)
sysexit    ``sys.exit(4)`` (SystemExit: reported, the worker survives)
raise      raises RuntimeError (an ordinary adapter error)
unpickle   returns a note that is a function (it could not even be pickled back to the harness)
stdout     prints to stdout and writes to fd 1 (must not corrupt the protocol), then passes
slow       sleeps ``NORMCONF_TEST_SLOW`` seconds (default 1) before passing
========== ============================================================================

When ``$NORMCONF_TEST_MARKERS`` names a folder, every task writes ``<case>.<backend>.pid``
(the worker's process id) when it starts and an empty ``<case>.<backend>.done`` when it
finishes, so a test can wait until some results exist before interrupting a run.

``crashy-b`` is the same backend in its own worker group, to check that a crash in one
group leaves the other's worker alone.
"""

from __future__ import annotations

import os
import sys
import time

from normconf.adapters.numpy_ref import NumpyReference

SPEC = "tests.crashy_adapters:ADAPTERS"


def _marker(case, backend: str) -> None:
    folder = os.environ.get("NORMCONF_TEST_MARKERS")
    if folder:
        with open(os.path.join(folder, f"{case.id}.{backend}.done"), "w"):
            pass


class Crashy(NumpyReference):
    id = "crashy"
    framework = "numpy"
    worker = "crashy"
    description = "test-only: misbehaves as the case's tags ask"

    def run(self, case, inputs):
        tags = set(case.tags)
        folder = os.environ.get("NORMCONF_TEST_MARKERS")
        if folder:  # which process runs this task (to check it does not outlive the harness)
            with open(os.path.join(folder, f"{case.id}.{self.id}.pid"), "w") as f:
                f.write(str(os.getpid()))
        if "hang" in tags:
            time.sleep(3600)
        if "segv" in tags:
            import ctypes

            ctypes.string_at(0)  # dereference NULL: SIGSEGV
        if "abort" in tags:
            os.abort()
        if "exit" in tags:
            os._exit(3)
        if "sysexit" in tags:
            sys.exit(4)
        if "raise" in tags:
            raise RuntimeError("planted adapter failure")
        if "slow" in tags:
            time.sleep(float(os.environ.get("NORMCONF_TEST_SLOW", "1")))
        obs = super().run(case, inputs)
        if "unpickle" in tags:
            obs.notes.append(lambda: None)  # a lambda cannot be pickled
        if "stdout" in tags:
            print("noise from a framework on stdout")
            sys.stdout.flush()
            os.write(1, b"\x00\x00\x00\x00\x00\x00\x00\x10 raw bytes on fd 1\n")
        _marker(case, self.id)
        return obs


class CrashyB(Crashy):
    id = "crashy-b"
    worker = "crashy-b"


ADAPTERS = [Crashy, CrashyB]
