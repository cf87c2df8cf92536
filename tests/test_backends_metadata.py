"""`normconf backends` answers from package metadata (BACKEND_DISTRIBUTIONS) without importing a
framework; each adapter's own ``available()`` is what a run and ``--probe`` use.  The two must agree:
the table names, for every built-in backend, exactly the framework distributions whose absence makes
the adapter unavailable.  Checked by hiding a distribution's top-level modules from
``importlib.util.find_spec`` (what ``missing()`` asks) and calling ``available()``.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import packages_distributions

import pytest

from normconf.adapters import BACKEND_DISTRIBUTIONS, _builtin, static_info

#: the framework distributions a backend may need (numpy is everyone's base dependency)
FRAMEWORKS = (
    "torch",
    "tensorflow",
    "keras",
    "jax",
    "flax",
    "tf_keras",
    "onnx",
    "onnxruntime",
    "opencv-python-headless",
)


def _modules_of() -> dict[str, set[str]]:
    """distribution (normalised name) -> its top-level import names, from the installed metadata."""
    out: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for d in dists:
            out.setdefault(d.lower().replace("-", "_"), set()).add(module)
    return out


MODULES = _modules_of()
BUILTIN = {cls.id: cls for cls in _builtin() if cls.worker.partition(":")[0] != "native"}


def _installed(alternatives: str) -> str | None:
    return next((a for a in alternatives.split("|") if a.lower().replace("-", "_") in MODULES), None)


def _available_without(cls, hidden_dists: set[str], monkeypatch) -> bool:
    hidden = set().union(*(MODULES[d.lower().replace("-", "_")] for d in hidden_dists)) if hidden_dists else set()
    real = importlib.util.find_spec

    def find_spec(name, package=None):
        return None if name.partition(".")[0] in hidden else real(name, package)

    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", find_spec)
        return cls().available() is None


def test_every_builtin_backend_is_in_the_table_and_nothing_else():
    assert set(BUILTIN) == set(BACKEND_DISTRIBUTIONS)


@pytest.mark.parametrize("backend", sorted(BACKEND_DISTRIBUTIONS))
def test_table_matches_what_the_adapter_checks(backend, monkeypatch):
    cls = BUILTIN[backend]
    needs = [_installed(a) for a in BACKEND_DISTRIBUTIONS[backend]]
    assert all(needs), f"{backend}: {BACKEND_DISTRIBUTIONS[backend]} not all installed in the dev venv"
    assert static_info(cls)[0] is True and _available_without(cls, set(), monkeypatch)
    for dist in needs:  # each listed distribution is needed
        if dist == "numpy":
            continue  # imported by normconf itself: hiding it from find_spec proves nothing
        assert not _available_without(cls, {dist}, monkeypatch), f"{backend} is available without {dist}"
    others = {d for d in FRAMEWORKS if d not in needs and _installed(d)}
    assert _available_without(cls, others, monkeypatch), f"{backend} needs one of {sorted(others)} too"
