"""Adapters that leave processes behind, for tests/test_reliability_isolation.py (issue 17).

Load with ``--adapter tests.isolation_adapters:ADAPTERS``.  ``spawner`` (worker group ``spawner``)
is the NumPy reference, but every task first starts ``sleep 300`` out of the worker's reach, as
the case's tags ask:

=========== =====================================================================
tag         how
=========== =====================================================================
(none)      ``subprocess.Popen(["sleep", "300"], start_new_session=True)``
doublefork  fork, ``setsid()``, fork again, exec ``sleep 300``; the middle process exits
hang        after spawning, sleeps for an hour (the harness is interrupted meanwhile)
segv        after spawning, the worker crashes (SIGSEGV): its orphan must still go
tempfile    also leaves a file in the worker's temporary folder (``tempfile.mkstemp``, never
            deleted) and writes its path to ``<case>.tempfile`` in the markers folder
=========== =====================================================================

Every spawned process carries ``NORMCONF_TEST_ORPHAN=<value of that variable in the worker>``
in its environment, so a test finds its own orphans (and nobody else's) with psutil.  When
``$NORMCONF_TEST_MARKERS`` names a folder, ``<case>.spawned`` is written once the child exists.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from normconf.adapters.numpy_ref import NumpyReference

SPEC = "tests.isolation_adapters:ADAPTERS"
#: environment variable marking the orphans
ORPHAN_VAR = "NORMCONF_TEST_ORPHAN"


def _env() -> dict[str, str]:
    return dict(os.environ, **{ORPHAN_VAR: os.environ.get(ORPHAN_VAR, "unset")})


def _double_fork() -> None:
    pid = os.fork()
    if pid == 0:  # the middle process
        try:
            os.setsid()
            if os.fork() == 0:
                os.execvpe("sleep", ["sleep", "300"], _env())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


class Spawner(NumpyReference):
    id = "spawner"
    framework = "numpy"
    worker = "spawner"
    description = "test-only: starts a sleep 300 in a session of its own at every task"

    def run(self, case, inputs):
        tags = set(case.tags)
        if "doublefork" in tags:
            _double_fork()
        else:
            subprocess.Popen(
                ["sleep", "300"],
                start_new_session=True,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        folder = os.environ.get("NORMCONF_TEST_MARKERS")
        if folder:
            with open(os.path.join(folder, f"{case.id}.spawned"), "w") as f:
                f.write(str(os.getpid()))
        if "tempfile" in tags and folder:
            fd, left = tempfile.mkstemp(prefix="left-behind-")
            os.close(fd)
            with open(os.path.join(folder, f"{case.id}.tempfile"), "w") as f:
                f.write(left)
        if "hang" in tags:
            time.sleep(3600)
        if "segv" in tags:
            import ctypes

            ctypes.string_at(0)
        return super().run(case, inputs)


ADAPTERS = [Spawner]
