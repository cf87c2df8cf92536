"""What ``normconf fuzz`` found, and the case files it writes for it.

A :class:`Finding` is one signature ``(backend, outcome, output)`` with the smallest failing case
seen for it.  :func:`finding_yaml` writes it as a ready case file: ``normconf: 1`` (the format
version) first, a comment header (what was found, the command, the backend versions, how to
reproduce and keep it), then ``cases:`` with the one case (``op:`` for any op but BatchNorm).
Message text in the header and the description has terminal escape sequences removed and other
control characters escaped, and is one line.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the case-file format version the written files carry (normconf.cases.FORMAT_VERSIONS)
FORMAT_VERSION = 1
#: CSI (``ESC [ ... final``), OSC (``ESC ] ... BEL`` or ``ESC \\``) and two-character escape sequences
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")


def one_line(text: str) -> str:
    """``text`` for a YAML comment or a description: escape sequences removed, whitespace runs as one
    space, any remaining control character escaped (:func:`normconf.case_errors.escape_text`)."""
    from normconf.case_errors import escape_text

    return escape_text(" ".join(_ANSI.sub("", text).split()))


def yaml_case(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=100)


def size_key(d: dict[str, Any], text: str) -> tuple[int, int, int, int]:
    """How small a case is: elements over all steps, then rank, steps and YAML length."""
    shape = d["shape"]
    return (math.prod(shape) * d.get("steps", 1), len(shape), d.get("steps", 1), len(text))


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", s).strip("-")[:60] or "x"


@dataclass
class Finding:
    """One signature and the smallest failing case seen for it (``case``: the mapping, ``op`` included
    for any op but BatchNorm)."""

    backend: str
    outcome: str
    output: str
    case: dict[str, Any]
    message: str
    explanation: str
    version: str
    found_at: int  # example number (1-based) in the whole run
    round: int
    key: tuple = ()
    path: Path | None = None

    @property
    def signature(self) -> tuple[str, str, str]:
        return (self.backend, self.outcome, self.output)


def finding_yaml(f: Finding, command: str, versions: dict[str, str]) -> tuple[str, str]:
    """(case id, file text) of a finding: a ready case file."""
    import yaml

    text = yaml_case(f.case)
    digest = hashlib.sha256(f"{f.backend}|{f.outcome}|{f.output}|{text}".encode()).hexdigest()[:8]
    cid = slug(f"fuzz_{f.backend}_{f.outcome}_{f.output}_{digest}")
    msg = one_line(f.message)
    desc = f"Found by normconf fuzz: {f.backend} gives {f.outcome}"
    desc += f" in {f.output}" if f.outcome == "mismatch" else f" ({f.output})"
    desc += f": {msg[:300]}"
    case = {"id": cid, "description": desc, **f.case}
    op = f" ({one_line(str(f.case['op']))})" if "op" in f.case else ""
    b, what = one_line(f.backend), one_line(f"{f.outcome} ({f.output})")
    shown = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v) or "unknown"
    lines = [
        f"normconf: {FORMAT_VERSION}",
        f"# Found by `normconf fuzz`{op}: {b} -> {what}, shrunk to the smallest case",
        f"# that still shows it (example {f.found_at}, round {f.round}).",
        f"# message: {msg[:200]}",
        f"# command: {one_line(command)}",
        f"# backend versions: {one_line(shown)}",
        f"# reproduce: normconf run <this file> --backend {b}",
        "# To keep it in the suite as a known discrepancy, add under the case:",
        f"#   expect: {{{b}: {{outcome: {one_line(f.outcome)}, reason: <why>}}}}",
    ]
    body = yaml.safe_dump({"cases": [case]}, sort_keys=False, default_flow_style=None, width=100)
    return cid, "\n".join(lines) + "\n" + body


def write_finding(f: Finding, out: Path, command: str, versions: dict[str, str]) -> Path:
    from normconf.results import atomic_write_text

    cid, text = finding_yaml(f, command, versions)
    path = out / f"{cid}.yaml"
    atomic_write_text(path, text)
    f.path = path
    return path
