"""Backend registry: built-in adapter modules, ``normconf.adapters`` entry points, and ``module:Name``.

Every module in this package that defines ``ADAPTERS`` (a list of
:class:`~harness.adapters.base.Adapter` subclasses) is picked up, so a new
built-in backend is one file.  Third-party adapters register an entry point in
the ``normconf.adapters`` group (value ``module:ClassOrListName``) or are named
on the command line with ``--adapter module:Name``.  Nothing here imports a
framework: adapter modules import theirs inside ``run``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from importlib.metadata import entry_points

from harness.adapters.base import Adapter, Observed, Unsupported

__all__ = ["Adapter", "Observed", "Unsupported", "all_adapters", "get_adapter", "load_spec", "AdapterSpecError"]


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
    """Adapter classes named by ``module:Name`` (a class or a list of classes)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise AdapterSpecError(f"--adapter {spec!r}: expected module:Name")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # the user's module failed to import
        raise AdapterSpecError(f"--adapter {spec!r}: cannot import {mod_name}: {type(e).__name__}: {e}") from None
    if not hasattr(mod, attr):
        raise AdapterSpecError(f"--adapter {spec!r}: module {mod_name} has no attribute {attr!r}")
    return _as_classes(getattr(mod, attr), f"--adapter {spec}")


@lru_cache(maxsize=None)
def _builtin() -> tuple[type[Adapter], ...]:
    found: list[type[Adapter]] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(mod, "ADAPTERS", []))
    return tuple(found)


def _entry_point_adapters() -> list[type[Adapter]]:
    found: list[type[Adapter]] = []
    for ep in entry_points(group="normconf.adapters"):
        try:
            found.extend(_as_classes(ep.load(), f"entry point {ep.name}"))
        except AdapterSpecError:
            raise
        except Exception as e:
            raise AdapterSpecError(f"entry point {ep.name} ({ep.value}): {type(e).__name__}: {e}") from None
    return found


def _native(paths: tuple[str, ...]) -> list[type[Adapter]]:
    if not paths:
        return []
    from harness.adapters.native import native_adapter_class

    return [native_adapter_class(p) for p in paths]


def all_adapters(extra_specs: tuple[str, ...] = (), native_paths: tuple[str, ...] = ()) -> dict[str, type[Adapter]]:
    """Every known adapter class by id: built-ins, entry points, ``extra_specs``, native libraries."""
    out: dict[str, type[Adapter]] = {}
    extra = [c for s in extra_specs for c in load_spec(s)]
    for cls in (*_builtin(), *_entry_point_adapters(), *extra, *_native(tuple(native_paths))):
        out[cls.id] = cls
    return out


def get_adapter(backend_id: str, extra_specs: tuple[str, ...] = (), native_paths: tuple[str, ...] = ()) -> Adapter:
    adapters = all_adapters(extra_specs, native_paths)
    if backend_id not in adapters:
        raise AdapterSpecError(f"unknown backend {backend_id!r} (known: {', '.join(sorted(adapters))})")
    return adapters[backend_id]()
