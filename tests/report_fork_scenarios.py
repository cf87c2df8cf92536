"""Scenarios of tests/test_report_forked.py that need a process with no other Python thread, as
``normconf run`` is when it writes its reports (a pytest process may run its plugins' threads).  ``python report_fork_scenarios.py
NAME DIR`` runs one in DIR and prints its findings as JSON; the test asserts on them.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
from pathlib import Path

SET = ("results.csv", "results.json", "index.html")


def _frame(n: int = 40):
    from normconf.results import Row, to_frame

    return to_frame(
        [
            Row(
                case=f"c{i // 4}",
                file="f.yaml",
                line=i,
                backend=("numpy", "torch")[i % 2],
                backend_version="1",
                output="y",
                step=0,
                outcome=("pass", "mismatch")[i % 3 == 0],
                max_abs_err=1e-7 * i,
                message="a/b \\ c",
            )
            for i in range(n)
        ]
    )


def _recording():
    """Wrap forked.start: the list of what each call returned (a Child or None)."""
    from normconf.report import forked

    made: list = []
    real = forked.start

    def start(fn, what):
        made.append(real(fn, what))
        return made[-1]

    forked.start = start
    return made


def _files(folder: Path) -> dict[str, str]:
    return {n: (folder / n).read_bytes().hex() for n in SET if (folder / n).exists()}


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p) for p in [*folder.glob(".normconf-new-*"), *folder.rglob("*.tmp")])


def same_bytes(tmp: Path) -> dict:
    from normconf.report import forked, verify_reports, write_reports

    made = _recording()
    df, meta = _frame(), {"partial": False, "backends": ["numpy", "torch"]}
    write_reports(df, meta, tmp / "forked")
    os.environ[forked.PROCESSES_ENV] = "1"
    write_reports(df, meta, tmp / "one")
    return {
        "forked": [c is not None for c in made],
        "same": [_files(tmp / "forked")[n] == _files(tmp / "one")[n] for n in SET],
        "verify": verify_reports(tmp / "forked"),
    }


def thread_alive(tmp: Path) -> dict:
    from normconf.report import verify_reports, write_reports

    made = _recording()
    stop = threading.Event()
    th = threading.Thread(target=stop.wait)
    th.start()
    write_reports(_frame(), {"partial": False}, tmp / "with")
    stop.set()
    th.join()
    write_reports(_frame(), {"partial": False}, tmp / "without")
    return {"forked": [c is not None for c in made], "verify": verify_reports(tmp / "with")}


def child_enospc(tmp: Path) -> dict:
    from normconf.report import ReportWriteError, write_reports

    out = tmp / "out"
    write_reports(_frame(8), {"partial": False}, out)
    before = _files(out)
    made = _recording()
    real_fsync, parent = os.fsync, os.getpid()

    def fsync(fd):  # fails in the child only: the data files
        if os.getpid() != parent:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    os.fsync = fsync
    try:
        write_reports(_frame(), {"partial": False}, out)
        raised: dict = {}
    except ReportWriteError as e:
        raised = {"errno": e.errno, "unchanged": e.unchanged, "message": e.message}
    finally:
        os.fsync = real_fsync
    return {
        "forked": [c is not None for c in made],
        "raised": raised,
        "unchanged": _files(out) == before,
        "leftovers": _leftovers(out),
    }


def parent_fails(tmp: Path) -> dict:
    import normconf.report.html as html
    from normconf.report import ReportWriteError, write_reports

    out = tmp / "out"
    os.environ["NORMCONF_TEST_PAUSE_WRITE"] = "60"  # the child would sleep a minute after each file
    made = _recording()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    html.write_html = full
    try:
        write_reports(_frame(), {"partial": False}, out)
        raised = False
    except ReportWriteError:
        raised = True
    try:
        os.waitpid(made[0].pid, os.WNOHANG)
        reaped = False
    except ChildProcessError:  # no such child: killed and reaped
        reaped = True
    return {"forked": [c is not None for c in made], "raised": raised, "reaped": reaped, "leftovers": _leftovers(out)}


SCENARIOS = {f.__name__: f for f in (same_bytes, thread_alive, child_enospc, parent_fails)}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](Path(sys.argv[2]))))
