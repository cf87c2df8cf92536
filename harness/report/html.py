"""The self-contained HTML report: ``index.html`` (one file, no network to view).

Layout of the page (template ``templates/report.html.j2``):

* summary counts and the environment (Python, OS, CPU, every backend's version, device);
* the matrix cases × backends, coloured by each pair's worst outcome, rendered
  here so it reads without scripts; a red outline marks pairs *not as expected*;
* filters (backend, outcome, dtype, mode, free text, only-unexpected) and the
  list of discrepancies, built by the page's script from an embedded JSON blob;
* per pair a detail panel (metrics, explanation, tolerance and its reason, the
  case's parameters, an input summary, a reproduction command, per-mismatch
  plots drawn from ``meta["plot_data"]``);
* the error heatmap across cases × backends (matplotlib → inline SVG).

Escaping: every string from the results goes through Jinja2 autoescape (HTML)
or :func:`json_for_script` (the data blob: ``<``, ``>``, ``&`` and quotes become
``\\u00XX`` escapes, so ``</script>`` cannot end the block), and the script only
ever inserts strings with ``textContent`` — never as markup.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from normconf.package_data import extra_available, missing_extra_message
from normconf.references.batchnorm import MAIN_OUTPUTS
from normconf.report.model import OUTCOMES, Model, build, clean
from normconf.report.plots import heatmap_svg, plot_key, worst_errors

TEMPLATES = Path(__file__).with_name("templates")
SYMBOLS = {"pass": "✓", "explained": "≈", "mismatch": "✗", "unsupported": "–", "error": "!"}
#: most cases for which the heatmap is drawn (beyond that it is left out and the page says so)
HEATMAP_MAX_CASES = 2000


@lru_cache(maxsize=None)
def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    return env


def _asset(name: str) -> Markup:
    """An inline CSS/JS asset (our own file, not user data), checked not to close its element."""
    s = (TEMPLATES / name).read_text(encoding="utf-8")
    if "</script" in s.lower() or "</style" in s.lower():
        raise ValueError(f"{name} must not contain a closing script/style tag")
    return Markup(s)


def fmt_num(v: Any, digits: int = 4) -> str:
    v = clean(v)
    if v is None or v == "":
        return ""
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return str(f)
    return f"{f:.{digits}g}"


_EXP = re.compile(r"e([+-])0*(\d)")


def _dump(obj: Any) -> str:
    """Compact JSON; exponents without padding (``2.5e-08`` -> ``2.5e-8``) where ``obj`` holds no strings."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if '"' not in s:  # numbers only (the rows block): the rewrite cannot touch a string
        s = _EXP.sub(lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), s)
    return s


def json_for_script(data: Any) -> Markup:
    """JSON that is safe inside ``<script type="application/json">`` (cannot close it)."""
    s = _dump(data)
    s = (
        s.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("'", "\\u0027")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return Markup(s)


def _r(v: float | None, digits: int = 4) -> float | None:
    """4 significant digits: enough to read, small to ship (results.csv keeps every digit)."""
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.{digits}g}")


def _trim(a: list[Any], defaults: dict[int, Any]) -> list[Any]:
    """Drop trailing fields that hold their default (the page's script fills them back in)."""
    while len(a) - 1 in defaults and a[-1] is not None and a[-1] == defaults[len(a) - 1]:
        a.pop()
    return a


#: defaults of trailing row / pair fields (must match RD / PD in report.js)
ROW_DEFAULTS = {7: 0, 8: 0, 9: 0, 10: 0, 11: 0, 12: 0, 13: -1}
PAIR_DEFAULTS = {3: 0, 4: 1, 6: 0, 7: 0, 8: 0, 9: 0}


#: where long texts (explanations, messages) are cut into shared pieces: after "; " and "] ", before " ["
_PIECES = re.compile(r"(?<=[;\]] )|(?= \[)")
#: texts longer than this are stored as pieces
PIECE_MIN = 80


class _Strings:
    """A string table: repeated strings (tolerance reasons, labels, params) are stored once.

    A long text is stored as a list of indexes of its pieces (joined without a
    separator), so the parts explanations share — the documentation they cite,
    the stage that diverged first — are stored once too.
    """

    def __init__(self) -> None:
        self.items: list[Any] = [""]
        self.index: dict[str, int] = {"": 0}

    def _add(self, s: str, item: Any) -> int:
        i = self.index[s] = len(self.items)
        self.items.append(item)
        return i

    def __call__(self, s: Any) -> int:
        s = "" if s is None else str(s)
        i = self.index.get(s)
        if i is not None:
            return i
        if len(s) > PIECE_MIN:
            pieces = [x for x in _PIECES.split(s) if x]
            if len(pieces) > 1:
                return self._add(s, [self(x) for x in pieces])
        return self._add(s, s)


def _plot_payload(d: dict[str, Any]) -> list[Any] | None:
    """meta["plot_data"] entry → [lo_edge, bin_width, counts, zeros, nonfinite, channel_max, channels]."""
    try:
        h = d.get("abs_err_hist") or {}
        edges = [float(x) for x in h.get("log10_edges") or []]
        counts = [int(c) for c in h.get("counts") or []]
        if edges and len(edges) != len(counts) + 1:
            edges, counts = [], []
        width = (edges[-1] - edges[0]) / len(counts) if counts else 0
        # per-channel maxima to 2 significant digits: bars and tooltips need no more
        ch = [None if v is None else _r(float(v), 2) for v in (d.get("channel_max_abs_err") or [])]
        return [
            edges[0] if edges else 0,
            _r(width),
            counts,
            int(h.get("zeros") or 0),
            int(h.get("nonfinite") or 0),
            ch,
            int(d.get("channels") or len(ch)),
        ]
    except (TypeError, ValueError, AttributeError):
        return None


def page_data(model: Model) -> tuple[dict[str, Any], list[Any]]:
    """The two JSON blocks the page's script reads: the core (cases, pairs, a string table ``S``,
    a tolerance table ``T``, plot data ``G``) and the rows of every pair (parsed only when first
    needed).  Positional arrays, trailing defaults trimmed; field lists in report.js."""
    S = _Strings()
    for name in MAIN_OUTPUTS:
        S(name)  # the most frequent strings get one-digit indexes
    T: list[list[Any]] = []
    tidx: dict[tuple[Any, Any, str], int] = {}
    plot_src = (model.meta or {}).get("plot_data") or {}
    if isinstance(plot_src, list):  # also accept a list of {case, backend, output, step, ...}
        plot_src = {
            plot_key(d.get("case", ""), d.get("backend", ""), d.get("output", ""), d.get("step")): d
            for d in plot_src
            if isinstance(d, dict)
        }
    if not isinstance(plot_src, dict):
        plot_src = {}
    plots: list[Any] = []
    cidx = {c: i for i, c in enumerate(model.cases)}
    bidx = {b: i for i, b in enumerate(model.backends)}
    cases = []
    for c in model.cases:
        info = model.case_info[c]
        params = info.get("params") or {
            "shape": info.get("shape", ""),
            "layout": info.get("layout", ""),
            "dtype": info.get("dtype", ""),
            "parameter dtype": info.get("param_dtype", ""),
            "mode": info.get("mode", ""),
            "eps": info.get("eps", ""),
            "momentum": info.get("momentum", ""),
            "normalize variance": info.get("normalize_variance", ""),
            "running variance": info.get("running_variance", ""),
            "steps": info.get("steps", ""),
        }
        inputs = dict(info.get("inputs") or {})
        inputs.setdefault("x shape", info.get("shape", "") + f" ({info.get('layout', '')})")
        inputs.setdefault("x dtype", info.get("dtype", ""))
        inputs.setdefault("seed", info.get("seed", ""))
        cases.append(
            [
                S(c),
                S(info.get("dtype")),
                S(info.get("mode")),
                S(info.get("file")),
                info.get("line") or "",
                S(info.get("description", "")),
                [[S(k), S(v)] for k, v in params.items()],
                [[S(k), S(v)] for k, v in inputs.items()],
                S(info.get("source", "")),
            ]
        )
    pairs, all_rows = [], []
    for (c, b), p in model.pairs.items():
        rows = []
        for r in p.rows:
            pk = -1
            d = plot_src.get(plot_key(c, b, r["output"], r["step"])) if r["output"] and plot_src else None
            if isinstance(d, dict):
                payload = _plot_payload(d)
                if payload is not None:
                    pk = len(plots)
                    plots.append(payload)
            tk = (r["atol"], r["rtol"], r["tolerance_reason"])
            ti = tidx.get(tk)
            if ti is None:
                ti = tidx[tk] = len(T)
                T.append([r["atol"], r["rtol"], S(r["tolerance_reason"])])
            rows.append(
                _trim(
                    [
                        S(r["output"]),
                        r["step"],
                        OUTCOMES.index(r["outcome"]),
                        _r(r["max_abs_err"]),
                        _r(r["max_rel_err"], 3),
                        _r(r["max_ulp"], 3),
                        ti,
                        r["mismatched"],
                        _r(r["mismatched_frac"]),
                        S(r["worst_index"]),
                        S(r["explanation"]),
                        S(r["explanation_text"]),
                        S(r["message"]),
                        pk,
                    ],
                    ROW_DEFAULTS,
                )
            )
        listed = p.outcome in ("explained", "mismatch", "error") or p.as_expected is False
        all_rows.append(rows)
        pairs.append(
            _trim(
                [
                    cidx[c],
                    bidx[b],
                    OUTCOMES.index(p.outcome),
                    S(p.summary) if listed else 0,
                    None if p.as_expected is None else int(p.as_expected),
                    _r(p.seconds, 2),
                    S(p.expected_outcome),
                    S(p.expected_because),
                    S(p.expectation_reason),
                    S(p.notes),
                ],
                PAIR_DEFAULTS,
            )
        )
    core = {
        "S": S.items,
        "O": OUTCOMES,
        "B": [S(b) for b in model.backends],
        "V": [S(model.versions.get(b, "")) for b in model.backends],
        "C": cases,
        "P": pairs,
        "T": T,
        "G": plots,
    }
    return core, all_rows


def _env_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    env = dict(meta.get("environment") or {})
    rows: list[tuple[str, str]] = []
    bv = env.pop("backend_versions", None)
    for k, v in env.items():
        rows.append((str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v)))
    if isinstance(bv, dict):
        for k, v in bv.items():
            rows.append((f"backend {k}", str(v)))
    for k in ("command", "cases", "partial"):
        if k in meta:
            rows.append((k, str(meta[k])))
    t = meta.get("timing")
    if isinstance(t, dict) and "wall_seconds" in t:
        rows.append(("wall time", f"{t['wall_seconds']} s"))
    if isinstance(t, dict) and isinstance(t.get("worker_cpu_seconds"), dict):
        workers = sum(t["worker_cpu_seconds"].values())
        backends = t.get("backend_cpu_seconds")
        inside = f", of it {sum(backends.values()):.1f} s inside the backends" if isinstance(backends, dict) else ""
        rows.append(("CPU time", f"harness {t.get('harness_cpu_seconds', 0):.1f} s, workers {workers:.1f} s{inside}"))
    return rows


def render(
    df: pd.DataFrame,
    meta: dict[str, Any] | None = None,
    *,
    title: str = "normconf report",
    read_cases: bool = True,
    heatmap: bool = True,
) -> str:
    """index.html for ``df`` (a results table) as one string."""
    meta = dict(meta or {})
    model = build(df, meta, read_cases=read_cases)
    nc, nb = len(model.cases), len(model.backends)
    matrix = []
    for c in model.cases:
        cells = []
        for b in model.backends:
            p = model.pairs.get((c, b))
            if p is None:
                cells.append(None)
            else:
                cells.append((OUTCOMES.index(p.outcome), p.as_expected is False))
        matrix.append((len(matrix), c, model.case_info[c].get("description", ""), cells))
    heat_svg, heat_note = None, ""
    compared = [p for p in model.pairs.values() if p.max_abs_err is not None]
    if not heatmap:
        heat_note = "heatmap not drawn (disabled)"
    elif not compared:
        heat_note = "no backend produced comparable outputs: nothing to draw"
    elif nc > HEATMAP_MAX_CASES:
        heat_note = f"{nc} cases: too many for a readable heatmap (limit {HEATMAP_MAX_CASES}); use the matrix filters"
    elif not extra_available("matplotlib"):
        heat_note = "heatmap not drawn: " + missing_extra_message("matplotlib", "report")
    else:
        cidx = {c: i for i, c in enumerate(model.cases)}
        bidx = {b: i for i, b in enumerate(model.backends)}
        vals, failed = worst_errors(
            ((cidx[p.case], bidx[p.backend], p.max_abs_err, p.outcome == "mismatch") for p in model.pairs.values()),
            nc,
            nb,
        )
        heat_svg = Markup(heatmap_svg(model.cases, model.backends, vals, failed))
    counts = model.counts()
    core, all_rows = page_data(model)
    generated = meta.get("generated") or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            title=title,
            generated=generated,
            model=model,
            matrix=matrix,
            counts=counts,
            outcomes=OUTCOMES,
            symbols=SYMBOLS,
            backend_counts=model.backend_counts(),
            n_unexpected=len(model.unexpected()),
            env_rows=_env_rows(meta),
            heat_svg=heat_svg,
            heat_note=heat_note,
            heat_open=nc <= 60,
            dtypes=sorted({i.get("dtype", "") for i in model.case_info.values()} - {""}),
            modes=sorted({i.get("mode", "") for i in model.case_info.values()} - {""}),
            data=json_for_script(core),
            rows=json_for_script(all_rows),
            css=_asset("report.css"),
            js=_asset("report.js"),
            partial=bool(meta.get("partial")),
        )
    )


def write_html(df: pd.DataFrame, meta: dict[str, Any] | None, path: str | Path, **kw: Any) -> Path:
    from normconf.results import atomic_write_text

    atomic_write_text(path, render(df, meta, **kw))
    return Path(path)
