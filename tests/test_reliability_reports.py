"""The report folder is crash-, disk- and concurrency-safe (issue 17).

``normconf run --out DIR`` writes its set (results.csv, results.json, index.html) into a staging
folder ``DIR/.normconf-new-<pid>-<hex>/`` and only then renames it into DIR (docs/reliability.md,
"Report folder").  These tests kill the harness while it writes (the ``NORMCONF_TEST_PAUSE_WRITE`` hook of
:func:`normconf.report.write_reports` makes it wait at a known point), fill a real tmpfs, make --out
read-only, dangling or a loop, run two harnesses into one folder, and keep a user's file in
``partial/``.  Only the NumPy reference (and the planted ``crashy`` backend) run: each test takes
seconds.  Mounting a tmpfs needs root; where it is not possible the in-process variants (monkeypatched
system calls) still run and the mount variants are skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normconf.cli import main
from tests.helpers import finish

ROOT = Path(__file__).resolve().parent.parent
SEED = str(ROOT / "cases" / "seed_article.yaml")
SET = ("results.csv", "results.json", "index.html")
EXIT_WRITE = 5
SUMMARY = "normconf: outcomes per backend"


# --- helpers ---------------------------------------------------------------------------


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORMCONF_TEST_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _argv(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "normconf.cli",
        "run",
        SEED,
        "-b",
        "numpy",
        "--timeout",
        "60",
        "--out",
        str(out),
        *extra,
    ]


def normconf(out: Path, *extra: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(out, *extra), env=_env(**env), capture_output=True, text=True, timeout=timeout)


def start(out: Path, *extra: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        _argv(out, *extra), env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in SET if (folder / n).exists()}


def staging(folder: Path) -> list[Path]:
    return sorted(folder.glob(".normconf-new-*"))


def leftovers(folder: Path) -> list[Path]:
    """Staging folders and temporary files a writer left behind anywhere under ``folder``."""
    return staging(folder) + staging(folder / "partial") + sorted(folder.rglob("*.tmp"))


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def old_set(out: Path) -> dict[str, bytes]:
    """A complete earlier report in ``out`` (all three seed cases); returns its bytes."""
    p = normconf(out)
    assert p.returncode == 0, p.stdout + p.stderr
    before = snapshot(out)
    assert set(before) == set(SET)
    return before


def run_in_process(capsys, out: Path, *extra: str) -> tuple[int, str, str]:
    rc = main(["run", SEED, "-b", "numpy", "--timeout", "60", "--out", str(out), *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def tmpfs():
    """``mount(path, size)`` mounts a tmpfs at ``path`` (unmounted afterwards); skips where not allowed."""
    mounted: list[Path] = []

    def mount(path: Path, size: str = "1m", *options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a tmpfs needs root on Linux")
        p = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if p.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_ro(path: Path) -> None:
    p = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True)
    if p.returncode:
        pytest.skip(f"cannot remount read-only: {p.stderr.strip()}")


def fill(path: Path) -> None:
    """Fill the filesystem of ``path`` to the last byte."""
    with open(path / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    try:
        for i in range(1000):  # the last inodes/blocks too
            (path / f"filler{i}").write_bytes(b"\0")
    except OSError:
        pass


# --- 1. killed while writing -----------------------------------------------------------


class TestKilledWhileWriting:
    def test_sigkill_while_staging_leaves_the_complete_old_set(self, tmp_path):
        out = tmp_path / "reports"
        before = old_set(out)
        # a different set (one case): every file would change
        proc = start(out, "-k", "seed_article_eval", NORMCONF_TEST_PAUSE_WRITE="30")
        try:
            wait_for(
                lambda: (
                    any((s / "results.csv").exists() for s in staging(out))
                    or snapshot(out) != before
                    or proc.poll() is not None
                ),
                120,
                "the first report file to be written",
            )
            proc.kill()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert snapshot(out) == before, "a SIGKILL while writing changed the report in --out"
        # the next run removes the killed run's staging folder and leaves no temporary file
        p = normconf(out)
        assert p.returncode == 0, p.stdout + p.stderr
        assert leftovers(out) == []
        assert set(snapshot(out)) == set(SET)

    def test_sigkill_during_the_swap_is_detected_and_completed(self, tmp_path):
        from normconf.report import recover_reports, verify_reports

        out = tmp_path / "reports"
        before = old_set(out)
        assert verify_reports(out) == []
        proc = start(out, "-k", "seed_article_eval", NORMCONF_TEST_PAUSE_WRITE="swap:30")
        try:
            wait_for(
                lambda: (out / "index.html").read_bytes() != before["index.html"],
                120,
                "the first file of the new set to be renamed in",
                proc,
            )
            proc.kill()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        (stage,) = staging(out)
        expected = {n: ((stage / n) if (stage / n).exists() else (out / n)).read_bytes() for n in SET}
        assert expected != before
        # a reader that checks the manifest sees that the set in --out is not complete
        assert verify_reports(out), "a half-swapped set passed verify_reports"
        # the next writer completes the swap first (roll forward): the killed run's whole set
        recover_reports(out)
        assert snapshot(out) == expected and verify_reports(out) == [] and leftovers(out) == []

    def test_the_manifest_names_the_set(self, tmp_path):
        from normconf.report import verify_reports

        out = tmp_path / "reports"
        old_set(out)
        assert verify_reports(out) == []
        with open(out / "results.csv", "a") as f:
            f.write("tampered\n")
        problems = verify_reports(out)
        assert problems and "results.csv" in problems[0]

    def test_failed_html_rendering_keeps_the_data_and_drops_the_stale_page(self, tmp_path, monkeypatch):
        import normconf.report.html as html
        from normconf.report import verify_reports, write_reports
        from normconf.results import Row, read_results, to_frame

        out = tmp_path / "reports"
        old_set(out)
        df = to_frame(
            [
                Row(
                    case="c",
                    file="f.yaml",
                    line=1,
                    backend="numpy",
                    backend_version="1",
                    output="y",
                    step=0,
                    outcome="pass",
                )
            ]
        )

        def broken(*a, **k):
            raise ValueError("template bug")

        monkeypatch.setattr(html, "render", broken)
        with pytest.raises(ValueError, match="template bug"):
            write_reports(df, {"partial": False}, out)
        back, _ = read_results(out / "results.json")
        assert list(back["case"]) == ["c"]
        assert not (out / "index.html").exists(), "the old index.html describes another run"
        assert verify_reports(out) == [] and leftovers(out) == []


# --- 2. full disk and write errors -------------------------------------------------------


class TestWriteErrors:
    def test_disk_fills_while_writing_on_a_real_tmpfs(self, tmp_path, tmpfs):
        out = tmpfs(tmp_path / "reports", "1m")
        before = old_set(out)
        proc = start(out, "-k", "seed_article_eval", NORMCONF_TEST_PAUSE_WRITE="3")
        try:
            wait_for(
                lambda: any((s / "results.csv").exists() for s in staging(out)), 120, "the first staged file", proc
            )
            fill(out)
            rc, stdout, stderr = finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert rc == EXIT_WRITE, stdout + stderr
        assert "Traceback" not in stderr
        assert (
            f"could not write the reports to {out}: No space left on device; the previous reports are unchanged"
            in stderr
        )
        assert SUMMARY in stdout  # the run happened: its summary is still printed
        assert snapshot(out) == before
        assert leftovers(out) == []

    def test_full_tmpfs_is_refused_before_the_run(self, tmp_path, tmpfs):
        out = tmpfs(tmp_path / "reports", "256k")
        before = old_set(out)
        fill(out)
        p = normconf(out)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "Traceback" not in p.stderr and SUMMARY not in p.stdout
        assert "free" in p.stderr and str(out) in p.stderr
        assert snapshot(out) == before

    @pytest.mark.parametrize(
        "code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO], ids=errno.errorcode.get
    )
    def test_write_error_exit_5_old_set_intact(self, tmp_path, capsys, monkeypatch, code):
        out = tmp_path / "reports"
        rc, o, e = run_in_process(capsys, out)
        assert rc == 0, o + e
        before = snapshot(out)
        real_fsync = os.fsync

        def failing_fsync(fd):
            if stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(code, os.strerror(code))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", failing_fsync)
        rc, o, e = run_in_process(capsys, out, "-k", "seed_article_eval")
        monkeypatch.undo()
        assert rc == EXIT_WRITE, o + e
        assert f"could not write the reports to {out}: {os.strerror(code)}; the previous reports are unchanged" in e
        assert snapshot(out) == before and leftovers(out) == []

    def test_too_little_free_space_is_refused_before_the_run(self, tmp_path, capsys, monkeypatch):
        out = tmp_path / "reports"
        rc, o, e = run_in_process(capsys, out)
        assert rc == 0, o + e
        before = snapshot(out)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
        rc, o, e = run_in_process(capsys, out)
        assert rc == 2, o + e
        assert "1000 bytes free" in e and SUMMARY not in o
        assert snapshot(out) == before


# --- 3. bad --out paths: refused before anything runs ---------------------------------------


class TestBadOut:
    def check_refused(self, p: subprocess.CompletedProcess, *fragments: str) -> None:
        assert p.returncode == 2, p.stdout + p.stderr
        assert "Traceback" not in p.stderr, p.stderr
        assert SUMMARY not in p.stdout, "the run happened before --out was refused"
        for frag in fragments:
            assert frag in p.stderr, p.stderr

    def test_read_only_mount(self, tmp_path, tmpfs):
        out = tmpfs(tmp_path / "reports", "1m")
        before = old_set(out)
        remount_ro(out)
        p = normconf(out)
        self.check_refused(p, f"--out {out}", "Read-only file system")
        assert snapshot(out) == before

    def test_read_only_mount_new_subfolder(self, tmp_path, tmpfs):
        ro = tmpfs(tmp_path / "ro", "1m")
        remount_ro(ro)
        p = normconf(ro / "reports")
        self.check_refused(p, "Read-only file system")

    def test_not_writable_in_process(self, tmp_path, capsys, monkeypatch):
        """Without root to mount: every write under --out fails with EROFS."""
        out = tmp_path / "reports"
        rc, o, e = run_in_process(capsys, out)
        assert rc == 0, o + e
        before = snapshot(out)
        real_open, real_mkdir = os.open, os.mkdir
        inside = str(out)

        def guard(real):
            def call(path, *a, **k):
                if str(path).startswith(inside) and (real is real_mkdir or (a and a[0] & (os.O_WRONLY | os.O_RDWR))):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
                return real(path, *a, **k)

            return call

        monkeypatch.setattr(os, "open", guard(real_open))
        monkeypatch.setattr(os, "mkdir", guard(real_mkdir))
        rc, o, e = run_in_process(capsys, out)
        monkeypatch.undo()
        assert rc == 2, o + e
        assert "Read-only file system" in e and SUMMARY not in o
        assert snapshot(out) == before

    def test_dangling_symlink(self, tmp_path):
        link = tmp_path / "reports"
        os.symlink(tmp_path / "gone" / "target", link)
        self.check_refused(normconf(link), "dangling symbolic link", str(tmp_path / "gone" / "target"))
        link2 = tmp_path / "reports2"
        os.symlink(tmp_path / "missing", link2)  # its target's folder exists
        self.check_refused(normconf(link2), "dangling symbolic link")
        assert not (tmp_path / "missing").exists()

    def test_symlink_loop(self, tmp_path):
        os.symlink(tmp_path / "b", tmp_path / "a")
        os.symlink(tmp_path / "a", tmp_path / "b")
        self.check_refused(normconf(tmp_path / "a"), "symbolic link loop")
        self.check_refused(normconf(tmp_path / "a" / "sub"), "symbolic link loop")


# --- 4. two runs into one folder ------------------------------------------------------------


class TestConcurrentRuns:
    def test_second_run_fails_fast_naming_the_first(self, tmp_path):
        out = tmp_path / "reports"
        old_set(out)
        first = start(out, "-k", "seed_article_eval", NORMCONF_TEST_PAUSE_WRITE="3")
        try:
            wait_for(lambda: bool(staging(out)), 120, "the first run to write", first)
            second = normconf(out)
            rc, o, e = finish(first)
        finally:
            if first.poll() is None:
                first.kill()
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by another normconf run (pid {first.pid})" in second.stderr
        assert SUMMARY not in second.stdout and "Traceback" not in second.stderr
        # had it waited for the lock it would have run after the first and exited 0: refusing with the
        # first run's pid is the proof that it failed fast (no time is asserted)
        assert rc == 0, o + e  # the first run is not disturbed
        from normconf.results import read_results

        df, _ = read_results(out / "results.json")
        assert set(df["case"]) == {"seed_article_eval"}
        assert normconf(out).returncode == 0  # the lock is released with the run

    def test_lock_holds_before_the_folder_exists(self, tmp_path):
        out = tmp_path / "new" / "reports"  # neither exists yet
        (tmp_path / "slow.yaml").write_text("cases:\n  - {id: s, shape: [2, 3], tags: [slow]}\n")
        markers = tmp_path / "m"
        markers.mkdir()
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "normconf.cli",
                "run",
                str(tmp_path / "slow.yaml"),
                "--adapter",
                "tests.crashy_adapters:ADAPTERS",
                "-b",
                "crashy",
                "--timeout",
                "120",
                "--out",
                str(out),
            ],
            env=_env(NORMCONF_TEST_SLOW="6", NORMCONF_TEST_MARKERS=str(markers)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: (markers / "s.crashy.pid").exists(), 120, "the slow task to start", first)
            second = normconf(out)
            rc, o, e = finish(first)
        finally:
            if first.poll() is None:
                first.kill()
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by another normconf run (pid {first.pid})" in second.stderr
        assert rc == 0, o + e
        assert set(snapshot(out)) == set(SET) and leftovers(out) == []
        assert list(tmp_path.glob(".normconf-*.lock")) == [], "the outer lock file is removed"


# --- 5. partial/ ----------------------------------------------------------------------------


class TestPartialFolder:
    def test_user_files_in_partial_survive_a_complete_run(self, tmp_path):
        out = tmp_path / "reports"
        part = out / "partial"
        (part / "notes").mkdir(parents=True)
        (part / "notes.txt").write_text("mine")
        (part / "notes" / "x").write_text("mine too")
        for n in SET:
            (part / n).write_text("{}" if n.endswith("json") else "stale")
        p = normconf(out)
        assert p.returncode == 0, p.stdout + p.stderr
        assert (part / "notes.txt").read_text() == "mine" and (part / "notes" / "x").read_text() == "mine too"
        assert not any((part / n).exists() for n in SET), "the stale partial report was kept"
