"""The bad-input corpus (tests/bad_inputs/manifest.yaml) through the real command line.

Every entry must make ``normconf validate`` — and, when marked ``run: true``,
``normconf run`` — exit with status 2, name file:line, print each expected
fragment, print no traceback, finish within :data:`LIMIT_S` seconds and write no
report.  Inputs that cannot be committed (a 100 MB file, a FIFO, a missing file,
...) are generated here at run time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "bad_inputs"
MANIFEST = yaml.safe_load((CORPUS / "manifest.yaml").read_text())
#: wall-clock bound for one command on a refused input (a loaded CI machine: generous, but finite)
LIMIT_S = 60


def normconf(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "normconf.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=LIMIT_S * 2,
    )
    return p, time.monotonic() - t0


def check_refused(
    p: subprocess.CompletedProcess, seconds: float, where: str, fragments: list[str], absent: list[str] = ()
) -> None:
    out = p.stdout + p.stderr
    assert p.returncode == 2, f"exit {p.returncode}, expected 2:\n{out}"
    assert "Traceback" not in out, out
    # text from a case file is printed escaped: no control, format or separator character reaches the terminal
    raw = sorted({c for c in out if not c.isprintable() and c != "\n"})
    assert not raw, f"unescaped characters {raw!r} in:\n{out!r}"
    for frag in absent:
        assert frag not in out, f"{frag!r} must not appear in:\n{out!r}"
    assert seconds < LIMIT_S, f"took {seconds:.1f} s"
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert errors, f"no 'error: ' line:\n{out}"
    assert where in p.stderr, f"{where!r} not in:\n{p.stderr}"
    for frag in fragments:
        assert frag in p.stderr, f"{frag!r} not in:\n{p.stderr}"


def _id(entry: dict) -> str:
    return entry["path"] + ("+" + "_".join(entry["args"]) if entry.get("args") else "")


def test_corpus_is_large_enough_and_every_file_is_listed():
    assert len(MANIFEST) >= 110
    listed = {e["path"] for e in MANIFEST}
    on_disk = {p.name for p in CORPUS.glob("*.yaml") if p.name != "manifest.yaml"}
    on_disk |= {p.name for p in CORPUS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert on_disk == listed, f"unlisted: {sorted(on_disk - listed)}, missing: {sorted(listed - on_disk)}"


@pytest.mark.parametrize("entry", MANIFEST, ids=_id)
def test_validate_refuses(entry):
    p, dt = normconf("validate", entry["path"], *entry.get("args", []), cwd=CORPUS)
    check_refused(p, dt, entry["where"], entry["expect"], entry.get("absent", []))
    assert "valid" not in p.stdout


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e.get("run")], ids=_id)
def test_run_refuses_and_writes_nothing(entry, tmp_path):
    out = tmp_path / "reports"
    p, dt = normconf("run", entry["path"], "--backend", "numpy", "--out", str(out), *entry.get("args", []), cwd=CORPUS)
    check_refused(p, dt, entry["where"], entry["expect"], entry.get("absent", []))
    assert not out.exists(), "a refused run must not create the report folder"


def test_ten_mistakes_give_exactly_ten_messages():
    p, _ = normconf("validate", "ten_mistakes.yaml", cwd=CORPUS)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert p.returncode == 2 and len(errors) == 10, p.stderr
    # one message per mistake: each on the line the comment numbers, each a different field
    lines = [int(e.split(":")[2]) for e in errors]
    assert lines == [7, 9, 11, 13, 15, 17, 19, 21, 22, 24], p.stderr
    assert all(e.startswith("error: ten_mistakes.yaml:") for e in errors)
    for frag in (
        "momentun",
        "eps",
        "momentum.batch_weight",
        "data[3]",
        "tolerance.reason",
        "input.sed",
        "mode",
        "shape[1]",
        "duplicate id 'fine'",
        "affine.gamma",
    ):
        assert frag in p.stderr, frag


# --- inputs generated at run time ------------------------------------------------------


def test_100_mb_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.yaml"
    chunk = ("# " + "x" * 1021 + "\n").encode()
    with open(big, "wb") as f:
        f.write(b"cases:\n  - {id: big, shape: [2, 3]}\n")
        for _ in range(100 * 1024):
            f.write(chunk)
    assert big.stat().st_size > 100 * 2**20
    for cmd in (["validate", "big.yaml"], ["run", "big.yaml", "-b", "numpy", "--out", "reports"]):
        p, dt = normconf(*cmd, cwd=tmp_path)
        check_refused(p, dt, "big.yaml:1:1", ["case files are limited to 10485760 bytes", str(big.stat().st_size)])
        assert dt < 30, f"a refused 100 MB file took {dt:.1f} s"
    assert not (tmp_path / "reports").exists()


def test_fifo_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would block forever
    p, dt = normconf("validate", "pipe.yaml", cwd=tmp_path)
    check_refused(p, dt, "pipe.yaml:1:1", ["not a regular file"])


def test_device_is_not_read(tmp_path):
    p, dt = normconf("validate", "/dev/zero", cwd=tmp_path)  # endless: must not be read at all
    check_refused(p, dt, "/dev/zero:1:1", ["not a regular file"])


def test_missing_file_and_empty_folder(tmp_path):
    p, dt = normconf("validate", "nope.yaml", cwd=tmp_path)
    check_refused(p, dt, "nope.yaml:1:1", ["no such file or folder"])
    (tmp_path / "empty").mkdir()
    p, dt = normconf("run", "empty", "--out", "reports", cwd=tmp_path)
    assert p.returncode == 2 and "no case files" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "reports").exists()


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    f = tmp_path / "secret.yaml"
    f.write_text("cases: []\n")
    f.chmod(0)
    p, dt = normconf("validate", "secret.yaml", cwd=tmp_path)
    check_refused(p, dt, "secret.yaml:1:1", ["cannot read", "ermission denied"])


def test_max_elements_flag_raises_the_limit(tmp_path):
    # refused by default (see the manifest), accepted once the limit is raised
    p, _ = normconf("validate", "shape_too_many_elements.yaml", "--max-elements", "200000000", cwd=CORPUS)
    assert p.returncode == 0 and "1 case(s) in 1 file(s): valid" in p.stdout, p.stderr
    p, _ = normconf("validate", "shape_too_many_elements.yaml", "--max-elements", "199999999", cwd=CORPUS)
    assert p.returncode == 2 and "exceeds the limit of 199999999 elements" in p.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--timeout", "0"], "--timeout must be a number of seconds > 0"),
        (["--timeout", "nan"], "--timeout must be a number of seconds > 0"),
        (["--max-elements", "0"], "--max-elements must be at least 1"),
        (["--backend", "nosuch"], "unknown backend(s) nosuch"),
        (["--adapter", "no_such_module:X"], "cannot import no_such_module"),
        (["--case", "zzz*"], "matches no case"),
        (["--out", "afile"], "exists and is not a folder"),
    ],
)
def test_run_usage_errors_exit_2_and_write_nothing(tmp_path, args, fragment):
    (tmp_path / "ok.yaml").write_text("cases:\n  - {id: ok, shape: [2, 3]}\n")
    (tmp_path / "afile").write_text("not a folder\n")
    p, _ = normconf(
        "run", "ok.yaml", "-b", "numpy", *(["--out", "reports"] if "--out" not in args else []), *args, cwd=tmp_path
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert fragment in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "reports").exists()
    assert (tmp_path / "afile").read_text() == "not a folder\n"


def test_python_tag_runs_no_code(tmp_path):
    marker = Path("/tmp/normconf-pwned")
    marker.unlink(missing_ok=True)
    p, _ = normconf("validate", "python_object_tag.yaml", cwd=CORPUS)
    assert p.returncode == 2
    assert not marker.exists(), "a python/object tag ran code"


# --- issue 17: file reads (symbolic links are resolved and the target checked; nothing blocks) ----


def _case(tmp_path: Path, name: str, cid: str) -> Path:
    f = tmp_path / name
    f.write_text(f"cases:\n  - {{id: {cid}, shape: [2, 3]}}\n")
    return f


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "/dev/null", "/dev/tty"])
def test_symlink_to_a_fifo_or_device_is_refused_without_opening(tmp_path, target):
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")  # opening it for reading would block forever
        target = str(tmp_path / "fifo")
    if not os.path.exists(target):
        pytest.skip(f"no {target}")
    os.symlink(target, tmp_path / "link.yaml")
    for cmd in (["validate", "link.yaml"], ["run", "link.yaml", "-b", "numpy", "--out", "reports"]):
        p, dt = normconf(*cmd, cwd=tmp_path)
        check_refused(p, dt, "link.yaml:1:1", ["not a regular file", f"a symbolic link to {os.path.realpath(target)}"])
    assert not (tmp_path / "reports").exists()


def test_symlink_to_a_proc_file_is_refused(tmp_path):
    # /proc files are "regular" and report 0 bytes; /proc/kmsg blocks when read.  Never opened.
    if not os.path.exists("/proc/self/status"):
        pytest.skip("no /proc")
    os.symlink("/proc/self/status", tmp_path / "proc.yaml")
    p, dt = normconf("validate", "proc.yaml", cwd=tmp_path)
    check_refused(p, dt, "proc.yaml:1:1", ["/proc or /sys pseudo-filesystem"])


def test_dangling_and_looping_symlinks_given_explicitly(tmp_path):
    os.symlink("nowhere.yaml", tmp_path / "dangling.yaml")
    os.symlink("self.yaml", tmp_path / "self.yaml")
    p, dt = normconf("validate", "dangling.yaml", "self.yaml", cwd=tmp_path)
    check_refused(
        p,
        dt,
        "dangling.yaml:1:1",
        [
            "dangling symbolic link: its target 'nowhere.yaml' does not exist",
            "self.yaml:1:1: symbolic link loop",
            "2 errors;",
        ],
    )


@pytest.mark.parametrize(
    "plant, where, fragment",
    [
        ("dangling", "suite/broken.yaml:1:1", "dangling symbolic link"),
        ("self_loop", "suite/self.yaml:1:1", "symbolic link loop"),
        ("folder_loop", "suite/sub/up:1:1", "symbolic link loop: suite/sub/up leads back to the folder"),
        ("fifo", "suite/pipe.yaml:1:1", "not a regular file"),
        ("proc", "suite/proc.yaml:1:1", "pseudo-filesystem"),
    ],
)
def test_a_broken_entry_in_a_case_folder_is_an_error_not_skipped(tmp_path, plant, where, fragment):
    suite = tmp_path / "suite"
    (suite / "sub").mkdir(parents=True)
    _case(suite, "ok.yaml", "ok")
    if plant == "dangling":
        os.symlink("missing.yaml", suite / "broken.yaml")
    elif plant == "self_loop":
        os.symlink("self.yaml", suite / "self.yaml")
    elif plant == "folder_loop":
        os.symlink("..", suite / "sub" / "up")
    elif plant == "fifo":
        os.mkfifo(tmp_path / "fifo")
        os.symlink(tmp_path / "fifo", suite / "pipe.yaml")
    else:
        if not os.path.exists("/proc/self/status"):
            pytest.skip("no /proc")
        os.symlink("/proc/self/status", suite / "proc.yaml")
    for cmd in (["validate", "suite"], ["run", "suite", "-b", "numpy", "--out", "reports"]):
        p, dt = normconf(*cmd, cwd=tmp_path)
        check_refused(p, dt, where, [fragment, "1 error;"])
    assert not (tmp_path / "reports").exists()


def test_symlinked_case_folders_and_files_are_followed(tmp_path):
    (tmp_path / "shared").mkdir()
    _case(tmp_path / "shared", "a.yaml", "from_linked_folder")
    _case(tmp_path, "b.yaml", "from_linked_file")
    suite = tmp_path / "suite"
    suite.mkdir()
    os.symlink(tmp_path / "shared", suite / "shared")
    os.symlink(tmp_path / "b.yaml", suite / "b.yaml")
    p, _ = normconf("validate", "suite", cwd=tmp_path)
    assert p.returncode == 0 and "2 case(s) in 2 file(s): valid" in p.stdout, p.stdout + p.stderr


def test_file_name_with_escape_sequence_is_printed_escaped(tmp_path):
    name = "a\x1b[2Jb.yaml"
    (tmp_path / name).write_text("cases: []\n")
    p, dt = normconf("validate", name, cwd=tmp_path)
    check_refused(p, dt, "a\\x1b[2Jb.yaml:1:8", ["no cases"], absent=["\x1b"])
