"""normconf.summary: the run's verdict and its printed summary."""

from __future__ import annotations

import io

from normconf.results import Row, to_frame
from normconf.summary import EXIT_UNAVAILABLE, UNAVAILABLE_PREFIX, print_summary, run_exit_code


def _unavailable(backend: str, reason: str) -> Row:
    return Row(
        case="c",
        file="f",
        line=1,
        backend=backend,
        backend_version="",
        output="",
        step=None,
        outcome="unsupported",
        message=f"{UNAVAILABLE_PREFIX} {reason}",
    )


def test_every_unavailable_backend_gets_its_own_install_line():
    df = to_frame(
        [_unavailable("a", "pip install a"), _unavailable("b", "pip install b"), _unavailable("c", "pip install c")]
    )
    out = io.StringIO()
    print_summary(df, out)
    text = out.getvalue()
    assert "3 requested backend(s) unavailable" in text
    for b in "abc":  # one line each (the last one only was printed before)
        assert f"  {b}: unavailable: pip install {b}" in text
    assert run_exit_code(df) == EXIT_UNAVAILABLE
