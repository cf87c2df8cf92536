"""Backend registry: built-in adapter modules, ``normconf.adapters`` entry points, and ``module:Name``.

Every module in this package that defines ``ADAPTERS`` (a list of
:class:`~normconf.adapters.base.Adapter` subclasses) is picked up, so a new
built-in backend is one file.  Third-party adapters register an entry point in
the ``normconf.adapters`` group (value ``module:ClassOrListName``) or are named
on the command line with ``--adapter module:Name``.  Nothing here imports a
framework: adapter modules import theirs inside ``run``.

Where the code runs (issue 17): the built-in adapter modules and the entry points are imported
in the harness; the ``--adapter`` modules never are.  :func:`all_adapters` (the harness's view)
asks a short-lived *describe worker* (``python -P -m normconf.worker --describe``, bounded by
:func:`normconf.isolation.startup_timeout`) to import them and report each class's metadata, and
returns :class:`AdapterProxy` classes built from it: they carry everything the harness reads
(id, framework, worker group and env, description, declared dtypes/layouts/modes/ranks,
conventions) and cannot run.  Worker processes use :func:`load_adapters` / :func:`get_adapter`,
which import the real classes.  ``--native`` classes are built in the harness: they load nothing
until they run in their worker.  No adapter may take a built-in backend's id, and two different
adapters may not share one (:class:`AdapterSpecError`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pkgutil
from functools import lru_cache
from importlib.metadata import entry_points
from typing import ClassVar

from normconf.adapters.base import Adapter, Observed, Unsupported

__all__ = [
    "Adapter",
    "AdapterProxy",
    "Observed",
    "Unsupported",
    "all_adapters",
    "get_adapter",
    "load_adapters",
    "load_spec",
    "AdapterSpecError",
]


class AdapterSpecError(Exception):
    """An adapter named by the user cannot be loaded."""


def _as_classes(obj, where: str) -> list[type[Adapter]]:
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    out = []
    for it in items:
        if isinstance(it, type) and issubclass(it, Adapter) and it.id:
            out.append(it)
        else:
            raise AdapterSpecError(f"{where}: {it!r} is not an Adapter subclass with an id")
    return out


def load_spec(spec: str) -> list[type[Adapter]]:
    """Adapter classes named by ``module:Name`` (a class or a list of classes).  Imports the module:
    call it in a worker process only."""
    if is_file_spec(spec):
        mod_name, _, attr = spec.rpartition(":")
        if not attr:
            raise AdapterSpecError(f"--adapter {spec!r}: expected path/to/file.py:Name")
        load = _import_file
    else:
        mod_name, sep, attr = spec.partition(":")
        if not sep or not mod_name or not attr:
            raise AdapterSpecError(f"--adapter {spec!r}: expected module:Name or path/to/file.py:Name")
        load = importlib.import_module
    try:
        mod = load(mod_name)
    except Exception as e:  # the user's module failed to import
        raise AdapterSpecError(f"--adapter {spec!r}: cannot import {mod_name}: {type(e).__name__}: {e}") from None
    if not hasattr(mod, attr):
        raise AdapterSpecError(f"--adapter {spec!r}: module {mod_name} has no attribute {attr!r}")
    return _as_classes(getattr(mod, attr), f"--adapter {spec}")


def is_file_spec(spec: str) -> bool:
    """``path/to/file.py:Name`` (a file path, not a module name)."""
    where = spec.rpartition(":")[0]
    return where.endswith(".py") or "/" in where or os.sep in where


def _import_file(path: str):
    """The module of a ``.py`` file (relative to the current folder), imported once per process under a
    name derived from the file's path (``normconf_file_<stem>_<hash>``), so two files may share a stem."""
    import hashlib
    import importlib.util
    import sys

    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise FileNotFoundError(f"no such file {full}")
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(full))[0])
    name = f"normconf_file_{stem}_{hashlib.sha1(full.encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise ImportError(f"{full} is not a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


@lru_cache(maxsize=None)
def _builtin() -> tuple[type[Adapter], ...]:
    found: list[type[Adapter]] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(mod, "ADAPTERS", []))
    return tuple(found)


def _entry_point_groups() -> list[tuple[str, list[type[Adapter]]]]:
    found: list[tuple[str, list[type[Adapter]]]] = []
    for ep in entry_points(group="normconf.adapters"):
        where = f"entry point {ep.name}"
        try:
            found.append((where, _as_classes(ep.load(), where)))
        except AdapterSpecError:
            raise
        except Exception as e:
            raise AdapterSpecError(f"entry point {ep.name} ({ep.value}): {type(e).__name__}: {e}") from None
    return found


def _entry_point_adapters() -> list[type[Adapter]]:
    return [c for _, classes in _entry_point_groups() for c in classes]


def _native(paths: tuple[str, ...]) -> list[type[Adapter]]:
    if not paths:
        return []
    from normconf.adapters.native import native_adapter_class

    return [native_adapter_class(p) for p in paths]


def source_of(cls: type) -> str:
    """What a class is, for messages and identity: ``module.Qualname`` (``--native PATH`` for a user library)."""
    src = cls.__dict__.get("source") if isinstance(cls, type) and issubclass(cls, AdapterProxy) else None
    if src:
        return src
    library = getattr(cls, "library", "")
    if library:
        return f"--native {library}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _merge(groups: list[tuple[str, list[type[Adapter]]]]) -> dict[str, type[Adapter]]:
    """Built-ins, then ``groups`` ((where, classes) in order), by id.  An adapter with a built-in's id, or
    two different adapters with one id, raise :class:`AdapterSpecError` naming both."""
    out: dict[str, type[Adapter]] = {}
    where_of: dict[str, str] = {}
    for cls in _builtin():
        out[cls.id] = cls
        where_of[cls.id] = "built-in"
    for where, classes in groups:
        for cls in classes:
            prev = out.get(cls.id)
            if prev is None:
                out[cls.id] = cls
                where_of[cls.id] = where
                continue
            if prev is cls or source_of(prev) == source_of(cls):
                continue  # the same class named twice
            if where_of[cls.id] == "built-in":
                raise AdapterSpecError(
                    f"{where}: backend id {cls.id!r} of {source_of(cls)} is the id of the built-in backend "
                    f"{cls.id!r} ({source_of(prev)}); an adapter cannot replace a built-in backend: give it another id"
                )
            hint = (
                "rename one of the files (a library's id is native:<its file name>)"
                if source_of(cls).startswith("--native") and source_of(prev).startswith("--native")
                else "give one of them another id"
            )
            raise AdapterSpecError(
                f"{where}: backend id {cls.id!r} of {source_of(cls)} is already the id of {source_of(prev)} "
                f"({where_of[cls.id]}); {hint}"
            )
    return out


def load_adapters(extra_specs: tuple[str, ...] = (), native_paths: tuple[str, ...] = ()) -> dict[str, type[Adapter]]:
    """Every adapter class by id, the real ones: imports the ``--adapter`` modules (worker processes only)."""
    groups = _entry_point_groups()
    groups += [(f"--adapter {s}", load_spec(s)) for s in extra_specs]
    groups += [(f"--native {c.library}", [c]) for c in _native(tuple(native_paths))]
    return _merge(groups)


def get_adapter(backend_id: str, extra_specs: tuple[str, ...] = (), native_paths: tuple[str, ...] = ()) -> Adapter:
    """An instance of the real adapter class ``backend_id`` (imports its module: worker side)."""
    adapters = load_adapters(extra_specs, native_paths)
    if backend_id not in adapters:
        raise AdapterSpecError(f"unknown backend {backend_id!r} (known: {', '.join(sorted(adapters))})")
    return adapters[backend_id]()


# -- the harness's view: metadata from a describe worker, proxy classes ------------------------------

#: the class attributes a proxy carries (everything the harness reads from an adapter class)
PROXY_FIELDS = (
    "id",
    "framework",
    "worker",
    "worker_env",
    "cpu_estimate",
    "description",
    "dtypes",
    "layouts",
    "modes",
    "ranks",
    "conventions",
    "ops",
    "op_dtypes",
)


class AdapterProxy(Adapter):
    """Harness-side stand-in for an ``--adapter`` class imported only in workers: its metadata, no code.

    ``source`` is the real class (``module.Qualname``), ``spec`` the ``--adapter`` value that named it.
    """

    source: ClassVar[str] = ""
    spec: ClassVar[str] = ""

    def _refuse(self, what: str):
        raise RuntimeError(f"{self.id}: {source_of(type(self))} is a proxy in the harness; {what} runs in its worker")

    def available(self) -> str | None:
        self._refuse("available()")

    def version(self) -> str:
        self._refuse("version()")

    def run(self, case, inputs):
        self._refuse("run()")


def metadata(cls: type[Adapter], spec: str) -> dict:
    """Worker side: ``cls``'s :data:`PROXY_FIELDS` as plain JSON data (raises AdapterSpecError if one is malformed)."""
    where = f"--adapter {spec}: {cls.__module__}.{cls.__qualname__}"
    try:
        conventions = []
        for c in tuple(getattr(cls, "conventions", ()) or ()):
            conventions.append(
                {
                    "knob": str(c.knob),
                    "value": str(c.value),
                    "reason": str(c.reason),
                    "evidence": str(c.evidence),
                    "applies_to": [str(x) for x in c.applies_to],
                    "outputs": [str(x) for x in c.outputs],
                    "op": str(getattr(c, "op", "batch_norm")),
                    "modes": [str(x) for x in getattr(c, "modes", ())],
                }
            )
        return {
            "id": str(cls.id),
            "framework": str(cls.framework),
            "worker": str(cls.worker),
            "worker_env": {str(k): str(v) for k, v in dict(cls.worker_env).items()},
            "cpu_estimate": _estimate(cls.cpu_estimate),
            "description": str(cls.description),
            "dtypes": [str(x) for x in cls.dtypes],
            "layouts": [str(x) for x in cls.layouts],
            "modes": [str(x) for x in cls.modes],
            "ranks": [int(x) for x in cls.ranks],
            "conventions": conventions,
            "ops": [str(x) for x in getattr(cls, "ops", ("batch_norm",))],
            "op_dtypes": {str(k): [str(x) for x in v] for k, v in dict(getattr(cls, "op_dtypes", {}) or {}).items()},
            "name": cls.__name__,
            "source": f"{cls.__module__}.{cls.__qualname__}",
            "spec": spec,
        }
    except Exception as e:
        raise AdapterSpecError(f"{where}: malformed class attributes: {type(e).__name__}: {e}") from None


def _estimate(value: object) -> list[float]:
    """``cpu_estimate`` as two finite numbers ≥ 0 (raises ValueError otherwise)."""
    start, per_case = (float(x) for x in value)  # type: ignore[attr-defined]
    if not (math.isfinite(start) and math.isfinite(per_case) and start >= 0 and per_case >= 0):
        raise ValueError(f"cpu_estimate must be two finite numbers >= 0, got {value!r}")
    return [start, per_case]


def cpu_estimate(cls: type[Adapter]) -> tuple[float, float]:
    """``cls.cpu_estimate`` (start seconds, milliseconds per case), the default where it is malformed
    (it orders the schedule, nothing else: an ``--adapter`` class with a malformed one is refused by
    :func:`metadata`)."""
    try:
        start, per_case = _estimate(cls.cpu_estimate)
    except (TypeError, ValueError):
        start, per_case = Adapter.cpu_estimate
    return start, per_case


def describe_loaded(loaded: list[tuple[str, list[type[Adapter]]]]) -> list[dict]:
    """Worker side: the metadata of the classes of each ``(spec, classes)``, after the id checks."""
    _merge(_entry_point_groups() + [(f"--adapter {s}", classes) for s, classes in loaded])
    seen: set[str] = set()
    out = []
    for spec, classes in loaded:
        for cls in classes:
            m = metadata(cls, spec)
            if m["source"] not in seen:
                seen.add(m["source"])
                out.append(m)
    return out


def _proxy(meta: dict) -> type[AdapterProxy]:
    from normconf.profiles import Convention

    conventions = tuple(
        Convention(
            c["knob"],
            c["value"],
            c["reason"],
            c["evidence"],
            tuple(c["applies_to"]),
            tuple(c["outputs"]),
            c.get("op", "batch_norm"),
            tuple(c.get("modes", ())),
        )
        for c in meta["conventions"]
    )
    attrs = {
        "id": meta["id"],
        "framework": meta["framework"],
        "worker": meta["worker"],
        "worker_env": dict(meta["worker_env"]),
        "cpu_estimate": tuple(meta.get("cpu_estimate", Adapter.cpu_estimate)),
        "description": meta["description"],
        "dtypes": tuple(meta["dtypes"]),
        "layouts": tuple(meta["layouts"]),
        "modes": tuple(meta["modes"]),
        "ranks": tuple(meta["ranks"]),
        "conventions": conventions,
        "ops": tuple(meta.get("ops", ("batch_norm",))),
        "op_dtypes": {k: tuple(v) for k, v in meta.get("op_dtypes", {}).items()},
        "source": meta["source"],
        "spec": meta["spec"],
        "__module__": __name__,
        "__doc__": f"proxy of {meta['source']} (--adapter {meta['spec']})",
    }
    name = meta["name"] if str(meta["name"]).isidentifier() else "Adapter"
    return type(name, (AdapterProxy,), attrs)


def _describe_in_worker(extra_specs: tuple[str, ...]) -> list[dict]:
    """Import the ``--adapter`` modules in a describe worker; their classes' metadata, or AdapterSpecError."""
    import subprocess
    import tempfile

    from normconf import isolation

    token = isolation.new_token()
    timeout = isolation.startup_timeout()
    init = {"extra_specs": list(extra_specs), "pinned": isolation.pinned_modules(extra_specs)}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            isolation.worker_command("--describe"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=isolation.worker_env(dict(os.environ), token),
            start_new_session=True,
        )
        isolation.track(proc, token)
        timed_out = False
        try:
            out, _ = proc.communicate(json.dumps(init).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            isolation.kill_tree(proc.pid, token)
            out, _ = proc.communicate()
        except BaseException:
            isolation.kill_tree(proc.pid, token)
            proc.wait()
            raise
        finally:
            if proc.poll() is None:
                isolation.kill_tree(proc.pid, token)
                proc.wait()
            isolation.kill_tree(None, token)  # whatever the imports started
            isolation.remove_scratch(token)
            isolation.untrack(proc)
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip()[-400:]
    records = []
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    if records and "described" in records[-1]:
        return records[-1]["described"]
    if records and "spec-error" in records[-1]:
        raise AdapterSpecError(records[-1]["spec-error"])
    loading = next((r["loading"] for r in reversed(records) if "loading" in r), None)
    what = (
        f"--adapter {loading!r}: importing {loading.partition(':')[0]}" if loading else "starting the describe worker"
    )
    stderr = f"; worker stderr: {tail}" if tail else ""
    if timed_out:
        raise AdapterSpecError(
            f"{what} in the describe worker: timeout after {timeout:g} s "
            f"(a module must not do long work at import){stderr}"
        )
    rc = proc.returncode
    status = f"signal {isolation.signal_name(rc)}" if rc is not None and rc < 0 else f"exit status {rc}"
    raise AdapterSpecError(
        f"{what} in the describe worker: the worker ended ({status}) before describing the adapters{stderr}"
    )


_DESCRIBED: dict[tuple, list[dict]] = {}


def _described(extra_specs: tuple[str, ...]) -> list[dict]:
    """:func:`_describe_in_worker`, once per process for the same specs, folder and PYTHONPATH."""
    key = (extra_specs, os.getcwd(), os.environ.get("PYTHONPATH", ""))
    if key not in _DESCRIBED:
        _DESCRIBED[key] = _describe_in_worker(extra_specs)
    return _DESCRIBED[key]


def all_adapters(extra_specs: tuple[str, ...] = (), native_paths: tuple[str, ...] = ()) -> dict[str, type[Adapter]]:
    """Every known adapter class by id, as the harness sees them: built-ins, entry points, the
    ``extra_specs`` as :class:`AdapterProxy` classes (their modules are imported in a describe worker,
    never here), native libraries.  Raises :class:`AdapterSpecError`."""
    groups = _entry_point_groups()
    extra = tuple(extra_specs)
    if extra:
        by_spec: dict[str, list[type[Adapter]]] = {}
        for meta in _described(extra):
            by_spec.setdefault(meta["spec"], []).append(_proxy(meta))
        groups += [(f"--adapter {s}", by_spec.get(s, [])) for s in extra]
    groups += [(f"--native {c.library}", [c]) for c in _native(tuple(native_paths))]
    return _merge(groups)


# -- static metadata: what `normconf backends` answers without importing any framework ---------------

_OPENCV = "opencv-python-headless|opencv-python|opencv-contrib-python-headless|opencv-contrib-python"
_TF = "tensorflow|tensorflow-cpu|tensorflow-macos"
_ORT = "onnxruntime|onnxruntime-gpu"
_KERAS_ON = {"keras-torch": "torch", "keras-jax": "jax", "keras-numpy": "numpy", "keras-tf": _TF}
#: the distributions each built-in backend needs, by backend id (``a|b``: either one); the first one's
#: version is the backend's version, the others' follow in parentheses.  Read with importlib.metadata:
#: nothing is imported (``normconf backends``; ``--probe`` asks the workers instead).
BACKEND_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "torch-functional": ("torch",),
    "torch-scratch": ("torch",),
    "flax": ("flax", "jax"),
    "flax-nnx": ("flax", "jax"),
    **{b: ("keras", dist) for b, dist in _KERAS_ON.items()},
    "tf-nn": (_TF,),
    "tf-fused": (_TF,),
    "tf-keras-fused": ("tf_keras", _TF),
    "tf-keras-unfused": ("tf_keras", _TF),
    **{b: (_ORT, "onnx") for b in ("ort", "ort-init", "ort-init-noopt", "ort-opset9", "ort-opset9-init")},
    "onnx-reference": ("onnx",),
    "onnx-reference-opset9": ("onnx",),
    "opencv-dnn": (_OPENCV, "onnx"),
}


def _distribution(alternatives: str) -> tuple[str, str] | None:
    """(name, version) of the first installed distribution of ``a|b|...``, else None (imports nothing)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in alternatives.split("|"):
        try:
            return name, version(name)
        except PackageNotFoundError:
            continue
    return None


def static_info(cls: type[Adapter]) -> tuple[bool | None, str, str]:
    """(available, version, reason) of a backend from metadata alone: its distributions
    (:data:`BACKEND_DISTRIBUTIONS`) installed or not, a native library's file present or not.
    ``available`` is None when nothing is known statically (an entry point's or ``--adapter``
    backend: ``normconf backends --probe`` asks its worker)."""
    if getattr(cls, "library_path", None) is not None and cls.worker.partition(":")[0] == "native":
        reason = cls().available()  # a file check: loads nothing
        return (not reason, "", reason or "")
    needs = BACKEND_DISTRIBUTIONS.get(cls.id)
    if needs is None:
        if not issubclass(cls, AdapterProxy) and cls.available is Adapter.available:
            return True, "", ""  # an entry point's class that needs nothing (the base class's available())
        return None, "", "not known without --probe"
    found = []
    for alternatives in needs:
        got = _distribution(alternatives)
        if got is None:
            first = alternatives.split("|")[0]
            return False, "", f"{first} is not installed: pip install {first}"
        found.append(got)
    version = found[0][1]
    if len(found) > 1:
        version += " (" + ", ".join(f"{n} {v}" for n, v in found[1:]) + ")"
    return True, version, ""
