"""The environment every worker process starts with: its thread counts, its malloc settings and its
compilation cache; and which backends share a worker process (:func:`worker_groups`).

``$NORMCONF_WORKER_THREADS`` (default 1) sets the threads of every framework a worker may load;
``$NORMCONF_CACHE_DIR`` (default ``$XDG_CACHE_HOME/normconf`` or ``~/.cache/normconf``; ``off``)
where workers keep compiled programs between runs.  A worker group's own ``worker_env`` is applied
after these (:class:`normconf.worker_handle.WorkerHandle`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

#: ``$NORMCONF_WORKER_THREADS``: the threads each worker's frameworks may use (default 1).  One
#: thread per worker: results (a reduction's order) do not depend on the machine's core count,
#: no framework spin-waits on a core another worker needs, and ``-j N`` is the parallelism.
WORKER_THREADS_VAR = "NORMCONF_WORKER_THREADS"


def thread_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Thread-count settings every worker starts with (a group's ``worker_env`` may set its own):
    OpenMP (torch, OpenCV), MKL, OpenBLAS (NumPy), TensorFlow and XLA (JAX), no OpenMP spin-wait."""
    environ = os.environ if environ is None else environ
    n = environ.get(WORKER_THREADS_VAR, "1").strip() or "1"
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"{WORKER_THREADS_VAR}={n!r}: expected a positive integer")
    xla = environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in xla:
        eigen = "true" if int(n) > 1 else "false"
        xla = f"{xla} --xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={n}".strip()
    return {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "OMP_WAIT_POLICY": "PASSIVE",
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
        "XLA_FLAGS": xla,
    }


#: glibc malloc settings of every worker (``GLIBC_TUNABLES``): blocks below 256 MiB come from the
#: heap, and up to 256 MiB freed at its top stay there for the next case.  glibc's default serves a
#: block above 32 MiB (a 4 M-element case's float64 expected values, at most twice the size of its
#: input) from a fresh ``mmap`` that is unmapped when freed, so every such case pays a page fault
#: and the kernel's zeroing for every page it writes (3-5 ms of the reference's 8-9 ms on a
#: 6.4 M-element case here: docs/performance.md).  Speed only: no value a framework or normconf
#: computes depends on where its memory comes from; a glibc that does not know a tunable, or caps the
#: threshold at 32 MiB (HEAP_MAX_SIZE / 2 in older versions), ignores it.
MALLOC_TUNABLES = {"glibc.malloc.mmap_threshold": 256 << 20, "glibc.malloc.trim_threshold": 256 << 20}


def malloc_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``GLIBC_TUNABLES`` with :data:`MALLOC_TUNABLES` added to the caller's own (a tunable the caller
    sets keeps the caller's value)."""
    environ = os.environ if environ is None else environ
    parts = [p for p in environ.get("GLIBC_TUNABLES", "").split(":") if p]
    have = {p.split("=", 1)[0] for p in parts}
    parts += [f"{k}={v}" for k, v in MALLOC_TUNABLES.items() if k not in have]
    return {"GLIBC_TUNABLES": ":".join(parts)}


#: ``$NORMCONF_CACHE_DIR``: where workers keep compiled programs between runs (``off``: nowhere)
CACHE_DIR_VAR = "NORMCONF_CACHE_DIR"


def cache_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The run's cache folder: ``$NORMCONF_CACHE_DIR``, else ``$XDG_CACHE_HOME/normconf``, else
    ``~/.cache/normconf``; ``None`` when ``$NORMCONF_CACHE_DIR`` is ``off``, ``0`` or ``none``."""
    environ = os.environ if environ is None else environ
    value = environ.get(CACHE_DIR_VAR, "").strip()
    if value.lower() in ("off", "0", "none"):
        return None
    if value:
        return Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "normconf"


def cache_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Settings that let workers reuse compiled programs across runs: JAX's persistent compilation
    cache (every XLA program, however small; the cache key holds the JAX/XLA versions, the flags and
    the device, and a hit loads the very executable a compile would produce, so results are
    identical; checked by tests/test_worker_judging.py).  A user's own ``JAX_COMPILATION_CACHE_DIR``
    is kept."""
    environ = os.environ if environ is None else environ
    folder = cache_dir(environ)
    if folder is None or "JAX_COMPILATION_CACHE_DIR" in environ:
        return {}
    try:
        (folder / "jax").mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable home: every program is compiled, as without a cache
        return {}
    return {
        "JAX_COMPILATION_CACHE_DIR": str(folder / "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def worker_environment(group_env: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker of a group starts with: ``environ`` (default this process's), then
    :func:`thread_env`, :func:`malloc_env`, :func:`cache_env`, then the group's own ``group_env``."""
    base = dict(os.environ if environ is None else environ)
    for part in (thread_env(base), malloc_env(base), cache_env(base), group_env):
        base.update(part)
    return base


def worker_groups(adapters: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """Each backend's worker process: ``{backend: (group, environment)}`` for the adapter classes
    ``adapters`` (by backend id).

    Adapters that name one ``worker`` share a process, whose environment is the union of their
    ``worker_env``: a variable one of them sets is set for all, so adapters that name one worker must not
    depend on each other's variables (the built-in ones read none of them:
    harness/adapters/keras_backends.py, tf_keras_backends.py say why).  Where two of
    them set one variable to different values they cannot share one: the later ones, in backend-id
    order, go to a second process (``worker#2``), and so on, so that no adapter ever runs under another's
    value of a variable it sets itself.  Decided from every adapter the runner knows, not from the
    backends a run selects, so a backend's environment never depends on which others run beside it."""
    parts: dict[str, list[tuple[dict[str, str], list[str]]]] = {}
    for backend in sorted(adapters):
        cls = adapters[backend]
        env = {str(k): str(v) for k, v in dict(getattr(cls, "worker_env", {}) or {}).items()}
        slots = parts.setdefault(str(cls.worker), [])
        for union, members in slots:
            if all(union.get(k, v) == v for k, v in env.items()):
                union.update(env)
                members.append(backend)
                break
        else:
            slots.append((dict(env), [backend]))
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for worker, slots in parts.items():
        for i, (union, members) in enumerate(slots, start=1):
            name = worker if i == 1 else f"{worker}#{i}"
            for backend in members:
                out[backend] = (name, dict(sorted(union.items())))
    return out
