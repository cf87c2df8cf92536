"""``normconf expect accept`` (normconf.expect_accept): entries written into the case files, nothing else
changed; the empty reason refused by validate; filters; bad input; re-judging after accepting."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from normconf.cases import CaseFileError, load_file
from normconf.cli import main
from normconf.expect_accept import FILL_IN, CaseFile, choose_because, render_entry
from normconf.results import Row, apply_expectation, because_matches, to_frame, write_json

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "cases").glob("*.yaml")) + sorted((ROOT / "cases" / "found").glob("*.yaml"))

# a small case file with comments, blank lines, a defaults block (its expect inherited), flow and
# block entries, and a case without expect:
SMALL = """\
# A small case file: comments, blank lines and a defaults block.
defaults:
  shape: [3, 2, 2]   # N, C, W
  input: {dist: normal, seed: 7}
  expect:
    # every case inherits this one
    tiny-dnn: {outcome: "explained", because: "normalize_variance=unbiased", reason: "tiny-dnn normalizes with m-1"}

cases:
  - id: small_a
    expect:
      torch: {outcome: "explained", because: "running_variance=unbiased", reason: "torch blends m-1 into running_var"}
      ort: null   # ort follows the case here
    description: the first case.

  # the second case has no expect: of its own
  - id: small_b
    description: 'the second case'
    steps: 2

  - id: small_c
    expect:
      cpp:
        outcome: mismatch
        reason: the old expectation (block style)
    running_variance: unbiased
"""


def _row(case, backend, output, outcome, explanation="", step=1, file="small.yaml", line=1):
    return Row(
        case=case,
        file=file,
        line=line,
        backend=backend,
        backend_version="1.0",
        output=output,
        step=step,
        outcome=outcome,
        explanation=explanation,
    )


def _judge(path: Path, pairs: dict[tuple[str, str], list[Row]]) -> list[Row]:
    """Fill file/line and the expectation columns as a run does, from the case file at ``path``."""
    cases = {lc.id: lc for lc in load_file(path)}
    rows: list[Row] = []
    for (cid, backend), rs in pairs.items():
        lc = cases[cid]
        for r in rs:
            r.file, r.line = path.name, lc.line
        apply_expectation(lc.case, backend, rs)
        rows.extend(rs)
    return rows


def _pairs() -> dict[tuple[str, str], list[Row]]:
    """small_a: torch as expected, ort not (a new convention), tiny-dnn passes (its inherited expectation
    fails); small_b: tiny-dnn now explained by two labels; small_c: cpp now errors."""
    return {
        ("small_a", "torch"): [
            _row("small_a", "torch", "y", "pass"),
            _row("small_a", "torch", "running_var", "explained", "running_variance=unbiased"),
        ],
        ("small_a", "ort"): [
            _row("small_a", "ort", "y", "explained", "eps=0.001"),
            _row("small_a", "ort", "running_var", "explained", "eps=0.001,precision=float32"),
        ],
        ("small_a", "tiny-dnn"): [_row("small_a", "tiny-dnn", "y", "pass")],
        ("small_b", "tiny-dnn"): [
            _row("small_b", "tiny-dnn", "y", "explained", "normalize_variance=biased"),
            _row("small_b", "tiny-dnn", "running_var", "explained", "running_variance=biased"),
            _row("small_b", "tiny-dnn", "eval_y", "explained", "normalize_variance=biased"),
        ],
        ("small_c", "cpp"): [_row("small_c", "cpp", "", "error", step=None)],
    }


@pytest.fixture
def small(tmp_path, monkeypatch):
    """(case file, results.json, the rows) in tmp_path, which is the current folder."""
    monkeypatch.chdir(tmp_path)
    case_file = tmp_path / "small.yaml"
    case_file.write_text(SMALL)
    pairs = _pairs()
    rows = _judge(case_file, pairs)
    results = tmp_path / "results.json"
    write_json(to_frame(rows), results, {"normconf": "test"})
    return case_file, results, pairs


def _accept(*argv) -> int:
    return main(["expect", "accept", *map(str, argv)])


# ----------------------------------------------------------------------------------------
# (a) the case library round-trips byte for byte


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_round_trips_byte_identical(path):
    raw = path.read_bytes()
    cf = CaseFile.load(path)
    assert cf.render().encode("utf-8") == raw


def _expect_key_lines(text: str) -> dict[tuple[str, str], int]:
    """(case id, backend) -> 1-based line of each own expect: key (``backend: null`` included)."""
    root = yaml.compose(text)
    cases = next(v for k, v in root.value if k.value == "cases")
    out = {}
    for c in cases.value:
        items = {k.value: v for k, v in c.value}
        exp = items.get("expect")
        if isinstance(exp, yaml.MappingNode):
            for k, _ in exp.value:
                out[(items["id"].value, k.value)] = k.start_mark.line + 1
    return out


def test_library_files_take_entries_and_change_nothing_else(tmp_path):
    """Every file of the library: each case gets a new backend and its first own entry replaced; the file then
    loads with exactly those expectations changed, and the text differs only at those entries."""
    assert len(LIBRARY) > 20
    for src in LIBRARY:
        path = tmp_path / src.name
        shutil.copy(src, path)
        before = {lc.id: lc for lc in load_file(path)}
        raw = yaml.safe_load(path.read_text())
        key_lines = _expect_key_lines(path.read_text())
        cf = CaseFile.load(path)
        want: dict[str, dict] = {}
        replaced_lines: set[int] = set()
        for raw_case in raw["cases"]:
            cid = raw_case["id"]
            new = {"zz-new": {"outcome": "explained", "because": "eps=0.001", "reason": "filled by the test"}}
            own = list((raw_case.get("expect") or {}).keys())
            if own:
                new[own[0]] = {"outcome": "error", "reason": "replaced by the test"}
                replaced_lines.add(key_lines[(cid, own[0])])
            for b, e in new.items():
                cf.set_expect(cid, b, e)
            want[cid] = new
        text = cf.render()
        path.write_text(text)
        after = {lc.id: lc for lc in load_file(path)}
        assert list(after) == list(before), src
        for cid, lc in after.items():
            old = before[cid].case
            exp = {b: e.model_dump(exclude_none=True) for b, e in lc.case.expect.items()}
            assert exp == {**{b: e.model_dump(exclude_none=True) for b, e in old.expect.items()}, **want[cid]}, (
                src,
                cid,
            )
            assert lc.case.model_dump(exclude={"expect"}) == old.model_dump(exclude={"expect"}), (src, cid)
        old_lines, new_lines = src.read_text().splitlines(), text.splitlines()
        for tag, i1, _i2, _j1, _j2 in difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes():
            assert tag in ("equal", "insert", "replace"), (src, tag, old_lines[i1:_i2])
            if tag == "replace":  # only a replaced entry's own line(s), starting at its key
                assert i1 + 1 in replaced_lines, (src, old_lines[i1:_i2], new_lines[_j1:_j2])


# ----------------------------------------------------------------------------------------
# (b) accept on a small commented file: only the new/replaced entries change


def test_accept_writes_only_the_entries(small, capsys):
    case_file, results, _ = small
    assert _accept(results) == 0
    out = capsys.readouterr().out
    text = case_file.read_text()
    expected = (
        SMALL.replace(
            "      ort: null   # ort follows the case here\n",
            '      ort: {outcome: "explained", because: "eps=0.001", reason: ""}   # ort follows the case here\n'
            '      tiny-dnn: {outcome: "pass", reason: ""}\n',
        )
        .replace(
            "  - id: small_b\n",
            "  - id: small_b\n"
            "    expect:\n"
            '      tiny-dnn: {outcome: "explained", because: "normalize_variance=biased", reason: ""}\n',
        )
        .replace(
            "      cpp:\n        outcome: mismatch\n        reason: the old expectation (block style)\n",
            '      cpp: {outcome: "error", reason: ""}\n',
        )
    )
    assert text == expected
    # difflib: the original lines all stay, in order, but the replaced entries' own lines
    ops = difflib.SequenceMatcher(None, SMALL.splitlines(), text.splitlines(), autojunk=False).get_opcodes()
    changed = [(tag, SMALL.splitlines()[i1:i2]) for tag, i1, i2, _, _ in ops if tag != "equal"]
    assert [t for t, _ in changed] == ["replace", "insert", "replace"]
    assert changed[0][1] == ["      ort: null   # ort follows the case here"]
    assert changed[2][1] == [
        "      cpp:",
        "        outcome: mismatch",
        "        reason: the old expectation (block style)",
    ]
    assert (
        "defaults:" in text
        and text.count('tiny-dnn: {outcome: "explained", because: "normalize_variance=unbiased"') == 1
    )
    # what was written, where, and what to do
    assert "accepted 4 expectation(s) into 1 file(s)" in out
    assert 'small.yaml:13: small_a: expect.ort: {outcome: "explained", because: "eps=0.001", reason: ""}' in out
    assert "small.yaml:20: small_b: expect.tiny-dnn:" in out
    assert FILL_IN in out
    assert "torch" not in out  # the pair as expected is left alone


def test_accept_twice_is_stable_and_nothing_left_reports_so(small, capsys):
    case_file, results, pairs = small
    assert _accept(results, "--reason", "observed on 1.0") == 0
    first = case_file.read_text()
    assert _accept(results, "--reason", "observed on 1.0") == 0  # the same results: the same entries
    assert case_file.read_text() == first
    rows = _judge(case_file, _pairs())
    write_json(to_frame(rows), "again.json", {})
    capsys.readouterr()
    assert _accept("again.json") == 0
    assert "nothing to accept" in capsys.readouterr().out
    assert case_file.read_text() == first


# ----------------------------------------------------------------------------------------
# (c) validate refuses the empty reason; (f) --reason fills it


def test_validate_refuses_the_empty_reason_then_accepts_it_filled(small, capsys):
    case_file, results, _ = small
    assert _accept(results, "--backend", "ort") == 0
    capsys.readouterr()
    assert main(["validate", str(case_file)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, ln in enumerate(case_file.read_text().splitlines(), 1) if "ort: {outcome" in ln)
    assert f"{case_file}:{line}:" in err and "expect.ort.reason" in err
    assert "Traceback" not in err
    case_file.write_text(case_file.read_text().replace('reason: ""', 'reason: "ort 1.0 uses eps 1e-3 (observed)"'))
    assert main(["validate", str(case_file)]) == 0


def test_reason_option_fills_every_new_entry(small, capsys):
    case_file, results, _ = small
    assert _accept(results, "--reason", "seen in run 42, to be checked") == 0
    out = capsys.readouterr().out
    assert FILL_IN not in out
    assert 'reason: ""' not in case_file.read_text()
    assert main(["validate", str(case_file)]) == 0


@pytest.mark.parametrize("bad", ["", "  ", "ab", " x  "])
def test_reason_option_must_say_something(small, capsys, bad):
    case_file, results, _ = small
    assert _accept(results, "--reason", bad) == 2
    assert "--reason" in capsys.readouterr().err
    assert case_file.read_text() == SMALL


# ----------------------------------------------------------------------------------------
# (d) filters


def test_filters_backend_and_case(small, capsys):
    case_file, results, _ = small
    assert _accept(results, "--backend", "cpp,tiny-dnn", "--case", "small_[bc]") == 0
    text = case_file.read_text()
    assert 'tiny-dnn: {outcome: "explained", because: "normalize_variance=biased", reason: ""}' in text
    assert 'cpp: {outcome: "error", reason: ""}' in text
    assert "ort: null   # ort follows the case here" in text  # small_a untouched
    assert 'tiny-dnn: {outcome: "pass"' not in text
    case_file.write_text(SMALL)
    assert _accept(results, "-b", "ort", "-b", "cpp", "-k", "small_a") == 0
    text = case_file.read_text()
    assert 'ort: {outcome: "explained", because: "eps=0.001", reason: ""}' in text
    assert "cpp:\n        outcome: mismatch" in text  # small_c is not matched by --case
    capsys.readouterr()
    case_file.write_text(SMALL)
    assert _accept(results, "--backend", "torch") == 0  # torch is as expected
    assert "nothing to accept" in capsys.readouterr().out
    assert case_file.read_text() == SMALL


# ----------------------------------------------------------------------------------------
# (e) bad input: exit 2, the file named, nothing written


@pytest.mark.parametrize(
    "content", ["not json", "[1, 2]", '{"meta": {}}', '{"results": [{"case": "x"}]}', '{"results": "x"}']
)
def test_bad_results_file(small, capsys, content):
    case_file, _, _ = small
    Path("bad.json").write_text(content)
    assert _accept("bad.json") == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "Traceback" not in err
    assert case_file.read_text() == SMALL


def test_missing_results_file(small, capsys):
    assert _accept("nowhere.json") == 2
    assert "nowhere.json" in capsys.readouterr().err


def test_missing_case_file_or_case_id(small, capsys):
    case_file, results, _ = small
    data = json.loads(results.read_text())
    for row in data["results"]:
        if row["case"] == "small_c":
            row["file"] = "gone.yaml"
        if row["case"] == "small_b":
            row["case"] = "small_renamed"
    Path("r1.json").write_text(
        json.dumps({"meta": {}, "results": [r for r in data["results"] if r["case"] != "small_renamed"]})
    )
    assert _accept("r1.json") == 2
    err = capsys.readouterr().err
    assert "gone.yaml" in err and "not found" in err
    assert case_file.read_text() == SMALL  # small_a's entries were decided but nothing was written
    Path("r2.json").write_text(
        json.dumps({"meta": {}, "results": [r for r in data["results"] if r["case"] != "small_c"]})
    )
    assert _accept("r2.json") == 2
    err = capsys.readouterr().err
    assert "small.yaml" in err and "small_renamed" in err and "Traceback" not in err
    assert case_file.read_text() == SMALL


def test_unparsable_case_file(small, capsys):
    case_file, results, _ = small
    case_file.write_text("cases: [\n")
    assert _accept(results) == 2
    err = capsys.readouterr().err
    assert "small.yaml" in err and "Traceback" not in err
    assert case_file.read_text() == "cases: [\n"


# ----------------------------------------------------------------------------------------
# (g) re-judged against the accepted file, the same rows are as expected


def test_rejudged_rows_are_as_expected(small):
    case_file, results, _ = small
    assert _accept(results, "--reason", "observed in the test run") == 0
    cases = {lc.id: lc for lc in load_file(case_file)}
    for (cid, backend), rows in _pairs().items():
        apply_expectation(cases[cid].case, backend, rows)
        assert all(r.as_expected is True for r in rows), (cid, backend, [r.message for r in rows])


def test_choose_because_is_accepted_by_the_matcher():
    one = ["running_variance=unbiased", "running_variance=unbiased,precision=float16"]
    assert choose_because(one) == "running_variance=unbiased"
    assert (
        choose_because(["precision=float32,variance=one_pass", "variance=one_pass,precision=float32"])
        == "precision=float32,variance=one_pass"
    )
    unrelated = ["eps=0.001", "running_variance=biased", "running_variance=biased"]
    assert choose_because(unrelated) == "running_variance=biased"  # the most common label
    assert choose_because(["eps=0.001", "running_variance=biased"]) == "eps=0.001"  # tie: the first
    assert choose_because(["a=1;b=2", "a=1"]) == "a=1"  # a row's alternatives count as labels
    assert choose_because(["", None]) is None
    for labels in (one, unrelated, ["a=1;b=2", "a=1"]):
        assert because_matches(choose_because(labels), labels)
    # joining distinct labels would not match (a because's parts must all be in one label)
    assert not because_matches("eps=0.001,running_variance=biased", unrelated)


def test_render_entry_is_one_quoted_flow_line():
    assert (
        render_entry("torch", {"outcome": "explained", "because": "running_variance=unbiased", "reason": ""})
        == 'torch: {outcome: "explained", because: "running_variance=unbiased", reason: ""}'
    )
    line = render_entry("ort", {"outcome": "mismatch", "reason": 'a "quote"\nand # a hash'})
    assert "\n" not in line
    assert yaml.safe_load(line) == {"ort": {"outcome": "mismatch", "reason": 'a "quote"\nand # a hash'}}


def test_flow_expect_and_null_expect_and_no_final_newline(tmp_path):
    path = tmp_path / "f.yaml"
    src = (
        "defaults:\n  expect: {torch: {outcome: mismatch, reason: the default}}\n"
        "cases:\n"
        "- id: a\n  expect: {torch: null, ort: null}   # flow\n  shape: [2, 3]\n"
        "- id: b\n  expect:   # nothing yet\n  shape: [2, 3]\n"
        "- id: c\n  expect: {}\n  shape: [2, 3]\n"
        "- id: d\n  shape: [2, 3]"
    )
    path.write_text(src)
    cf = CaseFile.load(path)
    e = {"outcome": "mismatch", "reason": "the test"}
    cf.set_expect("a", "ort", e)
    cf.set_expect("a", "cpp", e)
    cf.set_expect("b", "cpp", e)
    cf.set_expect("c", "cpp", e)
    cf.set_expect("d", "cpp", e)
    text = cf.render()
    assert text == (
        "defaults:\n  expect: {torch: {outcome: mismatch, reason: the default}}\n"
        "cases:\n"
        '- id: a\n  expect: {torch: null, ort: {outcome: "mismatch", reason: "the test"}, '
        'cpp: {outcome: "mismatch", reason: "the test"}}   # flow\n  shape: [2, 3]\n'
        '- id: b\n  expect:   # nothing yet\n    cpp: {outcome: "mismatch", reason: "the test"}\n  shape: [2, 3]\n'
        '- id: c\n  expect: {cpp: {outcome: "mismatch", reason: "the test"}}\n  shape: [2, 3]\n'
        '- id: d\n  expect:\n    cpp: {outcome: "mismatch", reason: "the test"}\n  shape: [2, 3]'
    )
    path.write_text(text)
    got = {lc.id: set(lc.case.expect) for lc in load_file(path)}
    assert got == {"a": {"ort", "cpp"}, "b": {"torch", "cpp"}, "c": {"torch", "cpp"}, "d": {"torch", "cpp"}}


def test_unknown_case_id_in_case_file_object(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("cases:\n- id: a\n  shape: [2, 3]\n")
    with pytest.raises(Exception, match="no case with id 'zz'"):
        CaseFile.load(path).set_expect("zz", "cpp", {"outcome": "pass", "reason": "abc"})
    with pytest.raises(CaseFileError):  # sanity: the written empty reason is what validate refuses
        path.write_text('cases:\n- id: a\n  shape: [2, 3]\n  expect:\n    cpp: {outcome: "pass", reason: ""}\n')
        load_file(path)
