"""Small helpers over ruamel.yaml's node tree (the round-trip reader of ``normconf expect accept``):
kind tests, key lookup, and where a node's text ends (for text splices that keep comments)."""

from __future__ import annotations

import io
from typing import Any


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]


def _ws_before(text: str, i: int) -> int:
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] in " \t":
        n += 1
    return n


def _is_map(node: Any) -> bool:
    from ruamel.yaml.nodes import MappingNode

    return isinstance(node, MappingNode)


def _is_seq(node: Any) -> bool:
    from ruamel.yaml.nodes import SequenceNode

    return isinstance(node, SequenceNode)


def _scalar(node: Any) -> str | None:
    from ruamel.yaml.nodes import ScalarNode

    return node.value if isinstance(node, ScalarNode) else None


def _get_item(node: Any, key: str) -> tuple[Any, Any]:
    if _is_map(node):
        for k, v in node.value:
            if _scalar(k) == key:
                return k, v
    return None, None


def _get(node: Any, key: str) -> Any:
    return _get_item(node, key)[1]


def _content_end(node: Any, text: str) -> int:
    """Offset just after the last character of ``node``'s text (comments and blanks after it excluded)."""
    if (_is_map(node) or _is_seq(node)) and not node.flow_style and node.value:
        kids = [n for kv in node.value for n in kv] if _is_map(node) else list(node.value)
        end = max(_content_end(k, text) for k in kids)
    else:
        end = node.end_mark.index
    while end > 0 and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _safe_load(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def render_entry(backend: str, entry: dict[str, str]) -> str:
    """``backend: {outcome: "...", because: "...", reason: "..."}`` on one line (ruamel.yaml's quoting)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    inner = CommentedMap((k, DoubleQuotedScalarString(v)) for k, v in entry.items())
    inner.fa.set_flow_style()
    y = YAML(typ="rt")
    y.width = 1 << 30  # never wrap: one line per entry, like the library's
    buf = io.StringIO()
    y.dump(CommentedMap([(backend, inner)]), buf)
    text = buf.getvalue().rstrip("\n")
    if "\n" in text:  # pragma: no cover - double-quoted scalars escape line breaks
        raise ValueError(f"entry for {backend!r} does not fit on one line")
    return text
