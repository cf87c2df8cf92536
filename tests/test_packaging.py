"""The package installs like any other (issue 16): a wheel built the release way (sdist, then a
wheel from it), installed into a fresh virtualenv, works from an empty folder.

The fresh venv gets the wheel with ``--no-deps``; its third-party dependencies come from this
interpreter's site-packages through a folder of links (offline), leaving out normconf itself
(the editable install of this checkout must not be what runs) and the optional ``report`` and
``fuzz`` extras (matplotlib, hypothesis), so the run also shows the base install is enough.
The native build skips tiny-dnn (``NORMCONF_TINYDNN=OFF``): it is not what this test is about,
and its shim takes long to compile.  Building the sdist needs scikit-build-core (``test`` extra).
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
VERSION = PYPROJECT["project"]["version"]
#: what a base install must not require (extras: report, fuzz, test)
NOT_BASE = {"matplotlib", "hypothesis", "pytest", "pytest-xdist", "pytest-benchmark", "playwright", "ruff", "mypy"}
#: left out of the fresh venv: normconf's own files, and the report/fuzz extras
HIDDEN = ("normconf", "harness", "references", "_editable_skbc_normconf", "__editable__", "matplotlib", "mpl_toolkits")
HIDDEN += ("pylab", "hypothesis", "_hypothesis")


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    try:
        import scikit_build_core.build  # noqa: F401
    except ImportError:
        pytest.fail("building the sdist needs scikit-build-core: pip install -e '.[test]' (or make install)")
    out = tmp_path_factory.mktemp("dist")
    code = "import sys, scikit_build_core.build as b; print(b.build_sdist(sys.argv[1]))"
    sdist = out / _check(_run([sys.executable, "-c", code, str(out)], ROOT)).stdout.strip().splitlines()[-1]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    _check(_run([*cmd, "-C", "cmake.define.NORMCONF_TINYDNN=OFF", str(sdist)], out))
    (whl,) = out.glob("normconf-*.whl")
    return whl


@pytest.fixture(scope="module")
def wheel_names(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


@pytest.fixture(scope="module")
def import_root(wheel_names) -> str:
    """The package in the wheel that holds the CLI (``normconf`` once the import root is renamed)."""
    (root,) = {n.split("/")[0] for n in wheel_names if n.endswith("/cli.py") and n.count("/") == 1}
    return root


def _dependency_dirs() -> list[Path]:
    """Where this interpreter finds third-party packages: site-packages and the folders on
    ``sys.path`` besides the stdlib and this checkout's root (a ``.pth`` or ``PYTHONPATH`` entry)."""
    stdlib = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")}
    out: list[Path] = []
    for entry in [*site.getsitepackages(), *sys.path]:
        p = Path(entry).resolve() if entry else None
        if p is None or not p.is_dir() or p in out or p == ROOT:
            continue
        if any(p == s or (p.is_relative_to(s) and "site-packages" not in p.parts) for s in stdlib):
            continue
        out.append(p)
    return out


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel; third-party packages linked in, normconf's and the extras' left out."""
    base = tmp_path_factory.mktemp("venv")
    env_dir, deps = base / "env", base / "deps"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], base))
    py = env_dir / "bin" / "python"
    deps.mkdir()
    for sp in _dependency_dirs():
        for entry in sp.iterdir():
            name = entry.name.split("-")[0].split(".")[0]
            if name.lower() in HIDDEN or entry.suffix == ".pth" or (deps / entry.name).exists():
                continue
            (deps / entry.name).symlink_to(entry)
    target = _check(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], base)).stdout
    (Path(target.strip()) / "_normconf_test_deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    _check(_run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], base))
    return env_dir


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_wheel_ships_the_case_library_and_schema(wheel_names, import_root):
    shipped = {n.split("/case_library/", 1)[1] for n in wheel_names if n.startswith(f"{import_root}/case_library/")}
    library = {p.relative_to(ROOT / "cases").as_posix() for p in (ROOT / "cases").rglob("*.yaml")}
    assert library and library <= shipped, sorted(library - shipped)
    assert any(n.startswith("found/") for n in library)
    assert "schema.json" in shipped


def test_wheel_has_one_top_level_package_named_normconf(wheel_names):
    top = {n.split("/")[0] for n in wheel_names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"normconf"}


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(zf.read(name).decode("utf-8"))


def test_base_requirements_leave_heavy_and_test_tools_to_extras(wheel):
    reqs = [Requirement(r) for r in _metadata(wheel).get_all("Requires-Dist")]
    base = {r.name.lower() for r in reqs if r.marker is None}
    assert {"numpy", "pyyaml", "jinja2"} <= base
    assert not base & NOT_BASE
    in_all = {x for r in reqs if r.name == "normconf" and r.marker.evaluate({"extra": "all"}) for x in r.extras}
    assert {"report", "fuzz", "torch"} <= in_all and "test" not in in_all and "dev" not in in_all
    report = {r.name.lower() for r in reqs if r.marker is not None and r.marker.evaluate({"extra": "report"})}
    assert "matplotlib" in report


def test_version(venv, tmp_path):
    proc = _check(_run([str(venv / "bin" / "normconf"), "--version"], tmp_path, _clean_env()))
    assert VERSION in proc.stdout


def test_installed_package_is_the_wheels(venv, import_root, tmp_path):
    code = f"import {import_root}, importlib.util as u; print({import_root}.__file__); print(u.find_spec('matplotlib'))"
    out = _check(_run([str(venv / "bin" / "python"), "-c", code], tmp_path, _clean_env())).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(venv.resolve()), out
    assert out[1] == "None"  # the report extra is not installed there


def test_run_with_no_path_runs_the_shipped_library_from_an_empty_folder(venv, tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    proc = _run([str(venv / "bin" / "normconf"), "run", "--backend", "numpy", "--out", "out"], cwd, _clean_env())
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    data = json.loads((cwd / "out" / "results.json").read_text(encoding="utf-8"))
    from normconf.cases import load_paths

    assert {row["case"] for row in data["results"]} == {lc.id for lc in load_paths([ROOT / "cases"])}
    files = {Path(row["file"]) for row in data["results"]}
    assert all(f.resolve().is_relative_to(venv.resolve()) for f in files), sorted(files)[:3]  # the packaged copy
    html = (cwd / "out" / "index.html").read_text(encoding="utf-8")
    assert "pip install &#39;normconf[report]&#39;" in html or "pip install 'normconf[report]'" in html
    assert sorted(p.name for p in cwd.iterdir()) == ["out"]  # nothing else written to the current folder


# -- normconf.package_data, in this checkout ------------------------------------------------------


def test_checkout_uses_its_cases_folder_in_place():
    from normconf.package_data import shipped_cases_dir, shipped_schema

    assert shipped_cases_dir() == ROOT / "cases"
    assert json.loads(shipped_schema().read_text(encoding="utf-8"))["type"] == "object"


def test_require_extra_names_the_extra_in_one_line():
    from normconf.cli_common import UsageError
    from normconf.package_data import MissingExtraError, require_extra

    assert require_extra("json", "report").__name__ == "json"
    with pytest.raises(MissingExtraError) as info:
        require_extra("normconf_test_no_such_module", "report", "the heatmap")
    msg = str(info.value)
    assert (
        msg
        == "the heatmap needs the optional dependency 'normconf_test_no_such_module': pip install 'normconf[report]'"
    )
    assert isinstance(info.value, ImportError) and isinstance(info.value, UsageError)  # the CLI: exit 2, no traceback


def test_require_extra_does_not_hide_a_broken_module(tmp_path, monkeypatch):
    (tmp_path / "normconf_test_broken.py").write_text("import normconf_test_missing_dependency\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    from normconf.package_data import MissingExtraError, require_extra

    with pytest.raises(ModuleNotFoundError) as info:
        require_extra("normconf_test_broken", "report")
    assert not isinstance(info.value, MissingExtraError)
    assert info.value.name == "normconf_test_missing_dependency"


def test_tiny_dnn_package_list_is_the_same_everywhere():
    """native/apt-packages.txt is what `make system` installs; the adapter's hint and CMake's message
    name the same tiny-dnn packages (a wheel ships neither the list nor the Makefile, so each keeps a copy)."""
    import re

    from normconf.adapters.native import TINYDNN_APT

    tiny: list[str] = []  # the packages under the list's "# the tiny-dnn backend" comment
    section = None
    for line in (ROOT / "native" / "apt-packages.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            section = line
        elif line.strip() and section is not None and section.startswith("# the tiny-dnn backend"):
            tiny.append(line.strip())
    cmake = re.search(r'set\(NORMCONF_TINYDNN_APT "([^"]+)"\)', (ROOT / "native" / "CMakeLists.txt").read_text())
    assert cmake is not None
    assert TINYDNN_APT.split() == tiny == cmake.group(1).split()
