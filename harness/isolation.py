"""How worker processes are started and ended (issue 17): a clean ``sys.path``, a bounded
start-up, and no process of theirs left behind.

Used by the harness side (:mod:`normconf.runner`, :mod:`normconf.adapters`) and by the worker
(:mod:`normconf.worker`); imports nothing from ``normconf`` (a leaf of the import graph).

``sys.path`` of a worker
    The package root (the folder holding ``harness/`` and ``references/``; in a clone also
    ``tests/``, so ``--adapter tests.plugin_adapters:...`` works), then the entries of the user's
    ``PYTHONPATH`` that are *explicitly* set (made absolute; an empty entry, which Python reads
    as "the current folder", is dropped), then the interpreter's own entries (stdlib,
    site-packages, the user site).  The worker runs as ``python -P -m normconf.worker``: ``-P``
    keeps the current folder off ``sys.path``.  A module in the current folder named by
    ``--adapter module:Name`` is *pinned*: only that module (or package) is importable from the
    current folder, not its neighbours (:func:`pinned_modules`, :func:`install_pins`), so a
    ``numpy.py`` lying there is never imported.

Process trees
    A worker is a child subreaper (:func:`become_subreaper`, Linux), so a child of an adapter that
    calls ``setsid()`` or double-forks stays below it; :func:`kill_tree` kills the worker and every
    descendant (psutil), and also every process carrying the worker's token in its environment
    (``NORMCONF_WORKER_TOKEN``: what a worker that crashed left behind, reparented to init).

Temporary files
    A worker's ``TMPDIR`` (also ``TMP``, ``TEMP``) is a folder of its own,
    ``<the harness's temporary folder>/normconf-worker-<token>`` (:func:`scratch_dir`), removed
    once the worker and everything it started are gone (:func:`end_worker`,
    :func:`remove_scratch`): a framework's files that its exit handlers would delete (TensorFlow
    AutoGraph writes one module per traced function) are deleted even though workers are killed,
    not asked to exit, and after a crash or a timeout.  The folders of a harness that was itself
    killed are removed by the next one (:func:`sweep_stale_scratch`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

#: the folder holding ``harness/`` (and ``references/``; in a clone ``tests/``): first on a worker's path
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
#: how long a worker may take to start, and the describe worker to import the ``--adapter``
#: modules (seconds); ``NORMCONF_STARTUP_TIMEOUT`` overrides it
STARTUP_TIMEOUT = 60.0
#: environment variable naming a worker's token (inherited by everything it starts)
TOKEN_VAR = "NORMCONF_WORKER_TOKEN"


def startup_timeout() -> float:
    """:data:`STARTUP_TIMEOUT`, or ``$NORMCONF_STARTUP_TIMEOUT`` when set to a positive number."""
    raw = os.environ.get("NORMCONF_STARTUP_TIMEOUT", "")
    try:
        v = float(raw)
    except ValueError:
        return STARTUP_TIMEOUT
    return v if v > 0 and v != float("inf") else STARTUP_TIMEOUT


# -- sys.path --------------------------------------------------------------------------------


def worker_pythonpath(explicit: str | None) -> str:
    """The ``PYTHONPATH`` of a worker: the package root, then ``explicit``'s non-empty entries."""
    out: list[str] = [PACKAGE_ROOT]
    for p in (explicit or "").split(os.pathsep):
        if not p:  # an empty entry means the current folder: never implicitly
            continue
        p = os.path.abspath(p)
        if p not in out:
            out.append(p)
    return os.pathsep.join(out)


def worker_command(*args: str) -> list[str]:
    """``python -P -m normconf.worker ARGS``: ``-P``, the current folder is not put on ``sys.path``."""
    return [sys.executable, "-P", "-m", "normconf.worker", *args]


def worker_env(env: dict[str, str], token: str) -> dict[str, str]:
    """``env`` (the harness's environment with the group's ``worker_env``) made a worker's."""
    out = dict(env)
    out["PYTHONPATH"] = worker_pythonpath(env.get("PYTHONPATH"))
    out.setdefault("PYTHONUNBUFFERED", "1")
    out["NORMCONF_HARNESS_PID"] = str(os.getpid())  # the worker exits if it has lost its harness
    out[TOKEN_VAR] = token
    scratch = scratch_dir(token)
    try:
        sweep_stale_scratch()
        scratch.mkdir(mode=0o700, exist_ok=True)
    except OSError:  # an unwritable temporary folder: the worker keeps the harness's
        return out
    for var in ("TMPDIR", "TMP", "TEMP"):
        out[var] = str(scratch)
    return out


def new_token() -> str:
    """``<harness pid>-<16 hex digits>``: names a worker's processes and its scratch folder."""
    return f"{os.getpid()}-{os.urandom(8).hex()}"


#: prefix of a worker's scratch folder in the harness's temporary folder
SCRATCH_PREFIX = "normconf-worker-"


def scratch_dir(token: str) -> Path:
    """The worker's own temporary folder (its ``TMPDIR``)."""
    return Path(tempfile.gettempdir()) / f"{SCRATCH_PREFIX}{token}"


def remove_scratch(token: str | None) -> None:
    """Delete a worker's scratch folder and what is in it (once the worker is gone)."""
    if token:
        shutil.rmtree(scratch_dir(token), ignore_errors=True)


_SWEPT = False
#: a scratch folder is swept only once unchanged this long (seconds): a harness in another pid namespace
#: that shares the temporary folder (a container) looks dead from here while its workers still write
STALE_SCRATCH_AGE = 3600.0


def sweep_stale_scratch() -> None:
    """Once per harness process: remove the scratch folders left by harnesses that no longer run
    (killed before they could clean up), recognised by the harness pid in the token, once they have
    not changed for :data:`STALE_SCRATCH_AGE` seconds."""
    global _SWEPT
    if _SWEPT:
        return
    _SWEPT = True
    try:
        entries = list(Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"))
    except OSError:
        return
    now = time.time()
    for path in entries:
        pid = path.name[len(SCRATCH_PREFIX) :].partition("-")[0]
        try:
            old = now - path.stat().st_mtime >= STALE_SCRATCH_AGE
        except OSError:
            continue
        if old and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _find_in(folder: str, dotted: str):
    """The spec of ``dotted`` found under ``folder`` only (imports nothing), else None."""
    from importlib.machinery import PathFinder

    parts = dotted.split(".")
    spec = PathFinder.find_spec(parts[0], [folder])
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), list(spec.submodule_search_locations))
    return spec


#: top-level names never taken from the current folder, even when named by --adapter
_NEVER_PINNED = frozenset({"normconf"})


def pinned_modules(extra_specs, cwd: str | None = None) -> dict[str, str]:
    """``{top-level name: folder}`` of the ``--adapter module:Name`` modules found in the current
    folder (``importlib.machinery.PathFinder``, nothing imported).  Only those are importable from
    it in a worker: the folder itself is never put on ``sys.path``."""
    cwd = os.path.abspath(cwd or os.getcwd())
    out: dict[str, str] = {}
    for spec in extra_specs:
        mod = str(spec).partition(":")[0].strip()
        if not mod or mod.startswith(".") or not all(p.isidentifier() for p in mod.split(".")):
            continue
        top = mod.split(".")[0]
        if top in out or top in _NEVER_PINNED or top in sys.builtin_module_names or top in sys.stdlib_module_names:
            continue  # a file in the current folder never stands in for the stdlib or normconf itself
        try:
            found = _find_in(cwd, mod)
        except (ImportError, OSError, ValueError):
            found = None
        if found is not None:
            out[top] = cwd
    return out


class PinnedFinder:
    """Meta path finder: the pinned top-level names resolve in their folder only."""

    def __init__(self, pinned: dict[str, str]):
        self.pinned = dict(pinned)

    def find_spec(self, name, path=None, target=None):
        folder = self.pinned.get(name)
        if folder is None:
            return None
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(name, [folder], target)


def install_pins(pinned: dict[str, str]) -> None:
    """Worker side: make the pinned modules importable (before the path finder, after built-ins)."""
    if not pinned:
        return
    from importlib.machinery import PathFinder

    finder = PinnedFinder(pinned)
    at = next((i for i, f in enumerate(sys.meta_path) if f is PathFinder), len(sys.meta_path))
    sys.meta_path.insert(at, finder)


def clean_sys_path() -> None:
    """Worker side: no implicit current folder ('' entries) and the package root first."""
    sys.path[:] = [p for p in sys.path if p != ""]
    if PACKAGE_ROOT not in sys.path:
        sys.path.insert(0, PACKAGE_ROOT)


# -- process trees ----------------------------------------------------------------------------


def become_subreaper() -> bool:
    """Linux: orphaned descendants are reparented to this process, not to init (PR_SET_CHILD_SUBREAPER)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        return False


def _psutil():
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is installed with normconf's test/runtime set
        return None
    return psutil


def _token_processes(psutil, token: str) -> list:
    """Processes of this user whose environment carries ``token`` (whatever their parent now is)."""
    found = []
    me = os.getpid()
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            if p.environ().get(TOKEN_VAR) == token:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def descendants(pid: int) -> list:
    """psutil processes below ``pid`` (recursive); [] when unknown."""
    psutil = _psutil()
    if psutil is None:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.Error, OSError):
        return []


def kill_tree(pid: int | None, token: str | None = None, extra=(), include_root: bool = True) -> None:
    """SIGKILL ``pid`` (if given: it must still be our unreaped child), all its descendants, the
    processes in ``extra`` (psutil objects snapshotted earlier) and every process carrying
    ``token``.  Everything found is stopped first (SIGSTOP), so nothing forks away meanwhile."""
    psutil = _psutil()
    if psutil is None:  # fall back to the process group
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return
    seen: dict[int, object] = {}

    def take(p) -> bool:
        try:
            key = (p.pid, p.create_time())
        except (psutil.Error, OSError):
            return False
        if key in seen:
            return False
        seen[key] = p
        try:
            p.suspend()
        except (psutil.Error, OSError):
            pass
        return True

    root = None
    if pid is not None:
        try:
            root = psutil.Process(pid)
        except (psutil.Error, OSError):
            root = None
    for p in extra:
        take(p)
    for _ in range(20):  # until a pass finds nothing new (all found ones are stopped)
        new = False
        if root is not None:
            if include_root:
                new |= take(root)
            try:
                kids = root.children(recursive=True)
            except (psutil.Error, OSError):
                kids = []
            for p in kids:
                new |= take(p)
        for p in list(seen.values()):
            try:
                for c in p.children(recursive=True):
                    new |= take(c)
            except (psutil.Error, OSError):
                pass
        if token:
            for p in _token_processes(psutil, token):
                new |= take(p)
        if not new:
            break
    procs = list(seen.values())
    for p in procs:
        try:
            p.kill()
        except (psutil.Error, OSError):
            pass
    # our own children are reaped by their Popen; wait briefly for the others to disappear
    deadline = time.monotonic() + 5
    for p in procs:
        if root is not None and p.pid == root.pid:
            continue
        while time.monotonic() < deadline:
            try:
                if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
                    break
            except (psutil.Error, OSError):
                break
            time.sleep(0.02)


def kill_own_descendants() -> None:
    """Worker side, on exit: kill every process below this one (as subreaper it holds the orphans)."""
    psutil = _psutil()
    if psutil is None:
        return
    kids = descendants(os.getpid())
    if kids:
        kill_tree(None, None, extra=kids)


def signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except (ValueError, TypeError):
        return f"signal {-rc}"


# -- every worker this process started, killed at exit -----------------------------------------------

_LIVE: dict[int, tuple[object, str]] = {}
_LIVE_LOCK = threading.Lock()


def track(proc, token: str) -> None:
    """Remember a started worker (``subprocess.Popen``) and its token: :func:`kill_all` ends it at exit."""
    with _LIVE_LOCK:
        _LIVE[id(proc)] = (proc, token)


def untrack(proc) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(id(proc), None)


def end_worker(proc, token: str | None, extra=()) -> None:
    """Kill a worker (``subprocess.Popen``), its descendants, ``extra`` and its token's processes; reap
    it; delete its scratch folder."""
    alive = proc.poll() is None  # once reaped its pid may belong to someone else: then the token only
    kill_tree(proc.pid if alive else None, token, extra=extra)
    if alive:
        try:
            proc.wait(timeout=10)
        except Exception:
            pass
    remove_scratch(token)


@atexit.register
def kill_all() -> None:
    """At the harness's exit: no worker, nor anything a worker started, outlives it."""
    with _LIVE_LOCK:
        live = list(_LIVE.values())
        _LIVE.clear()
    for proc, token in live:
        try:
            end_worker(proc, token)
        except Exception:
            pass
