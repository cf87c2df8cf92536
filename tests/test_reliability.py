"""Crashing and hanging backends, interrupted runs, workers that must not outlive the harness.

The misbehaving backends are planted by tests/crashy_adapters.py (``crashy``, ``crashy-b``):
the NumPy reference, except on cases whose tags ask for a hang, a SIGSEGV, ...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from normconf.cases import load_file
from normconf.runner import Runner
from tests.crashy_adapters import SPEC

ROOT = Path(__file__).resolve().parent.parent

CRASHY_CASES = """
defaults:
  shape: [2, 3, 4]
cases:
  - {id: ok_first}
  - {id: hang, tags: [hang]}
  - {id: segv, tags: [segv]}
  - {id: abort, tags: [abort]}
  - {id: exit, tags: [exit]}
  - {id: sysexit, tags: [sysexit]}
  - {id: raise, tags: [raise]}
  - {id: unpickle, tags: [unpickle]}
  - {id: stdout, tags: [stdout]}
  - {id: ok_last}
"""

#: case id -> (outcome on a crashy backend, message fragment)
CRASHY_EXPECTED = {
    "ok_first": ("pass", ""),
    "hang": ("error", "timeout after 5 s"),
    "segv": ("error", "crashed (SIGSEGV)"),
    "abort": ("error", "crashed (SIGABRT)"),
    "exit": ("error", "crashed (exit status 3)"),
    "sysexit": ("error", "the backend called sys.exit(4)"),
    "raise": ("error", "RuntimeError: planted adapter failure"),
    "unpickle": ("error", "backend returned invalid notes: note 1 is function, not text"),
    "stdout": ("pass", ""),  # prints on stdout/fd 1 do not corrupt the protocol
    "ok_last": ("pass", ""),
}


def pair_outcomes(df: pd.DataFrame) -> dict[tuple[str, str], tuple[str, str]]:
    """(case, backend) -> (worst outcome, messages) over the pair's rows."""
    sev = {"error": 4, "mismatch": 3, "explained": 2, "pass": 1, "unsupported": 0}
    out = {}
    for (case, backend), g in df.groupby(["case", "backend"], sort=False):
        worst = max(g["outcome"], key=lambda o: sev[o])
        out[(case, backend)] = (worst, " ".join(str(m) for m in g["message"].fillna("")))
    return out


def check_crashy(pairs, backends):
    assert set(pairs) == {(c, b) for c in CRASHY_EXPECTED for b in backends}, "a pair is missing from the results"
    for (case, backend), (outcome, msg) in pairs.items():
        if backend == "numpy":
            assert outcome == "pass", (case, backend, msg)
            continue
        exp_outcome, frag = CRASHY_EXPECTED[case]
        assert outcome == exp_outcome, (case, backend, outcome, msg)
        assert frag in msg, (case, backend, msg)


def normconf(*args, cwd=ROOT, env=None, **kw):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "normconf.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True, **kw
    )


def test_crashes_and_hangs_become_errors_and_the_run_goes_on(tmp_path):
    f = tmp_path / "crashy.yaml"
    f.write_text(CRASHY_CASES)
    cases = load_file(f)
    t0 = time.monotonic()
    with Runner(extra_specs=(SPEC,), timeout=5) as runner:
        summary = runner.run(cases, ["crashy", "numpy"])
    assert not summary.partial
    df = pd.DataFrame([r.__dict__ for r in summary.rows])
    check_crashy(pair_outcomes(df), ["crashy", "numpy"])
    # the hang cost one timeout, not the rest of the run
    assert time.monotonic() - t0 < 90


def test_worker_survives_sys_exit_but_not_a_crash(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "defaults: {shape: [2, 3]}\ncases:\n  - {id: a}\n  - {id: b, tags: [sysexit]}\n  - {id: c}\n"
        "  - {id: d, tags: [segv]}\n  - {id: e}\n"
    )
    markers = tmp_path / "m"
    markers.mkdir()
    os.environ["NORMCONF_TEST_MARKERS"] = str(markers)
    try:
        with Runner(extra_specs=(SPEC,), timeout=30) as runner:
            runner.run(load_file(f), ["crashy"])
    finally:
        del os.environ["NORMCONF_TEST_MARKERS"]
    pid = {c: (markers / f"{c}.crashy.pid").read_text() for c in "abcde"}
    assert pid["a"] == pid["b"] == pid["c"] == pid["d"], "sys.exit() in an adapter must not cost the worker"
    assert pid["e"] != pid["d"], "after a SIGSEGV a fresh worker serves the next task"


def test_cli_parallel_run_with_crashes_and_hangs_is_complete(tmp_path):
    (tmp_path / "crashy.yaml").write_text(CRASHY_CASES)
    backends = ["crashy", "crashy-b", "numpy"]
    p = normconf(
        "run",
        "crashy.yaml",
        "--adapter",
        SPEC,
        "-b",
        ",".join(backends),
        "-j",
        "2",
        "--timeout",
        "5",
        "--out",
        "reports",
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 3, p.stdout + p.stderr  # 3: error outcomes (crashes, hangs) not as expected
    assert "Traceback" not in p.stdout + p.stderr
    assert "hang [crashy] error: timeout after 5 s" in p.stdout
    assert "segv [crashy-b] error: crashed (SIGSEGV)" in p.stdout
    df = pd.read_csv(tmp_path / "reports" / "results.csv", keep_default_na=False)
    check_crashy(pair_outcomes(df), backends)
    meta = json.loads((tmp_path / "reports" / "results.json").read_text())["meta"]
    assert meta["partial"] is False
    assert not (tmp_path / "reports" / "partial").exists()


# --- interrupting a run ----------------------------------------------------------------

SLOW_CASES = "defaults:\n  shape: [2, 3, 4]\n  tags: [slow]\ncases:\n" + "".join(
    f"  - {{id: s{i}}}\n" for i in range(1, 9)
)
REPORT_FILES = ("results.csv", "results.json", "index.html")


def _wait_for(pred, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it is gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("sig, jobs", [(signal.SIGINT, 1), (signal.SIGTERM, 2)], ids=["SIGINT-j1", "SIGTERM-j2"])
def test_interrupt_keeps_previous_report_and_writes_partial(tmp_path, sig, jobs):
    (tmp_path / "slow.yaml").write_text(SLOW_CASES)
    out = tmp_path / "reports"
    # 1. a complete earlier report
    p = normconf("run", "slow.yaml", "-b", "numpy", "--out", "reports", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    before = {n: (out / n).read_bytes() for n in REPORT_FILES if (out / n).exists()}
    assert "results.csv" in before and "results.json" in before
    # 2. a slow run, interrupted once two results exist
    markers = tmp_path / "markers"
    markers.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NORMCONF_TEST_MARKERS=str(markers), NORMCONF_TEST_SLOW="1.5")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "normconf.cli",
            "run",
            "slow.yaml",
            "--adapter",
            SPEC,
            "-b",
            "crashy,numpy",
            "-j",
            str(jobs),
            "--out",
            "reports",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: len(list(markers.glob("*.done"))) >= 2, 120, "two finished tasks")
        time.sleep(0.5)  # let the harness record them (tasks take 1.5 s: the next ones are still running)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, stdout + stderr
    assert "Traceback" not in stdout + stderr
    # the previous complete report is untouched, byte for byte
    assert {n: (out / n).read_bytes() for n in before} == before
    # what finished is in reports/partial/, marked partial
    part = out / "partial"
    data = json.loads((part / "results.json").read_text())
    meta = data["meta"]
    assert meta["partial"] is True and meta["interrupted_by"] == signal.Signals(sig).name
    assert meta["total_pairs"] == 16 and 1 <= meta["completed_pairs"] < 16
    df = pd.read_csv(part / "results.csv", keep_default_na=False)
    pairs = pair_outcomes(df)
    assert len(pairs) == meta["completed_pairs"]
    assert all(o == "pass" for o, _ in pairs.values()), pairs  # no task killed by the interrupt is recorded
    done = {p.name.split(".")[0] for p in markers.glob("*.crashy.done")}
    assert {c for c, b in pairs if b == "crashy"} <= done
    assert "PARTIAL" in stdout
    # nothing half-written anywhere
    assert not [q for q in out.rglob("*.tmp")]
    # every worker of the interrupted run is gone
    for pidfile in markers.glob("*.pid"):
        pid = int(pidfile.read_text())
        _wait_for(lambda: _gone(pid), 15, f"worker {pid} to end")


def test_complete_run_clears_stale_partial(tmp_path):
    (tmp_path / "c.yaml").write_text("cases:\n  - {id: a, shape: [2, 3]}\n")
    part = tmp_path / "reports" / "partial"
    part.mkdir(parents=True)
    (part / "results.json").write_text(json.dumps({"meta": {"partial": True}, "results": []}))
    p = normconf("run", "c.yaml", "-b", "numpy", "--out", "reports", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    assert not part.exists()


def test_hung_worker_dies_with_a_killed_harness(tmp_path):
    """SIGKILL cannot be handled: the worker must still not outlive the harness (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux-only")
    (tmp_path / "h.yaml").write_text("cases:\n  - {id: h, shape: [2, 3], tags: [hang]}\n")
    markers = tmp_path / "m"
    markers.mkdir()
    # a killed harness leaves its worker's empty scratch folder behind (the next harness sweeps it after an
    # hour, tests/test_reliability_isolation.py): here, in the test's own folder, not the machine's /tmp
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NORMCONF_TEST_MARKERS=str(markers), TMPDIR=str(scratch))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "normconf.cli",
            "run",
            "h.yaml",
            "--adapter",
            SPEC,
            "-b",
            "crashy",
            "--timeout",
            "600",
            "--out",
            "reports",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            lambda: (markers / "h.crashy.pid").exists() and (markers / "h.crashy.pid").read_text(),
            120,
            "the hanging task to start",
        )
        worker = int((markers / "h.crashy.pid").read_text())
        assert not _gone(worker)
        proc.kill()
        proc.wait(timeout=30)
        _wait_for(lambda: _gone(worker), 15, "the orphaned worker to die")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "reports").exists()


def test_user_strings_are_escaped_in_the_html_report(tmp_path):
    """Every string a case file provides reaches index.html escaped (no markup injected)."""
    (tmp_path / "x.yaml").write_text("""
cases:
  - id: xss
    shape: [2, 3]
    description: "<script>alert('desc')</script>"
    tags: ["<img src=x onerror=alert('tag')>"]
    tolerance: {rtol: 0.1, atol: 0.1, reason: "</td><script>alert('tol')</script>"}
    expect:
      numpy: {outcome: mismatch, reason: "<b onmouseover=alert('exp')>x</b>", because: "<svg onload=alert(1)>"}
""")
    p = normconf("run", "x.yaml", "-b", "numpy", "--out", "reports", cwd=tmp_path, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr  # the planted expectation does not hold
    html = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert "alert(" in html, "the strings should be in the report (escaped)"
    for raw in ("<script>alert", "<img src=x", "<b onmouseover", "<svg onload", "</td><script>"):
        assert raw not in html, f"unescaped {raw!r} in index.html"


def test_a_reply_read_whose_pipe_is_closed_under_it_is_a_worker_failure():
    """An interrupt may close a worker's pipes while another thread waits for its reply (seen once on a
    loaded machine as a 'Bad file descriptor' traceback from a run's thread): the reader gets a
    WorkerFailure, which the run handles, never an OSError."""
    import threading

    from normconf.runner import WorkerFailure, WorkerHandle

    w = WorkerHandle("numpy", {}, (), ())
    got: list = []

    def reader():
        try:
            w._recv(30, "a reply that never comes")
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            got.append(e)

    th = threading.Thread(target=reader)
    th.start()
    try:
        import time

        time.sleep(0.5)  # let it block in select()
        w.proc.stdout.close()
        th.join(30)
    finally:
        w.kill()
        w.close()
    assert not th.is_alive()
    assert got and isinstance(got[0], WorkerFailure), got
