"""YAML case files → validated :class:`Case` objects (and the JSON Schema of the format).

A case file holds ``cases:`` (a list of mappings) and an optional ``defaults:``
mapping merged into every case (a case's own keys win; ``expect`` and
``tolerance`` are merged key by key).  Loading is safe (no Python tags), every
error names ``file:line:column``, the field and what was expected, and all
errors of a file are reported together (:class:`CaseFileError`).

Defaults follow ONNX BatchNormalization-15: eps 1e-5, momentum
``{running_weight: 0.9}`` (= PyTorch's ``momentum=0.1``), biased variance for
normalizing and for the running update, train mode, channels-first, float32.

This module loads (YAML → merged defaults → model → :class:`LoadedCase`); the parts live in
:mod:`normconf.case_limits`, :mod:`normconf.case_errors`, :mod:`normconf.case_yaml` and
:mod:`normconf.case_model`, and their public names are re-exported here.
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import yaml
from pydantic import ValidationError

from normconf import ops
from normconf.case_errors import CaseError, CaseFileError, _describe, _format_loc, _prune_unions, escape_text
from normconf.case_limits import (
    BYTES_PER_ELEMENT,
    DEFAULT_MAX_ELEMENTS,
    DTYPE_BYTES,
    DTYPE_COPIES,
    FLOAT64_COPIES,
    FLOAT64_MAX,
    MAX_ALIAS_EXPANSION,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_FOLDERS,
    MAX_INT64,
    MAX_INT_LITERAL_CHARS,
    MAX_LISTED,
    bytes_per_element,
    physical_memory,
)
from normconf.case_model import (
    OUTCOMES,
    Affine,
    Case,
    CaseBase,
    Expectation,
    Generator,
    Momentum,
    Number,
    StrictFloat,
    Tolerance,
    ValueSpec,
    _size_problem,
    estimated_bytes,
    reads_failed,
)

# _Loader, _FastLoader, _Yaml12, _read_case_file: re-exported for tests and docs that name them here
from normconf.case_schema import json_schema  # noqa: F401  (re-exported: the case file's JSON Schema)
from normconf.case_yaml import (  # noqa: F401
    _child,
    _FastLoader,
    _key_node,
    _link_problem,
    _Loader,
    _mark,
    _read_case_file,
    _read_yaml,
    _Yaml12,
)

__all__ = [
    "BYTES_PER_ELEMENT",
    "DEFAULT_MAX_ELEMENTS",
    "DTYPE_BYTES",
    "DTYPE_COPIES",
    "FLOAT64_COPIES",
    "FLOAT64_MAX",
    "MAX_ALIAS_EXPANSION",
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_FOLDERS",
    "MAX_INT64",
    "MAX_INT_LITERAL_CHARS",
    "MAX_LISTED",
    "OUTCOMES",
    "Affine",
    "Case",
    "CaseError",
    "CaseFileError",
    "Expectation",
    "Generator",
    "LoadedCase",
    "Momentum",
    "Number",
    "StrictFloat",
    "Tolerance",
    "ValueSpec",
    "bytes_per_element",
    "Checked",
    "check_expectation_backends",
    "check_paths",
    "discover",
    "escape_text",
    "estimated_bytes",
    "json_schema",
    "load_file",
    "load_paths",
    "physical_memory",
    "resolve_case_path",
]


@dataclass
class LoadedCase:
    """A validated case with where it came from."""

    #: the op's validated case (:class:`Case` for BatchNorm; ``OpSpec.case_model`` for any op)
    case: CaseBase
    file: str
    line: int
    #: (line, column) of each ``expect:`` key (backend id), for errors found after loading
    expect_pos: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.case.id


@dataclass
class _Seen:
    """A case, valid or not, as the checks across cases see it (``id``: ``None`` when wrong or missing)."""

    id: str | None
    label: str
    file: str
    line: int
    expect_pos: dict[str, tuple[int, int]]


def check_expectation_backends(cases: Iterable[LoadedCase | _Seen], known: Iterable[str]) -> list[CaseError]:
    """Errors for ``expect:`` entries naming a backend not in ``known`` (the registry).

    The loader does not know which backends exist (adapters are plug-ins), so the command line and
    the pytest plugin load the registry first and pass it to :func:`check_paths`, which checks this
    in the same round as every other check (also for cases that are invalid otherwise).
    """
    known = sorted(set(known))
    # one entry in defaults is inherited by many cases: one error at its position, naming them
    users: dict[tuple[str, int, int, str], list[str]] = {}
    for lc in cases:
        label, keys = (
            (lc.label, lc.expect_pos) if isinstance(lc, _Seen) else (lc.id, {**lc.case.expect, **lc.expect_pos})
        )
        for backend in keys:
            if backend not in known:
                line, col = lc.expect_pos.get(backend, (lc.line, 1))
                users.setdefault((lc.file, line, col, backend), []).append(label)
    errors: list[CaseError] = []
    for (file, line, col, backend), ids in users.items():
        hint = difflib.get_close_matches(backend, known, n=1)
        who = ids[0] if len(ids) == 1 else f"{len(ids)} cases: {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
        msg = f"unknown backend {backend!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        msg += f"; known backends: {', '.join(known)} (load others with --adapter module:Name)"
        errors.append(CaseError(file, line, col, f"expect.{backend} ({who})", msg))
    return errors


def resolve_case_path(case_file: str | os.PathLike[str], value: str) -> Path:
    """Resolve a path written in a case file, relative to the case file's folder.

    Case files currently reference no files (inputs are generated or written
    inline), so nothing calls this yet; any path field added later must go
    through it.  Absolute paths and paths that leave the case folder (``..``,
    symbolic links pointing outside) raise :class:`ValueError`.
    """
    base = Path(case_file).resolve().parent
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError("expected a non-empty relative path")
    p = Path(value)
    if p.is_absolute() or p.drive:
        raise ValueError(f"absolute paths are not allowed ({value!r}): give a path relative to the case file")
    resolved = (base / p).resolve()
    if not resolved.is_relative_to(base):
        raise ValueError(f"path {value!r} leaves the case folder {str(base)!r}")
    return resolved


#: the top-level keys of a case file; ``normconf: <version>`` marks a file as a normconf case file
#: (the pytest plugin collects only files that carry it)
TOP_LEVEL_KEYS = ("normconf", "cases", "defaults")
#: the case-file format versions this normconf reads
FORMAT_VERSIONS = (1,)


def _merge(defaults: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """``case`` over ``defaults``; ``expect`` and ``tolerance`` are merged key by key."""
    merged = dict(defaults)
    for k, v in case.items():
        if k in ("expect", "tolerance") and isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = {**merged[k], **v}
            if k == "expect":  # `backend: null` drops an expectation inherited from defaults
                merged[k] = {b: e for b, e in merged[k].items() if e is not None}
        else:
            merged[k] = v
    return merged


def load_file(path: str | os.PathLike[str], max_elements: int = DEFAULT_MAX_ELEMENTS) -> list[LoadedCase]:
    """Load and validate every case of one YAML file; raise :class:`CaseFileError` listing all problems."""
    loaded, errors, _ = _load_file(path, max_elements)
    if errors:
        raise CaseFileError(errors)
    return loaded


def _repaired(spec: ops.OpSpec, merged: dict[str, Any], failed: set[Any]) -> CaseBase | None:
    """The case without the fields that failed validation (nor unknown keys), for the other checks in the
    same round; a required field gets a placeholder (the checks that read a failed field are dropped,
    :data:`normconf.case_model.CHECK_READS`).  ``None`` if it still fails."""
    fixed = {k: v for k, v in merged.items() if k not in failed}
    fixed.update({k: v for k, v in (("id", "repaired"), ("shape", [1, 1])) if k in failed})
    try:
        return spec.case_model.model_validate(fixed)
    except ValidationError:
        return None


def _load_file(
    path: str | os.PathLike[str], max_elements: int
) -> tuple[list[LoadedCase], list[CaseError], list[_Seen]]:
    """(the valid cases, every error, every case as :class:`_Seen`) of one file; raises
    :class:`CaseFileError` only when the file is not a mapping of cases at all."""
    fname = str(path)
    errors: list[CaseError] = []
    reported: set[tuple[int, int, str, str]] = set()

    def err(node: yaml.Node | None, fld: str, msg: str) -> None:
        line, col = _mark(node)
        if (line, col, fld, msg) not in reported:
            reported.add((line, col, fld, msg))
            errors.append(CaseError(fname, line, col, fld, msg))

    data, root, reading = _read_yaml(path, fname)

    if not isinstance(data, dict):
        wrong = CaseError(fname, *_mark(root), "", "expected a mapping with 'cases:' (and optional 'defaults:')")
        raise CaseFileError(
            reading + ([wrong] if (wrong.line, wrong.column) not in {(e.line, e.column) for e in reading} else [])
        )
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = difflib.get_close_matches(str(key), list(TOP_LEVEL_KEYS), n=1)
            err(
                _key_node(root, key),
                str(key),
                "unknown top-level key (expected 'normconf', 'cases' or 'defaults')"
                + (f"; did you mean {hint[0]!r}?" if hint else ""),
            )
    if "normconf" in data:
        version = data["normconf"]
        reads = f"this normconf reads: {', '.join(map(str, FORMAT_VERSIONS))}"
        if type(version) is int and version not in FORMAT_VERSIONS:
            err(_child(root, "normconf"), "normconf", f"unsupported case-file format version {version} ({reads})")
        elif type(version) is not int:
            from normconf.case_errors import _short_repr

            quoted = isinstance(version, str) and version.strip() in map(str, FORMAT_VERSIONS)
            err(
                _child(root, "normconf"),
                "normconf",
                f"the case-file format version must be an integer (got {_short_repr(version)}, "
                f"a {type(version).__name__}; {reads})" + ("; write it without quotes" if quoted else ""),
            )
    defaults = data.get("defaults") or {}
    dnode = _child(root, "defaults")
    if not isinstance(defaults, dict):
        err(dnode, "defaults", "expected a mapping")
        defaults = {}
    if "id" in defaults:
        err(_key_node(dnode, "id"), "defaults.id", "ids must be unique: not allowed in defaults")
    cases_raw = data.get("cases")
    cnode = _child(root, "cases")
    if cases_raw is None:
        err(root if cnode is None else cnode, "cases", "required field is missing (a list of cases)")
        cases_raw = []
    elif not isinstance(cases_raw, list):
        err(cnode, "cases", "expected a list of cases")
        cases_raw = []
    elif not cases_raw:
        err(
            cnode,
            "cases",
            "no cases: the list is empty (a case file must hold at least one case; an empty run would test nothing)",
        )

    loaded: list[LoadedCase] = []
    everyone: list[_Seen] = []
    seen: dict[str, tuple[int, int]] = {}
    for i, raw_case in enumerate(cases_raw):
        node = _child(cnode, i)
        prefix = f"cases[{i}]"
        if not isinstance(raw_case, dict):
            err(node, prefix, "expected a mapping (a case)")
            continue
        cid = raw_case.get("id")
        if isinstance(cid, str):
            prefix = f"cases[{i}]({cid})"
        merged = _merge(defaults, raw_case)
        # the expect: keys, read raw: checked against the registry even when the case is invalid
        expect_pos: dict[str, tuple[int, int]] = {}
        if isinstance(merged.get("expect"), dict):
            for b in merged["expect"]:
                if isinstance(b, str):
                    kn = _key_node(_child(node, "expect"), b) or _key_node(_child(dnode, "expect"), b)
                    expect_pos[b] = _mark(kn if kn is not None else node)
        line = _mark(node)[0]

        def locate(loc: tuple[Any, ...], node=node) -> tuple[yaml.Node | None, bool]:
            """(the deepest node along ``loc``, whether it is in ``defaults:``): in the case, or in
            defaults when the case lacks the key."""
            if not loc:
                return node, False
            in_case = _child(node, loc[0]) is not None
            in_defaults = not in_case and _child(dnode, loc[0]) is not None
            cur = dnode if in_defaults else node
            for part in loc:
                nxt = _child(cur, part)
                if nxt is None:
                    break
                cur = nxt
            return cur, in_defaults

        def report(loc: tuple[Any, ...], msg: str, key_node: bool = False, prefix=prefix, node=node) -> None:
            if key_node and len(loc) == 1:
                n, in_defaults = _key_node(node, loc[0]), False
                if n is None:
                    n, in_defaults = _key_node(dnode, loc[0]), True
            else:
                n, in_defaults = locate(loc)
            # a mistake in defaults: reported once, not once per case inheriting it
            err(n, _format_loc("defaults" if in_defaults else prefix, loc), msg)

        op_name = merged.get("op", "batch_norm")
        try:
            spec = ops.get(op_name)
        except ops.UnknownOp:
            hint = difflib.get_close_matches(str(op_name), ops.names(), n=1) if isinstance(op_name, str) else []
            report(
                ("op",),
                f"unknown op {_short_op(op_name)}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; known ops: {', '.join(ops.names())}",
            )
            failed: set[Any] = {"op"}
        else:
            failed = set()
            try:
                case: CaseBase | None = spec.case_model.model_validate(merged)
            except ValidationError as ve:
                problems = _prune_unions(ve.errors())
                for e in problems:
                    loc = tuple(e["loc"])
                    report(loc, _describe(e, loc, spec.allowed_keys), key_node=e["type"] == "extra_forbidden")
                failed = {e["loc"][0] if e["loc"] else None for e in problems}
                # repair pass: the checks of the fields that did not fail, in this same round
                case = None if None in failed else _repaired(spec, merged, failed)
            if case is not None:
                # a check that reads a field that failed would be about the placeholder, not the file
                checks = [(loc, msg) for loc, msg in spec.cross_checks(case) if not reads_failed(loc[0], failed)]
                for loc, msg in checks:
                    report(loc, msg)
                shape_ok = not any(loc[0] == "shape" for loc, _ in checks) and not reads_failed("shape", failed)
                too_big = _size_problem(case, max_elements) if shape_ok else None
                if too_big:
                    report(("shape",), too_big)
                if not failed and not checks and not too_big:
                    loaded.append(LoadedCase(case, fname, line, expect_pos))
        good_id = isinstance(cid, str) and "id" not in failed
        if good_id and cid in seen:
            report(("id",), f"duplicate id {cid!r} (first at line {seen[cid][0]})")
        elif good_id:
            seen[cid] = _mark(node)
        everyone.append(_Seen(cid if good_id else None, cid if good_id else f"cases[{i}]", fname, line, expect_pos))
    if reading:  # a value read wrongly also fails its field's checks: one message, the reading problem
        at = {(e.line, e.column) for e in reading}
        errors = reading + [e for e in errors if (e.line, e.column) not in at]
    errors.sort(key=lambda e: (e.line, e.column))
    return ([] if errors else loaded), errors, everyone


def _short_op(v: Any) -> str:
    from normconf.case_errors import _short_repr

    return _short_repr(v) if isinstance(v, str) else f"{_short_repr(v)} (a {type(v).__name__}, not a name)"


def _walk(
    folder: Path, files: list[Path], errors: list[CaseError], ancestors: tuple[tuple[int, int], ...], budget: list[int]
) -> None:
    """Collect the ``*.yaml``/``*.yml`` entries under ``folder``, following symbolic links; a link
    that is dangling or loops, or points back to a folder above it, is an error naming it."""
    budget[0] -= 1
    if budget[0] < 0:
        if budget[0] == -1:
            errors.append(CaseError(str(folder), 1, 1, "", f"more than {MAX_FOLDERS} folders to search: refused"))
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        errors.append(CaseError(str(folder), 1, 1, "", f"cannot list the folder: {e.strerror or e}"))
        return
    for entry in entries:
        path = folder / entry.name
        if entry.is_symlink():
            problem = _link_problem(path)
            if problem:
                errors.append(CaseError(str(path), 1, 1, "", problem))
                continue
        try:
            st = path.stat()
        except OSError as e:
            errors.append(CaseError(str(path), 1, 1, "", f"cannot read: {e.strerror or e}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                errors.append(
                    CaseError(
                        str(path),
                        1,
                        1,
                        "",
                        f"symbolic link loop: {path} leads back to the "
                        f"folder {os.path.realpath(path)} that contains it",
                    )
                )
                continue
            _walk(path, files, errors, (*ancestors, key), budget)
        elif path.suffix in (".yaml", ".yml"):
            files.append(path)  # not a regular file (a FIFO, a device): refused when read, never opened


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """YAML files named by ``paths`` (files, or folders searched recursively), sorted.

    Symbolic links are followed.  A dangling link, a link loop or a folder that cannot be listed is
    an error naming the path (never silently skipped), as is a path that does not exist.
    """
    files, errors = _discover(paths)
    if errors:
        raise CaseFileError(errors)
    return files


def _discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[CaseError]]:
    """:func:`discover`'s files and errors, raising nothing."""
    files: list[Path] = []
    errors: list[CaseError] = []
    budget = [MAX_FOLDERS]
    for p in paths:
        p = Path(p)
        problem = _link_problem(p)
        if problem:
            errors.append(CaseError(str(p), 1, 1, "", problem))
        elif p.is_dir():
            st = p.stat()
            found: list[Path] = []
            _walk(p, found, errors, ((st.st_dev, st.st_ino),), budget)
            files.extend(sorted(found))
        elif os.path.lexists(p):
            files.append(p)
        else:
            errors.append(CaseError(str(p), 1, 1, "", "no such file or folder"))
    # a file named twice (directly, through a folder, through a link) is read once, where first named
    seen: set[str] = set()
    unique = [f for f in files if not (os.path.realpath(f) in seen or seen.add(os.path.realpath(f)))]
    return unique, errors


def load_paths(
    paths: Iterable[str | os.PathLike[str]],
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    known_backends: Iterable[str] | None = None,
) -> list[LoadedCase]:
    """Load every case under ``paths``; ids must be unique across all files.

    Errors of every file are collected and raised together (:func:`check_paths`).
    """
    checked = check_paths(paths, known_backends, max_elements)
    if checked.errors:
        raise CaseFileError(checked.errors)
    return checked.cases


class Checked(NamedTuple):
    """What :func:`check_paths` found: the cases (empty when there is any error) and every error."""

    cases: list[LoadedCase]
    errors: list[CaseError]


def check_paths(
    paths: Iterable[str | os.PathLike[str]],
    known_backends: Iterable[str] | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    first_ids: dict[str, tuple[str, int]] | None = None,
) -> Checked:
    """Every error of every case file under ``paths``, found in one round; raises nothing.

    The paths that cannot be searched, each file's problems (YAML, fields, impossible values, data
    lengths, sizes, ids repeated; a case with a wrong field still gets its other fields' checks), ids
    repeated across files (of invalid cases too) and, given ``known_backends`` (the registry), ``expect:``
    keys naming a backend it lacks.  ``first_ids`` (id → (file, line), updated) carries the ids of
    earlier calls, for a caller that checks one file at a time (the pytest plugin).
    """
    paths = list(paths)
    files, errors = _discover(paths)
    if not files and not errors:
        errors.append(
            CaseError(", ".join(map(str, paths)) or ".", 1, 1, "", "no case files (*.yaml, *.yml): no cases to run")
        )
    first = {} if first_ids is None else first_ids
    out: list[LoadedCase] = []
    everyone: list[_Seen] = []
    for f in files:
        try:
            cases, file_errors, seen = _load_file(f, max_elements)
        except CaseFileError as e:
            cases, file_errors, seen = [], e.errors, []
        errors.extend(file_errors)
        out.extend(cases)
        everyone.extend(seen)
        mine: set[str] = set()  # the ids this file brings: repeated within it, _load_file reported them
        for sc in seen:
            if sc.id is not None and sc.id in first and sc.id not in mine:
                msg = f"duplicate id {sc.id!r}: also defined at {first[sc.id][0]}:{first[sc.id][1]}"
                errors.append(CaseError(sc.file, sc.line, 1, f"{sc.id}.id", msg))
            elif sc.id is not None and sc.id not in first:
                first[sc.id] = (sc.file, sc.line)
                mine.add(sc.id)
    if known_backends is not None:
        errors.extend(check_expectation_backends(everyone, known_backends))
    order = {escape_text(str(f)): i for i, f in enumerate(files)}  # by file, then by position
    errors.sort(key=lambda e: (order.get(e.file, -1), e.line, e.column))
    return Checked([] if errors else out, errors)
