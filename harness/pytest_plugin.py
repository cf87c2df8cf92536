"""pytest plugin (entry point ``pytest11``, name ``normconf``): every case × backend is a test item.

Only YAML files that opt in are collected: a top-level ``normconf: <format version>`` key, written
at the start of a line (``normconf: 1``, as the shipped case files begin).  Any other ``.yaml``/
``.yml`` file is someone else's and is ignored silently; ``--normconf-cases`` makes every YAML file
pytest visits a case file, with or without the key (for case files written before the key).  A file
that opts in but is invalid is a collection error naming file, line and field.  In a project without
case files the plugin does nothing: no framework is imported and no runner is started.

Items are named ``cases/seed_article.yaml::seed_article[torch]`` (``-k`` selects on them).  A result
that is not as expected fails with the metrics (and the explanation) in the message; an ``expect:``
entry that holds is a strict xfail (an expectation that no longer holds fails); ``unsupported``
cases skip with the reason.  An item of a requested backend that is unavailable (its framework is
not installed) *fails* with what to install, as ``normconf run`` exits 4, unless
``--normconf-allow-unavailable`` is given (then it skips with the reason).

Options, all namespaced (a project's own ``--backend`` does not collide): ``--normconf-backend
PATTERN[,PATTERN]`` (globs and ``!`` negation as ``normconf run --backend``, default: every
registered backend), ``--normconf-adapter module:Name``, ``--normconf-native LIB``,
``--normconf-conventions BACKEND|KNOB=VALUE,...`` (the conventions the adapter/native backends
follow), ``--normconf-timeout S``, ``--normconf-allow-unavailable``, ``--normconf-cases``.  The
plugin registers its markers (``conformance`` on every item, ``slow`` on cases tagged slow) itself,
so ``--strict-markers`` works in any project.  Works with pytest-xdist: each xdist worker holds its
own :class:`~normconf.runner.Runner`.  ``-p no:normconf`` disables the plugin.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_RUNNER_KEY = pytest.StashKey["object"]()
_SELECTED_KEY = pytest.StashKey["list[str]"]()
#: id -> (file, line) of every case id collected so far (of invalid cases too): ids repeated across files
_IDS_KEY = pytest.StashKey["dict[str, tuple[str, int]]"]()

#: the markers the plugin puts on its items (registered in pytest_configure)
MARKERS = {
    "conformance": "a normconf case x backend conformance item",
    "slow": "heavy conformance cases (large shapes, long runs)",
}
#: the opt-in mark: a top-level ``normconf:`` key at the start of a line (after a UTF-8 BOM on line 1)
_OPT_IN = re.compile(rb"""(?m)^(?:\xef\xbb\xbf)?(?:normconf|"normconf"|'normconf')[ \t]*:""")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("normconf", "normconf: normalization-layer conformance (YAML files with 'normconf: 1')")
    g.addoption(
        "--normconf-backend",
        action="append",
        default=[],
        metavar="PATTERN[,PATTERN...]",
        help="normconf backends to run: ids, globs ('ort*'), '!' negation ('!ort-opset9*') (default: all registered)",
    )
    g.addoption(
        "--normconf-adapter",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="extra normconf adapter (module:Name)",
    )
    g.addoption(
        "--normconf-native", action="append", default=[], metavar="LIB", help="native normalization library to run"
    )
    g.addoption(
        "--normconf-timeout", type=float, default=300.0, metavar="S", help="per (case, backend) timeout in seconds"
    )
    g.addoption(
        "--normconf-cases",
        action="store_true",
        default=False,
        help="collect every YAML file as a normconf case file, even without a top-level 'normconf:' key",
    )
    g.addoption(
        "--normconf-conventions",
        default=None,
        metavar="BACKEND|KNOB=VALUE,...",
        help="conventions of the --normconf-adapter/--normconf-native backends (as normconf run --conventions)",
    )
    g.addoption(
        "--normconf-allow-unavailable",
        action="store_true",
        default=False,
        help="skip the items of backends that are not available (default: they fail with what to install)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


def _runner(config: pytest.Config):
    r = config.stash.get(_RUNNER_KEY, None)
    if r is None:
        from normconf.runner import Runner

        try:
            r = Runner(
                tuple(config.getoption("normconf_adapter")),
                tuple(config.getoption("normconf_native")),
                timeout=config.getoption("normconf_timeout"),
                conventions=config.getoption("normconf_conventions"),
            )
        except ValueError as e:
            raise OptionProblem(str(e)) from None
        config.stash[_RUNNER_KEY] = r
    return r


def pytest_unconfigure(config: pytest.Config) -> None:
    r = config.stash.get(_RUNNER_KEY, None)
    if r is not None:
        r.close()


def _selected(config: pytest.Config) -> list[str]:
    """The backends ``--normconf-backend`` selects (every registered one, sorted, when not given)."""
    chosen = config.stash.get(_SELECTED_KEY, None)
    if chosen is None:
        from normconf.selection import SelectionError, select_names, split_patterns

        known = sorted(_runner(config).adapters)
        try:
            chosen = select_names(split_patterns(config.getoption("normconf_backend")), known, what="backend")
        except SelectionError as e:
            raise OptionProblem(f"--normconf-backend: {e}; known: {', '.join(known)}") from None
        config.stash[_SELECTED_KEY] = chosen
    return chosen


def opts_in(path: Path) -> bool:
    """Whether ``path`` is a regular file whose text has a top-level ``normconf:`` key (a bounded read)."""
    from normconf.case_limits import MAX_FILE_BYTES

    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            head = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return False
    return _OPT_IN.search(head) is not None


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if not (parent.config.getoption("normconf_cases") or opts_in(file_path)):
        return None
    return CaseFile.from_parent(parent, path=file_path)


class CaseFileProblem(Exception):
    """A collection error shown as its message alone (no traceback)."""


class OptionProblem(CaseFileProblem):
    """A bad normconf option (unknown backend, adapter that does not load): found when the first case
    file is collected (the runner starts only then), it is that file's collection error and stops the
    collection (exit status 2, as ``normconf run`` gives for bad usage)."""


class CaseFile(pytest.File):
    def collect(self):
        """The file's items; every problem of the file in one collection error (as ``normconf validate``
        reports them, :func:`normconf.cases.check_paths`): its own, ``expect:`` keys naming a backend the
        registry does not hold (so the registry is loaded first), ids already used by a file collected
        before."""
        from normconf.cases import check_paths

        try:
            backends = _selected(self.config)
        except OptionProblem as e:
            self.session.shouldstop = f"normconf: {e}"
            raise
        ids = self.config.stash.setdefault(_IDS_KEY, {})
        cases, errors = check_paths([self.path], _runner(self.config).adapters, first_ids=ids)
        if errors:
            raise CaseFileProblem("\n".join(map(str, errors)))
        for lc in cases:
            resolved = Path(lc.file).resolve()
            if resolved.is_relative_to(self.config.rootpath):
                lc.file = str(resolved.relative_to(self.config.rootpath))
            for b in backends:
                item = CaseItem.from_parent(self, name=f"{lc.id}[{b}]", loaded=lc, backend=b)
                item.add_marker(pytest.mark.conformance)
                if "slow" in lc.case.tags:
                    item.add_marker(pytest.mark.slow)
                exp = lc.case.expect.get(b)
                if exp is not None:
                    # only ConformanceFailure (raised when the expectation holds) counts as the xfail
                    item.add_marker(
                        pytest.mark.xfail(
                            reason=f"expected {exp.outcome}: {exp.reason}", strict=True, raises=ConformanceFailure
                        )
                    )
                yield item

    def repr_failure(self, excinfo, style=None):
        if excinfo.errisinstance(CaseFileProblem):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class ConformanceFailure(Exception):
    pass


class CaseItem(pytest.Item):
    def __init__(self, *, loaded, backend: str, **kw):
        super().__init__(**kw)
        self.loaded = loaded
        self.backend = backend

    def runtest(self) -> None:
        rows = _runner(self.config).run_pair(self.loaded, self.backend)
        self.user_properties.append(("outcomes", ",".join(sorted({r.outcome for r in rows}))))
        exp = self.loaded.case.expect.get(self.backend)
        unavailable = any(r.message.startswith("backend unavailable:") for r in rows)
        if unavailable:
            if self.config.getoption("normconf_allow_unavailable"):
                pytest.skip(rows[0].message)
            pytest.fail(
                f"{self.backend}: {rows[0].message} (or pass --normconf-allow-unavailable to skip it)", pytrace=False
            )
        as_expected = rows[0].as_expected if rows else False
        if exp is not None:
            # strict xfail: an expectation that holds is an xfail, one that no longer holds fails
            if as_expected:
                raise ConformanceFailure(_describe(rows, header=f"as expected ({exp.outcome}: {exp.reason})"))
            pytest.fail(
                _describe(
                    rows,
                    header=f"EXPECTATION NO LONGER HOLDS: expected {exp.outcome}"
                    + (f" because {exp.because}" if exp.because else "")
                    + f" ({exp.reason})",
                ),
                pytrace=False,
            )
        if all(r.outcome == "unsupported" for r in rows):
            pytest.skip(f"unsupported: {rows[0].message}")
        if not as_expected:
            raise ConformanceFailure(_describe(rows))

    def repr_failure(self, excinfo, style=None):
        if excinfo.errisinstance(ConformanceFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.loaded.line - 1, f"{self.loaded.id}[{self.backend}]"


def _describe(rows, header: str = "") -> str:
    lines = [header] if header else []
    for r in rows:
        if r.outcome == "pass":
            continue
        where = f"{r.output}" + (f" step {r.step}" if r.step and r.steps > 1 else "")
        line = f"{r.backend} {r.outcome}{' ' + where if where else ''}"
        if r.max_abs_err is not None:
            line += f": max abs err {r.max_abs_err:.3g}, max rel err {r.max_rel_err:.3g}, {r.max_ulp:.3g} ULP (rtol {r.rtol:g}, atol {r.atol:g})"
        lines.append(line)
        if r.explanation or r.explanation_text:
            lines.append(f"  explanation: {r.explanation or 'no convention matches'}: {r.explanation_text}")
        if r.message:
            lines.append(f"  {r.message}")
        if r.notes:
            lines.append(f"  notes: {r.notes}")
    return "\n".join(lines) or "no rows"
