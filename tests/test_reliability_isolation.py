"""Issue 17: workers that cannot be subverted from the current folder, leave no process behind,
load the user's code away from the harness, and runs that are green only when something was tested.

1. the current folder is not on a worker's ``sys.path`` (a ``numpy.py`` lying there is never imported);
2. a child of an adapter that leaves the worker's session (``setsid``, double fork) ends with the run;
3. ``--adapter`` modules are imported in a worker, never in the harness, within a bounded start-up;
4. a ``--native`` library that cannot be loaded gives ``error`` rows (exit 3), not "unavailable";
5. an adapter cannot take the id of a built-in backend (exit 2).

The planted backends are tests/isolation_adapters.py and modules written into tmp folders.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest

from normconf.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from normconf.native import bundled_library, include_dir
from tests.helpers import finish
from tests.isolation_adapters import ORPHAN_VAR
from tests.isolation_adapters import SPEC as SPAWNER

ROOT = Path(__file__).resolve().parent.parent
NORMCONF = Path(sys.executable).with_name("normconf")
CASE = "cases:\n  - {id: plain, shape: [2, 3]}\n"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(COLUMNS="200", **extra)
    return env


def normconf(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """The installed console script (its sys.path does not hold the current folder either)."""
    return subprocess.run(
        [str(NORMCONF), *args], cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=timeout
    )


def _wait_for(cond, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _marker_module(path: Path, marker: Path, body: str = "") -> None:
    """A module that records (in ``marker``) the pid of the process importing it."""
    path.write_text(
        textwrap.dedent(f"""
        import os
        with open({str(marker)!r}, "a") as _f:
            _f.write(str(os.getpid()) + "\\n")
    """)
        + textwrap.dedent(body)
    )


# -- 1. sys.path ------------------------------------------------------------------------------


@pytest.mark.skipif(not NORMCONF.exists(), reason="the normconf console script is not installed")
@pytest.mark.skipif(not bundled_library("cpp").exists(), reason="libnormconf_cpp.so not built")
def test_modules_in_the_current_folder_are_never_imported(tmp_path):
    """numpy.py and yaml.py in the folder of the run: the workers (numpy, cpp) import the real ones."""
    markers = tmp_path / "markers"
    markers.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    for name in ("numpy", "yaml"):
        _marker_module(work / f"{name}.py", markers / f"{name}.imported", "raise ImportError('planted')\n")
    (work / "c.yaml").write_text(CASE)
    p = normconf("run", ".", "-b", "numpy,cpp", "--out", str(tmp_path / "reports"), cwd=work)
    assert p.returncode == EXIT_OK, p.stdout + p.stderr
    assert not list(markers.iterdir()), [m.read_text() for m in markers.iterdir()]
    df = pd.read_csv(tmp_path / "reports" / "results.csv", keep_default_na=False)
    assert set(df["backend"]) == {"numpy", "cpp"} and set(df["outcome"]) == {"pass"}


def test_empty_pythonpath_entries_do_not_bring_the_current_folder_back(tmp_path, monkeypatch):
    """PYTHONPATH=":" names the current folder only implicitly (empty entries): a worker ignores them;
    an explicit entry is honoured, made absolute."""
    from normconf import isolation
    from normconf.cases import Case, LoadedCase
    from normconf.runner import Runner

    marker = tmp_path / "numpy.imported"
    _marker_module(tmp_path / "numpy.py", marker, "raise ImportError('planted')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep)
    with Runner(timeout=60) as r:
        rows = r.run_pair(LoadedCase(Case.model_validate({"id": "p", "shape": [2, 3]}), "<t>", 1), "numpy")
    assert {x.outcome for x in rows} == {"pass"}, rows
    assert not marker.exists()
    assert isolation.worker_pythonpath(f"{os.pathsep}lib{os.pathsep}") == os.pathsep.join(
        [isolation.PACKAGE_ROOT, str(tmp_path / "lib")]
    )


@pytest.mark.skipif(not NORMCONF.exists(), reason="the normconf console script is not installed")
def test_adapter_module_in_the_current_folder_is_pinned_not_its_folder(tmp_path):
    """--adapter mine:Echo, mine.py in the current folder: mine is importable, its neighbour numpy.py is not."""
    markers = tmp_path / "markers"
    markers.mkdir()
    _marker_module(tmp_path / "numpy.py", markers / "numpy.imported", "raise ImportError('planted')\n")
    (tmp_path / "mine.py").write_text(
        textwrap.dedent("""
        from normconf.adapters.numpy_ref import NumpyReference

        class Echo(NumpyReference):
            id = "mine-echo"
            worker = "mine"
    """)
    )
    (tmp_path / "c.yaml").write_text(CASE)
    p = normconf("run", "c.yaml", "--adapter", "mine:Echo", "-b", "mine-echo,numpy", "--out", "reports", cwd=tmp_path)
    assert p.returncode == EXIT_OK, p.stdout + p.stderr
    assert not list(markers.iterdir())
    df = pd.read_csv(tmp_path / "reports" / "results.csv", keep_default_na=False)
    assert set(df["backend"]) == {"mine-echo", "numpy"} and set(df["outcome"]) == {"pass"}


# -- 2. process trees -------------------------------------------------------------------------


def _orphans(token: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(ORPHAN_VAR) == token and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture
def orphan_token():
    token = uuid.uuid4().hex
    yield token
    for p in _orphans(token):  # a failing test leaves nothing behind either
        try:
            p.kill()
        except psutil.Error:
            pass


def _spawner_run(tmp_path: Path, token: str, tags: str):
    (tmp_path / "c.yaml").write_text(f"cases:\n  - {{id: s, shape: [2, 3], tags: [{tags}]}}\n")
    env = _env(PYTHONPATH=str(ROOT), **{ORPHAN_VAR: token, "NORMCONF_TEST_MARKERS": str(tmp_path)})
    return [
        sys.executable,
        "-m",
        "normconf.cli",
        "run",
        "c.yaml",
        "--adapter",
        SPAWNER,
        "-b",
        "spawner",
        "--timeout",
        "120",
        "--out",
        "reports",
    ], env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper is Linux-only")
@pytest.mark.parametrize("tags", ["plain", "doublefork", "segv"])
def test_processes_started_by_an_adapter_end_with_the_run(tmp_path, orphan_token, tags):
    """sleep 300 in a session of its own (or double-forked, or left by a crashed worker): gone after the run."""
    cmd, env = _spawner_run(tmp_path, orphan_token, tags)
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "s.spawned").exists(), p.stdout + p.stderr
    assert p.returncode == (EXIT_ERROR if tags == "segv" else EXIT_OK), p.stdout + p.stderr
    _wait_for(lambda: not _orphans(orphan_token), 10, "the adapter's sleep 300 to end")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper is Linux-only")
def test_processes_started_by_an_adapter_end_when_the_harness_is_terminated(tmp_path, orphan_token):
    cmd, env = _spawner_run(tmp_path, orphan_token, "doublefork, hang")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(
            lambda: (tmp_path / "s.spawned").exists() or proc.poll() is not None, 120, "the adapter to start its child"
        )
        assert proc.poll() is None, proc.communicate()
        assert _orphans(orphan_token)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    _wait_for(lambda: not _orphans(orphan_token), 10, "the adapter's sleep 300 to end")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="child subreaper is Linux-only")
@pytest.mark.parametrize("tags", ["plain", "doublefork"])
def test_runner_close_ends_its_workers_and_what_their_adapters_started(tmp_path, orphan_token, tags):
    """``Runner.close()`` (a ``with Runner()`` block's end, the pytest plugin's) asks the workers to exit
    rather than killing them: the worker's own clean-up ends what its adapter started, the harness
    the rest; the worker is gone and so is its scratch folder (in a child process: the spawner's
    environment variable is its own)."""
    code = textwrap.dedent(
        f"""
        import sys
        from normconf.cases import Case, Generator, LoadedCase
        from normconf.runner import Runner
        case = Case.model_validate({{"id": "s", "shape": [2, 3], "tags": {[t.strip() for t in tags.split(",")]!r}}})
        lc = LoadedCase(case.model_copy(update={{"input": Generator(seed=0)}}), "<test>", 0)
        with Runner(extra_specs=({SPAWNER!r},)) as r:
            rows = r.run_pair(lc, "spawner")
            w = r._all_workers[0]
            print(w.proc.pid, w.token, sorted({{x.outcome for x in rows}}))
        print(w.proc.returncode)
        """
    )
    (tmp_path / "tmp").mkdir()
    env = _env(
        PYTHONPATH=str(ROOT),
        TMPDIR=str(tmp_path / "tmp"),
        **{ORPHAN_VAR: orphan_token, "NORMCONF_TEST_MARKERS": str(tmp_path)},
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    first, rc = p.stdout.strip().splitlines()[-2:]
    pid, _token, outcomes = first.split(" ", 2)
    assert outcomes == "['pass']", p.stdout + p.stderr
    assert (tmp_path / "s.spawned").exists(), p.stdout + p.stderr
    assert rc == "0", p.stdout + p.stderr  # it exited on its own, not killed
    _wait_for(lambda: not _orphans(orphan_token), 10, "the adapter's sleep 300 to end")
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    assert list((tmp_path / "tmp").iterdir()) == []


def test_runner_close_asks_every_worker_to_exit_before_waiting_for_any():
    """The exits overlap: every worker gets its ``exit`` request before the first wait (one after the other,
    a framework's teardown each, closing took longer than the 5 s pytest-xdist gives a test process to
    end before it interrupts it); they share one deadline."""
    from normconf.runner import Runner

    events: list[tuple[str, str]] = []

    class Handle:
        def __init__(self, name):
            self.name = name

        def ask_to_exit(self):
            events.append(("ask", self.name))

        def finish_close(self, deadline):
            events.append(("finish", self.name))
            deadlines.add(deadline)

    deadlines: set[float] = set()
    r = Runner()
    r._all_workers.extend(Handle(n) for n in ("a", "b", "c"))
    r.close()
    assert events == [("ask", "a"), ("ask", "b"), ("ask", "c"), ("finish", "a"), ("finish", "b"), ("finish", "c")]
    assert len(deadlines) == 1 and r._all_workers == []


@pytest.mark.parametrize("tags", ["tempfile", "tempfile, segv"])
def test_files_an_adapter_leaves_in_its_temporary_folder_end_with_its_worker(tmp_path, orphan_token, tags):
    """A file in the worker's TMPDIR that nothing deletes (TensorFlow AutoGraph's modules when the
    worker is killed): it lies in the worker's own scratch folder, and folder and file are gone
    after the run, also when the worker crashed."""
    cmd, env = _spawner_run(tmp_path, orphan_token, tags)
    (tmp_path / "tmp").mkdir()
    env["TMPDIR"] = str(tmp_path / "tmp")
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == (EXIT_ERROR if "segv" in tags else EXIT_OK), p.stdout + p.stderr
    left = Path((tmp_path / "s.tempfile").read_text())
    assert left.parent.parent == tmp_path / "tmp", left
    assert left.parent.name.startswith("normconf-worker-"), left
    assert not left.exists() and not left.parent.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_scratch_folders_of_a_harness_that_no_longer_runs_are_removed(tmp_path):
    """A harness killed by SIGKILL cannot clean up; the next one removes its workers' folders once
    they are an hour old, and never those of a harness still running nor a recent one (a harness in
    another pid namespace sharing the folder looks dead)."""
    from normconf.isolation import STALE_SCRATCH_AGE

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp = tmp_path / "tmp"
    stale = tmp / f"normconf-worker-{dead.pid}-0123456789abcdef"
    recent = tmp / f"normconf-worker-{dead.pid}-fedcba9876543210"
    live = tmp / f"normconf-worker-{os.getpid()}-0123456789abcdef"
    old = time.time() - STALE_SCRATCH_AGE - 60
    for folder in (stale, recent, live):
        folder.mkdir(parents=True)
        (folder / "tf__lam.py").write_text("# left\n")
        if folder is not recent:
            os.utime(folder, (old, old))
    (tmp_path / "c.yaml").write_text("cases:\n  - {id: s, shape: [2, 3]}\n")
    p = subprocess.run(
        [sys.executable, "-m", "normconf.cli", "run", "c.yaml", "-b", "numpy", "--out", "reports", "-q"],
        cwd=tmp_path,
        env=_env(TMPDIR=str(tmp)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == EXIT_OK, p.stdout + p.stderr
    assert not stale.exists()
    assert (live / "tf__lam.py").exists() and (recent / "tf__lam.py").exists()
    assert sorted(tmp.iterdir()) == sorted([live, recent])


# -- 3. user modules load in a worker, with a bounded start-up --------------------------------


def test_adapter_modules_are_imported_in_a_worker_not_the_harness(tmp_path, monkeypatch):
    from normconf.profiles import convention
    from normconf.runner import Runner

    mod = f"iso_probe_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    _marker_module(
        tmp_path / f"{mod}.py",
        marker,
        """
        from normconf.adapters.numpy_ref import NumpyReference
        from normconf.profiles import convention

        class Probe(NumpyReference):
            id = "iso-probe"
            framework = "probe-framework"
            worker = "iso-probe"
            worker_env = {"ISO_PROBE": "1"}
            description = "a probe"
            dtypes = ("float32",)
            ranks = (2, 3)
            conventions = (convention("normalize_variance", "biased", "it says so", "here"),)
    """,
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the harness could import it: it must not
    from normconf.cases import Case, LoadedCase

    with Runner((f"{mod}:Probe",), timeout=60) as r:
        assert mod not in sys.modules
        cls = r.adapters["iso-probe"]
        assert (cls.framework, cls.worker, dict(cls.worker_env), cls.description) == (
            "probe-framework",
            "iso-probe",
            {"ISO_PROBE": "1"},
            "a probe",
        )
        assert cls.dtypes == ("float32",) and cls.ranks == (2, 3)
        assert cls.conventions == (convention("normalize_variance", "biased", "it says so", "here"),)
        assert r.user_backends == {"iso-probe"}
        assert r.profile("iso-probe").entries == cls.conventions
        rows = r.run_pair(LoadedCase(Case.model_validate({"id": "p", "shape": [2, 3]}), "<t>", 1), "iso-probe")
        assert {x.outcome for x in rows} == {"pass"}, rows
    pids = {int(x) for x in marker.read_text().split()}
    assert os.getpid() not in pids and pids
    assert mod not in sys.modules


def _user_module_run(tmp_path: Path, body: str, timeout: float = 120, **env: str):
    mod = "usermod"
    marker = tmp_path / "imported"
    _marker_module(tmp_path / f"{mod}.py", marker, body)
    (tmp_path / "c.yaml").write_text(CASE)
    cmd = [
        sys.executable,
        "-m",
        "normconf.cli",
        "run",
        "c.yaml",
        "--adapter",
        f"{mod}:ADAPTERS",
        "-b",
        "numpy",
        "--out",
        "reports",
    ]
    # python -m: the harness's own sys.path holds the current folder, so it could import usermod itself
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(ROOT), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    _, out, err = finish(proc, timeout)
    pids = {int(x) for x in marker.read_text().split()} if marker.exists() else set()
    return proc, out, err, time.monotonic() - t0, pids


def test_adapter_module_that_hangs_at_import_is_a_usage_error_in_bounded_time(tmp_path):
    proc, out, err, took, pids = _user_module_run(
        tmp_path, "import time\ntime.sleep(30)\n", NORMCONF_STARTUP_TIMEOUT="3"
    )
    assert proc.returncode == EXIT_USAGE, out + err
    assert "usermod" in err and "timeout after 3 s" in err, err  # bounded by the start-up timeout, not the sleep
    assert pids and proc.pid not in pids
    _wait_for(
        lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids),
        10,
        "the describe worker to be killed",
    )
    assert not (tmp_path / "reports").exists()


def test_adapter_module_that_exits_at_import_is_a_usage_error_naming_it(tmp_path):
    proc, out, err, _, pids = _user_module_run(tmp_path, "os._exit(0)\n")
    assert proc.returncode == EXIT_USAGE, out + err
    assert "usermod" in err and "exit status 0" in err, err
    assert pids and proc.pid not in pids
    assert not (tmp_path / "reports").exists()


def test_adapter_module_that_raises_at_import_is_a_usage_error_as_before(tmp_path):
    proc, out, err, _, pids = _user_module_run(tmp_path, "raise ValueError('planted import failure')\n")
    assert proc.returncode == EXIT_USAGE, out + err
    assert "--adapter 'usermod:ADAPTERS': cannot import usermod: ValueError: planted import failure" in err, err
    assert "Traceback" not in err
    assert pids and proc.pid not in pids


# -- 4. unloadable native libraries -----------------------------------------------------------


def _native_lib(tmp_path: Path, kind: str) -> tuple[Path, str]:
    if kind == "missing":
        return tmp_path / "libmistyped.so", "no such file"
    if kind == "not_elf":
        p = tmp_path / "libnotelf.so"
        p.write_text("this is not a shared library\n")
        return p, "cannot load"
    if CC is None:
        pytest.skip("no C compiler (cc)")
    src = tmp_path / "abi2.c"
    src.write_text(
        '#include "normconf_bn.h"\nint32_t normconf_bn_abi_version(void) { return 2; }\n'
        "int32_t normconf_bn_forward(normconf_bn_call* call) { (void)call; return 0; }\n"
    )
    p = tmp_path / "libabi2.so"
    subprocess.run(
        [CC, "-shared", "-fPIC", f"-I{include_dir()}", str(src), "-o", str(p)], check=True, capture_output=True
    )
    return p, "implements normconf ABI version 2"


@pytest.mark.parametrize("kind", ["missing", "not_elf", "abi2"])
def test_unloadable_native_library_is_an_error_not_unavailable(tmp_path, capsys, kind):
    lib, reason = _native_lib(tmp_path, kind)
    name = lib.name[3:].split(".")[0]
    (tmp_path / "c.yaml").write_text(CASE)
    rc = main(
        [
            "run",
            str(tmp_path / "c.yaml"),
            "--native",
            str(lib),
            "-b",
            f"native:{name},numpy",
            "--out",
            str(tmp_path / "reports"),
            "--timeout",
            "60",
        ]
    )
    cap = capsys.readouterr()
    assert rc == EXIT_ERROR, cap.out + cap.err
    df = pd.read_csv(tmp_path / "reports" / "results.csv", keep_default_na=False)
    mine = df[df["backend"] == f"native:{name}"]
    assert len(mine) and set(mine["outcome"]) == {"error"}, mine
    assert all(reason in m for m in mine["message"]), list(mine["message"])
    assert not any(m.startswith("backend unavailable") for m in mine["message"])
    assert "unavailable" not in cap.out


# -- 5. built-in ids ----------------------------------------------------------------------------


def test_an_adapter_cannot_replace_a_builtin_backend(tmp_path):
    (tmp_path / "impostor.py").write_text(
        textwrap.dedent("""
        from normconf.adapters.base import Observed
        from normconf.adapters.numpy_ref import NumpyReference

        class Impostor(NumpyReference):
            id = "numpy"

            def run(self, case, inputs):
                obs = super().run(case, inputs)
                return Observed({k: [a * 0 for a in v] for k, v in obs.outputs.items()})
    """)
    )
    (tmp_path / "c.yaml").write_text(CASE)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "normconf.cli",
            "run",
            "c.yaml",
            "--adapter",
            "impostor:Impostor",
            "-b",
            "numpy",
            "--out",
            "reports",
        ],
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == EXIT_USAGE, p.stdout + p.stderr
    assert "impostor.Impostor" in p.stderr and "normconf.adapters.numpy_ref.NumpyReference" in p.stderr, p.stderr
    assert "'numpy'" in p.stderr
    assert not (tmp_path / "reports").exists()


def test_report_on_results_naming_a_fifo_case_file_does_not_hang(tmp_path):
    """Issue 17 (hangs): a results file naming a case file that is a link to a FIFO (or a device such as
    /proc/kmsg): `normconf report` never opens it (the case panel comes from what the run recorded), no hang."""
    import json

    from normconf.cli import main as cli_main

    out = tmp_path / "run"
    assert cli_main(["run", str(ROOT / "cases" / "seed_article.yaml"), "-b", "numpy", "--out", str(out)]) == 0
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    (tmp_path / "link.yaml").symlink_to(fifo)
    data = json.loads((out / "results.json").read_text())
    for row in data["results"]:
        row["file"] = str(tmp_path / "link.yaml")
    (out / "results.json").write_text(json.dumps(data))
    # a hang is a failure: subprocess.run raises TimeoutExpired
    p = subprocess.run(
        [sys.executable, "-m", "normconf.cli", "report", str(out / "results.json"), "--out", str(tmp_path / "page")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert "recorded by the run" in (tmp_path / "page" / "index.html").read_text()  # the FIFO is never opened


def test_a_huge_results_file_is_refused_before_it_is_read(tmp_path, capsys):
    """Issue 17 (file reads): report/diff/expect accept read results files with a size bound."""
    from normconf.cli import main as cli_main
    from normconf.report.cli import MAX_RESULTS_BYTES

    big = tmp_path / "results.json"
    with open(big, "wb") as f:  # sparse: no disk space used
        f.truncate(MAX_RESULTS_BYTES + 1)
    for argv in (["report", str(big)], ["diff", str(big), str(big)], ["expect", "accept", str(big)]):
        assert cli_main(argv) == 2, argv
        assert "results files are limited to" in capsys.readouterr().err, argv
