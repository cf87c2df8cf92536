"""pytest plugin (entry point ``pytest11``): every case × backend is a test item.

Items are named ``cases/seed_article.yaml::seed_article[torch]``.  A result
that is not as expected fails with the metrics (and the explanation) in the
message; an ``expect:`` entry that holds is a strict xfail (an expectation that
no longer holds fails); ``unsupported`` cases skip with the reason.  An item
of a requested backend that is unavailable (its framework is not installed)
*fails* with what to install, as ``normconf run`` exits 4, unless
``--normconf-allow-unavailable`` is given (then it skips with the reason).
Options: ``--backend ID[,ID]`` (default: every registered backend),
``--normconf-timeout S``, ``--adapter module:Name``, ``--native LIB``,
``--normconf-allow-unavailable``, ``--normconf-conventions BACKEND|KNOB=VALUE,...`` (the
conventions the ``--adapter``/``--native`` backends follow, as ``normconf run --conventions``).
Cases tagged ``slow`` get the ``slow`` marker.  Works with pytest-xdist: each
xdist worker holds its own :class:`~harness.runner.Runner`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_RUNNER_KEY = pytest.StashKey["object"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("normconf", "BatchNorm conformance")
    g.addoption(
        "--backend",
        action="append",
        default=[],
        metavar="ID[,ID...]",
        help="normconf backends to run (default: all registered)",
    )
    g.addoption(
        "--normconf-timeout", type=float, default=300.0, metavar="S", help="per (case, backend) timeout in seconds"
    )
    g.addoption(
        "--adapter", action="append", default=[], metavar="MODULE:NAME", help="extra normconf adapter (module:Name)"
    )
    g.addoption("--native", action="append", default=[], metavar="LIB", help="native BatchNorm library to run")
    g.addoption(
        "--normconf-cases",
        action="store_true",
        default=False,
        help="collect YAML case files even outside the cases/ folders",
    )
    g.addoption(
        "--normconf-conventions",
        default=None,
        metavar="BACKEND|KNOB=VALUE,...",
        help="conventions of the --adapter/--native backends (as normconf run --conventions)",
    )
    g.addoption(
        "--normconf-allow-unavailable",
        action="store_true",
        default=False,
        help="skip the items of backends that are not available (default: they fail with what to install)",
    )


def _runner(config: pytest.Config):
    r = config.stash.get(_RUNNER_KEY, None)
    if r is None:
        from harness.runner import Runner

        try:
            r = Runner(
                tuple(config.getoption("adapter")),
                tuple(config.getoption("native")),
                timeout=config.getoption("normconf_timeout"),
                conventions=config.getoption("normconf_conventions"),
            )
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
        config.stash[_RUNNER_KEY] = r
    return r


def pytest_unconfigure(config: pytest.Config) -> None:
    r = config.stash.get(_RUNNER_KEY, None)
    if r is not None:
        r.close()


def _selected(config: pytest.Config) -> list[str]:
    from harness.cli import _csv_list

    runner = _runner(config)
    req = _csv_list(config.getoption("backend"))
    if not req:
        return sorted(runner.adapters)
    unknown = [b for b in req if b not in runner.adapters]
    if unknown:
        raise pytest.UsageError(
            f"--backend: unknown backend(s) {', '.join(unknown)}; known: {', '.join(sorted(runner.adapters))}"
        )
    return list(dict.fromkeys(req))


def pytest_collect_file(parent: pytest.Collector, file_path: Path):
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    if not (parent.config.getoption("normconf_cases") or "cases" in file_path.parts):
        return None
    return CaseFile.from_parent(parent, path=file_path)


class CaseFileProblem(Exception):
    pass


class CaseFile(pytest.File):
    def collect(self):
        from harness.cases import CaseFileError, load_file

        try:
            cases = load_file(self.path)
        except CaseFileError as e:
            raise CaseFileProblem(str(e)) from None
        backends = _selected(self.config)
        from harness.cases import check_expectation_backends

        bad = check_expectation_backends(cases, _runner(self.config).adapters)
        if bad:
            raise CaseFileProblem("\n".join(map(str, bad)))
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
