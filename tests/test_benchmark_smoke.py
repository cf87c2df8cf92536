"""The benchmark script runs end to end in its tiny mode and writes its JSON (no timing assertions).

Timings depend on the machine and its load; what is checked here is that every section runs and
prints its table, that the JSON has every key with numbers of the right kind, that the derived
numbers agree with the measured ones (ratios, per-element and per-pair costs), that the parallel
suite run gives the same results as the serial one, that the busy process is gone afterwards,
and that each target's verdict follows from its value.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["overhead", "reference", "suite", "floor", "fuzz", "memory", "scaling"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--backends", "numpy", "--repeat", "2"]
    p = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"wrote {out}" in p.stdout
    return json.loads(out.read_text()), p.stdout


@pytest.fixture(scope="module")
def res(quick) -> dict:
    return quick[0]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_every_section_printed_a_table(quick):
    _, stdout = quick
    for s in SECTIONS:
        assert re.search(rf"^\s*{s}\b[^\n]*:", stdout, re.M), f"no {s} table"
    for part in ("(a)", "(a) fit", "(b)", "(c)"):
        assert f"scaling {part}:" in stdout
    assert "targets (issue 18)" in stdout
    assert "┃ target" in stdout  # a table, not a line


def test_meta_and_load_averages(res):
    meta = res["meta"]
    assert meta["quick"] is True and meta["repeat"] == 2 and meta["cpu_count"] >= 1
    assert meta["sections"] == SECTIONS
    assert set(meta["targets"]) >= {"suite_wall_s", "suite_cpu_s", "large_cpu_ratio", "small_wall_ms"}
    for s in SECTIONS:
        la = res["loadavg"][s]
        assert len(la["before"]) == 3 and len(la["after"]) == 3 and la["seconds"] >= 0


def test_overhead_rows(res):
    rows = res["overhead"]
    keys = {(r["backend"], r["size"], r["load"]) for r in rows}
    assert keys == {("numpy", "large", "idle"), ("numpy", "small", "idle"), ("numpy", "small", "1 busy process")}
    for r in rows:
        assert r["outcomes"] == ["pass"]
        assert r["direct_ms"] > 0 and r["normconf_warm_ms"] > 0 and r["normconf_cold_ms"] > 0
        assert r["ratio_warm"] == pytest.approx(r["normconf_warm_ms"] / r["direct_ms"], rel=0.02)
        assert r["overhead_warm_ms"] == pytest.approx(r["normconf_warm_ms"] - r["direct_ms"], abs=0.002)
        assert _number(r["normconf_warm_cpu_ms"]) and _number(r["overhead_warm_cpu_ms"])  # the worker pid was found
        assert r["worker_pids"] != "n/a"
        b = r["breakdown_warm_ms"]
        assert set(b) == {"adapter", "rest"}
        assert b["adapter"] + b["rest"] == pytest.approx(r["normconf_warm_ms"], abs=0.002)
        bc = r["breakdown_warm_cpu_ms"]  # CPU: the worker's clock inside the adapter's calls, and the rest
        assert set(bc) == {"adapter", "rest"} and bc["adapter"] > 0
        assert bc["adapter"] + bc["rest"] == pytest.approx(r["normconf_warm_cpu_ms"], abs=0.002)
        assert len(r["samples"]["direct"]["samples"]) == 2
    small = next(r for r in rows if r["size"] == "small")
    assert small["shape"] == [8, 4, 4, 4] and small["input_bytes"] == 8 * 4 * 4 * 4 * 4


def test_busy_process_ran_and_is_gone(res):
    loaded = [r for r in res["overhead"] if r["load"] == "1 busy process"]
    assert loaded
    for r in loaded:
        assert r["busy_process_cores"] > 0
        cmdline = Path(f"/proc/{r['busy_process_pid']}/cmdline")
        assert not cmdline.exists() or b"while True" not in cmdline.read_bytes()


def test_reference_vs_copy(res):
    ref = res["reference"]
    assert ref["reference_ms"] > 0 and ref["copy_ms"] > 0
    med = ref["samples"]
    assert ref["ratio"] == pytest.approx(med["reference"]["median"] / med["copy"]["median"], abs=0.01)


def test_suite_parallel_equals_serial(res):
    s = res["suite"]
    assert s["results_identical"] is True, s["detail"]
    assert s["paths"] == ["cases/seed_article.yaml"] and s["extra_args"] == ["-b", "numpy"]
    for k in ("serial", "j2"):
        assert s[f"{k}_wall_s"] > 0 and s[f"{k}_cpu_s"] > 0 and s[f"{k}_harness_cpu_s"] > 0
        assert s[f"{k}_workers_cpu_s"] > 0
    assert s["pairs"] == 3  # 3 cases × numpy
    assert s["speedup"] == pytest.approx(s["serial_wall_s"] / s["j2_wall_s"], abs=0.01)


def test_floor_beside_the_suite(res):
    """The floor: the suite's backends (here numpy on the seed file) in a bare process per worker group, set
    beside the suite's -j 2 run; the derived numbers follow from the measured ones."""
    f, s = res["floor"], res["suite"]
    assert f["paths"] == s["paths"] and f["extra_args"] == s["extra_args"] and f["complete"] is True
    (g,) = f["groups"]
    assert g["group"] == "numpy" and g["backends"] == ["numpy"]
    assert g["cases"] == 3 and g["runs"] == 3 and g["errors"] == 0  # 3 cases × numpy, each run once
    assert set(g["run_wall_s"]) == {"numpy"}
    for k in ("process_start_cpu_s", "cases_cpu_s", "imports_cpu_s", "inputs_cpu_s", "runs_cpu_s"):
        assert _number(g[k]) and g[k] >= 0
    # the floor is the process less normconf's own part in it (loading the cases, drawing the inputs)
    assert g["floor_cpu_s"] == pytest.approx(g["process_cpu_s"] - g["cases_cpu_s"] - g["inputs_cpu_s"], abs=0.003)
    assert g["floor_cpu_s"] >= g["imports_cpu_s"] + g["runs_cpu_s"] - 0.003
    assert f["floor_cpu_s"] == pytest.approx(g["floor_cpu_s"], abs=1e-6)
    assert g["suite_j2_worker_cpu_s"] == s["j2_group_cpu_s"]["numpy"] > 0
    assert g["normconf_share_cpu_s"] == pytest.approx(g["suite_j2_worker_cpu_s"] - g["floor_cpu_s"], abs=0.002)
    assert f["suite_j2_cpu_s"] == s["j2_cpu_s"] and f["suite_pairs"] == s["pairs"] == 3
    assert f["normconf_share_cpu_s"] == pytest.approx(s["j2_cpu_s"] - f["floor_cpu_s"], abs=0.002)
    assert f["normconf_ms_per_pair"] == pytest.approx(1e3 * f["normconf_share_cpu_s"] / 3, rel=0.01)
    # the in-run split: the suite's backends' calls, measured by its own workers (a part of their CPU)
    assert 0 < s["j2_group_backend_cpu_s"]["numpy"] <= s["j2_group_cpu_s"]["numpy"] + 0.02
    assert g["suite_j2_backend_cpu_s"] == s["j2_group_backend_cpu_s"]["numpy"] == s["j2_backend_cpu_s"]
    assert f["normconf_share_in_run_cpu_s"] == pytest.approx(s["j2_cpu_s"] - s["j2_backend_cpu_s"], abs=0.002)


def test_fuzz(res):
    f = res["fuzz"]
    assert f["backends"] == ["numpy"] and f["examples"] > 0
    assert f["backend_runs_per_s"] == pytest.approx((f["examples"] + f["shrink_runs"]) / f["seconds"], rel=0.05)
    w = f["warm"]
    assert w["examples"] > 0
    assert w["backend_runs_per_s"] == pytest.approx((w["examples"] + w["shrink_runs"]) / w["seconds"], rel=0.05)


def test_memory_probe(res):
    mem = res["memory"]
    assert [m["explain"] for m in mem] == [False, True]
    for m in mem:
        assert "error" not in m, m.get("error")
        assert m["harness_traced_peak_x"] > 0 and m["outcomes"]
        assert _number(m["worker_rss_growth_x"])


def test_scaling_sizes(res):
    p = res["scaling"]["pairs"]
    pts = p["points"]
    assert [q["elements"] for q in pts] == [1000, 10_000, 100_000]
    for q in pts:
        assert math.prod(q["shape"]) == q["elements"] and q["input_bytes"] == 4 * q["elements"]
        assert q["outcomes"] == ["pass"]
        assert q["wall_ns_per_element"] == pytest.approx(1e9 * q["warm_wall_s"] / q["elements"], rel=0.01)
        assert _number(q["warm_cpu_s"]) and _number(q["worker_peak_rss_mb"])
        assert q["hwm_reset"]["harness"] in (True, False)
    fit = p["linearity"]["numpy"]
    for metric in ("cpu", "wall"):
        f = fit[metric]
        assert set(f["ns_per_element"]) == {"1000", "10000", "100000"}
        assert f["range"] == [] and f["ratio_in_range"] is None and f["linear"] is None  # 1e6…1e8 not measured
        assert _number(f["loglog_slope"]) and _number(f["fixed_ms"])


def test_scaling_suite_fractions_and_jobs(res):
    sc = res["scaling"]
    fr = sc["fractions"]
    assert [r["percent"] for r in fr] == [25, 50, 100]
    assert [r["cases"] for r in fr] == [1, 2, 3]  # every 4th / every 2nd / every one of 3 ids
    assert [r["pairs"] for r in fr] == [1, 2, 3]
    assert [r["reused_suite_run"] for r in fr] == [False, False, True]
    for r in fr:
        assert r["cpu_per_pair_ms"] == pytest.approx(1e3 * r["cpu_s"] / r["pairs"], rel=0.01)
    assert fr[2]["wall_s"] == res["suite"]["j2_wall_s"]  # (b)'s 100 % is the suite's -j 2 run, not a rerun
    assert set(sc["fractions_fit"]) == {"fixed_s", "marginal_ms", "max_error", "increments_ms"}
    j = sc["jobs"]
    assert j["measured_by"] == "the suite section"
    assert j["serial_wall_s"] == res["suite"]["serial_wall_s"]


def test_targets_follow_measurements(res):
    rows = res["targets"]
    for t in rows:
        assert set(t) >= {"target", "value", "met"} and t["met"] in (True, False, None)
    by = {t["target"]: t for t in rows}
    ref = next(v for k, v in by.items() if k.startswith("reference "))
    assert ref["cpu"] == res["reference"]["ratio_cpu"] and ref["met"] == (ref["cpu"] <= 5.0)
    small = [v for k, v in by.items() if k.startswith("small case")]
    assert len(small) == 2  # numpy idle and under load
    for v in small:
        assert v["met"] == (v["wall"] <= 1.0)
    # the proposed form of the large-case target, beside the (never instead of it): one per large case
    proposed = [v for k, v in by.items() if k.startswith("(proposed, not issue 18's) large case")]
    large = [r for r in res["overhead"] if r.get("size") == "large" and r.get("load") == "idle" and "skipped" not in r]
    assert len(proposed) == len(large) >= 1
    for v, r in zip(proposed, large):
        assert r["read_output_and_expected_cpu_ms"] > 0
        assert v["x"] == pytest.approx(r["overhead_warm_cpu_ms"] / r["read_output_and_expected_cpu_ms"], abs=1e-3)
        assert v["met"] == (v["x"] <= 1.5)
    suite = next(v for k, v in by.items() if k.startswith("suite: normconf run"))
    assert suite["met"] == (suite["wall"] <= 30 and suite["cpu"] <= 60)
    assert any(k.startswith("suite: -j 2 results identical") and v["met"] for k, v in by.items())
    fz = next(v for k, v in by.items() if k.startswith("fuzz ("))
    assert fz["rate"] == res["fuzz"]["backend_runs_per_s"] and fz["met"] == (fz["rate"] >= 50)
    fw = next(v for k, v in by.items() if k.startswith("fuzz warm"))
    assert fw["rate"] == res["fuzz"]["warm"]["backend_runs_per_s"] and fw["met"] == (fw["rate"] >= 50)
    lin = next(v for k, v in by.items() if k.startswith("scaling numpy"))
    assert lin["met"] is None  # the quick sizes never reach the 1e6…1e8 range: not claimed either way
    mem = [v for k, v in by.items() if k.startswith("peak memory")]
    assert mem and all(v["met"] is None for v in mem)  # numpy follows the case: no explanation search ran


@pytest.mark.parametrize("at, first", [("start", "others"), ("end", "own")])
def test_cpu_reading_itself_falls_outside_the_interval(at, first):
    """Reading another process's CPU costs this process ~70 us (``/proc`` files), so an interval's first
    reading takes the others' figures before this process's clock, its last reading the clock first: a
    mutant that reads in one fixed order counts the reading as the measured code's CPU.  (In a child
    process: importing ``benchmarks`` puts the repository root on ``sys.path``.)"""
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from benchmarks import common
order = []
common.proc_cpu = lambda pid: order.append("others") or 1.0
time.process_time = lambda: order.append("own") or 2.0
print(common.cpu_now([11, 12], at={at!r}), ",".join(order))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    total, order = p.stdout.split()
    assert float(total) == 4.0
    assert order.split(",")[0] == first and sorted(order.split(",")) == ["others", "others", "own"]
