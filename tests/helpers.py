"""Shared test helpers (plain functions, importable from module level): small case builders, a
subprocess helper, and the ``normconf`` CLI and fuzz-mutant runner the fuzz tests share.

Kept light: imports only normconf.cases at module level (no framework; normconf.runner only inside
:func:`fuzz_mutant_runner`), so every test module and worker can use it.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from normconf.cases import Case, LoadedCase

if TYPE_CHECKING:
    from normconf.runner import Runner

DEFAULT_ID = "t"
DEFAULT_SHAPE = (4, 3, 2, 5)
#: the repository root (the folder holding tests/)
REPO_ROOT = Path(__file__).resolve().parent.parent
#: the ``--adapter`` spec of the fuzz mutants (tests/fuzz_mutants.py, imported from REPO_ROOT)
FUZZ_MUTANTS = "tests.fuzz_mutants:MUTANTS"


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


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m normconf.cli ARGS`` in :data:`REPO_ROOT` (so that ``--adapter`` :data:`FUZZ_MUTANTS`
    imports), stdout and stderr captured as text; a run longer than ``timeout`` s raises TimeoutExpired."""
    return subprocess.run(
        [sys.executable, "-m", "normconf.cli", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout
    )


@contextmanager
def fuzz_mutant_runner(timeout: float = 120) -> Iterator[Runner]:
    """A ``Runner`` with the fuzz mutants (:data:`FUZZ_MUTANTS`), ``timeout`` s per worker call, open while
    the working directory is :data:`REPO_ROOT` (its worker imports ``tests.fuzz_mutants`` from the
    working directory); closed, and the previous working directory restored, on exit."""
    from normconf.runner import Runner

    old = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        with Runner((FUZZ_MUTANTS,), timeout=timeout) as r:
            yield r
    finally:
        os.chdir(old)
