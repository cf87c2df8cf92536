"""The README stays a true manual: every backend documented, the C example the one the tests build."""

import re
from pathlib import Path

from normconf.adapters import all_adapters

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    head = README[:600]
    assert "make report" in head and "make test" in head


def test_every_registered_backend_is_in_the_backend_table():
    table = README[README.index("## Backends") : README.index("### Translation tables")]
    ids = set(re.findall(r"`([a-z0-9][a-z0-9-]*)`", table))
    missing = sorted(set(all_adapters()) - ids)
    assert not missing, f"backends missing from the README table: {missing}"


def test_readme_c_example_is_the_compiled_example():
    example = (ROOT / "native" / "examples" / "mybn.c").read_text().strip()
    assert example in README, "README's C example differs from native/examples/mybn.c (which a test compiles)"


def test_documented_outcomes_match_the_code():
    from normconf.cases import OUTCOMES

    section = README[README.index("## Outcomes") : README.index("## The case format")]
    for outcome in OUTCOMES:
        assert f"| `{outcome}` |" in section


def test_no_test_cites_a_file_outside_the_repository():
    """Tests cite their evidence by a path in the repository (docs/seed.md, not the design notes
    outside it): every ``docs/*.md`` a test names exists, and none names the design notes' file."""
    import re

    root = Path(__file__).resolve().parent
    outside = "DESIGN" + ".md"  # the project's design notes live outside the repository
    for p in sorted(root.glob("*.py")):
        text = p.read_text(encoding="utf-8")
        assert outside not in text, p.name
        for doc in re.findall(r"docs/[\w./-]+\.md", text):
            assert (root.parent / doc).is_file(), (p.name, doc)
