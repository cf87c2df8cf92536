"""What the installed package carries besides code, and its optional extras.

Case library: the YAML cases (``*.yaml``, ``found/`` included) and ``schema.json``.  In a
source checkout (clone, editable install) it is the repository's ``cases/`` folder, used in
place; a wheel ships a copy inside the package as ``case_library/`` (``[tool.scikit-build]
wheel.force-include`` in pyproject.toml).  :func:`shipped_cases_dir` finds whichever is there.

Extras: the base install runs ``normconf run`` (numpy backend) and writes the CSV, JSON and
HTML reports; the heatmap (matplotlib) needs ``normconf[report]``, the fuzzer (hypothesis)
``normconf[fuzz]``, each framework its own extra.  :func:`require_extra` imports an optional
module or raises :class:`MissingExtraError`: one line naming the extra to install, which the
CLI prints without a traceback (exit code 2, like any usage error).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from normconf.cli_common import UsageError

#: this package's folder (``harness/`` in a checkout, the installed package in a wheel)
_PACKAGE_DIR = Path(__file__).resolve().parent
#: where a wheel puts the case library, inside the package
PACKAGED_CASES = "case_library"


class MissingExtraError(UsageError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def shipped_cases_dir() -> Path:
    """The case library folder: the wheel's packaged copy, else a checkout's ``cases/``."""
    for folder in (_PACKAGE_DIR / PACKAGED_CASES, _PACKAGE_DIR.parent / "cases"):
        if (folder / "schema.json").is_file():
            return folder
    raise FileNotFoundError(
        f"no case library next to {_PACKAGE_DIR} (looked for {PACKAGED_CASES}/ and ../cases/): "
        "a broken install; reinstall normconf"
    )


def shipped_schema() -> Path:
    """The case file JSON Schema that ships with the case library (``schema.json``)."""
    return shipped_cases_dir() / "schema.json"


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra`` (quoted for shells that glob brackets)."""
    return f"pip install 'normconf[{extra}]'"


def extra_available(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path; nothing is imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken __spec__
        return False


def missing_extra_message(module: str, extra: str, needed_for: str = "") -> str:
    """One line: what needs ``module``, and the command that installs it."""
    what = f"{needed_for} needs" if needed_for else "needs"
    return f"{what} the optional dependency {module!r}: {install_hint(extra)}".strip()


def require_extra(module: str, extra: str, needed_for: str = "") -> ModuleType:
    """Import ``module`` (an optional dependency) or raise :class:`MissingExtraError`.

    ``extra``: the normconf extra that installs it (``report``, ``fuzz``, ...); ``needed_for``:
    what the caller is doing (``"normconf fuzz"``), the start of the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.partition(".")[0]
        if e.name is not None and e.name.partition(".")[0] != top:
            raise  # the module is there but one of its own imports failed: not a missing extra
        raise MissingExtraError(missing_extra_message(module, extra, needed_for), name=module) from None
