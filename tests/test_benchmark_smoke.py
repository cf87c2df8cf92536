"""The benchmark script runs end to end in its tiny mode and writes its JSON (no timing assertions).

Timings depend on the machine and its load; what is checked here is that every section
runs, reports numbers of the right kind, that the parallel suite run gives the same
results as the serial one, and that the targets table is derived from the measurements.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--backends",
            "numpy",
            "--only",
            "overhead,reference,suite,memory",
            "--repeat",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"wrote {out}" in p.stdout
    assert "targets" in p.stdout  # the table was printed
    return json.loads(out.read_text())


def test_meta(quick_results):
    meta = quick_results["meta"]
    assert meta["quick"] is True
    assert meta["repeat"] == 2
    assert meta["cpu_count"] >= 1


def test_overhead_rows(quick_results):
    rows = quick_results["overhead"]
    assert {(r["backend"], r["size"]) for r in rows} == {("numpy", "large"), ("numpy", "small")}
    for r in rows:
        assert r["direct_ms"] > 0 and r["normconf_warm_ms"] > 0 and r["normconf_cold_ms"] > 0
        assert r["ratio_warm"] == pytest.approx(r["normconf_warm_ms"] / r["direct_ms"], rel=0.02)
        assert set(r["breakdown_warm_ms"]) == {"adapter", "transport", "rows"}
        assert len(r["samples"]["direct"]["samples"]) == 2
    small = next(r for r in rows if r["size"] == "small")
    assert small["shape"] == [8, 4, 4, 4] and small["input_bytes"] == 8 * 4 * 4 * 4 * 4


def test_reference_vs_copy(quick_results):
    ref = quick_results["reference"]
    assert ref["reference_ms"] > 0 and ref["copy_ms"] > 0
    med = ref["samples"]
    # the ratio of the medians (the rounded ms columns are too coarse for the tiny quick arrays)
    assert ref["ratio"] == pytest.approx(med["reference"]["median"] / med["copy"]["median"], abs=0.01)


def test_suite_parallel_equals_serial(quick_results):
    s = quick_results["suite"]
    assert s["results_identical"] is True, s["detail"]
    assert s["serial_s"] > 0 and s["j2_s"] > 0
    assert s["serial_harness_cpu_s"] > 0


def test_memory_probe(quick_results):
    mem = quick_results["memory"]
    assert [m["explain"] for m in mem] == [False, True]
    for m in mem:
        assert "error" not in m, m.get("error")
        assert m["harness_traced_peak_x"] > 0
        assert "pass" in m["outcomes"]


def test_targets_follow_measurements(quick_results):
    t = {x["target"]: x for x in quick_results["targets"]}
    ref = quick_results["reference"]
    row = next(v for k, v in t.items() if k.startswith("reference <="))
    assert row["value"] == ref["ratio"] and row["met"] == (ref["ratio"] <= 5.0)
    assert any(k.startswith("suite -j 2 results identical") and v["met"] for k, v in t.items())
