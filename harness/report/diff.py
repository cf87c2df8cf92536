"""What changed between two runs: ``normconf diff OLD NEW``.

The unit is the (case, backend) *result* (its worst outcome over outputs and
steps, as in the report's matrix).  Sections:

* **new failures** — ``mismatch`` or ``error`` in NEW, not failing in OLD
  (``pass``/``explained``/``unsupported``, or absent), and not what the case's
  ``expect`` entry declares.  Any new failure makes the exit code 1.
* **new failures the case expects** — as above, but declared by the case
  (listed, exit code unaffected).
* **fixed** — failing in OLD, not failing in NEW.
* **still failing, changed** — ``mismatch`` ↔ ``error``.
* **changed explanations** — same outcome, but the explanation labels (or their text) differ.
* **other outcome changes** — e.g. ``pass`` → ``explained`` (with the new labels) or → ``unsupported``.
* **changed versions** — backend versions and the environment (Python, NumPy, OS, …).
* **changed case parameters** — per case present in both runs, the parameters that differ
  (``eps 1e-05 → 1e-12``), from what each run recorded (``meta.case_info``, normconf.case_info);
  a result line of such a case names them too.  When a row's explanation text changed, the old
  and the new text are both shown.
* added / removed results (a case or backend only in one run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from normconf.report.model import FAILING, Model, Pair, build


@dataclass
class Change:
    case: str
    backend: str
    old: str  # outcome in OLD ("" when absent)
    new: str  # outcome in NEW ("" when absent)
    old_labels: list[str] = field(default_factory=list)
    new_labels: list[str] = field(default_factory=list)
    detail: str = ""  # one line from NEW (or OLD when the pair disappeared)
    old_detail: str = ""
    expected: bool | None = None  # NEW's as_expected
    old_texts: list[str] = field(default_factory=list)  # explanation texts in OLD
    new_texts: list[str] = field(default_factory=list)  # explanation texts in NEW
    params: list[tuple[str, str, str]] = field(default_factory=list)  # the case's (field, old, new)

    @property
    def where(self) -> str:
        return f"{self.case} [{self.backend}]"


@dataclass
class Diff:
    old_name: str
    new_name: str
    old_results: int
    new_results: int
    new_failures: list[Change] = field(default_factory=list)
    expected_failures: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    changed_failures: list[Change] = field(default_factory=list)
    changed_explanations: list[Change] = field(default_factory=list)
    other_changes: list[Change] = field(default_factory=list)
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    versions: list[tuple[str, str, str]] = field(default_factory=list)  # (what, old, new)
    #: {case: [(field, old, new)]} for the cases whose recorded parameters differ
    params: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    @property
    def regressions(self) -> int:
        return len(self.new_failures)

    @property
    def exit_code(self) -> int:
        """0: no new failures; 1: at least one."""
        return 1 if self.new_failures else 0

    def sections(self) -> list[tuple[str, str, list[Change]]]:
        """(key, title, changes) in reading order."""
        return [
            ("new_failures", "New failures", self.new_failures),
            ("expected_failures", "New failures the case expects", self.expected_failures),
            ("fixed", "Fixed", self.fixed),
            ("changed_failures", "Still failing, changed", self.changed_failures),
            ("changed_explanations", "Changed explanations", self.changed_explanations),
            ("other_changes", "Other outcome changes", self.other_changes),
            ("added", "Added results", self.added),
            ("removed", "Removed results", self.removed),
        ]

    @property
    def unchanged(self) -> bool:
        return not self.versions and not self.params and not any(ch for _, _, ch in self.sections())

    def summary(self, skip: tuple[str, ...] = ()) -> str:
        parts = [f"{len(ch)} {title.lower()}" for key, title, ch in self.sections() if ch and key not in skip]
        if self.versions:
            parts.append(f"{len(self.versions)} version change(s)")
        if self.params:
            parts.append(f"{len(self.params)} case(s) with changed parameters")
        return ", ".join(parts) if parts else "no changes"


def _labels(p: Pair | None) -> list[str]:
    return sorted(p.explanations) if p is not None else []


def _texts(p: Pair | None) -> list[str]:
    if p is None:
        return []
    return sorted({r["explanation_text"] for r in p.rows if r["explanation_text"]})


def _change(c: str, b: str, po: Pair | None, pn: Pair | None) -> Change:
    return Change(
        case=c,
        backend=b,
        old=po.outcome if po else "",
        new=pn.outcome if pn else "",
        old_labels=_labels(po),
        new_labels=_labels(pn),
        detail=(pn.summary if pn else (po.summary if po else "")),
        old_detail=po.summary if po else "",
        expected=pn.as_expected if pn else None,
        old_texts=_texts(po),
        new_texts=_texts(pn),
    )


_UNSET = "(unset)"


def _params(old_meta: dict[str, Any] | None, new_meta: dict[str, Any] | None) -> dict[str, list[tuple[str, str, str]]]:
    """{case: [(field, old, new)]} over the cases both runs recorded (``meta.case_info[case].params``)."""
    oi = (old_meta or {}).get("case_info") or {}
    ni = (new_meta or {}).get("case_info") or {}
    out: dict[str, list[tuple[str, str, str]]] = {}
    for case in ni:
        if case not in oi or not isinstance(oi[case], dict) or not isinstance(ni[case], dict):
            continue
        po, pn = oi[case].get("params") or {}, ni[case].get("params") or {}
        changed = [
            (k, str(po.get(k, _UNSET)), str(pn.get(k, _UNSET)))
            for k in dict.fromkeys([*po, *pn])
            if str(po.get(k, _UNSET)) != str(pn.get(k, _UNSET))
        ]
        if changed:
            out[case] = changed
    return out


def param_text(changes: list[tuple[str, str, str]]) -> str:
    """``eps 1e-05 → 1e-12; mode train → eval``."""
    return "; ".join(f"{k} {o} → {n}" for k, o, n in changes)


_ENV_KEYS = ["normconf", "python", "numpy", "platform", "cpu", "device"]


def _versions(old: Model, new: Model) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for b in dict.fromkeys(list(old.backends) + list(new.backends)):
        vo, vn = old.versions.get(b, ""), new.versions.get(b, "")
        if vo and vn and vo != vn:
            out.append((b, vo, vn))
    eo = (old.meta or {}).get("environment") or {}
    en = (new.meta or {}).get("environment") or {}
    for k in _ENV_KEYS:
        if k in eo and k in en and str(eo[k]) != str(en[k]):
            out.append((k, str(eo[k]), str(en[k])))
    return out


def diff(
    old_df: pd.DataFrame,
    new_df: pd.DataFrame,
    old_meta: dict[str, Any] | None = None,
    new_meta: dict[str, Any] | None = None,
    old_name: str = "OLD",
    new_name: str = "NEW",
) -> Diff:
    old = build(old_df, old_meta, read_cases=False)
    new = build(new_df, new_meta, read_cases=False)
    d = Diff(old_name, new_name, len(old.pairs), len(new.pairs), versions=_versions(old, new))
    d.params = _params(old_meta, new_meta)
    keys = list(dict.fromkeys(list(new.pairs) + list(old.pairs)))
    for c, b in keys:
        po, pn = old.pairs.get((c, b)), new.pairs.get((c, b))
        ch = _change(c, b, po, pn)
        ch.params = d.params.get(c, [])
        if pn is None:
            d.removed.append(ch)
            continue
        fail_new = pn.outcome in FAILING
        fail_old = po is not None and po.outcome in FAILING
        if po is None:
            d.added.append(ch)
        if fail_new and not fail_old:
            (d.expected_failures if pn.as_expected is True else d.new_failures).append(ch)
            continue
        if po is None:
            continue
        if fail_old and not fail_new:
            d.fixed.append(ch)
        elif fail_old and fail_new and po.outcome != pn.outcome:
            d.changed_failures.append(ch)
        elif po.outcome != pn.outcome:
            d.other_changes.append(ch)  # e.g. pass -> explained (its labels are shown), pass -> unsupported
        elif ch.old_labels != ch.new_labels or _texts(po) != _texts(pn):
            d.changed_explanations.append(ch)
    return d


# ----------------------------------------------------------------------------------------
# output


def _line(ch: Change) -> str:
    arrow = f"{ch.old or '(absent)'} → {ch.new or '(absent)'}"
    s = f"  {ch.where}: {arrow}"
    if ch.old_labels != ch.new_labels and (ch.old_labels or ch.new_labels):
        s += f"  [{', '.join(ch.old_labels) or 'no explanation'} → {', '.join(ch.new_labels) or 'no explanation'}]"
    if ch.params:
        s += f"\n      case parameters changed: {param_text(ch.params)}"
    det = ch.detail or (f"was: {ch.old_detail}" if ch.old_detail else "")
    if det:
        s += f"\n      {_cut(det)}"
    if ch.old and ch.new and ch.old_texts != ch.new_texts:
        s += f"\n      explanation was: {_cut(' | '.join(ch.old_texts) or '(none)')}"
        s += f"\n      explanation now: {_cut(' | '.join(ch.new_texts) or '(none)')}"
    return s


def _cut(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def format_text(d: Diff, limit: int = 200) -> str:
    """The diff as plain text (what ``normconf diff`` prints)."""
    out = [f"normconf diff: {d.old_name} ({d.old_results} results) → {d.new_name} ({d.new_results} results)"]
    if d.versions:
        out.append("")
        out.append(f"Changed versions ({len(d.versions)}):")
        out.extend(f"  {what}: {o} → {n}" for what, o, n in d.versions)
    if d.params:
        out.append("")
        out.append(f"Changed case parameters ({len(d.params)}):")
        out.extend(f"  {case}: {param_text(ch)}" for case, ch in list(d.params.items())[:limit])
        if len(d.params) > limit:
            out.append(f"  ... and {len(d.params) - limit} more")
    for key, title, changes in d.sections():
        if not changes:
            continue
        out.append("")
        note = "  <- exit code 1" if key == "new_failures" else ""
        if key in ("added", "removed") and len(changes) > 20:
            out.append(f"{title} ({len(changes)}): " + ", ".join(c.where for c in changes[:20]) + ", ...")
            continue
        out.append(f"{title} ({len(changes)}):{note}")
        out.extend(_line(c) for c in changes[:limit])
        if len(changes) > limit:
            out.append(f"  ... and {len(changes) - limit} more")
    out.append("")
    verdict = f"{d.regressions} new failure(s)" if d.regressions else "no new failures"
    rest = d.summary(skip=("new_failures",))
    out.append(f"{verdict}; {rest}")
    return "\n".join(out) + "\n"


def as_json(d: Diff) -> dict[str, Any]:
    """``normconf diff --json``: the verdict, every section's changes, versions and parameter changes."""
    from dataclasses import asdict

    return {
        "command": "diff",
        "old": d.old_name,
        "new": d.new_name,
        "exit_code": d.exit_code,
        "new_failures": d.regressions,
        "summary": d.summary(),
        "sections": {key: [asdict(c) for c in ch] for key, _, ch in d.sections()},
        "versions": [{"what": w, "old": o, "new": n} for w, o, n in d.versions],
        "params": {c: [{"field": k, "old": o, "new": n} for k, o, n in ch] for c, ch in d.params.items()},
    }


def format_html(d: Diff) -> str:
    """The diff as one self-contained HTML page."""
    from normconf.report.html import _asset, _env

    return _env().get_template("diff.html.j2").render(d=d, css=_asset("report.css"))
