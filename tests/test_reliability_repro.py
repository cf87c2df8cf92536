"""Reproducibility: two runs of the same suite give identical results files apart from timing.

Timing lives in ``results.TIMING_COLUMNS`` (the ``seconds`` column) and ``meta["timing"]``;
everything else — every metric, explanation, message, the seed, the versions, the
platform — must be equal, and a parallel run must equal a serial one.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from normconf.results import COLUMNS, TIMING_COLUMNS

ROOT = Path(__file__).resolve().parent.parent

GENERATED = """
defaults:
  input: {dist: normal, mean: 3.0, std: 2.0, seed: 7}
cases:
  - {id: gen_f32, shape: [4, 3, 5]}
  - {id: gen_f16_steps, shape: [4, 3, 2, 2], dtype: float16, steps: 3, momentum: {batch_weight: 0.3}}
  - {id: gen_bf16, shape: [8, 2], dtype: bfloat16, input: {dist: uniform, low: -4.0, high: 9.0, seed: 11}}
  - id: gen_nhwc_eval
    shape: [2, 4, 3]
    layout: channels_last
    mode: eval
    running_mean: {dist: uniform, seed: 3}
    running_var: 2.0
"""

BACKENDS = ["numpy"] + (["torch"] if importlib.util.find_spec("torch") else [])


def run(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "normconf.cli",
            "run",
            "seed_article.yaml",
            "generated.yaml",
            "-b",
            ",".join(BACKENDS),
            "--out",
            "reports",
            *extra,
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return p


def csv_without_timing(path: Path) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    header = rows[0]
    assert header == COLUMNS
    keep = [i for i, c in enumerate(header) if c not in TIMING_COLUMNS]
    return [[r[i] for i in keep] for r in rows]


def json_without_timing(path: Path) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    meta = {k: v for k, v in data["meta"].items() if k != "timing"}
    results = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in data["results"]]
    return meta, results


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repro")
    shutil.copy(ROOT / "cases" / "seed_article.yaml", folder / "seed_article.yaml")
    (folder / "generated.yaml").write_text(GENERATED)
    run(folder)
    shutil.copytree(folder / "reports", folder / "first")
    run(folder)  # the same command again
    shutil.copytree(folder / "reports", folder / "second")
    run(folder, "-j", "2")
    shutil.copytree(folder / "reports", folder / "parallel")
    return folder


def test_two_runs_give_identical_results_apart_from_timing(two_runs):
    a, b = two_runs / "first", two_runs / "second"
    rows_a = csv_without_timing(a / "results.csv")
    assert len(rows_a) > 20
    assert rows_a == csv_without_timing(b / "results.csv")
    assert json_without_timing(a / "results.json") == json_without_timing(b / "results.json")
    # the timing column really is the only difference that was dropped: it holds measurements
    seconds = [r["seconds"] for r in json.loads((a / "results.json").read_text())["results"]]
    assert any(s is not None for s in seconds)


def test_parallel_run_equals_serial_run(two_runs):
    assert csv_without_timing(two_runs / "first" / "results.csv") == csv_without_timing(
        two_runs / "parallel" / "results.csv"
    )


def test_results_record_seed_versions_and_platform(two_runs):
    meta, results = json_without_timing(two_runs / "first" / "results.json")
    env = meta["environment"]
    for key in ("normconf", "python", "platform", "numpy", "backend_versions"):
        assert env.get(key), key
    assert set(env["backend_versions"]) == set(BACKENDS)
    by_case = {r["case"]: r for r in results}
    assert by_case["gen_f32"]["seed"] == "7"
    assert by_case["gen_bf16"]["seed"] == "11"
    assert by_case["seed_article"]["seed"] == "explicit data"
    assert all(r["backend_version"] for r in results if r["outcome"] != "unsupported")
    assert meta["partial"] is False and meta["backends"] == BACKENDS
