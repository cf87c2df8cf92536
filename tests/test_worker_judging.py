"""Judging in the worker processes (issue 18): the comparison and the explanation run next to the
backend's output, and nothing about the results depends on where or in which order they ran.

* a serial and a ``-j 2`` run write the same results (every column but the timings);
* rows judged in the worker equal rows judged in the harness process, explanations included;
* a worker whose FPU flushes subnormals hands its outputs to the harness (and says so);
* judging that raises in the worker is normconf's bug: :class:`normconf.runner.JudgingError`;
* workers start single-threaded (``$NORMCONF_WORKER_THREADS``), with a persistent JAX cache that
  leaves every result as it is;
* the schedule gives each worker group whole, so a framework is imported once per run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from normconf.runner import JudgingError, Runner
from normconf.worker import FTZ_NOTE, fpu_is_ieee
from normconf.worker_env import MALLOC_TUNABLES, cache_env, malloc_env, thread_env, worker_groups
from tests.helpers import REPO_ROOT, loaded_case, run_cli

ADAPTERS = "tests.judging_adapters:ADAPTERS"
#: result columns that measure time, not behaviour
TIMING = ("seconds",)
#: cheap backends with explained rows (tiny-dnn: unbiased variance; cpp and the ONNX ones: precision)
BACKENDS = "numpy,cpp,tiny-dnn,ort,ort-init,onnx-reference"
CASE_FILES = ("cases/seed_article.yaml", "cases/variance.yaml", "cases/dtypes.yaml", "cases/trap_large_offset.yaml")


def _csv(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "results.csv", keep_default_na=False, dtype=str)
    return df.drop(columns=list(TIMING))


def _json_rows(folder: Path) -> list[dict]:
    rows = json.loads((folder / "results.json").read_text())["results"]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_serial_and_parallel_runs_write_identical_results(tmp_path):
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}"
        p = run_cli("run", *CASE_FILES, "-b", BACKENDS, "-j", jobs, "-q", "--allow-unavailable", "-o", str(out))
        assert p.returncode == 0, p.stdout + p.stderr
        outs[jobs] = out
    a, b = _csv(outs["1"]), _csv(outs["2"])
    assert len(a) > 500 and (a["outcome"] == "explained").sum() > 20  # the comparison has something to show
    pd.testing.assert_frame_equal(a, b)
    assert _json_rows(outs["1"]) == _json_rows(outs["2"])


def test_rows_judged_in_the_worker_equal_rows_judged_in_the_harness():
    from normconf.cases import load_file

    cases = [lc for f in CASE_FILES for lc in load_file(REPO_ROOT / f)]
    compared = explained = 0
    with Runner() as r:
        for b in ("numpy", "cpp", "ort", "onnx-reference"):
            for lc in cases:
                in_worker = r.run_pair(lc, b)
                in_harness = r.judge(lc, b, r.run_backend(lc, b))
                strip = (
                    [{k: v for k, v in vars(row).items() if k not in (*TIMING, "plot")} for row in in_worker],
                    [{k: v for k, v in vars(row).items() if k not in (*TIMING, "plot")} for row in in_harness],
                )
                assert strip[0] == strip[1], (lc.id, b)
                assert [row.plot for row in in_worker] == [row.plot for row in in_harness], (lc.id, b)
                compared += len(in_worker)
                explained += sum(row.outcome == "explained" for row in in_worker)
    assert compared > 500 and explained > 10


def test_fpu_probe_sees_flush_to_zero():
    torch = pytest.importorskip("torch")
    assert fpu_is_ieee()
    torch.set_flush_denormal(True)
    try:
        assert not fpu_is_ieee()
    finally:
        torch.set_flush_denormal(False)
    assert fpu_is_ieee()


def test_a_worker_flushing_subnormals_is_judged_in_the_harness():
    pytest.importorskip("torch")
    os.chdir(REPO_ROOT)
    lc = loaded_case(id="ftz", shape=[2, 3, 4, 4])
    with Runner((ADAPTERS,)) as r:
        first = r.run_pair(lc, "flush-denormals")  # the adapter sets FTZ/DAZ after its outputs are computed
        assert {row.outcome for row in first} == {"pass"}
        assert all(FTZ_NOTE in row.notes for row in first)
        reference = r.run_pair(lc, "numpy")
    keep = ("output", "step", "outcome", "max_abs_err", "max_ulp", "explanation")
    assert [[getattr(x, k) for k in keep] for x in first] == [[getattr(x, k) for k in keep] for x in reference]


def test_judging_that_raises_in_the_worker_is_an_internal_error():
    os.chdir(REPO_ROOT)
    with Runner((ADAPTERS,)) as r:
        with pytest.raises(JudgingError, match="ZeroDivisionError: planted by tests/judging_adapters.py"):
            r.run_pair(loaded_case(id="broken"), "judging-breaker")


def test_workers_start_single_threaded_unless_told_otherwise(monkeypatch):
    os.chdir(REPO_ROOT)
    monkeypatch.delenv("NORMCONF_WORKER_THREADS", raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with Runner((ADAPTERS,)) as r:
        (row, *_) = r.run_pair(loaded_case(id="threads"), "thread-report")
    notes = row.notes
    for v in ("OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "OMP_WAIT_POLICY=PASSIVE"):
        assert v in notes
    assert "intra_op_parallelism_threads=1" in notes and "xla_cpu_multi_thread_eigen=false" in notes
    assert all(f"{k}={v}" in notes for k, v in MALLOC_TUNABLES.items())
    monkeypatch.setenv("NORMCONF_WORKER_THREADS", "3")
    env = thread_env()
    assert env["OMP_NUM_THREADS"] == "3" and "xla_cpu_multi_thread_eigen=true" in env["XLA_FLAGS"]
    monkeypatch.setenv("NORMCONF_WORKER_THREADS", "many")
    with pytest.raises(ValueError, match="NORMCONF_WORKER_THREADS='many'"):
        Runner()


def test_worker_groups_join_environments_and_split_on_conflicts():
    class A:
        worker, worker_env = "w", {"X": "1", "S": "a"}

    class B:
        worker, worker_env = "w", {"Y": "2"}

    class C:
        worker, worker_env = "w", {"S": "c"}

    class D:
        worker, worker_env = "v", {}

    table = worker_groups({"c": C, "b": B, "a": A, "d": D})
    assert table["a"] == table["b"] == ("w", {"S": "a", "X": "1", "Y": "2"})
    assert table["c"] == ("w#2", {"S": "c"}) and table["d"] == ("v", {})
    # decided from every adapter, in id order: the same table whatever order they come in
    assert worker_groups({"d": D, "a": A, "b": B, "c": C}) == table


def test_backends_of_one_worker_share_its_process_under_the_joined_environment():
    with Runner(extra_specs=[ADAPTERS]) as r:
        notes = {}
        for b in ("env-a", "env-b", "env-c"):
            (row, *_) = r.run_pair(loaded_case(id="env"), b)
            notes[b] = dict(n.split("=", 1) for n in row.notes.split("; ") if "=" in n)
    a, b, c = notes["env-a"], notes["env-b"], notes["env-c"]
    assert a["pid"] == b["pid"] != c["pid"]  # env-c's value of NC_TEST_SHARED needs its own process
    assert a["NC_TEST_A"] == b["NC_TEST_A"] == "1" and a["NC_TEST_B"] == b["NC_TEST_B"] == "2"
    assert a["NC_TEST_SHARED"] == b["NC_TEST_SHARED"] == "a" and c["NC_TEST_SHARED"] == "c"
    assert c["NC_TEST_A"] == "-" and c["NC_TEST_B"] == "-"
    # `normconf backends` names the process each one runs in
    p = run_cli("backends", "--adapter", ADAPTERS, "-b", "env-*", "--json")
    listed = {r["backend"]: r["worker"] for r in json.loads(p.stdout)["backends"]}
    assert listed == {"env-a": "env", "env-b": "env", "env-c": "env#2"}, p.stderr


def _mmapped_in_a_fresh_process(tunables: str) -> str:
    p = subprocess.run(
        [sys.executable, "-c", "import tests.judging_adapters as j; print(j.mmapped_growth_of_a_40mb_array())"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "GLIBC_TUNABLES": tunables},
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_workers_take_large_arrays_from_the_heap(monkeypatch):
    """The malloc tunables take effect in a worker: a 40 MiB array is not a fresh mmap there (it is
    one under glibc's defaults, above its 32 MiB dynamic threshold), and a user's own tunables stay."""
    env = malloc_env({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=4096:glibc.cpu.hwcaps=-AVX512F"})
    assert env["GLIBC_TUNABLES"] == (
        f"glibc.malloc.trim_threshold=4096:glibc.cpu.hwcaps=-AVX512F:glibc.malloc.mmap_threshold={256 << 20}"
    )
    defaults = _mmapped_in_a_fresh_process("")
    if defaults == "unavailable":
        pytest.skip("not glibc >= 2.33 (no mallinfo2): the tunables cannot be observed")
    assert int(defaults) >= 40 << 20, "glibc's defaults mmap it: the test would not tell the settings apart"
    if int(_mmapped_in_a_fresh_process(malloc_env({})["GLIBC_TUNABLES"])) != 0:
        # older glibc refuses a threshold above 32 MiB (HEAP_MAX_SIZE / 2): speed only, nothing to see
        pytest.skip(f"this glibc ({os.confstr('CS_GNU_LIBC_VERSION')}) ignores mmap_threshold = 256 MiB")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with Runner((ADAPTERS,)) as r:
        (row, *_) = r.run_pair(loaded_case(id="malloc"), "thread-report")
    assert next(n for n in row.notes.split("; ") if n.startswith("mmapped=")) == "mmapped=0"


def test_a_malformed_thread_count_is_a_usage_error(tmp_path):
    env = dict(os.environ, NORMCONF_WORKER_THREADS="0")
    p = subprocess.run(
        [sys.executable, "-m", "normconf.cli", "run", "cases/seed_article.yaml", "-b", "numpy", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert "NORMCONF_WORKER_THREADS='0'" in p.stderr and "Traceback" not in p.stderr
    assert not any(tmp_path.iterdir())


def test_cache_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("NORMCONF_CACHE_DIR", "off")
    assert cache_env() == {}
    monkeypatch.setenv("NORMCONF_CACHE_DIR", str(tmp_path / "c"))
    env = cache_env()
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "c" / "jax") and (tmp_path / "c" / "jax").is_dir()
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/somewhere/else")  # the user's own cache is kept
    assert cache_env() == {}


def test_a_persistent_jax_cache_changes_no_result(tmp_path):
    pytest.importorskip("flax")
    env_cache = tmp_path / "cache"
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        p = subprocess.run(
            [sys.executable, "-m", "normconf.cli", "run", "cases/seed_article.yaml", "cases/dtypes.yaml"]
            + ["-b", "flax", "-q", "-o", str(out)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=dict(os.environ, NORMCONF_CACHE_DIR=str(env_cache)),
            timeout=600,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        outs.append(_csv(out))
        if i == 0:
            entries = sorted((env_cache / "jax").iterdir())
            assert entries, "the first run wrote no compiled program"
    pd.testing.assert_frame_equal(outs[0], outs[1])  # the second run loaded them: same results
    shutil.rmtree(env_cache)


class _Fake(Runner):
    """A Runner whose groups are given by a table (no adapters loaded)."""

    def __init__(self, groups: dict[str, str], costs: dict[str, tuple[float, float]] | None = None):  # noqa: D107
        self._groups = groups  # no Runner.__init__: nothing is started
        self._costs = costs or {}

    def group_of(self, backend: str):
        return self._groups[backend], {}

    def cpu_estimate(self, backend: str):
        return self._costs.get(backend, (1.0, 5.0))


def test_schedule_keeps_groups_whole_and_largest_first():
    groups = {"a1": "A", "a2": "A", "a3": "A", "b": "B", "c": "C"}
    fake = _Fake(groups)
    tasks = [(ci, bi, None, b) for ci in range(10) for bi, b in enumerate(groups)]
    serial = fake.schedule(tasks, 1)
    assert [len(p) for p in serial] == [30, 10, 10]
    assert all(len({groups[t[3]] for t in p}) == 1 for p in serial)
    assert serial[0] == sorted(serial[0], key=lambda t: (t[0], t[1]))  # case order inside a group
    two = fake.schedule(tasks, 2)  # share 25: group A (30 tasks) is cut in two, B and C stay whole
    assert sorted(len(p) for p in two) == [10, 10, 15, 15]
    assert all(len({groups[t[3]] for t in p}) == 1 for p in two)
    assert sorted(t for p in two for t in p) == sorted(tasks)
    assert fake.schedule(tasks, 8) == sorted(fake.schedule(tasks, 8), key=len, reverse=True)


def test_schedule_starts_the_costliest_work_first():
    """With -j 2 the chunks go by estimated CPU (the group's start-up plus its cases), not by their
    number of tasks: a slow framework with few backends comes before a fast one with many, and
    the cheap groups come last, where one thread may already be idle."""
    groups = {"o1": "O", "o2": "O", "o3": "O", "t": "T", "k": "K", "n": "N"}
    costs = {b: (0.5, 2.0) for b in ("o1", "o2", "o3")}
    costs.update({"t": (4.0, 15.0), "k": (2.0, 40.0), "n": (0.5, 1.0)})
    fake = _Fake(groups, costs)
    tasks = [(ci, bi, None, b) for ci in range(100) for bi, b in enumerate(groups)]
    two = fake.schedule(tasks, 2)
    # estimates: K 2 + 4 = 6 s, T 4 + 1.5 = 5.5 s, O 0.5 + 0.6 = 1.1 s, N 0.5 + 0.1 = 0.6 s (none cut)
    assert [groups[p[0][3]] for p in two] == ["K", "T", "O", "N"]
    assert all(len({groups[t[3]] for t in p}) == 1 for p in two)
    assert sorted(t for p in two for t in p) == sorted(tasks)
    # serial: the order does not change the time; largest first as before
    assert [groups[p[0][3]] for p in fake.schedule(tasks, 1)] == ["O", "K", "N", "T"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_on_tail_runs_once_when_no_work_is_left(jobs):
    """``Runner.run(on_tail=...)`` (normconf run imports the report modules there): called exactly
    once per run, after the last chunk was taken, whatever the number of threads."""
    import threading

    cases = [loaded_case(id=f"t{i}", shape=[4, 3 + i]) for i in range(3)]
    calls: list[str] = []
    with Runner() as r:
        summary = r.run(
            cases, ["numpy", "cpp"], jobs=jobs, on_tail=lambda: calls.append(threading.current_thread().name)
        )
    assert len(calls) == 1
    assert len({(row.case, row.backend) for row in summary.rows}) == 6 and not summary.partial
