"""``normconf`` in CI (issue 16): selection globs and negation, --json, plain progress lines, --version,
-q, --adapter from a file and from the current folder, diff of changed case parameters, init, and
``backends`` answering from metadata without importing a framework.

Every run here is a real subprocess of the installed ``normconf`` on the numpy reference backend (or
a small adapter file): stdout and stderr are pipes, as in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from normconf.selection import SelectionError, select_names
from normconf.summary import JSON_SCHEMA

NORMCONF = str(Path(sys.executable).with_name("normconf"))
ROOT = Path(__file__).resolve().parent.parent

CASES = """\
normconf: 1
cases:
  - id: ln_small
    op: layer_norm
    shape: [4, 6]
  - id: ln_empty_rows
    op: layer_norm
    shape: [0, 6]
  - id: bn_eps
    shape: [4, 3]
    eps: {eps}
"""

#: an adapter file (``.format(id=...)``): tests.plugin_adapters' EchoReference (the reference's y) under
#: its own id and worker; the worker imports tests.plugin_adapters from the package root on its path
ADAPTER = """
from tests.plugin_adapters import EchoReference


class Echo(EchoReference):
    id = "{id}"
    worker = "{id}"


ADAPTERS = [Echo]
"""


def normconf(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([NORMCONF, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def write_cases(folder: Path, eps: str = "1.0e-5") -> Path:
    p = folder / "c.yaml"
    p.write_text(CASES.format(eps=eps))
    return p


def test_select_names_globs_negation_order_and_no_match():
    names = ["ort", "ort-init", "ort-opset9", "ort-opset9-init", "torch"]
    assert select_names(["ort*", "!ort-opset9*"], names) == ["ort", "ort-init"]
    assert select_names(["!ort*"], names) == ["torch"]  # only negations: everything else
    assert select_names(["torch", "ort"], names) == ["torch", "ort"]  # exact names keep their order
    with pytest.raises(SelectionError) as e:
        select_names(["ortt"], names, what="backend")
    assert "backend pattern 'ortt' matches no backend" in str(e.value) and "did you mean ort" in str(e.value)
    with pytest.raises(SelectionError, match="'!jax' matches no"):
        select_names(["!jax"], names)


def test_backend_globs_and_no_match_error(tmp_path):
    r = normconf("backends", "-b", "ort*,!ort-opset9*", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [b["backend"] for b in doc["backends"]] == ["ort", "ort-init", "ort-init-noopt"]
    assert doc["probed"] is False and all(isinstance(b["available"], bool) for b in doc["backends"])
    r = normconf("backends", "-b", "ortt", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "backend pattern 'ortt' matches no backend (did you mean ort" in r.stderr


def test_case_globs_negation_json_schema_and_progress_lines(tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the dev dependencies")
    cases = write_cases(tmp_path)
    r = normconf(
        "run", str(cases), "-b", "numpy", "--case", "ln_*", "--case", "!ln_empty*", "-o", "out", "--json", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    jsonschema.validate(doc, JSON_SCHEMA)
    assert doc["verdict"] == "as-expected" and doc["exit_code"] == 0
    assert {row["case"] for row in doc["rows"]} == {"ln_small"}
    assert doc["backends"]["numpy"]["counts"] == {"pass": 1} and doc["pairs"] == 1
    assert any(p.endswith("results.json") for p in doc["reports"])
    # stderr is a pipe: one plain progress line per pair, naming case and backend
    assert "[1/1] ln_small · numpy · pass" in r.stderr
    r = normconf("run", str(cases), "-b", "numpy", "--case", "bn_*,ln_nope", "-o", "out", cwd=tmp_path)
    assert r.returncode == 2 and "'ln_nope' matches no case (did you mean ln_" in r.stderr


def test_version_and_quiet(tmp_path):
    from normconf import __version__

    r = normconf("--version", cwd=tmp_path)
    assert r.returncode == 0 and f"normconf {__version__}" in r.stdout and "Python 3." in r.stdout
    r = normconf("run", str(write_cases(tmp_path)), "-b", "numpy", "-o", "out", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["normconf: every outcome as expected (3 case × backend pairs)"]
    assert r.stderr == ""  # -q: no progress either


def test_adapter_from_a_file_path_and_from_the_current_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "file_adapter.py").write_text(ADAPTER.format(id="from-file"))
    (tmp_path / "cwd_adapter.py").write_text(ADAPTER.format(id="from-cwd"))
    cases = write_cases(tmp_path)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    r = normconf(
        "run",
        str(cases),
        "--adapter",
        "sub/file_adapter.py:ADAPTERS",
        "--adapter",
        "cwd_adapter:ADAPTERS",
        "-b",
        "from-*",
        "-k",
        "bn_eps",
        "-o",
        "out",
        "--json",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["backends"]["from-file"]["counts"] == {"pass": 1}
    assert doc["backends"]["from-cwd"]["counts"] == {"pass": 1}
    r = normconf("backends", "--adapter", "sub/missing.py:ADAPTERS", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_diff_names_the_changed_eps(tmp_path):
    cases = write_cases(tmp_path, eps="1.0e-5")
    assert normconf("run", str(cases), "-b", "numpy", "-o", "old", "-q", cwd=tmp_path).returncode == 0
    write_cases(tmp_path, eps="1.0e-12")
    assert normconf("run", str(cases), "-b", "numpy", "-o", "new", "-q", cwd=tmp_path).returncode == 0
    r = normconf("diff", "old", "new", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "bn_eps: eps 1e-05 → 1e-12" in r.stdout
    assert "ln_small" not in r.stdout.split("Changed case parameters")[1]  # only the changed case
    doc = json.loads(normconf("diff", "old", "new", "--json", cwd=tmp_path).stdout)
    assert doc["params"] == {"bn_eps": [{"field": "eps", "old": "1e-05", "new": "1e-12"}]}


def test_init_writes_a_valid_file_and_refuses_to_overwrite(tmp_path):
    r = normconf("init", "new/cases.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "new" / "cases.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert "\nnormconf: 1\n" in text and "op: layer_norm" in text
    r = normconf("validate", "new/cases.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["command"] == "validate" and doc["valid"] is True and doc["cases"] == 2
    r = normconf("init", "new/cases.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "exists" in r.stderr
    assert (tmp_path / "new" / "cases.yaml").read_text() == text  # untouched


def test_backends_imports_no_framework(tmp_path):
    code = (
        "import sys, json\n"
        "from normconf.cli import main\n"
        "rc = main(['backends', '--json'])\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'onnxruntime', 'cv2') if m in sys.modules)\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    report = json.loads(r.stderr.strip().splitlines()[-1])
    assert report == {"rc": 0, "heavy": []}
    listed = {b["backend"]: b for b in json.loads(r.stdout)["backends"]}
    assert {"torch", "numpy", "ort", "flax"} <= set(listed)
    assert listed["numpy"]["available"] is True and listed["numpy"]["version"] == __import__("numpy").__version__
