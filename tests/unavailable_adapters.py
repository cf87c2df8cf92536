"""A backend that is never available, for the exit-code tests (never registered outside the tests).

Load with ``--adapter tests.unavailable_adapters:ADAPTERS``.  ``missing`` is the NumPy reference
whose ``available()`` names a package that does not exist, as a real adapter does when its
framework is not installed.
"""

from __future__ import annotations

from normconf.adapters.numpy_ref import NumpyReference

SPEC = "tests.unavailable_adapters:ADAPTERS"
REASON = "needs the 'nonexistent' package: pip install nonexistent"


class Missing(NumpyReference):
    id = "missing"
    framework = "nonexistent"
    worker = "missing"
    description = "test-only: never available"

    def available(self) -> str | None:
        return REASON


ADAPTERS = [Missing]
