"""`normconf run`'s exit codes (0 as expected, 1 not as expected, 2 bad input, 3 error, 4 unavailable backend)
and the pytest plugin's handling of an unavailable backend.

Only the NumPy reference and numpy-based test adapters run here (tests/crashy_adapters.py,
tests/plugin_adapters.py, tests/unavailable_adapters.py): no framework is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from normconf import cli
from normconf.cli import EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE, EXIT_UNEXPECTED, EXIT_USAGE, main
from tests.crashy_adapters import SPEC as CRASHY
from tests.unavailable_adapters import REASON
from tests.unavailable_adapters import SPEC as MISSING

ROOT = Path(__file__).resolve().parent.parent
SCALED = "tests.plugin_adapters:ADAPTERS"  # plugin-scaled: the reference × 1.5, an unexpected mismatch
INSTALL_LINE = f"missing: unavailable: {REASON}"

CASES = """
defaults: {shape: [2, 3]}
cases:
  - {id: plain}
  - {id: boom, tags: [raise]}
"""


def run(tmp_path: Path, capsys, *args: str, cases: str = CASES) -> tuple[int, str, str]:
    f = tmp_path / "c.yaml"
    f.write_text(textwrap.dedent(cases))
    rc = main(["run", str(f), "--out", str(tmp_path / "reports"), "--timeout", "60", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def results(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "reports" / "results.csv", keep_default_na=False)


def test_constants_are_distinct():
    assert (EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_ERROR, EXIT_UNAVAILABLE) == (0, 1, 2, 3, 4)


def test_exit_0_every_outcome_as_expected(tmp_path, capsys):
    rc, out, err = run(tmp_path, capsys, "-b", "numpy")
    assert rc == EXIT_OK, out + err
    assert "every outcome as expected" in out
    assert set(results(tmp_path)["outcome"]) == {"pass"}


def test_exit_0_when_the_error_is_declared(tmp_path, capsys):
    cases = CASES.replace("tags: [raise]}", "tags: [raise], expect: {crashy: {outcome: error, reason: planted raise}}}")
    rc, out, err = run(tmp_path, capsys, "--adapter", CRASHY, "-b", "crashy,numpy", cases=cases)
    assert rc == EXIT_OK, out + err
    df = results(tmp_path)
    assert df[(df["case"] == "boom") & (df["backend"] == "crashy")]["outcome"].tolist() == ["error"]
    assert "every outcome as expected" in out


def test_exit_1_unexpected_mismatch(tmp_path, capsys):
    rc, out, err = run(tmp_path, capsys, "--adapter", SCALED, "-b", "numpy,plugin-scaled", "-k", "plain")
    assert rc == EXIT_UNEXPECTED, out + err
    assert "not as expected" in out and "every outcome as expected" not in out


def test_exit_1_expectation_that_no_longer_holds(tmp_path, capsys):
    cases = "cases:\n  - {id: held, shape: [2, 3], expect: {numpy: {outcome: mismatch, reason: planted}}}\n"
    rc, out, err = run(tmp_path, capsys, "-b", "numpy", cases=cases)
    assert rc == EXIT_UNEXPECTED, out + err
    assert "held [numpy] pass" in out


def test_exit_2_bad_input_writes_nothing(tmp_path, capsys):
    rc, out, err = run(tmp_path, capsys, "-b", "numpy,nope")
    assert rc == EXIT_USAGE and "unknown backend" in err and "Traceback" not in err
    rc, out, err = run(tmp_path, capsys, "-b", "numpy", cases="cases:\n  - {id: x, shape: [2, 3], eps: -1}\n")
    assert rc == EXIT_USAGE and "eps" in err, err
    assert not (tmp_path / "reports").exists()


def test_exit_3_error_outcome(tmp_path, capsys):
    rc, out, err = run(tmp_path, capsys, "--adapter", CRASHY, "-b", "crashy,numpy")
    assert rc == EXIT_ERROR, out + err
    assert "boom [crashy] error" in out and "every outcome as expected" not in out
    df = results(tmp_path)
    boom = df[(df["case"] == "boom") & (df["backend"] == "crashy")]
    assert boom["outcome"].tolist() == ["error"] and "planted adapter failure" in boom["message"].iloc[0]


def test_exit_3_wins_over_1(tmp_path, capsys):
    rc, out, err = run(tmp_path, capsys, "--adapter", CRASHY, "--adapter", SCALED, "-b", "crashy,plugin-scaled")
    assert rc == EXIT_ERROR, out + err
    assert "boom [crashy] error" in out and "plain [plugin-scaled]" in out


def test_exit_4_named_backend_unavailable(tmp_path, capsys):
    rc, out, err = run(tmp_path, capsys, "--adapter", MISSING, "-b", "missing,numpy", "-k", "plain")
    assert rc == EXIT_UNAVAILABLE, out + err
    assert [ln.strip() for ln in out.splitlines()].count(INSTALL_LINE) == 1, out  # one whole line per backend
    assert "every outcome as expected" not in out
    # the reports are still written, with the unavailable backend's rows
    df = results(tmp_path)
    missing = df[df["backend"] == "missing"]
    assert missing["outcome"].tolist() == ["unsupported"]
    assert missing["message"].iloc[0] == f"backend unavailable: {REASON}"
    assert set(df[df["backend"] == "numpy"]["outcome"]) == {"pass"}
    assert json.loads((tmp_path / "reports" / "results.json").read_text())["meta"]["partial"] is False


def test_exit_4_wins_over_3_and_1(tmp_path, capsys):
    rc, out, err = run(
        tmp_path,
        capsys,
        "--adapter",
        CRASHY,
        "--adapter",
        SCALED,
        "--adapter",
        MISSING,
        "-b",
        "crashy,plugin-scaled,missing",
    )
    assert rc == EXIT_UNAVAILABLE, out + err
    assert INSTALL_LINE in out and "boom [crashy] error" in out
    # the opt-out leaves the other failures in charge of the exit code
    rc, out, err = run(
        tmp_path,
        capsys,
        "--adapter",
        CRASHY,
        "--adapter",
        SCALED,
        "--adapter",
        MISSING,
        "-b",
        "crashy,plugin-scaled,missing",
        "--allow-unavailable",
    )
    assert rc == EXIT_ERROR, out + err


def test_exit_4_unavailable_in_the_default_set(tmp_path, capsys, monkeypatch):
    """No --backend: every registered backend is asked for (here a registry of numpy and missing only)."""
    import normconf.runner

    real = normconf.runner.all_adapters

    def small_registry(extra_specs=(), native_paths=()):
        return {k: v for k, v in real(extra_specs, native_paths).items() if k in ("numpy", "missing")}

    monkeypatch.setattr(normconf.runner, "all_adapters", small_registry)
    rc, out, err = run(tmp_path, capsys, "--adapter", MISSING, "-k", "plain")
    assert rc == EXIT_UNAVAILABLE, out + err
    assert INSTALL_LINE in out
    assert set(results(tmp_path)["backend"]) == {"missing", "numpy"}


def test_allow_unavailable_gives_0_and_reports_the_skip(tmp_path, capsys):
    rc, out, err = run(
        tmp_path, capsys, "--adapter", MISSING, "-b", "missing,numpy", "-k", "plain", "--allow-unavailable"
    )
    assert rc == EXIT_OK, out + err
    assert INSTALL_LINE in out and "skipped (--allow-unavailable)" in out
    assert (tmp_path / "reports" / "results.csv").exists()


def test_run_exit_code_precedence_on_a_table():
    """4 > 3 > 1 > 0 on a hand-made results table (no run)."""

    def rows(*pairs):
        return pd.DataFrame(
            [
                {
                    "case": c,
                    "backend": b,
                    "outcome": o,
                    "as_expected": e,
                    "message": m,
                    "output": "",
                    "explanation": "",
                    "backend_version": "",
                }
                for c, b, o, e, m in pairs
            ]
        )

    ok = ("a", "numpy", "pass", True, "")
    mism = ("a", "x", "mismatch", False, "")
    err = ("a", "y", "error", False, "boom")
    declared = ("a", "z", "error", True, "boom")
    gone = ("a", "w", "unsupported", None, "backend unavailable: pip install w")
    assert cli.run_exit_code(rows(ok, declared)) == EXIT_OK
    assert cli.run_exit_code(rows(ok, mism)) == EXIT_UNEXPECTED
    assert cli.run_exit_code(rows(ok, mism, err)) == EXIT_ERROR
    assert cli.run_exit_code(rows(ok, mism, err, gone)) == EXIT_UNAVAILABLE
    assert cli.run_exit_code(rows(ok, gone), allow_unavailable=True) == EXIT_OK
    assert cli.unavailable_backends(rows(ok, gone)) == {"w": "pip install w"}


def _pytest(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cases = tmp_path / "cases"
    cases.mkdir(exist_ok=True)
    (cases / "mini.yaml").write_text("normconf: 1\ncases:\n  - {id: mini, shape: [2, 3]}\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            str(cases),
            "-q",
            "-rs",
            "--rootdir",
            str(tmp_path),
            "--normconf-adapter",
            MISSING,
            "--normconf-backend",
            "numpy,missing",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_pytest_plugin_fails_an_unavailable_backend(tmp_path):
    p = _pytest(tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "mini[missing]" in out and REASON in out, out


def test_pytest_plugin_skips_an_unavailable_backend_when_allowed(tmp_path):
    p = _pytest(tmp_path, "--normconf-allow-unavailable")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "1 passed, 1 skipped" in out, out
    assert REASON in out, out  # -rs shows the skip reason


def test_a_named_backend_that_refuses_every_case_tested_nothing(tmp_path, capsys):
    """Issue 17: a library or adapter that refuses every case is not a green run (exit 4, one line)."""
    case = tmp_path / "c.yaml"
    case.write_text("cases:\n  - id: fp16_only\n    shape: [3, 2]\n    dtype: float16\n")
    out = tmp_path / "o"
    # tiny-dnn refuses float16 (declared capability): named explicitly, it tested nothing
    code = cli.main(["run", str(case), "-b", "tiny-dnn", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == cli.EXIT_UNAVAILABLE
    assert "tiny-dnn: tested nothing: ran none of the 1 selected case(s): every one unsupported" in text
    assert "every outcome as expected" not in text
    assert (out / "results.json").exists()  # the reports are still written
    assert cli.main(["run", str(case), "-b", "tiny-dnn", "--out", str(out), "--allow-unavailable"]) == cli.EXIT_OK
    # a named backend that runs the case: green
    assert cli.main(["run", str(case), "-b", "numpy", "--out", str(out)]) == cli.EXIT_OK
