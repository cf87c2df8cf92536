"""The HTML report: structure, counts, escaping, plot data, ``normconf report``."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from normconf.report import plots, write_reports
from normconf.report.html import json_for_script, page_data, render
from normconf.report.model import build
from normconf.report.plots import heatmap_svg, plot_data, plot_key
from normconf.results import Row, read_results, to_frame, write_json

HOSTILE_ID = "<script>alert(1)</script>"
HOSTILE_MSG = "</script><script>alert(2)</script><img src=x onerror=alert(3)>"


def _row(case, backend, outcome, output="y", step=1, **kw):
    base = dict(
        case=case,
        file="cases/none.yaml",
        line=3,
        backend=backend,
        backend_version="1.0",
        output=output,
        step=step,
        outcome=outcome,
        dtype=kw.pop("dtype", "float32"),
        param_dtype="float32",
        mode=kw.pop("mode", "train"),
        shape="2x3x4",
        layout="channels_first",
        steps=1,
        eps=1e-5,
        momentum="batch_weight=0.1",
        normalize_variance="biased",
        running_variance="biased",
        seed="0",
        atol=1e-5,
        rtol=1.3e-6,
        as_expected=kw.pop("as_expected", outcome in ("pass", "unsupported")),
    )
    if outcome in ("pass", "explained", "mismatch"):
        base.update(
            max_abs_err=kw.pop("err", 1e-8 if outcome == "pass" else 0.25),
            max_rel_err=1e-7,
            max_ulp=0.5,
            mismatched=0 if outcome == "pass" else 2,
            mismatched_frac=0.0 if outcome == "pass" else 0.1,
        )
    if outcome in ("unsupported", "error"):
        base.update(output="", step=None)
    base.update(kw)
    return Row(**base)


def small_results():
    """3 cases x 3 backends with known worst outcomes per pair."""
    rows = [
        # case a: pass / explained / unsupported
        _row("case_a", "numpy", "pass"),
        _row("case_a", "numpy", "pass", output="running_var"),
        _row("case_a", "torch", "pass"),
        _row(
            "case_a",
            "torch",
            "explained",
            output="running_var",
            explanation="running_var=unbiased",
            explanation_text="running_var matches with the unbiased variance (m-1 = 23)",
            as_expected=True,
        ),
        _row("case_a", "tinydnn", "unsupported", message="no eps < 1e-9"),
        # case b: pass / mismatch (unexpected) / error
        _row("case_b", "numpy", "pass", dtype="float64", mode="eval"),
        _row(
            "case_b",
            "torch",
            "mismatch",
            dtype="float64",
            mode="eval",
            message="3 of 24 elements differ",
            as_expected=False,
        ),
        _row(
            "case_b", "tinydnn", "error", dtype="float64", mode="eval", message="crashed (SIGSEGV)", as_expected=False
        ),
        # case c: only passes
        _row("case_c", "numpy", "pass"),
        _row("case_c", "torch", "pass"),
        _row("case_c", "tinydnn", "pass"),
    ]
    meta = {
        "environment": {
            "python": "3.11.7",
            "platform": "Linux-test",
            "cpu": "TestCPU",
            "device": "cpu",
            "backend_versions": {"numpy": "2.4.6", "torch": "2.13.0", "tinydnn": "1.0.0a3"},
        },
        "backends": ["numpy", "torch", "tinydnn"],
    }
    return to_frame(rows), meta


class _Cells(HTMLParser):
    """Collects the matrix: rows (data-c) and cell classes."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and "data-c" in a:
            self.rows.append([])
        elif tag == "td" and self.rows and self._in_matrix:
            self.rows[-1].append(a.get("class") or "")
        if tag == "div" and a.get("id") == "matrix":
            self._in_matrix = True
        if tag == "section" and a.get("id") == "list-section":
            self._in_matrix = False

    _in_matrix = False


def test_matrix_has_one_row_per_case_and_worst_outcome_per_cell():
    df, meta = small_results()
    html = render(df, meta, read_cases=False)
    p = _Cells()
    p.feed(html)
    assert len(p.rows) == 3
    # classes: o<index into OUTCOMES>: pass 0, explained 1, mismatch 2, unsupported 3, error 4; "ux" = not as expected
    assert p.rows[0] == ["o0", "o1", "o3"]
    assert p.rows[1] == ["o0", "o2 ux", "o4 ux"]
    assert p.rows[2] == ["o0", "o0", "o0"]
    # summary counts per outcome (pairs, not rows)
    for outcome, n in {"pass": 5, "explained": 1, "mismatch": 1, "unsupported": 1, "error": 1}.items():
        assert re.search(rf'data-outcome="{outcome}">.*?<b>{n}</b>', html), outcome
    assert "2 not as expected" in html


def test_environment_and_versions_are_recorded():
    df, meta = small_results()
    html = render(df, meta, read_cases=False)
    for s in ("3.11.7", "Linux-test", "TestCPU", "backend torch", "2.13.0", "1.0.0a3"):
        assert s in html


def test_cpu_time_splits_the_workers_and_the_backends():
    """The run's CPU: the harness, the workers (every group), and the part inside the backends' calls."""
    df, meta = small_results()
    meta["timing"] = {
        "wall_seconds": 3.2,
        "harness_cpu_seconds": 1.04,
        "worker_cpu_seconds": {"numpy": 0.5, "torch": 2.25},
        "backend_cpu_seconds": {"numpy": 0.1, "torch": 1.9},
    }
    html = render(df, meta, read_cases=False)
    assert "harness 1.0 s, workers 2.8 s, of it 2.0 s inside the backends" in html
    del meta["timing"]["backend_cpu_seconds"]  # a results.json written before the split
    html = render(df, meta, read_cases=False)
    assert "harness 1.0 s, workers 2.8 s" in html and "inside the backends" not in html


def test_report_is_self_contained():
    df, meta = small_results()
    html = render(df, meta, read_cases=False)
    # nothing fetched: no external scripts, stylesheets, images or fonts; a CSP forbids network access
    assert not re.search(r"<(script|img|link|iframe)[^>]+(src|href)=", html)
    assert "url(http" not in html and "@import" not in html
    assert "default-src 'none'" in html


def test_hostile_strings_are_escaped(tmp_path):
    rows = [
        _row(
            HOSTILE_ID,
            "numpy",
            "mismatch",
            message=HOSTILE_MSG,
            explanation="x</script>",
            explanation_text=HOSTILE_MSG,
            tolerance_reason="<b>bold</b>",
            notes="<i>n</i>",
        ),
        _row("ok_case", 'b"><svg onload=alert(4)>', "pass", file="<x>.yaml"),
    ]
    path = tmp_path / "hostile.json"
    write_json(to_frame(rows), path, {"environment": {"python": "<script>alert(5)</script>"}})
    df, meta = read_results(path)
    html = render(df, meta, read_cases=False)
    p = _Cells()
    p.feed(html)
    assert p.scripts == 3  # the two data blocks and the page's own script: nothing injected
    for bad in (HOSTILE_ID, "<img src=x", "<svg onload", "<b>bold</b>", "<i>n</i>", "alert(5)</script>"):
        assert bad not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text in the matrix
    blob = html[html.index('<script id="data"') :]
    blob = blob[blob.index(">") + 1 : blob.index("</script>")]
    data = json.loads(blob)  # the blob is valid JSON and round-trips the exact strings
    assert HOSTILE_ID in data["S"] and HOSTILE_MSG in data["S"]


def test_long_texts_are_stored_as_shared_pieces():
    from normconf.report.html import _Strings

    cite = "[PyTorch documents that the running variance is unbiased (https://pytorch.org/docs)]"
    t1 = "updates running_var with m-1 = 17; residual after this correction 6e-09, error without it 0.0008. " + cite
    t2 = "updates running_var with m-1 = 127; residual after this correction 1e-08, error without it 0.0002. " + cite
    S = _Strings()
    i1, i2 = S(t1), S(t2)

    def text(i):
        v = S.items[i]
        return v if isinstance(v, str) else "".join(text(j) for j in v)

    assert text(i1) == t1 and text(i2) == t2  # exact round trip
    assert S.items[i1][-1] == S.items[i2][-1] and S.items[S.items[i1][-1]] == " " + cite  # the citation: once
    assert S(t1) == i1 and S("short") == S("short")


def test_json_for_script_cannot_close_the_element():
    s = json_for_script({"a": "</script><!-- \u2028 & '"})
    assert "<" not in s and ">" not in s and "&" not in s and "'" not in s
    assert json.loads(str(s)) == {"a": "</script><!-- \u2028 & '"}


def test_plot_data_histogram_and_channel_maxima():
    exp = np.zeros((2, 3, 4))
    obs = exp.copy()
    obs[0, 0, 0] = 1e-3
    obs[1, 2, 3] = -2e-6
    obs[0, 1, 1] = np.nan
    d = plot_data(obs, exp, channel_axis=1)
    h = d["abs_err_hist"]
    assert sum(h["counts"]) == 2  # two nonzero finite errors
    assert h["zeros"] == 21 and h["nonfinite"] == 1
    assert len(h["log10_edges"]) == len(h["counts"]) + 1
    assert h["log10_edges"][0] <= np.log10(2e-6) and h["log10_edges"][-1] >= -3
    assert d["channels"] == 3
    assert d["channel_max_abs_err"] == [1e-3, 0.0, 2e-6]
    # channels-last: axis -1; per-channel statistics (1-D): axis 0
    d_last = plot_data(np.moveaxis(obs, 1, -1), np.moveaxis(exp, 1, -1), channel_axis=-1)
    assert d_last["channel_max_abs_err"] == [1e-3, 0.0, 2e-6]
    d1 = plot_data(np.array([1.0, 2.5]), np.array([1.0, 2.0]), channel_axis=1)
    assert d1["channel_max_abs_err"] == [0.0, 0.5]
    json.dumps(d)  # JSON-able


@pytest.mark.parametrize(
    "shape,axis",
    [((6, 5, 7, 9), 1), ((6, 7, 9, 5), -1), ((40, 30), 0), ((400,), 1), ((3, 50, 40), 2), ((1, 4, 30, 30), 1)],
)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_plot_data_of_a_large_output_is_summarised_in_blocks_with_the_same_numbers(monkeypatch, shape, axis, dtype):
    """Above PLOT_BLOCK elements the summary is taken block by block (no full-size float64 temporaries):
    counts, histogram counts, minima and maxima, identical to the one-pass summary, with NaN, Inf, zero
    errors and a channel without any finite pair."""
    rng = np.random.default_rng(4)
    exp = (rng.standard_normal(shape) * 3).astype(dtype).astype(np.float64)  # half the errors exactly 0
    obs = (exp + rng.standard_normal(shape) * 10.0 ** rng.integers(-9, -1, shape) * rng.integers(0, 2, shape)).astype(
        dtype
    )
    obs.flat[3], obs.flat[11] = np.nan, np.inf
    exp.flat[5] = -np.inf
    if len(shape) > 1:
        obs[(slice(None),) * (axis % len(shape)) + (0,)] = np.nan  # channel 0: nothing finite
    one_pass = plot_data(obs, exp, axis)
    monkeypatch.setattr(plots, "PLOT_BLOCK", 37)  # many blocks, of uneven rows
    blocked = plot_data(obs, exp, axis)
    assert one_pass is not None and blocked == one_pass
    assert sum(one_pass["abs_err_hist"]["counts"]) > 0 and one_pass["abs_err_hist"]["zeros"] > 0


def test_plot_data_reaches_the_page():
    df, meta = small_results()
    obs, exp = np.full((2, 3, 4), 0.25), np.zeros((2, 3, 4))
    meta["plot_data"] = {plot_key("case_b", "torch", "y", 1): plot_data(obs, exp, 1)}
    data, rows = page_data(build(df, meta, read_cases=False))
    assert len(data["G"]) == 1
    lo, width, counts, zeros, nonfinite, ch, channels = data["G"][0]
    assert sum(counts) == 24 and ch == [0.25, 0.25, 0.25] and channels == 3
    i = next(i for i, p in enumerate(data["P"]) if data["S"][data["B"][p[1]]] == "torch" and p[0] == 1)
    assert rows[i][0][13] == 0  # the row points at plot 0


def test_heatmap_is_svg_with_an_embedded_image_and_escaped_labels():
    svg = heatmap_svg(
        ["c<1>", "c$2$"],
        ["b&1", "b2"],
        np.array([[1e-3, np.nan], [0.0, 1e-9]]),
        np.array([[True, False], [False, False]]),
    )
    assert svg.startswith("<svg") and "<image" in svg and "data:image/png;base64," in svg
    assert "c&lt;1&gt;" in svg and "b&amp;1" in svg and "c$2$" in svg


def test_write_reports_writes_csv_json_and_html(tmp_path):
    df, meta = small_results()
    paths = write_reports(df, meta, tmp_path)
    assert [p.name for p in paths] == ["results.csv", "results.json", "index.html"]
    back, meta2 = read_results(tmp_path / "results.json")
    assert meta2["environment"]["cpu"] == "TestCPU" and len(back) == len(df)


def test_the_run_records_description_parameters_and_input_summary(tmp_path):
    """The case panel comes from ``meta["case_info"]``, recorded by the run: the report re-reads no case
    file (a results file whose case file is gone or changed still shows what ran)."""
    from normconf.case_info import case_info
    from normconf.cases import load_paths

    lc = load_paths(["cases/seed_article.yaml"])[0]
    rows = [_row(lc.id, "numpy", "pass", file=str(tmp_path / "gone.yaml"), line=lc.line, shape="3x1x1x6")]
    assert build(to_frame(rows), {}).case_info[lc.id]["source"].startswith("no case summary recorded")
    model = build(to_frame(rows), {"case_info": {lc.id: case_info(lc.case)}})
    info = model.case_info[lc.id]
    assert info["source"] == "recorded by the run"
    assert "18 values" in info["inputs"]["x"] and "min -97.7" in info["inputs"]["x"]
    assert info["params"]["eps"] == "1e-05"
    assert "article" in info["description"].lower()


def test_report_command_rerenders_without_rerunning(tmp_path):
    from normconf.cli import main

    df, meta = small_results()
    write_json(df, tmp_path / "results.json", meta)
    out = tmp_path / "html"
    assert main(["report", str(tmp_path / "results.json"), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "case_b" in html and "TestCPU" in html
    # a folder works too (results.json inside)
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file()


@pytest.mark.parametrize(
    "content", [None, "[1, 2]", "not json at all {", '{"results": [{"case": "a", "backend": "b", "outcome": "weird"}]}']
)
def test_report_command_rejects_bad_input(tmp_path, content, capsys):
    from normconf.cli import main

    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_empty_and_partial_runs_render():
    html = render(to_frame([]), {"partial": True}, read_cases=False)
    assert "PARTIAL run" in html and "0 case(s)" in html
    p = _Cells()
    p.feed(html)
    assert p.rows == []


def test_plot_data_from_a_real_run_reaches_the_report():
    """The wiring proposed for the runner: plot_data(observed, expected, case.channel_axis) per
    non-close comparison, keyed by plot_key, in meta["plot_data"] (torch's unbiased running_var)."""
    pytest.importorskip("torch")
    from normconf.cases import load_paths
    from normconf.compare import compare
    from normconf.results import output_dtype, rows_for, tolerance_for
    from normconf.runner import Runner

    lc = next(c for c in load_paths(["cases/seed_article.yaml"]) if c.id == "seed_article")
    with Runner() as runner:
        res = runner.run_backend(lc, "torch")
        inputs, expected = runner.expected(lc)
    assert res.status == "ok", res.message
    plots = {}
    for name, steps in res.outputs.items():
        for k, (o, e) in enumerate(zip(steps, expected.get(name, [])), start=1):
            if not compare(o, e, tolerance_for(lc.case, name), output_dtype(lc.case, name)).close:
                plots[plot_key(lc.id, "torch", name, k)] = plot_data(o, e, lc.case.channel_axis)
    assert plot_key(lc.id, "torch", "running_var", 1) in plots
    rv = plots[plot_key(lc.id, "torch", "running_var", 1)]
    # one channel; torch stores 0.9*1 + 0.1*(unbiased var) vs 0.9*1 + 0.1*(biased var): 0.1*1946.06/17 = 11.45
    assert rv["channels"] == 1 and sum(rv["abs_err_hist"]["counts"]) == 1
    # (plot_data keeps 4 significant digits: rel 1e-3)
    assert rv["channel_max_abs_err"][0] == pytest.approx(0.1 * 1946.0649305555556 / 17, rel=1e-3)
    df = to_frame(rows_for(lc, "torch", res, expected, inputs))
    data, rows = page_data(build(df, {"plot_data": plots}, read_cases=False))
    assert len(data["G"]) == len(plots)
    assert any(len(r) > 13 and r[13] >= 0 for r in rows[0])
