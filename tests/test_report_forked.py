"""results.csv and results.json written by a forked child while the page renders (normconf.report.forked).

The bytes are the same as written in one process; the child's write errors, crashes and bugs reach
the caller as the errors the one-process path raises; a failure in the parent ends the child; a
child whose parent is killed ends too.  No time is asserted (docs/performance.md measures it).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from normconf.report import ReportWriteError, forked, verify_reports, write_reports
from normconf.results import Row, to_frame

ROOT = Path(__file__).resolve().parent.parent
SET = ("results.csv", "results.json", "index.html")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available on this platform")


def _frame(n: int = 40):
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


@pytest.fixture
def started(monkeypatch):
    """The children :func:`forked.start` made in the test (None where it declined to fork)."""
    made: list = []
    real = forked.start

    def start(fn, what):
        child = real(fn, what)
        made.append(child)
        return child

    monkeypatch.setattr(forked, "start", start)
    monkeypatch.delenv(forked.PROCESSES_ENV, raising=False)
    return made


def test_the_forked_set_has_the_bytes_of_the_one_process_set(tmp_path, started, monkeypatch):
    df, meta = _frame(), {"partial": False, "backends": ["numpy", "torch"]}
    write_reports(df, meta, tmp_path / "forked")
    assert started and started[-1] is not None, "write_reports did not fork (another thread alive?)"
    monkeypatch.setenv(forked.PROCESSES_ENV, "1")
    write_reports(df, meta, tmp_path / "one")
    assert started[-1] is None
    for name in SET:
        assert (tmp_path / "forked" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert verify_reports(tmp_path / "forked") == []


def test_no_fork_while_another_thread_runs(tmp_path, started):
    stop = threading.Event()
    th = threading.Thread(target=stop.wait)
    th.start()
    try:
        write_reports(_frame(), {"partial": False}, tmp_path / "out")
    finally:
        stop.set()
        th.join()
    assert started == [None]
    assert verify_reports(tmp_path / "out") == []


def test_a_write_error_in_the_child_is_a_report_write_error_and_the_old_set_stays(tmp_path, started, monkeypatch):
    out = tmp_path / "out"
    write_reports(_frame(8), {"partial": False}, out)
    before = {n: (out / n).read_bytes() for n in SET}
    real_fsync, parent = os.fsync, os.getpid()

    def fsync(fd):  # fails in the child only: the data files
        if os.getpid() != parent:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ReportWriteError) as info:
        write_reports(_frame(), {"partial": False}, out)
    assert started[-1] is not None
    assert info.value.errno == errno.ENOSPC and info.value.unchanged
    assert "No space left on device" in info.value.message
    assert {n: (out / n).read_bytes() for n in SET} == before
    assert not list(out.glob(".normconf-new-*")) and not list(out.rglob("*.tmp"))


def test_a_child_ended_by_a_signal_is_an_eio_naming_it():
    child = forked.start(lambda: os.kill(os.getpid(), signal.SIGKILL), "the files")
    assert child is not None
    with pytest.raises(OSError) as info:
        child.join()
    assert info.value.errno == errno.EIO and "SIGKILL" in str(info.value) and "the files" in str(info.value)


def test_a_bug_in_the_child_comes_back_with_its_traceback():
    def bug():
        raise KeyError("no such column")

    child = forked.start(bug, "results.csv")
    with pytest.raises(RuntimeError, match=r"(?s)writing results.csv failed.*KeyError: 'no such column'"):
        child.join()


def test_an_oserror_keeps_its_errno_strerror_and_filename():
    def fail():
        raise OSError(errno.EACCES, "Permission denied", "/x/results.json")

    with pytest.raises(PermissionError) as info:
        forked.start(fail, "results.json").join()
    assert (info.value.errno, info.value.strerror, info.value.filename) == (
        errno.EACCES,
        "Permission denied",
        "/x/results.json",
    )


def test_a_failure_in_the_parent_ends_the_child_and_removes_the_stage(tmp_path, started, monkeypatch):
    import normconf.report.html as html

    out = tmp_path / "out"
    monkeypatch.setenv("NORMCONF_TEST_PAUSE_WRITE", "60")  # the child would sleep a minute after each file

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(html, "write_html", full)
    with pytest.raises(ReportWriteError):
        write_reports(_frame(), {"partial": False}, out)
    (child,) = started
    with pytest.raises(ChildProcessError):  # reaped: no zombie, no process
        os.waitpid(child.pid, os.WNOHANG)
    assert not list(out.glob(".normconf-new-*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_the_child_ends_when_its_parent_is_killed(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from normconf.report import forked
        child = forked.start(lambda: time.sleep(120), "nothing")
        print(child.pid, flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        os.kill(pid, 0)  # the child runs
        proc.kill()
        proc.wait(30)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the child outlived its killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for init to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
