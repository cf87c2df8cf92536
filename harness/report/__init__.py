"""Writing the results of a run: results.csv, results.json and index.html — as one set.

:func:`write_reports` writes the whole set into a fresh staging folder inside the target folder
(``DIR/.normconf-new-<pid>-<8 hex>/``), fsyncs it, commits it by writing a manifest
(``.normconf-set.json``: the set's generation and the size and SHA-256 of each file) and only then
renames the files into ``DIR`` — ``index.html``, ``results.csv``, ``results.json``, and the manifest
last.  So (docs/reliability.md, "Report folder"):

* a crash, SIGKILL, full disk or write error *before* the commit leaves ``DIR``'s set untouched (the
  next writer removes the staging folder);
* after the commit the set is complete on disk; a crash *during* the renames (microseconds) leaves
  the rest of it in the staging folder, and the next writer into ``DIR`` completes the swap first
  (:func:`recover_reports`, roll forward);
* a reader that wants a consistent set checks it against the manifest (:func:`verify_reports`).

Other files in ``DIR`` are never touched; files of the set that the new set lacks (``index.html``
when the page is not written) are removed, so the folder never mixes two runs.  A failure while
*rendering* the HTML (a bug, not an ``OSError``) still commits the data (results.csv and
results.json, without a page) and is then re-raised.  Write errors are raised as
:class:`ReportWriteError` (an ``OSError``) whose message says whether the previous set is unchanged.

:class:`OutLock` is the lock ``normconf run`` holds on its ``--out`` folder from before the run until
the files are written (``fcntl.flock``).

``meta`` is free-form; the report reads ``meta["environment"]`` (Python, OS, CPU, backend versions,
device), ``meta["backends"]`` (column order), ``meta["partial"]`` and — optional —
``meta["plot_data"]``: per non-close result, a small summary of its error array made by
:func:`normconf.report.plots.plot_data` and keyed by :func:`normconf.report.plots.plot_key` (see
docs/reports.md).

Test hook: ``NORMCONF_TEST_PAUSE_WRITE=S`` makes :func:`write_reports` sleep S seconds after each
staged file, ``NORMCONF_TEST_PAUSE_WRITE=swap:S`` after each rename of the swap, so that a test can
kill the harness at a known point (tests/test_reliability_reports.py).  Nothing else reads it.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported only when reports are written (keeps `normconf --help` fast)
    import pandas as pd

#: the files of a report set, in the order :func:`write_reports` returns them
SET_FILES = ("results.csv", "results.json", "index.html")
#: the order of the renames of the swap: the page first, the data after it, results.json last
SWAP_ORDER = ("index.html", "results.csv", "results.json")
#: the manifest, renamed into the folder after the set: generation, size and SHA-256 of each file
MANIFEST = ".normconf-set.json"
#: staging folders are named ``.normconf-new-<pid>-<8 hex>``; nothing else is ever removed as one
STAGING_PREFIX = ".normconf-new-"
_STAGING_RE = re.compile(r"^\.normconf-new-(\d+)-([0-9a-f]{8})$")
#: temporary files of :func:`normconf.results.atomic_write_text` for the set's names (older versions
#: wrote them straight into the folder; a killed run could leave one behind)
_TEMP_RE = re.compile(r"^\.(results\.csv|results\.json|index\.html)\.[a-z0-9_]{8}\.tmp$")
#: a staging folder or temporary file of a process that is still alive is left alone this long
STALE_AFTER_S = 600.0
#: the lock file inside ``--out`` (created and removed by :class:`OutLock`)
LOCK_NAME = ".normconf.lock"
#: ``normconf run`` refuses an ``--out`` whose filesystem has less free space than this
MIN_FREE_BYTES = 256 * 1024
#: the pre-run estimate of the reports' size: per case × backend pair (several rows, the page's share)
BYTES_PER_PAIR = 8 * 1024
PAUSE_ENV = "NORMCONF_TEST_PAUSE_WRITE"


class ReportWriteError(OSError):
    """The report set could not be written; ``unchanged`` says whether the previous set is intact."""

    def __init__(self, folder: str | os.PathLike[str], cause: OSError, unchanged: bool = True):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.folder = Path(folder)
        self.cause = cause
        self.unchanged = unchanged

    @property
    def message(self) -> str:
        tail = (
            "the previous reports are unchanged"
            if self.unchanged
            else "the new set is staged in it but not all of it is in place; the next run into it completes it"
        )
        return f"could not write the reports to {self.folder}: {self.strerror}; {tail}"

    def __str__(self) -> str:
        return self.message


def _pause(phase: str) -> None:
    value = os.environ.get(PAUSE_ENV, "")
    if not value:
        return
    want, _, seconds = value.rpartition(":")
    if (want or "stage") == phase:
        time.sleep(float(seconds))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers (a failed earlier call in this process)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return 0.0


def _leftover_stages(folder: Path) -> list[tuple[Path, dict | None]]:
    """Staging folders of writers that are gone, with their manifest (None: never committed)."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = _STAGING_RE.match(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if _alive(int(m.group(1))) and _age(path) < STALE_AFTER_S:
            continue  # another process is writing it right now
        manifest = None
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
                manifest = None
        except (OSError, ValueError):
            manifest = None
        found.append((path, manifest))
    return found


def _written_ns(manifest: dict | None) -> int:
    try:
        return int((manifest or {}).get("written_ns", 0))
    except (TypeError, ValueError):
        return 0


def _current_manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _swap(folder: Path, stage: Path, manifest: dict) -> None:
    """Rename a committed set from ``stage`` into ``folder`` (idempotent: a rerun completes it)."""
    names = [n for n in SWAP_ORDER if n in manifest["files"]]
    for name in names:
        if (stage / name).exists():
            os.replace(stage / name, folder / name)
            _pause("swap")
    for name in SET_FILES:
        if name not in manifest["files"]:
            try:
                (folder / name).unlink()  # a file of another run: the folder must not mix two sets
            except FileNotFoundError:
                pass
    if (stage / MANIFEST).exists():
        os.replace(stage / MANIFEST, folder / MANIFEST)
    _fsync_dir(folder)
    shutil.rmtree(stage, ignore_errors=True)


def _remove_stale_temps(folder: Path, any_age: bool = False) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if _TEMP_RE.match(entry.name) and entry.is_file(follow_symlinks=False):
            path = Path(entry.path)
            if any_age or _age(path) >= STALE_AFTER_S:
                try:
                    path.unlink()
                except OSError:
                    pass


def recover_reports(folder: str | os.PathLike[str]) -> None:
    """Finish or remove what killed writers left in ``folder``.

    A committed staging folder (it holds a manifest) is rolled forward — the rest of its set is
    renamed in — unless ``folder`` already holds a newer set; an uncommitted one is removed.  Only
    folders named like :data:`STAGING_PREFIX` of processes that are gone are touched, oldest first.
    """
    folder = Path(folder)
    current = _written_ns(_current_manifest(folder))
    for stage, manifest in sorted(_leftover_stages(folder), key=lambda sm: _written_ns(sm[1])):
        if manifest is not None and _written_ns(manifest) > current:
            _swap(folder, stage, manifest)
            current = _written_ns(manifest)
        else:
            shutil.rmtree(stage, ignore_errors=True)
    _remove_stale_temps(folder)


def clear_reports(folder: str | os.PathLike[str]) -> None:
    """Remove the report set normconf wrote in ``folder`` (and its leftovers), and ``folder`` if then empty.

    Used for the stale ``<out>/partial/`` after a complete run: a user's own files there are kept.
    """
    folder = Path(folder)
    for stage, _ in _leftover_stages(folder):
        shutil.rmtree(stage, ignore_errors=True)
    for name in ("results.json", "results.csv", "index.html", MANIFEST):
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass
    _remove_stale_temps(folder, any_age=True)
    try:
        folder.rmdir()  # only if nothing else is left in it
    except OSError:
        pass


def verify_reports(folder: str | os.PathLike[str]) -> list[str]:
    """Problems with the set in ``folder`` ([] when its files are exactly the set its manifest names).

    A reader that needs csv, json and page from one run reads the files, then calls this (or
    compares the SHA-256 itself) and reads again when it reports a problem: the set was being swapped.
    """
    folder = Path(folder)
    manifest = _current_manifest(folder)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return [f"{folder / MANIFEST}: missing or unreadable (no report, or one written by an older normconf)"]
    gen = manifest.get("generation", "?")
    problems = []
    for name in SET_FILES:
        entry = manifest["files"].get(name)
        path = folder / name
        if entry is None:
            if path.exists():
                problems.append(f"{name}: not part of the set named by {MANIFEST} (generation {gen})")
            continue
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            problems.append(f"{name}: {e.strerror or e} (the set of generation {gen} names it)")
            continue
        if digest != entry.get("sha256"):
            problems.append(f"{name}: differs from the set named by {MANIFEST} (generation {gen})")
    return problems


def prepare() -> threading.Thread:
    """Start importing, in a daemon thread, what writing the reports needs (the page's modules and
    matplotlib for the heatmap; a missing one is left to the page to report).  ``normconf run``
    calls it when its last work has started, on the core the run no longer uses, and joins the
    thread before it writes (no import then runs in two threads at once)."""

    def imports() -> None:
        for name in ("normconf.report.html", "matplotlib.figure", "matplotlib.backends.backend_svg"):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - not installed or broken: the page says so itself
                pass

    th = threading.Thread(target=imports, name="normconf-report-imports", daemon=True)
    th.start()
    return th


def write_reports(df: "pd.DataFrame", meta: dict[str, Any], out_dir: str | Path, html: bool = True) -> list[Path]:
    """Write every report file for ``df`` into ``out_dir`` as one set; return the paths written.

    Raises :class:`ReportWriteError` when the set cannot be written (nothing in ``out_dir`` changed
    unless its ``unchanged`` is False).
    """
    from normconf.results import atomic_write_text, write_csv, write_json

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        recover_reports(out)
        stage = out / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        os.mkdir(stage)
    except OSError as e:
        raise ReportWriteError(out, e) from e
    html_error: Exception | None = None

    def write_data() -> None:
        write_csv(df, stage / "results.csv")
        _pause("stage")
        write_json(df, stage / "results.json", meta)
        _pause("stage")

    from normconf.report import forked

    child = forked.start(write_data, "results.csv and results.json") if html else None
    try:
        if child is None:
            write_data()
        if html:
            from normconf.report.html import write_html

            try:
                write_html(df, meta, stage / "index.html")
            except OSError:
                raise
            except Exception as e:  # a rendering bug: keep the data, drop the page, re-raise below
                html_error = e
            else:
                _pause("stage")
        if child is not None:
            child.join()  # reaped even where it raises (then _discard has nothing to end)
        names = [n for n in SET_FILES if (stage / n).exists()]
        files = {}
        for name in names:
            data = (stage / name).read_bytes()
            files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        manifest = {
            "normconf_report_set": 1,
            "generation": stage.name[len(STAGING_PREFIX) :],
            "written_ns": time.time_ns(),
            "files": files,
        }
        atomic_write_text(stage / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")  # the commit
    except OSError as e:
        _discard(stage, child)
        raise ReportWriteError(out, e) from e
    except BaseException:
        _discard(stage, child)
        raise
    try:
        _swap(out, stage, manifest)
    except OSError as e:
        try:  # once more: a transient error must not leave the folder half-swapped
            _swap(out, stage, manifest)
        except OSError:
            raise ReportWriteError(out, e, unchanged=False) from e
    if html_error is not None:
        raise html_error
    return [out / n for n in names]


def _discard(stage: Path, child) -> None:
    """Remove a staging folder that will not be committed, after ending the child still writing into it."""
    if child is not None:
        child.kill()
    shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------------------
# the lock on --out


class OutLocked(Exception):
    """Another process holds the lock on the folder (``pid``: its process id, None if unknown)."""

    def __init__(self, folder: Path, pid: int | None):
        super().__init__(f"{folder} is locked by pid {pid}")
        self.folder = folder
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except (OSError, ValueError):
        return None


class OutLock:
    """An exclusive ``flock`` on ``--out``, held from before the run until the reports are written.

    Inside an existing folder the lock file is ``DIR/.normconf.lock``.  While ``DIR`` does not exist
    yet (it is created only when the reports are written) the lock file is
    ``.normconf-<hash of DIR's real path>.lock`` in its nearest existing ancestor; a run that finds
    ``DIR`` existing checks that file too.  Lock files hold the holder's pid (named in the other
    run's message) and are removed on release; a file left by a killed run is simply reused.
    Where ``flock`` is not supported the lock is skipped and :attr:`warning` says so.
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.key = os.path.realpath(self.folder)
        self.outer_name = f".normconf-{hashlib.sha1(self.key.encode()).hexdigest()[:16]}.lock"
        self.inner: tuple[int, Path] | None = None
        self.outer: tuple[int, Path] | None = None
        self.warning = ""
        self.enabled = True

    # -- primitives
    @staticmethod
    def _flock(fd: int) -> bool:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _take(self, path: Path, create: bool = True) -> int:
        """Lock ``path`` (its current inode) and write our pid into it; OutLocked when held."""
        flags = os.O_RDWR | (os.O_CREAT if create else 0) | getattr(os, "O_CLOEXEC", 0)
        while True:
            fd = os.open(path, flags, 0o666)
            try:
                if not self._flock(fd):
                    raise OutLocked(self.folder, _read_pid(fd))
                try:
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)  # released and removed between our open and our lock: take the new one
            if not create:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for the other run's message
        return fd

    @staticmethod
    def _drop(held: tuple[int, Path]) -> None:
        fd, path = held
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.unlink(path)  # while still holding it: a waiting opener sees the inode change
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass

    def _unsupported(self, e: OSError) -> bool:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            self.enabled = False
            self.warning = f"cannot lock {self.folder} ({e.strerror}); running without the lock"
            return True
        return False

    # -- the protocol
    def acquire(self) -> "OutLock":
        """Take the lock before the run; OutLocked if another run holds it, OSError if not writable."""
        try:
            import fcntl  # noqa: F401
        except ImportError:
            self.enabled = False
            self.warning = "file locking is not available on this platform; running without the lock"
            return self
        try:
            if self.folder.is_dir():
                self.inner = (self._take(self.folder / LOCK_NAME), self.folder / LOCK_NAME)
                for parent in Path(self.key).parents:  # a run that started before the folder existed
                    candidate = parent / self.outer_name
                    if not candidate.exists():
                        continue
                    try:
                        fd = self._take(candidate, create=False)
                    except FileNotFoundError:
                        continue
                    except OutLocked:
                        self.release()
                        raise
                    self._drop((fd, candidate))  # a killed run's: stale
            else:
                ancestor = self.folder.absolute().parent
                while not ancestor.exists():
                    ancestor = ancestor.parent
                path = Path(os.path.realpath(ancestor)) / self.outer_name
                self.outer = (self._take(path), path)
        except OSError as e:
            self.release()
            if self._unsupported(e):
                return self
            raise
        return self

    def enter_folder(self, timeout: float = 10.0) -> None:
        """Create the folder (if needed) and hold its inner lock too, right before the reports are written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.enabled or self.inner is not None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.inner = (self._take(self.folder / LOCK_NAME), self.folder / LOCK_NAME)
                return
            except OutLocked:  # another run saw the folder appear and checks our outer lock: it gives up
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            except OSError as e:
                if self._unsupported(e):
                    return
                raise

    def release(self) -> None:
        for attr in ("inner", "outer"):
            held = getattr(self, attr, None)
            if held is not None:
                setattr(self, attr, None)
                self._drop(held)

    def __del__(self) -> None:  # an exception between the checks and the reports: freed with the args
        try:
            self.release()
        except Exception:
            pass


def estimated_report_bytes(pairs: int) -> int:
    """What ``normconf run`` wants free on ``--out``'s filesystem before a run of ``pairs`` pairs."""
    return MIN_FREE_BYTES + BYTES_PER_PAIR * max(0, pairs)
