"""Shared test helpers: small case builders (plain functions, importable from module level).

Kept light: imports only harness.cases (no framework), so every test module and worker can use it.
"""

from __future__ import annotations

import copy
import subprocess
from typing import Any, Callable

from harness.cases import Case, LoadedCase

DEFAULT_ID = "t"
DEFAULT_SHAPE = (4, 3, 2, 5)


def case(**fields: Any) -> Case:
    """A validated Case from keyword fields; ``id`` and ``shape`` default to DEFAULT_ID/DEFAULT_SHAPE."""
    return Case.model_validate({"id": DEFAULT_ID, "shape": list(DEFAULT_SHAPE), **fields})


def loaded(c: Case, file: str = "<test>", line: int = 1) -> LoadedCase:
    """Wrap an existing Case as a LoadedCase (where it "came from": ``file``:``line``)."""
    return LoadedCase(c, file, line)


def loaded_case(*, file: str = "<test>", line: int = 1, **fields: Any) -> LoadedCase:
    """``case(**fields)`` as a LoadedCase from ``file``:``line`` (Case has no ``file``/``line`` field)."""
    return loaded(case(**fields), file, line)


def case_maker(**defaults: Any) -> Callable[..., Case]:
    """A ``case`` builder with per-module defaults; call-time fields override them (shallow, like
    ``{**defaults, **fields}``); the defaults are deep-copied per call, so no case shares them."""

    def make(**fields: Any) -> Case:
        return case(**{**copy.deepcopy(defaults), **fields})

    return make


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of a started subprocess, waited for at most ``timeout`` s (a hang
    raises TimeoutExpired); the process is killed if it is still running after that."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err
