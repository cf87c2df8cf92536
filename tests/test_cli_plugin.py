"""The `normconf` CLI end to end, adapter plug-ins, and the pytest plugin."""

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NORMCONF = [sys.executable, "-m", "harness.cli"]


def normconf(*args, cwd=ROOT, env=None, timeout=300):
    return subprocess.run([*NORMCONF, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_help_imports_no_framework():
    code = (
        "import sys; from harness.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit: pass\n"
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
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    p = normconf("backends", "--backend", "plugin-echo", env=env)
    assert p.returncode == 0, p.stderr
    assert "plugin-echo" in p.stdout and "yes" in p.stdout


def test_backends_lists_availability_and_versions():
    p = normconf("backends", "--backend", "numpy,torch")
    assert p.returncode == 0, p.stderr
    assert "2.13.0" in p.stdout and "numpy" in p.stdout


def test_pytest_items_xfail_and_failure_message(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "mini.yaml").write_text(
        textwrap.dedent("""
        defaults: {shape: [4, 2], mode: train}
        cases:
          - id: mini
          - id: mini_expected
            expect: {plugin-scaled: {outcome: mismatch, reason: planted 1.5x fault}}
    """)
    )
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            str(cases),
            "-q",
            "--rootdir",
            str(tmp_path),
            "--adapter",
            "tests.plugin_adapters:ADAPTERS",
            "--backend",
            "plugin-echo,plugin-scaled",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    out = p.stdout + p.stderr
    assert "mini.yaml::mini[plugin-echo] PASSED" in out or "2 passed" in out or "1 passed" in out, out
    assert "1 failed" in out and "1 xfailed" in out, out
    assert "max abs err" in out  # the metrics are in the failure message
