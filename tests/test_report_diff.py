"""``normconf diff`` on two result sets that differ in known ways."""

from __future__ import annotations

import pytest

from normconf.report.diff import diff, format_html, format_text
from normconf.results import Row, to_frame, write_csv, write_json


def R(case, backend, outcome, *, version="1.0", output="y", expl="", text="", msg="", as_expected=None):
    if as_expected is None:
        as_expected = outcome in ("pass", "unsupported")
    comparable = outcome in ("pass", "explained", "mismatch")
    return Row(
        case=case,
        file="cases/x.yaml",
        line=1,
        backend=backend,
        backend_version=version,
        output=output if comparable else "",
        step=1 if comparable else None,
        outcome=outcome,
        max_abs_err=(1e-8 if outcome == "pass" else 0.3) if comparable else None,
        atol=1e-5,
        rtol=1.3e-6,
        explanation=expl,
        explanation_text=text,
        message=msg,
        as_expected=as_expected,
        dtype="float32",
        param_dtype="float32",
        mode="train",
        shape="2x3",
        layout="channels_first",
        eps=1e-5,
    )


OLD = [
    R("a", "numpy", "pass"),
    R("a", "torch", "pass", version="2.12.0"),  # -> mismatch: new failure
    R(
        "b",
        "torch",
        "explained",
        version="2.12.0",
        output="running_var",
        expl="running_var=unbiased",
        text="matches with m-1",
        as_expected=True,
    ),  # -> other label
    R("c", "torch", "mismatch", version="2.12.0", msg="3 differ", as_expected=False),  # -> pass: fixed
    R("d", "tf", "error", msg="crashed", as_expected=False),  # -> mismatch: still failing
    R("e", "numpy", "pass"),  # removed
    R("f", "onnx", "pass"),  # -> unsupported
    R("g", "torch", "pass", version="2.12.0", as_expected=False),  # -> mismatch the case expects
]
NEW = [
    R("a", "numpy", "pass"),
    R("a", "torch", "mismatch", version="2.13.0", msg="running_var: 1/1 elements differ", as_expected=False),
    R(
        "b",
        "torch",
        "explained",
        version="2.13.0",
        output="running_var",
        expl="momentum=swapped",
        text="matches with batch weight 0.9",
        as_expected=True,
    ),
    R("c", "torch", "pass", version="2.13.0"),
    R("d", "tf", "mismatch", msg="2 differ", as_expected=False),
    R("f", "onnx", "unsupported", msg="opset 9 has no training mode"),
    R("g", "torch", "mismatch", version="2.13.0", msg="expected mismatch", as_expected=True),
    R("h", "numpy", "pass"),  # added
    R("h", "torch", "mismatch", version="2.13.0", as_expected=False),  # added and failing
]


def _where(changes):
    return [c.where for c in changes]


def test_diff_sections():
    d = diff(to_frame(OLD), to_frame(NEW), {"environment": {"python": "3.11.6"}}, {"environment": {"python": "3.11.7"}})
    assert _where(d.new_failures) == ["a [torch]", "h [torch]"]
    assert _where(d.expected_failures) == ["g [torch]"]
    assert _where(d.fixed) == ["c [torch]"]
    assert _where(d.changed_failures) == ["d [tf]"]
    assert _where(d.changed_explanations) == ["b [torch]"]
    ce = d.changed_explanations[0]
    assert ce.old_labels == ["running_var=unbiased"] and ce.new_labels == ["momentum=swapped"]
    assert _where(d.other_changes) == ["f [onnx]"]
    assert _where(d.added) == ["h [numpy]", "h [torch]"]
    assert _where(d.removed) == ["e [numpy]"]
    assert ("torch", "2.12.0", "2.13.0") in d.versions and ("python", "3.11.6", "3.11.7") in d.versions
    assert d.regressions == 2 and d.exit_code == 1


def test_identical_runs_have_no_changes():
    d = diff(to_frame(OLD), to_frame(OLD))
    assert d.unchanged and d.exit_code == 0
    assert "no new failures; no changes" in format_text(d)


def test_only_fixes_exit_zero():
    d = diff(to_frame(OLD), to_frame([r for r in OLD if r.case != "c"] + [R("c", "torch", "pass", version="2.12.0")]))
    assert _where(d.fixed) == ["c [torch]"] and d.exit_code == 0


def test_text_and_html_output():
    d = diff(to_frame(OLD), to_frame(NEW))
    text = format_text(d)
    assert "New failures (2):  <- exit code 1" in text
    assert "a [torch]: pass → mismatch" in text and "running_var: 1/1 elements differ" in text
    assert "b [torch]: explained → explained  [running_var=unbiased → momentum=swapped]" in text
    assert "torch: 2.12.0 → 2.13.0" in text
    assert text.rstrip().endswith("1 other outcome changes, 2 added results, 1 removed results, 1 version change(s)")
    html = format_html(d)
    assert 'id="new_failures"' in html and "2 new failure(s)" in html and "momentum=swapped" in html


def test_html_escapes_hostile_strings():
    bad = "<script>alert(1)</script>"
    d = diff(to_frame([R("a", "torch", "pass")]), to_frame([R("a", "torch", "mismatch", msg=bad)]))
    html = format_html(d)
    assert bad not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_diff_command_exit_codes(tmp_path, fmt, capsys):
    from normconf.cli import main

    def write(rows, name):
        path = tmp_path / f"{name}.{fmt}"
        df = to_frame(rows)
        write_json(df, path, {}) if fmt == "json" else write_csv(df, path)
        return str(path)

    old, new = write(OLD, "old"), write(NEW, "new")
    html = tmp_path / "diff.html"
    assert main(["diff", old, new, "--html", str(html)]) == 1
    out = capsys.readouterr().out
    assert "New failures (2)" in out and "Fixed (1)" in out and html.is_file()
    assert main(["diff", old, old]) == 0
    assert main(["diff", old, str(tmp_path / "missing.json")]) == 2
