"""The `normconf` CLI end to end, adapter plug-ins, and the pytest plugin (its options, opt-in
collection and markers; tests/test_plugin_coexistence.py runs it inside other projects)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NORMCONF = [sys.executable, "-m", "normconf.cli"]


def normconf(*args, cwd=ROOT, env=None, timeout=300):
    return subprocess.run([*NORMCONF, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_help_imports_no_framework():
    code = (
        "import sys; from normconf.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit: pass\n"
        "bad = [m for m in ('torch', 'tensorflow', 'onnxruntime', 'jax', 'keras') if m in sys.modules]\nassert not bad, bad"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr


def test_run_seed_on_numpy_torch_scratch(tmp_path):
    p = normconf("run", "cases/seed_article.yaml", "--backend", "numpy,torch,torch-scratch", "--out", str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    rows = read_csv(tmp_path / "results.csv")
    for col in (
        "case",
        "backend",
        "backend_version",
        "output",
        "outcome",
        "max_abs_err",
        "max_rel_err",
        "max_ulp",
        "atol",
        "rtol",
        "explanation",
        "message",
        "seconds",
    ):
        assert col in rows[0]
    seed_y = {r["backend"]: r for r in rows if r["case"] == "seed_article" and r["output"] == "y"}
    assert set(seed_y) == {"numpy", "torch", "torch-scratch"}
    assert all(r["outcome"] == "pass" for r in seed_y.values())
    assert seed_y["torch"]["backend_version"].startswith("2.13")
    # torch-scratch (D2L) reports its batch statistics; the module does not
    assert {r["output"] for r in rows if r["backend"] == "torch-scratch" and r["case"] == "seed_article"} >= {
        "batch_mean",
        "batch_var",
        "running_var",
    }
    assert (tmp_path / "results.json").exists()


def test_run_unknown_backend_and_bad_path_exit_2(tmp_path):
    p = normconf("run", "cases/seed_article.yaml", "--backend", "nope", "--out", str(tmp_path))
    assert p.returncode == 2 and "unknown backend" in p.stderr and "Traceback" not in p.stderr
    p = normconf("run", "no/such/dir", "--out", str(tmp_path))
    assert p.returncode == 2 and "no such file" in p.stderr
    assert not (tmp_path / "results.csv").exists()


def test_external_adapter_via_option_and_exit_code(tmp_path):
    p = normconf(
        "run",
        "cases/seed_article.yaml",
        "--adapter",
        "tests.plugin_adapters:ADAPTERS",
        "--backend",
        "plugin-echo,plugin-scaled",
        "--out",
        str(tmp_path),
    )
    assert p.returncode == 1, p.stdout + p.stderr  # the scaled one is an unexpected mismatch
    rows = read_csv(tmp_path / "results.csv")
    echo = [r for r in rows if r["backend"] == "plugin-echo"]
    scaled = [r for r in rows if r["backend"] == "plugin-scaled"]
    assert echo and all(r["outcome"] == "pass" for r in echo)
    assert scaled and all(r["outcome"] in ("mismatch", "explained") for r in scaled)
    assert "test plugin" in echo[0]["notes"]


def test_external_adapter_via_entry_point(tmp_path):
    dist = tmp_path / "normconf_testplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: normconf-testplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[normconf.adapters]\necho = tests.plugin_adapters:EchoReference\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    p = normconf("backends", "--backend", "plugin-echo", env=env)
    assert p.returncode == 0, p.stderr
    assert "plugin-echo" in p.stdout and "yes" in p.stdout


def test_backends_lists_availability_and_versions():
    p = normconf("backends", "--backend", "numpy,torch")
    assert p.returncode == 0, p.stderr
    assert "2.13.0" in p.stdout and "numpy" in p.stdout


MINI = """
normconf: 1
defaults: {shape: [4, 2], mode: train}
cases:
  - id: mini
  - id: mini_expected
    expect: {plugin-scaled: {outcome: mismatch, reason: planted 1.5x fault}}
"""


def run_pytest(tmp_path, *args, timeout=300):
    """``pytest -p no:cacheprovider --rootdir tmp_path ARGS`` from the repository root (tests. importable)."""
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return p.returncode, p.stdout + p.stderr


def test_pytest_items_xfail_and_failure_message(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "mini.yaml").write_text(MINI)
    rc, out = run_pytest(
        tmp_path,
        str(cases),
        "-v",
        "--strict-markers",
        "--normconf-adapter",
        "tests.plugin_adapters:ADAPTERS",
        "--normconf-backend",
        "plugin-echo,plugin-scaled",
    )
    assert rc == 1, out
    assert "cases/mini.yaml::mini[plugin-echo] PASSED" in out, out
    assert "cases/mini.yaml::mini[plugin-scaled] FAILED" in out, out
    assert "cases/mini.yaml::mini_expected[plugin-scaled] XFAIL" in out, out
    assert "1 failed, 2 passed, 1 xfailed" in out, out
    assert "max abs err" in out  # the metrics are in the failure message


def test_pytest_backend_globs_negation_and_k(tmp_path):
    """--normconf-backend takes the CLI's globs and ! negation; -k selects on case id and backend."""
    (tmp_path / "mini.yaml").write_text(MINI)
    adapter = ("--normconf-adapter", "tests.plugin_adapters:ADAPTERS")
    rc, out = run_pytest(
        tmp_path, str(tmp_path), "--co", "-q", *adapter, "--normconf-backend", "plugin-*,!plugin-scaled"
    )
    assert rc == 0, out
    items = sorted(line for line in out.splitlines() if "::" in line)
    assert items == ["mini.yaml::mini[plugin-echo]", "mini.yaml::mini_expected[plugin-echo]"], out
    rc, out = run_pytest(tmp_path, str(tmp_path), "--co", "-q", *adapter, "-k", "mini_expected and scaled")
    assert rc == 0, out
    assert [line for line in out.splitlines() if "::" in line] == ["mini.yaml::mini_expected[plugin-scaled]"], out


def test_pytest_unknown_backend_pattern_is_a_usage_error(tmp_path):
    """Reported once, without a traceback, and the collection stops (not one error per case file)."""
    (tmp_path / "mini.yaml").write_text(MINI)
    (tmp_path / "other.yaml").write_text(MINI)
    rc, out = run_pytest(tmp_path, str(tmp_path), "--co", "-q", "--normconf-backend", "nump*,tourch")
    assert rc == 2, out  # a collection error that stops the collection (normconf run exits 2 too)
    assert "--normconf-backend: backend pattern 'tourch' matches no backend (did you mean torch" in out, out
    assert "Interrupted: normconf: --normconf-backend" in out and "1 error" in out, out
    assert "Traceback" not in out, out


def test_pytest_old_option_names_are_gone(tmp_path):
    """The bare --backend/--adapter/--native collided with other projects' options: no aliases."""
    (tmp_path / "mini.yaml").write_text(MINI)
    for option in ("--backend", "--adapter", "--native"):
        rc, out = run_pytest(tmp_path, str(tmp_path), "--co", "-q", option, "numpy")
        assert rc == 4 and f"unrecognized arguments: {option}" in out, out


def test_pytest_collects_only_files_that_opt_in(tmp_path):
    """A YAML file without a top-level normconf: key is ignored, wherever it is, unless --normconf-cases;
    one that opts in is collected wherever it is (no cases/ folder needed)."""
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "legacy.yaml").write_text("cases:\n  - {id: legacy, shape: [2, 3]}\n")
    (tmp_path / "cases" / "ci.yml").write_text("name: CI\non: [push]\njobs:\n  test: {runs-on: ubuntu-latest}\n")
    (tmp_path / "cases" / "nested.yaml").write_text("meta:\n  normconf: 1\ncases:\n  - {id: nested, shape: [2]}\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "mine.yml").write_text(
        "# a comment\nnormconf: 1\ncases:\n  - {id: mine, shape: [2, 3]}\n"
    )
    rc, out = run_pytest(tmp_path, str(tmp_path), "--co", "-q", "--normconf-backend", "numpy")
    assert rc == 0, out
    assert [line for line in out.splitlines() if "::" in line] == ["elsewhere/mine.yml::mine[numpy]"], out
    # --normconf-cases: every YAML file is a case file; the ones that are not valid are collection errors
    rc, out = run_pytest(
        tmp_path, str(tmp_path / "cases"), "--co", "-q", "--normconf-backend", "numpy", "--normconf-cases"
    )
    assert rc == 2, out
    assert "cases/legacy.yaml::legacy[numpy]" in out, out
    assert "ERROR collecting cases/ci.yml" in out and "ERROR collecting cases/nested.yaml" in out, out


def test_pytest_an_invalid_opted_in_file_is_a_collection_error_with_file_line_field(tmp_path):
    (tmp_path / "bad.yaml").write_text("normconf: 1\ncases:\n  - id: bad\n    shape: [2, 3]\n    eps: -1\n")
    rc, out = run_pytest(tmp_path, str(tmp_path), "--co", "-q", "--normconf-backend", "numpy")
    assert rc == 2, out
    assert "ERROR collecting bad.yaml" in out, out
    assert "bad.yaml:5:" in out and "eps" in out, out
    assert "Traceback" not in out, out


def test_pytest_markers_are_registered_by_the_plugin(tmp_path):
    """`pytest --markers` lists the plugin's markers even where no ini file declares them."""
    rc, out = run_pytest(tmp_path, "--markers", "-c", os.devnull)
    assert rc == 0, out
    assert "@pytest.mark.conformance: a normconf case x backend conformance item" in out, out
    assert "@pytest.mark.slow:" in out, out


def test_opts_in_reads_a_top_level_key_only(tmp_path):
    from normconf.pytest_plugin import opts_in

    texts = {
        "plain.yaml": ("normconf: 1\ncases: []\n", True),
        "after_comments.yaml": ("# header\n\ndefaults: {}\nnormconf: 1\n", True),
        "quoted.yaml": ('"normconf": 1\n', True),
        "bom.yaml": ("\ufeffnormconf: 1\n", True),
        "crlf.yaml": ("x: 1\r\nnormconf : 1\r\n", True),
        "nested.yaml": ("meta:\n  normconf: 1\n", False),
        "comment.yaml": ("# normconf: 1\ncases: []\n", False),
        "prefix.yaml": ("normconfig: 1\n", False),
        "workflow.yml": ("name: CI\non: [push]\n", False),
    }
    for name, (text, expected) in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8", newline="")
        assert opts_in(tmp_path / name) is expected, name
    assert opts_in(tmp_path / "missing.yaml") is False
    (tmp_path / "dir.yaml").mkdir()
    assert opts_in(tmp_path / "dir.yaml") is False
    os.mkfifo(tmp_path / "fifo.yaml")  # never opened: reading it would block
    assert opts_in(tmp_path / "fifo.yaml") is False
