"""Shared fixtures for tests/ (not for the YAML cases under cases/, collected by normconf.pytest_plugin).

Keep this light: no autouse fixtures, no framework imports (torch/tensorflow would slow every worker);
normconf.runner is imported only when a test asks for ``runner``. Case builders live in tests/helpers.py
so that module-level tables can use them too.
"""

from __future__ import annotations

import pytest

from tests import helpers

#: deliberately invalid case files: read by their own tests, never collected as cases (one that opts in
#: with `normconf:` would otherwise fail the repository's own pytest run)
collect_ignore = ["bad_inputs", "data"]


@pytest.fixture(scope="session")
def runner():
    """A plain ``Runner()`` shared by the session, closed at the end. A module needing special
    arguments (extra adapters, native paths, a timeout) defines its own ``runner`` fixture, which
    overrides this one."""
    from normconf.runner import Runner

    with Runner() as r:
        yield r


@pytest.fixture
def make_case():
    """:func:`tests.helpers.case` as a fixture: ``make_case(**fields) -> Case``."""
    return helpers.case


@pytest.fixture
def make_loaded_case():
    """:func:`tests.helpers.loaded_case` as a fixture: ``make_loaded_case(**fields) -> LoadedCase``."""
    return helpers.loaded_case
