"""``normconf expect accept RESULTS``: write the ``expect:`` entries a run asks for into the case files.

For every (case, backend) pair of RESULTS (a ``results.json``, ``results.csv`` or a folder holding one)
that is **not as expected** -- optionally only the backends of ``--backend`` and the case ids matching
a ``--case`` glob -- the case's file (the ``file`` column, relative to the current folder) gets an
entry for that backend in the case's own ``expect:`` mapping::

      torch: {outcome: "explained", because: "running_variance=unbiased", reason: ""}

``outcome`` is the pair's outcome (the worst of its rows, :func:`normconf.results.pair_outcome`);
``because`` is written for ``explained`` only (see :func:`choose_because`); ``reason`` is left empty
for a person to fill in with the evidence -- ``normconf validate`` refuses an empty reason, naming
``file:line`` and ``expect.<backend>.reason`` -- unless ``--reason TEXT`` gives one for all of them.
An entry the case already has for that backend is replaced; an expectation inherited from the
file's ``defaults:`` is overridden by a new entry on the case (``defaults:`` is never edited).

How files are edited.  A full ruamel.yaml round trip (``YAML(typ="rt")``, ``preserve_quotes``) does
*not* reproduce the case library byte for byte, whatever the indentation and width settings: it
writes ``torch: null`` as ``torch:``, re-wraps long flow mappings and hand-wrapped ``data: [...]``
lists, drops the extra spaces inside ``[0.75,  .nan, ...]`` and re-prints some floats
(``1946.0649305555556`` comes back as ``...555``).  So the file is not re-dumped: ruamel.yaml composes
it (node positions), the new entries are rendered by ruamel.yaml (a one-line flow mapping, quoted like
the library's), and only the text of the edited entries is spliced in.  Everything else -- comments,
blank lines, key order, flow style and quoting of the other entries -- stays byte for byte; a file
with nothing to accept is written back unchanged.  Comments inside a replaced entry are kept (a
comment at the end of its line stays at the end of the new line).  Where the case's ``expect:`` is a
block mapping the new entries are added at its end, with the indentation of its keys; a flow
``expect: {...}`` gets them inside the braces; a case without ``expect:`` gets a block
``expect:`` right after its ``id`` line, indented like the file's other nested mappings.

Every edited file is checked before anything is written: parsed again, it must hold exactly the
data of the original plus the new entries (otherwise: an error, exit 2, nothing written).  All files
are rendered and checked first, then each is written atomically
(:func:`normconf.results.atomic_write_text`).  Exit codes: 0 (written, or nothing to accept), 2 (a
missing or invalid results file, a case file that no longer exists or does not parse, a case id not
in its file, a bad ``--reason``), never a traceback.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from normconf.yaml_nodes import (  # noqa: F401 (render_entry: re-exported)
    _content_end,
    _get,
    _get_item,
    _is_map,
    _is_seq,
    _one_line,
    _plain,
    _safe_load,
    _scalar,
    _ws_before,
    render_entry,
)

#: the hint printed after writing entries with an empty reason
FILL_IN = "fill in each reason: (validate refuses an empty one)"


def _usage_error(msg: str) -> Exception:
    from normconf.cli import UsageError  # lazy: normconf.cli imports this module's add_parser

    return UsageError(msg)


# ----------------------------------------------------------------------------------------
# Which entries: pairs of the results that are not as expected


@dataclass
class Accepted:
    """One ``expect:`` entry to write: ``entry`` is ``{outcome, because?, reason}``."""

    case: str
    backend: str
    file: str
    line: int
    entry: dict[str, str]
    #: line of the written entry in the new file (set once the file is rendered)
    new_line: int = 0


def _labels(label: str) -> list[str]:
    return [p for p in label.split(",") if p]


def choose_because(labels: Iterable[str]) -> str | None:
    """The ``because`` of an accepted ``explained`` pair, from the explanation labels of its explained rows.

    :func:`normconf.results.because_matches` accepts a ``because`` when *some* label of the pair's rows
    (a row's ``explanation``, alternatives separated by ``;``) contains all of its ``knob=value`` parts.
    The rule, so that the entry holds on exactly the rows it was accepted from:

    1. the ``knob=value`` parts common to *every* label, in the order of the first label -- e.g.
       ``running_variance=unbiased`` for ``running_variance=unbiased`` (``running_var``) and
       ``running_variance=unbiased,precision=float16`` (``eval_y``).  A subset of every label, so it
       matches; and it says only what all explained outputs agree on.
    2. when the labels share no part (two unrelated conventions, e.g. ``normalize_variance=unbiased``
       on ``y`` and ``eps=1e-3`` on ``running_var``), the label carried by the most labels (ties: the
       first in row order, ``y`` before the statistics).  A label matches itself.  Joining the distinct
       labels (``a;b`` or ``a,b``) would *not* do: ``because_matches`` splits a ``because`` on ``,``
       only, and requires all its parts in one label, so ``a,b`` fails on rows labelled ``a`` and ``b``.

    ``None`` when no explained row carries a label.
    """
    found = [lab for raw in labels if isinstance(raw, str) for lab in raw.split(";") if lab.strip()]
    if not found:
        return None
    common = [p for p in _labels(found[0]) if all(p in _labels(lab) for lab in found[1:])]
    if common:
        return ",".join(dict.fromkeys(common))
    counts = Counter(found)
    best = max(counts.values())
    return next(lab for lab in found if counts[lab] == best)


def _is_false(v: Any) -> bool:
    """``as_expected`` is False (JSON false, a numpy/pandas boolean, or the text ``False`` of a CSV)."""
    if v is None:
        return False
    try:
        import pandas as pd

        if pd.isna(v):
            return False
    except (TypeError, ValueError):
        pass
    if isinstance(v, str):
        return v.strip().lower() == "false"
    return not bool(v)


def _load_results(path: str):
    """The results table; anything but a normconf results file is a usage error naming it."""
    from normconf.report.cli import load, resolve_results

    p = resolve_results(path)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise _usage_error(f"{p}: not a normconf results file ({type(e).__name__}: {e})") from None
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise _usage_error(f'{p}: not a normconf results file (expected {{"meta": ..., "results": [...]}})')
    df, _meta, p = load(str(p))
    return df, p


def pairs_to_accept(df, results_name: str, backends: list[str], globs: list[str], reason: str = "") -> list[Accepted]:
    """The entries for every pair of ``df`` that is not as expected (and passes the filters)."""
    from normconf.results import SEVERITY

    out: list[Accepted] = []
    if not len(df):
        return out
    for col in ("case", "backend", "file", "line", "outcome", "as_expected"):
        if col not in df.columns:
            raise _usage_error(f"{results_name}: not a normconf results file (no {col!r} column)")
    for (case, backend), g in df.groupby(["case", "backend"], sort=False, dropna=False):
        if not isinstance(case, str) or not isinstance(backend, str) or not case or not backend:
            raise _usage_error(f"{results_name}: a row without a case or backend id")
        if backends and backend not in backends:
            continue
        if globs and not any(fnmatch.fnmatchcase(case, pat) for pat in globs):
            continue
        if not any(_is_false(v) for v in g["as_expected"]):
            continue
        files = [f for f in g["file"] if isinstance(f, str) and f]
        if not files:
            raise _usage_error(f"{results_name}: the rows of {case} [{backend}] name no case file")
        lines = [int(v) for v in g["line"] if v is not None and str(v) not in ("", "nan", "<NA>")]
        outcome = max((str(o) for o in g["outcome"]), key=lambda o: SEVERITY[o])
        entry = {"outcome": outcome}
        if outcome == "explained":
            expl = g[g["outcome"] == "explained"]["explanation"]
            because = choose_because(e for e in expl if isinstance(e, str))
            if because:
                entry["because"] = because
        entry["reason"] = reason
        out.append(Accepted(case, backend, files[0], lines[0] if lines else 0, entry))
    out.sort(key=lambda a: (a.file, a.line, a.case, a.backend))
    return out


# ----------------------------------------------------------------------------------------
# Editing a case file


class CaseFile:
    """One case file as text plus its composed node tree; :meth:`set_expect` queues entries,
    :meth:`render` returns the text with them spliced in (the original text when none are queued)."""

    def __init__(self, path: str | os.PathLike[str], text: str):
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        self.path = str(path)
        self.text = text
        self.nl = "\r\n" if "\r\n" in text else "\n"
        try:
            self.root = YAML(typ="rt").compose(text)
            self.data = _plain(_safe_load(text))
        except YAMLError as e:
            raise _usage_error(
                f"{self.path}: not a valid YAML case file ({_one_line(e)}); fix it first "
                "(normconf validate names the problem)"
            ) from None
        cases = _get(self.root, "cases")
        if (
            cases is None
            or not _is_seq(cases)
            or not isinstance(self.data, dict)
            or not isinstance(self.data.get("cases"), list)
        ):
            raise _usage_error(f"{self.path}: no 'cases:' list: not a case file")
        self.cases = cases
        #: case id -> {backend: entry}, in the order queued
        self.pending: dict[str, dict[str, dict[str, str]]] = {}
        self.hints: dict[str, int] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "CaseFile":
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            raise _usage_error(f"{path}: case file not found") from None
        except OSError as e:
            raise _usage_error(f"{path}: cannot read the case file: {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _usage_error(f"{path}: not UTF-8 text: not a case file") from None
        return cls(path, text)

    # --- queueing ---------------------------------------------------------------------
    def set_expect(self, case_id: str, backend: str, entry: dict[str, str], line: int = 0) -> None:
        """Queue ``expect.<backend> = entry`` on the case ``case_id`` (found by id; ``line`` only says
        where the results saw it, for the error message)."""
        self._find(case_id, line)
        self.pending.setdefault(case_id, {})[backend] = dict(entry)
        self.hints.setdefault(case_id, line)

    def _find(self, case_id: str, line: int = 0) -> tuple[int, Any]:
        hits = [(i, n) for i, n in enumerate(self.cases.value) if _is_map(n) and _scalar(_get(n, "id")) == case_id]
        if not hits:
            where = f" (the results saw it at line {line})" if line else ""
            raise _usage_error(
                f"{self.path}: no case with id {case_id!r}{where}: the file changed since the run; "
                "run the cases again, then accept"
            )
        if len(hits) > 1:
            at = [h for h in hits if h[1].start_mark.line + 1 == line]
            if len(at) != 1:
                raise _usage_error(f"{self.path}: case id {case_id!r} appears {len(hits)} times: fix the file first")
            hits = at
        i, node = hits[0]
        if node.flow_style:
            raise _usage_error(
                f"{self.path}:{node.start_mark.line + 1}: case {case_id!r} is written as a flow "
                "mapping ({id: ..., ...}): write it as a block mapping to accept into it"
            )
        return i, node

    # --- rendering --------------------------------------------------------------------
    def render(self) -> str:
        """The text with every queued entry in place, checked to change nothing else."""
        if not self.pending:
            return self.text
        edits: list[tuple[int, int, str]] = []
        for case_id, entries in self.pending.items():
            _, node = self._find(case_id, self.hints.get(case_id, 0))
            edits.extend(self._case_edits(case_id, node, entries))
        edits.sort(key=lambda e: (e[0], e[1]))
        for (s1, e1, _), (s2, _e2, _) in zip(edits, edits[1:]):
            if s2 < e1:  # pragma: no cover - entries of different cases never overlap
                raise _usage_error(f"{self.path}: overlapping edits: add the entries by hand")
        text = self.text
        for s, e, new in reversed(edits):
            text = text[:s] + new + text[e:]
        self._check(text)
        return text

    def new_lines(self, text: str) -> dict[tuple[str, str], int]:
        """(case id, backend) -> 1-based line of that ``expect:`` key in ``text`` (the rendered file)."""
        from ruamel.yaml import YAML

        root = YAML(typ="rt").compose(text)
        out: dict[tuple[str, str], int] = {}
        for n in _get(root, "cases").value:
            cid = _scalar(_get(n, "id")) if _is_map(n) else None
            exp = _get(n, "expect") if cid in self.pending else None
            if exp is not None and _is_map(exp):
                for k, _v in exp.value:
                    if _scalar(k) in self.pending[cid]:
                        out[(cid, _scalar(k))] = k.start_mark.line + 1
        return out

    def _check(self, text: str) -> None:
        """The edited text must hold the original data plus the new entries, nothing else."""
        from ruamel.yaml.error import YAMLError

        want = copy.deepcopy(self.data)
        for case_id, entries in self.pending.items():
            i, _ = self._find(case_id, self.hints.get(case_id, 0))
            case = want["cases"][i]
            if not isinstance(case.get("expect"), dict):
                case["expect"] = {}
            case["expect"].update(copy.deepcopy(entries))
        try:
            got = _plain(_safe_load(text))
        except YAMLError as e:
            got = f"a YAML error: {_one_line(e)}"
        if got != want:
            listing = "; ".join(
                f"{c}: " + ", ".join(render_entry(b, e) for b, e in ents.items()) for c, ents in self.pending.items()
            )
            raise _usage_error(
                f"{self.path}: the entries could not be spliced in without changing other content "
                f"(an unusual layout); nothing was written: add them by hand: {listing}"
            )

    def _case_edits(self, case_id: str, node: Any, entries: dict[str, dict[str, str]]) -> list[tuple[int, int, str]]:
        text = self.text
        exp_key, exp = _get_item(node, "expect")
        if exp_key is None:  # no expect: a block one right after the id line
            id_key, id_val = _get_item(node, "id")
            indent = id_key.start_mark.column
            at = self._line_end(_content_end(id_val, text))
            body = [" " * indent + "expect:"] + [
                " " * (indent + self._map_indent()) + render_entry(b, e) for b, e in entries.items()
            ]
            return [self._insert(at, body)]
        if _is_map(exp) and exp.flow_style:
            return self._flow_edits(case_id, exp, entries)
        if _is_map(exp):
            return self._block_edits(exp, entries)
        if _scalar(exp) is not None and exp.tag.endswith(":null"):  # expect: (empty), ~ or null
            col = exp_key.start_mark.column
            edits = []
            if exp.value != "":  # drop the `null` / `~`, keep a comment after it
                edits.append((exp.start_mark.index - _ws_before(text, exp.start_mark.index), exp.end_mark.index, ""))
            body = [" " * (col + self._map_indent()) + render_entry(b, e) for b, e in entries.items()]
            edits.append(self._insert(self._line_end(exp_key.end_mark.index), body))
            return edits
        raise _usage_error(
            f"{self.path}:{exp_key.start_mark.line + 1}: expect: of case {case_id!r} is not a mapping "
            "(expected {backend: {outcome, reason}}): fix it first"
        )

    def _block_edits(self, exp: Any, entries: dict[str, dict[str, str]]) -> list[tuple[int, int, str]]:
        text = self.text
        items = {_scalar(k): (k, v) for k, v in exp.value}
        indent = exp.value[0][0].start_mark.column
        edits: list[tuple[int, int, str]] = []
        new: list[str] = []
        for b, entry in entries.items():
            if b not in items:
                new.append(" " * indent + render_entry(b, entry))
                continue
            k, v = items[b]
            start = text.rfind("\n", 0, k.start_mark.index) + 1
            if text[start : k.start_mark.index].strip():
                raise _usage_error(
                    f"{self.path}:{k.start_mark.line + 1}: the expect entry for {b!r} does not start "
                    "its line: edit it by hand"
                )
            end = self._line_end(_content_end(v, text))
            full, eol = self._comments(start, end, [k, v])
            line = " " * indent + render_entry(b, entry) + (eol[0] if eol else "")
            lines = full + [" " * indent + c.lstrip() for c in eol[1:]] + [line]
            edits.append(
                (
                    start,
                    end,
                    "".join(ln + self.nl for ln in lines) if text[start:end].endswith("\n") else self.nl.join(lines),
                )
            )
        if new:
            last = max(_content_end(v, text) for _k, v in exp.value)
            edits.append(self._insert(self._line_end(last), new))
        return edits

    def _flow_edits(self, case_id: str, exp: Any, entries: dict[str, dict[str, str]]) -> list[tuple[int, int, str]]:
        text = self.text
        items = {_scalar(k): (k, v) for k, v in exp.value}
        edits: list[tuple[int, int, str]] = []
        new: list[str] = []
        for b, entry in entries.items():
            if b in items:
                k, v = items[b]
                edits.append((k.start_mark.index, _content_end(v, text), render_entry(b, entry)))
            else:
                new.append(render_entry(b, entry))
        if new:
            if exp.value:
                at = _content_end(exp.value[-1][1], text)
                edits.append((at, at, ", " + ", ".join(new)))
            else:
                at = exp.start_mark.index + 1
                if text[at - 1 : at] != "{":
                    raise _usage_error(
                        f"{self.path}:{exp.start_mark.line + 1}: cannot read the flow expect: of case "
                        f"{case_id!r}: edit it by hand"
                    )
                edits.append((at, at, ", ".join(new)))
        return edits

    # --- helpers ----------------------------------------------------------------------
    def _line_end(self, i: int) -> int:
        """Offset just after the line break of the line holding offset ``i - 1`` (end of text if none)."""
        j = self.text.find("\n", max(i, 0))
        return len(self.text) if j < 0 else j + 1

    def _insert(self, at: int, lines: list[str]) -> tuple[int, int, str]:
        body = "".join(ln + self.nl for ln in lines)
        if at == len(self.text) and self.text and not self.text.endswith("\n"):
            body = self.nl + body[: -len(self.nl)]  # keep the file's missing final line break
        return (at, at, body)

    def _map_indent(self) -> int:
        """Indentation of nested block mappings in this file: of ``expect:`` entries where the file has some,
        else the most common step of its nested block mappings, else 2."""
        steps: Counter[int] = Counter()
        exp_steps: Counter[int] = Counter()

        def walk(node: Any) -> None:
            if _is_map(node):
                for k, v in node.value:
                    if _is_map(v) and not v.flow_style and v.value:
                        step = v.value[0][0].start_mark.column - k.start_mark.column
                        if step > 0:
                            steps[step] += 1
                            if _scalar(k) == "expect":
                                exp_steps[step] += 1
                    walk(v)
            elif _is_seq(node):
                for v in node.value:
                    walk(v)

        walk(self.root)
        for c in (exp_steps, steps):
            if c:
                return c.most_common(1)[0][0]
        return 2

    def _comments(self, start: int, end: int, nodes: list[Any]) -> tuple[list[str], list[str]]:
        """Comments in the text ``[start, end)`` of an entry: (whole comment lines, end-of-line comments with
        the blanks before them).  A ``#`` counts when it is outside every scalar of ``nodes`` and starts the
        line or follows a blank."""
        text = self.text
        spans: list[tuple[int, int]] = []

        def walk(n: Any) -> None:
            if _is_map(n):
                for k, v in n.value:
                    walk(k)
                    walk(v)
            elif _is_seq(n):
                for v in n.value:
                    walk(v)
            elif n.value != "":
                spans.append((n.start_mark.index, n.end_mark.index))

        for n in nodes:
            walk(n)
        full: list[str] = []
        eol: list[str] = []
        pos = start
        while pos < end:
            stop = text.find("\n", pos, end)
            stop = end if stop < 0 else stop
            line = text[pos:stop].rstrip("\r")
            for j, ch in enumerate(line):
                p = pos + j
                if ch == "#" and (j == 0 or line[j - 1] in " \t") and not any(a <= p < b for a, b in spans):
                    if line[:j].strip():
                        eol.append(line[len(line[:j].rstrip()) :])
                    else:
                        full.append(line)
                    break
            pos = stop + 1
        return full, eol


# ----------------------------------------------------------------------------------------
# The command


def accept(
    results: str, backends: Iterable[str] = (), cases: Iterable[str] = (), reason: str | None = None, out=None
) -> int:
    """``normconf expect accept``; returns the exit code (usage errors raise :class:`normconf.cli.UsageError`)."""
    import sys

    out = out or sys.stdout
    if reason is not None and len(reason.strip()) < 3:
        raise _usage_error(
            f"--reason must say why, in words: at least 3 characters that are not blank (got {reason!r})"
        )
    backends, cases = list(backends), list(cases)
    df, rp = _load_results(results)
    todo = pairs_to_accept(df, str(rp), backends, cases, reason or "")
    filters = ", ".join(
        ([f"--backend {','.join(backends)}"] if backends else []) + ([f"--case {' '.join(cases)}"] if cases else [])
    )
    if not todo:
        print(
            f"nothing to accept: every case × backend pair in {rp}{' matching ' + filters if filters else ''} "
            "is as expected",
            file=out,
        )
        return 0
    # decide every edit first (all files rendered and checked), then write
    files: dict[str, CaseFile] = {}
    for a in todo:
        if a.file not in files:
            p = Path(a.file)
            if not p.is_file():
                raise _usage_error(
                    f"{a.file}: case file not found (named by {rp} for case {a.case}); "
                    "run accept in the folder the run started in"
                )
            files[a.file] = CaseFile.load(p)
        files[a.file].set_expect(a.case, a.backend, a.entry, a.line)
    rendered: dict[str, str] = {}
    for name, cf in files.items():
        rendered[name] = cf.render()
        lines = cf.new_lines(rendered[name])
        for a in todo:
            if a.file == name:
                a.new_line = lines.get((a.case, a.backend), 0)
    from normconf.results import atomic_write_text

    for name, text in rendered.items():
        if text != files[name].text:
            atomic_write_text(os.path.realpath(name), text)
    print(f"accepted {len(todo)} expectation(s) into {len(files)} file(s):", file=out)
    for a in todo:
        print(f"  {a.file}:{a.new_line}: {a.case}: expect.{render_entry(a.backend, a.entry)}", file=out)
    if not reason:
        print(FILL_IN, file=out)
        print(f"  then: normconf validate {' '.join(files)}", file=out)
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    from normconf.cli import _csv_list

    return accept(args.results, _csv_list(args.backend), list(args.case or ()), args.reason)


def add_parser(subparsers) -> None:
    """Register ``normconf expect accept`` (called by :mod:`normconf.cli`)."""
    p = subparsers.add_parser(
        "expect",
        help="maintain the expect: entries of case files",
        description="Maintain the expect: entries of case files.",
    )
    sub = p.add_subparsers(dest="expect_command", required=True, metavar="ACTION")
    a = sub.add_parser(
        "accept",
        help="write expect: entries for the results that were not as expected",
        description="For every case × backend pair of RESULTS that is not as expected, write an expect: entry "
        '{outcome, because (for explained), reason: ""} for that backend into the case\'s file '
        "(replacing one the case has); only those entries change in the file. Fill in each reason "
        "with the evidence: normconf validate refuses an empty one.",
    )
    a.add_argument("results", metavar="RESULTS", help="results.json (or results.csv, or a folder holding one)")
    a.add_argument("--backend", "-b", action="append", metavar="ID[,ID...]", help="only these backends; repeatable")
    a.add_argument("--case", "-k", action="append", metavar="GLOB", help="only cases whose id matches; repeatable")
    a.add_argument(
        "--reason",
        metavar="TEXT",
        default=None,
        help="write TEXT as the reason of every new entry (at least 3 characters) instead of leaving it empty",
    )
    a.set_defaults(func=cmd_accept)
