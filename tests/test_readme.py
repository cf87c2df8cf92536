"""The README stays a true manual: every backend documented, the C example the one the tests build."""

import re
from pathlib import Path

from harness.adapters import all_adapters

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    head = README[:600]
    assert "make report" in head and "make test" in head


def test_every_registered_backend_is_in_the_backend_table():
    table = README[README.index("## Backends"):README.index("### Translation tables")]
    ids = set(re.findall(r"`([a-z0-9][a-z0-9-]*)`", table))
    missing = sorted(set(all_adapters()) - ids)
    assert not missing, f"backends missing from the README table: {missing}"


def test_readme_c_example_is_the_compiled_example():
    example = (ROOT / "native" / "examples" / "mybn.c").read_text().strip()
    assert example in README, "README's C example differs from native/examples/mybn.c (which a test compiles)"


def test_documented_outcomes_match_the_code():
    from harness.cases import OUTCOMES

    section = README[README.index("## Outcomes"):README.index("## The case format")]
    for outcome in OUTCOMES:
        assert f"| `{outcome}` |" in section
