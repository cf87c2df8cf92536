"""Case-file errors: :class:`CaseError`/:class:`CaseFileError`, escaping, and pydantic errors → positioned messages."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from normconf.case_limits import MAX_INT_LITERAL_CHARS


def _short_repr(v: Any, limit: int = 60) -> str:
    """``repr(v)``, shortened; an integer of hundreds of digits is shown by its first digits and length
    (``repr`` of a huge int is slow, and refused above 4300 digits)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        if v.bit_length() > 4 * MAX_INT_LITERAL_CHARS:
            return f"an integer of {v.bit_length()} bits"
        digits = str(abs(v))
        return f"{'-' if v < 0 else ''}{digits[:6]}…{digits[-3:]} ({len(digits)} digits)"
    rep = repr(v)
    return rep if len(rep) <= limit else rep[: limit - 3] + "..."


_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_text(s: str) -> str:
    """``s`` with every character a terminal could act on written as an escape: control characters
    (``\\x1b`` starts terminal escape sequences, ``\\x07`` rings the bell), format characters
    (bidirectional overrides), line and paragraph separators, surrogates (undecodable file names)."""
    if s.isprintable():
        return s
    out = []
    for c in s:
        if c.isprintable():
            out.append(c)
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
        else:
            o = ord(c)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


@dataclass
class CaseError:
    """One problem in a case file, with its position (1-based line and column).

    The file name, field and message are stored escaped (:func:`escape_text`): text from a case file
    never reaches a terminal raw.
    """

    file: str
    line: int
    column: int
    field: str
    message: str

    def __post_init__(self) -> None:
        self.file = escape_text(str(self.file))
        self.field = escape_text(str(self.field))
        self.message = escape_text(str(self.message))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class CaseFileError(Exception):
    """All problems found in one or more case files."""

    def __init__(self, errors: list[CaseError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _format_loc(prefix: str, loc: Iterable[Any]) -> str:
    s = prefix
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else f".{part}"
    return s


#: pydantic adds the union member it tried to ``loc``; these are not keys of the file
_UNION_TAGS = re.compile(
    r"^(int|float|list\[.*\]|Generator|Momentum|Affine|bool|str|function-.*|literal\[.*\]|constrained-.*|tagged-union\[.*\])$"
)


def _is_tag(err: dict[str, Any], i: int) -> bool:
    loc = err["loc"]
    part = loc[i]
    if not (isinstance(part, str) and _UNION_TAGS.match(part)):
        return False
    # the last element of an unknown-key error is the user's key (``input: {int: 1}``)
    return not (err["type"] == "extra_forbidden" and i == len(loc) - 1)


#: what a field accepts, said when a value fits none of the forms of a union
_UNION_HINTS = {
    "momentum": "expected {batch_weight: w} (PyTorch's momentum), {running_weight: 1-w} (Keras/ONNX momentum) or 'cumulative'",
    "data": "expected a flat list of numbers (or one list per step)",
    "affine": "expected true, false or {gamma: ..., beta: ...}",
    "per_channel": (
        "expected a number (every channel), a list of numbers (one per channel) or a generator "
        "{dist: normal|uniform|constant, mean, std, low, high, value, seed}"
    ),
    "number": "expected a number",
}
_FIELD_HINTS = {
    "momentum": _UNION_HINTS["momentum"],
    "shape": "expected a list of 2 to 5 integers (N, C, *spatial)",
    "data": _UNION_HINTS["data"],
    "affine": _UNION_HINTS["affine"],
}


def _union_hint(loc: tuple[Any, ...], branches: list[str]) -> str:
    names = [p for p in loc if isinstance(p, str)]
    last = names[-1] if names else ""
    if set(branches) <= {"int", "float"}:
        return _UNION_HINTS["number"]
    if last in ("running_mean", "running_var", "gamma", "beta"):
        return _UNION_HINTS["per_channel"]
    if last in _UNION_HINTS:
        return _UNION_HINTS[last]
    if last == "data" or (len(names) == 1 and names[0] == "data"):
        return _UNION_HINTS["data"]
    return "expected one of: " + ", ".join(branches)


def _prune_unions(errs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per problem: for a value that failed every form of a union, keep the form it was
    closest to (its errors went deepest) or, when it fits none, say what the field accepts."""
    out: list[dict[str, Any]] = []
    groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for e in errs:
        i = next((j for j in range(len(e["loc"])) if _is_tag(e, j)), None)
        if i is None:
            out.append(e)
        else:
            groups.setdefault(tuple(e["loc"][:i]), []).append((i, e))
    for key, members in groups.items():
        by_branch: dict[str, list[dict[str, Any]]] = {}
        for i, e in members:
            by_branch.setdefault(e["loc"][i], []).append(e)
        depth = {b: max(len(e["loc"]) - len(key) - 1 for e in es) for b, es in by_branch.items()}
        best_depth = max(depth.values())
        if best_depth == 0 and len(by_branch) > 1:  # the value fits no form of the union
            first = members[0][1]
            out.append(
                {
                    "type": "union_mismatch",
                    "loc": key,
                    "msg": _union_hint(key, list(by_branch)),
                    "input": first.get("input"),
                }
            )
            continue
        branch = min((b for b in by_branch if depth[b] == best_depth), key=lambda b: len(by_branch[b]))
        stripped = [{**e, "loc": e["loc"][: len(key)] + e["loc"][len(key) + 1 :]} for e in by_branch[branch]]
        out.extend(_prune_unions(stripped))
    return out


def _describe(err: dict[str, Any], loc: tuple[Any, ...], allowed_keys: Callable[[tuple[Any, ...]], list[str]]) -> str:
    """The message for one pydantic error at ``loc``; ``allowed_keys(loc)`` lists the keys of the
    mapping an unknown key was found in (for "did you mean")."""
    typ = err["type"]
    if typ == "extra_forbidden":
        key = loc[-1]
        allowed = allowed_keys(loc)
        hint = difflib.get_close_matches(str(key), allowed, n=1)
        msg = f"unknown key {key!r}"
        if hint:
            return msg + f" (did you mean {hint[0]!r}?)"
        return msg + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    if typ == "missing":
        return "required field is missing"
    if typ == "string_pattern_mismatch" and loc == ("id",):
        return f"ids are letters, digits and _ . + - and start with a letter or digit (got {err.get('input')!r})"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and "(got " not in msg:
        msg += f" (got {_short_repr(err['input'])})"
    top = loc[0] if loc else None
    if (
        top in _FIELD_HINTS
        and len(loc) == 1
        and typ
        in (
            "model_type",
            "literal_error",
            "list_type",
            "dict_type",
            "bool_type",
            "float_type",
            "int_type",
            "too_long",
            "too_short",
        )
    ):
        msg += f"; {_FIELD_HINTS[top]}"
    return msg
