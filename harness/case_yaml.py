"""Reading case files safely (file type, size, symbolic links) and YAML 1.2 into positioned nodes."""

from __future__ import annotations

import errno
import math
import os
import re
import stat
from typing import Any

import yaml

from normconf.case_errors import CaseError, CaseFileError, escape_text
from normconf.case_limits import (
    MAX_ALIAS_EXPANSION,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_INT_LITERAL_CHARS,
    MAX_LISTED,
)

# YAML 1.2 core schema.  PyYAML implements YAML 1.1, which reads plain scalars that YAML 1.2 (and
# most other tools today) read differently: `yes`/`on` are booleans, `010` is octal 8, `1:30` is the
# sexagesimal 90, `1_000` is 1000, `2024-01-01` a date.  normconf reads every plain scalar as YAML 1.2's
# core schema does (null, true/false, decimal / 0o octal / 0x hexadecimal integers, floats); a plain
# scalar that YAML 1.1 would read as a different non-string value is refused with a message saying
# both readings, since whoever wrote it may have meant either.  Merge keys (`<<`), a YAML 1.1
# extension that most YAML 1.2 loaders keep, are kept.  The YAML 1.1-only tags (!!set, !!binary,
# !!omap, !!pairs, !!timestamp) are refused.

_CORE = "tag:yaml.org,2002:"
#: the tag given to a plain scalar that YAML 1.1 and YAML 1.2 read differently (refused)
_YAML11_TAG = "tag:normconf,2024:yaml11-ambiguous"
_INT12 = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT12 = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_BOOL12 = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULL12 = ("", "~", "null", "Null", "NULL")
#: YAML 1.1 booleans that are strings in YAML 1.2.  The YAML 1.1 type repository lists y/Y/n/N too;
#: PyYAML reads them as strings, and `y` is the name of BatchNorm's output (`outputs: [y]`), so they
#: are read as strings here as well
_BOOL11_ONLY = {
    w: b for b, words in ((True, "yes Yes YES on On ON"), (False, "no No NO off Off OFF")) for w in words.split()
}
#: numbers that YAML 1.1 and 1.2 read alike (or that YAML 1.1 reads as a string): the fast path
_SAME_NUMBER = re.compile(r"[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
#: PyYAML's YAML 1.1 regular expressions, by tag
_RESOLVERS11 = {tag: rx for lst in yaml.resolver.Resolver.yaml_implicit_resolvers.values() for tag, rx in lst}
_CONSTRUCTOR11 = yaml.constructor.SafeConstructor()


def _yaml12_value(v: str) -> Any:
    """How YAML 1.2's core schema reads the plain scalar ``v`` (for numbers; anything else: the text)."""
    if _INT12.fullmatch(v):
        return int(v[2:], 16 if v[1] == "x" else 8) if v.startswith(("0x", "0o")) else int(v)
    if _FLOAT12.fullmatch(v):
        low = v.lower()
        return (
            (-math.inf if v[0] == "-" else math.inf)
            if low.endswith(".inf")
            else math.nan
            if low == ".nan"
            else float(v)
        )
    return v


def _yaml11_problem(v: str) -> str | None:
    """Why the plain scalar ``v`` is refused: YAML 1.1 reads it as a non-string value other than
    YAML 1.2's reading (``None``: both read it alike)."""
    if v in _BOOL11_ONLY:
        b = "true" if _BOOL11_ONLY[v] else "false"
        return (
            f"YAML 1.1 reads {v} as the boolean {b}, YAML 1.2 as the string {v!r}: write {b}, "
            f"or quote it ({v!r}) if you mean the text"
        )
    if not v or v[0] not in "0123456789+-." or len(v) > MAX_INT_LITERAL_CHARS or _SAME_NUMBER.fullmatch(v):
        return None
    if _LEADING_ZERO.fullmatch(v):
        return f"{v}: a leading zero is ambiguous (octal in YAML 1.1, decimal in 1.2): write {int(v.replace('_', ''))}"
    for kind in ("int", "float", "timestamp"):
        if _RESOLVERS11[_CORE + kind].match(v):
            if kind == "timestamp":
                return f"YAML 1.1 reads {v} as a date, YAML 1.2 as the string {v!r}: quote it ({v!r})"
            try:
                old = getattr(_CONSTRUCTOR11, f"construct_yaml_{kind}")(yaml.ScalarNode(_CORE + kind, v))
            except (ValueError, ArithmeticError):  # pragma: no cover - the regex admits only numbers
                return None
            new = _yaml12_value(v)
            if type(new) is type(old) and (
                new == old or (isinstance(old, float) and math.isnan(old) and math.isnan(new))
            ):
                return None
            as12 = f"the string {v!r}" if isinstance(new, str) else f"the number {new!r}"
            if ":" in v:
                return (
                    f"YAML 1.1 reads {v} as the sexagesimal (base 60) number {old!r}, YAML 1.2 as {as12}: "
                    f"write {old!r}, or quote it ({v!r}) if you mean the text"
                )
            return f"YAML 1.1 reads {v} as the number {old!r}, YAML 1.2 as {as12}: write {old!r}"
    return None


class _Yaml12:
    """Resolver mix-in: YAML 1.2 core schema; plain scalars YAML 1.1 reads otherwise get :data:`_YAML11_TAG`."""

    yaml_implicit_resolvers: dict = {}

    def resolve(self, kind, value, implicit):  # noqa: D102 - called by the parser for untagged nodes
        if kind is yaml.ScalarNode and implicit[0] and _yaml11_problem(value) is not None:
            return _YAML11_TAG
        return super().resolve(kind, value, implicit)


class _Loader(_Yaml12, yaml.SafeLoader):
    """SafeLoader reading YAML 1.2's core schema (see above): ``1e-5`` is a float, ``on`` a string."""

    yaml_implicit_resolvers: dict = {}


for _tag, _rx, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", _INT12.pattern, "-+0123456789"),
    ("float", _FLOAT12.pattern, "-+0123456789."),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("merge", r"<<", "<"),
):
    _Loader.add_implicit_resolver(_CORE + _tag, re.compile(f"^(?:{_rx})$"), list(_first))


def _reading_problem(loader: Any, node: yaml.Node, msg: str) -> None:
    """Note a problem with how a scalar is read; reported with its position once the file is loaded."""
    loader.__dict__.setdefault("reading_problems", []).append((node, msg))


def _construct_int(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if not _INT12.fullmatch(v):
        _reading_problem(loader, node, f"!!int {v!r} is not a YAML 1.2 integer (decimal, 0o octal or 0x hexadecimal)")
        return v
    if len(v) > MAX_INT_LITERAL_CHARS:
        _reading_problem(
            loader,
            node,
            f"an integer of {len(v)} characters is far beyond float64 range: "
            "must be a finite number within float64 range",
        )
        return math.inf
    problem = _yaml11_problem(v)  # `!!int 010`: implicit scalars never get here with a problem
    if problem:
        _reading_problem(loader, node, problem)
    return _yaml12_value(v)


def _construct_float(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if not _FLOAT12.fullmatch(v):
        _reading_problem(loader, node, f"!!float {v!r} is not a YAML 1.2 float")
        return v
    f = float(_yaml12_value(v))
    text = v if len(v) <= 40 else v[:20] + "…" + v[-10:]
    if math.isinf(f) and "inf" not in v.lower():
        _reading_problem(
            loader,
            node,
            f"{text} is beyond float64 range (largest: 1.7976931348623157e+308): "
            "must be a finite number within float64 range (write .inf for infinity)",
        )
    elif f == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", v)[0]):
        _reading_problem(
            loader,
            node,
            f"{text} is below float64's smallest positive number (5e-324) and "
            "would read as 0: must be a number within float64 range (write 0 if you mean 0)",
        )
    return f


def _construct_bool(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if v not in _BOOL12:
        _reading_problem(loader, node, f"!!bool {v!r}: YAML 1.2 booleans are true and false")
        return v
    return _BOOL12[v]


def _construct_null(loader: Any, node: yaml.ScalarNode) -> Any:
    v = loader.construct_scalar(node)
    if v not in _NULL12:
        _reading_problem(loader, node, f"!!null {v!r}: YAML 1.2 nulls are null and ~")
        return v
    return None


def _construct_yaml11(loader: Any, node: yaml.ScalarNode) -> str:
    _reading_problem(loader, node, _yaml11_problem(node.value) or "read differently by YAML 1.1 and 1.2")
    return node.value  # YAML 1.2's reading: a string


def _not_core(name: str, hint: str):
    def construct(loader: Any, node: yaml.Node) -> None:
        _reading_problem(
            loader, node, f"!!{name} is a YAML 1.1 type, not part of the YAML 1.2 core schema: refused ({hint})"
        )
        return None

    return construct


for _tag, _fn in (
    ("int", _construct_int),
    ("float", _construct_float),
    ("bool", _construct_bool),
    ("null", _construct_null),
):
    _Loader.add_constructor(_CORE + _tag, _fn)
_Loader.add_constructor(_YAML11_TAG, _construct_yaml11)
for _name, _hint in (
    ("set", "write a list"),
    ("omap", "write a mapping"),
    ("pairs", "write a mapping"),
    ("binary", "case files hold numbers and text"),
    ("timestamp", "quote it: a string"),
):
    _Loader.add_constructor(_CORE + _name, _not_core(_name, _hint))

if getattr(yaml, "__with_libyaml__", False):

    class _FastLoader(_Yaml12, yaml.CSafeLoader):
        """The same loader on libyaml (about 10× faster; nesting limited to 1000 by libyaml)."""

    _FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    _FastLoader.yaml_constructors = _Loader.yaml_constructors
else:  # pragma: no cover - PyYAML without libyaml
    _FastLoader = _Loader  # type: ignore[misc,assignment]


def _mark(node: yaml.Node | None) -> tuple[int, int]:
    if node is None:
        return (1, 1)
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _child(node: yaml.Node | None, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None


def _key_node(node: yaml.Node | None, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return k
    return None


def _collections(node: yaml.Node) -> list[yaml.Node]:
    """The mapping/sequence children of ``node`` (scalars need no walking: size 1, depth 1)."""
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv if not isinstance(n, yaml.ScalarNode)]
    if isinstance(node, yaml.SequenceNode):
        return [n for n in node.value if not isinstance(n, yaml.ScalarNode)]
    return []


def _graph_problem(root: yaml.Node) -> tuple[yaml.Node, str] | None:
    """Check the composed node graph before anything walks it recursively or builds objects.

    Aliases make the graph a DAG (or a cycle): a "billion laughs" file holds a
    few dozen nodes that expand to billions.  This walk visits each collection
    once (iteratively) and computes the expanded size, the nesting depth and
    the number of alias references to collections (an alias to a scalar adds
    one node and is harmless).
    """
    size: dict[int, int] = {}  # id -> expanded node count, for finished collections
    height: dict[int, int] = {}
    on_path: set[int] = set()
    seen: set[int] = set()
    aliases = written = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            kids = _collections(node)
            n_all = len(node.value) * (2 if isinstance(node, yaml.MappingNode) else 1)
            size[nid] = 1 + n_all - len(kids) + sum(size[id(k)] for k in kids)
            height[nid] = 1 + max((height[id(k)] for k in kids), default=1)
            on_path.discard(nid)
            continue
        if nid in seen:
            continue
        seen.add(nid)
        written += 1 + (
            len(node.value) * (2 if isinstance(node, yaml.MappingNode) else 1)
            if isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
            else 0
        )
        on_path.add(nid)
        if len(on_path) > MAX_DEPTH:
            return node, f"nesting deeper than {MAX_DEPTH} levels: refused"
        stack.append((node, True))
        for k in reversed(_collections(node)):
            kid = id(k)
            if kid in on_path:
                return k, "recursive YAML alias (a collection containing itself): refused"
            if kid in seen:
                aliases += 1
                if aliases > MAX_ALIASES:
                    return k, f"more than {MAX_ALIASES} YAML aliases: refused (alias bomb?)"
                continue
            stack.append((k, False))
    if not isinstance(root, (yaml.MappingNode, yaml.SequenceNode)):
        return None
    expanded = size[id(root)]
    if expanded - written > MAX_ALIAS_EXPANSION:
        return root, (
            f"YAML aliases expand this file to {expanded} nodes (limit: {MAX_ALIAS_EXPANSION} "
            f"more than the {written} written): refused (alias bomb?)"
        )
    return None


def _duplicate_keys(node: yaml.Node, path: str, out: list[tuple[yaml.Node, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    out.append((k, f"{path}.{k.value}".lstrip(".")))
                seen.add(k.value)
            if not isinstance(v, yaml.ScalarNode):
                _duplicate_keys(v, f"{path}.{k.value}" if isinstance(k, yaml.ScalarNode) else path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            if not isinstance(v, yaml.ScalarNode):
                _duplicate_keys(v, f"{path}[{i}]", out)


def _pseudo_file(real: str, st: os.stat_result) -> bool:
    """Whether ``real`` lives on the kernel's /proc or /sys pseudo-filesystems: "regular" files there
    report 0 bytes and may block on reading (``/proc/kmsg``) or never end."""
    if real in ("/proc", "/sys") or real.startswith(("/proc/", "/sys/")):
        return True
    for mount in ("/proc", "/sys"):
        try:
            if os.stat(mount).st_dev == st.st_dev:
                return True
        except OSError:
            pass
    return False


def _link_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the symbolic link ``path`` cannot be followed (``None``: it resolves, or is no link)."""
    try:
        os.stat(path)
        return None
    except OSError as e:
        if not os.path.islink(path):
            return None
        try:
            target = os.readlink(path)
        except OSError:  # pragma: no cover - removed meanwhile
            target = "?"
        if e.errno == errno.ELOOP:
            return f"symbolic link loop (→ {target!r}): refused"
        if e.errno == errno.ENOENT:
            return f"dangling symbolic link: its target {target!r} does not exist"
        return f"cannot follow the symbolic link (→ {target!r}): {e.strerror or e}"


def _read_case_file(path: str | os.PathLike[str], fname: str) -> bytes:
    """The file's bytes: a regular file within :data:`MAX_FILE_BYTES`, checked before reading.

    Symbolic links are resolved first and the target is checked: a FIFO, a device, a folder or a
    file of /proc or /sys is never opened (opening a FIFO blocks, reading a device may never end).
    The file is opened non-blocking and checked again on the open descriptor (the same file, still
    regular), and it is read only up to the size it reported.
    """

    def refuse(msg: str) -> CaseFileError:
        return CaseFileError([CaseError(fname, 1, 1, "", msg)])

    link = _link_problem(path)
    if link:
        raise refuse(link)
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
        via = f" (a symbolic link to {real})" if os.path.islink(path) else ""
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"not a regular file (a folder, device or pipe){via}: expected a YAML case file")
        if _pseudo_file(real, st):
            raise refuse(f"a file of the kernel's /proc or /sys pseudo-filesystem{via}: expected a YAML case file")
        if st.st_size > MAX_FILE_BYTES:
            raise refuse(
                f"file is {st.st_size} bytes; case files are limited to {MAX_FILE_BYTES} bytes "
                "(generate large inputs with 'input:' instead of writing 'data:')"
            )
        fd = os.open(
            real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        )
        try:
            st2 = os.fstat(fd)
            if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(st2.st_mode):
                raise refuse("the file was replaced while it was opened: refused")
            chunks, left = [], min(st2.st_size, MAX_FILE_BYTES) + 1  # one byte more shows a file that grew
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    except OSError as e:
        raise refuse(f"cannot read: {e.strerror or e}") from None
    raw = b"".join(chunks)
    if len(raw) > st2.st_size:
        raise refuse(
            f"the file reports {st2.st_size} bytes but holds more (a pseudo-file, or a file being written): refused"
        )
    return raw


#: characters refused in a case file before parsing.  YAML 1.2 allows no C0 control character but
#: tab, LF and CR, no DEL, no C1 control character but NEL, no surrogate and no U+FFFE/U+FFFF.  NEL,
#: U+2028 and U+2029 are line breaks in YAML 1.1 (and in libyaml, which reads the file) but not in
#: YAML 1.2, and a CR without LF is a line break to YAML but not to most other tools: each would make
#: line numbers disagree with an editor's.
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]|\r(?!\n)")
_LINE_BREAKS_11 = {"\x85": "NEXT LINE (NEL)", "\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR"}


def _char_problems(text: str, fname: str) -> list[CaseError]:
    """One error per refused character (the first :data:`MAX_LISTED`, then a count), at its line and
    column (lines end at LF; columns count characters)."""
    errors: list[CaseError] = []
    n = 0
    for m in _BAD_CHAR.finditer(text):
        n += 1
        if n > MAX_LISTED:
            continue
        off = m.start()
        c = text[off]
        line, col = text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1) + 1
        if c == "\x00":
            msg = "NUL byte: expected YAML text"
        elif c in _LINE_BREAKS_11:
            msg = (
                f"U+{ord(c):04X} {_LINE_BREAKS_11[c]}: YAML 1.1 (and libyaml) read it as a line break, "
                f"YAML 1.2 does not, so lines would be counted differently; remove it, or write "
                f"\\u{ord(c):04x} inside a double-quoted string"
            )
        elif c == "\r":
            msg = r"a carriage return (\r) not followed by a line feed: use \n (or \r\n) line ends"
        else:
            msg = (
                f"control character U+{ord(c):04X} ({escape_text(c)}) is not allowed in YAML text: write "
                f'it as an escape inside a double-quoted string ("{escape_text(c)}")'
            )
        errors.append(CaseError(fname, line, col, "", msg))
    if n > MAX_LISTED:
        errors.append(
            CaseError(fname, errors[-1].line, errors[-1].column, "", f"... and {n - MAX_LISTED} more such characters")
        )
    return errors


def _node_paths(root: yaml.Node, wanted: set[int]) -> dict[int, str]:
    """``cases[2](id).field[3]``-style paths of the nodes whose ``id()`` is in ``wanted``."""
    out: dict[int, str] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack and len(out) < len(wanted):
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in wanted:
            out.setdefault(id(node), path)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                kp = f"{path}.{k.value}" if isinstance(k, yaml.ScalarNode) else path
                kp = kp.lstrip(".")
                if id(k) in wanted:
                    out.setdefault(id(k), kp)
                stack.append((v, kp))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                p = f"{path}[{i}]"
                idn = _child(v, "id") if path == "cases" else None
                if isinstance(idn, yaml.ScalarNode) and idn.value:
                    p += f"({idn.value})"
                stack.append((v, p))
    return out


def _parse(text: str, fname: str) -> tuple[Any, yaml.Node, list[CaseError]]:
    """(data, root node, reading problems) of a YAML document, checked for bombs, depth and duplicate
    keys.  Reading problems (a scalar YAML 1.1 and 1.2 read differently, a number beyond float64, a
    YAML 1.1 tag) do not stop loading: they are reported together with the other errors of the file."""
    try:
        loader = _FastLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise CaseFileError([CaseError(fname, 1, 1, "", "empty file: expected a mapping with 'cases:'")])
            problem = _graph_problem(root)
            if problem is not None:
                node, msg = problem
                raise CaseFileError([CaseError(fname, *_mark(node), "", msg)])
            dups: list[tuple[yaml.Node, str]] = []
            _duplicate_keys(root, "", dups)
            if dups:
                raise CaseFileError([CaseError(fname, *_mark(n), p, "duplicate key") for n, p in dups])
            data = loader.construct_document(root)
            found = loader.__dict__.get("reading_problems", [])
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as e:  # pragma: no cover - _char_problems refuses these characters first
        off = e.position if isinstance(e.position, int) else 0
        line, col = text.count("\n", 0, off) + 1, off - (text.rfind("\n", 0, off) + 1) + 1
        raise CaseFileError([CaseError(fname, line, col, "", f"YAML error: {e.reason}")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        if context and context not in str(problem):
            problem = f"{problem} ({context})"
        if "python/" in str(e) or "could not determine a constructor" in str(problem):
            problem = f"{problem} — tags that construct objects are refused (safe loading)"
        raise CaseFileError([CaseError(fname, line, col, "", f"YAML error: {problem}")]) from None
    except RecursionError:
        raise CaseFileError([CaseError(fname, 1, 1, "", f"nesting deeper than {MAX_DEPTH} levels: refused")]) from None
    paths = _node_paths(root, {id(n) for n, _ in found}) if found else {}
    reading = [CaseError(fname, *_mark(n), paths.get(id(n), ""), msg) for n, msg in found]
    return data, root, reading


def _read_yaml(path: str | os.PathLike[str], fname: str) -> tuple[Any, yaml.Node, list[CaseError]]:
    """(data, root node, reading problems) of the case file ``path``: read safely, decoded as UTF-8,
    checked for refused characters, parsed (:func:`_parse`)."""
    raw = _read_case_file(path, fname)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise CaseFileError(
            [
                CaseError(
                    fname,
                    line,
                    col,
                    "",
                    f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); case files are UTF-8 text",
                )
            ]
        ) from None
    bad_chars = _char_problems(text, fname)
    if bad_chars:
        raise CaseFileError(bad_chars)
    return _parse(text, fname)
