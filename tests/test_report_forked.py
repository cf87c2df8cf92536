"""results.csv and results.json written by a forked child while the page renders (normconf.report.forked).

The bytes are the same as written in one process; the child's write errors, crashes and bugs reach
the caller as the errors the one-process path raises; a failure in the parent ends the child; a
child whose parent is killed ends too; a process running another Python thread does not fork.  The
scenarios through ``write_reports`` run in a fresh process with no other Python thread
(tests/report_fork_scenarios.py), as ``normconf run`` is when it writes (a pytest process may not be);
the calls of :func:`forked.fork` run here.  No time is asserted (docs/performance.md measures it).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from normconf.report import forked

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is not available on this platform")


def scenario(name: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORMCONF_")}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "report_fork_scenarios.py"), name, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_forked_set_has_the_bytes_of_the_one_process_set(tmp_path):
    found = scenario("same_bytes", tmp_path)
    assert found["forked"] == [True, False], "the first set was not written by a child (or the second was)"
    assert found["same"] == [True, True, True]
    assert found["verify"] == []


def test_no_fork_while_another_thread_runs(tmp_path):
    found = scenario("thread_alive", tmp_path)
    assert found["forked"] == [False, True]  # with the thread alive, then after it ended
    assert found["verify"] == []


def test_a_write_error_in_the_child_is_a_report_write_error_and_the_old_set_stays(tmp_path):
    found = scenario("child_enospc", tmp_path)
    assert found["forked"] == [True]
    assert found["raised"]["errno"] == errno.ENOSPC and found["raised"]["unchanged"] is True
    assert "No space left on device; the previous reports are unchanged" in found["raised"]["message"]
    assert found["unchanged"] is True and found["leftovers"] == []


def test_a_failure_in_the_parent_ends_the_child_and_removes_the_stage(tmp_path):
    found = scenario("parent_fails", tmp_path)
    assert found["forked"] == [True] and found["raised"] is True
    assert found["reaped"] is True, "the child still runs (or is an unreaped zombie)"
    assert found["leftovers"] == []


def test_another_python_thread_means_no_fork():
    stop = threading.Event()
    th = threading.Thread(target=stop.wait)
    th.start()
    try:
        assert forked.start(lambda: None, "nothing") is None
    finally:
        stop.set()
        th.join()


def test_a_child_ended_by_a_signal_is_an_eio_naming_it():
    child = forked.fork(lambda: os.kill(os.getpid(), signal.SIGKILL), "the files")
    with pytest.raises(OSError) as info:
        child.join()
    assert info.value.errno == errno.EIO and "SIGKILL" in str(info.value) and "the files" in str(info.value)


def test_a_bug_in_the_child_comes_back_with_its_traceback():
    def bug():
        raise KeyError("no such column")

    child = forked.fork(bug, "results.csv")
    with pytest.raises(RuntimeError, match=r"(?s)writing results.csv failed.*KeyError: 'no such column'"):
        child.join()


def test_an_oserror_keeps_its_errno_strerror_and_filename():
    def fail():
        raise OSError(errno.EACCES, "Permission denied", "/x/results.json")

    with pytest.raises(PermissionError) as info:
        forked.fork(fail, "results.json").join()
    assert (info.value.errno, info.value.strerror, info.value.filename) == (
        errno.EACCES,
        "Permission denied",
        "/x/results.json",
    )


def test_kill_after_join_touches_no_process():
    child = forked.fork(lambda: None, "nothing")
    child.join()
    child.kill()  # reaped: its pid may belong to another process by now; nothing is sent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_the_child_ends_when_its_parent_is_killed():
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
    """A process that runs (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
