"""The C ABI end to end: the README's C example, user libraries via --native, crash and hang
containment, ABI version checks, and that the ctypes struct matches the C header."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from normconf.adapters.native import native_adapter_class
from normconf.cases import load_file
from normconf.native import NormconfCall, bundled_library, include_dir
from normconf.runner import Runner
from tests.helpers import loaded_case

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = include_dir()
SEED = ROOT / "cases" / "seed_article.yaml"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc)")


def build(tmp_path: Path, name: str, source: str | Path) -> Path:
    """Compile a C source (text or file) against normconf_bn.h into tmp_path/lib<name>.so."""
    if isinstance(source, str):
        src = tmp_path / f"{name}.c"
        src.write_text(source)
    else:
        src = source
    out = tmp_path / f"lib{name}.so"
    subprocess.run(
        [
            CC,
            "-std=c99",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            f"-I{INCLUDE}",
            str(src),
            "-o",
            str(out),
            "-lm",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


PROLOGUE = """
#include "normconf_bn.h"
int32_t normconf_bn_abi_version(void) { return NORMCONF_BN_ABI_VERSION; }
"""
CRASH = (
    PROLOGUE
    + """
int32_t normconf_bn_forward(normconf_bn_call* call) {
    volatile int* p = (volatile int*)0;
    (void)call;
    return *p;  /* dereferences NULL: SIGSEGV */
}
"""
)
HANG = (
    PROLOGUE
    + """
#include <unistd.h>
int32_t normconf_bn_forward(normconf_bn_call* call) {
    (void)call;
    for (;;) sleep(1000);  /* never returns */
}
"""
)
WRONG_VERSION = """
#include "normconf_bn.h"
int32_t normconf_bn_abi_version(void) { return NORMCONF_BN_ABI_VERSION + 41; }
int32_t normconf_bn_forward(normconf_bn_call* call) { (void)call; return 0; }
"""
ONLY_FLOAT64 = (
    PROLOGUE
    + """
#include <string.h>
const char* normconf_bn_last_error(void) { return "float64 only, sorry"; }
int32_t normconf_bn_forward(normconf_bn_call* call) {
    if (call->dtype != NORMCONF_BN_FLOAT64) return NORMCONF_BN_EUNSUPPORTED;
    memset(call->y, 0, (size_t)call->x_len * sizeof(double));
    return NORMCONF_BN_OK;
}
"""
)


def test_ctypes_struct_matches_the_header(tmp_path):
    fields = [f for f, _ in NormconfCall._fields_]
    prog = tmp_path / "layout.c"
    prints = "\n".join(f'    printf("{f} %zu\\n", offsetof(normconf_bn_call, {f}));' for f in fields)
    prog.write_text(f"""#include <stddef.h>
#include <stdio.h>
#include "normconf_bn.h"
int main(void) {{
    printf("sizeof %zu\\n", sizeof(normconf_bn_call));
{prints}
    return 0;
}}
""")
    exe = tmp_path / "layout"
    subprocess.run([CC, f"-I{INCLUDE}", str(prog), "-o", str(exe)], check=True, capture_output=True)
    got = dict(line.split() for line in subprocess.run([str(exe)], capture_output=True, text=True).stdout.splitlines())
    import ctypes

    assert int(got["sizeof"]) == ctypes.sizeof(NormconfCall)
    for f in fields:
        assert int(got[f]) == getattr(NormconfCall, f).offset, f


def test_readme_example_passes_the_seed_cases(tmp_path):
    lib = build(tmp_path, "mybn", ROOT / "native" / "examples" / "mybn.c")
    cls = native_adapter_class(str(lib))
    assert cls.id == "native:mybn" and cls.worker == f"native:{lib.resolve()}"
    cases = load_file(SEED) + [
        loaded_case(
            id="mybn_multi_step",
            shape=[4, 3, 5],
            steps=4,
            momentum={"batch_weight": 0.2},
            affine={"gamma": [0.5, 1.0, 2.0], "beta": [1.0, 0.0, -1.0]},
            running_mean=0.5,
            running_var=2.0,
            eval_after=True,
            input={"seed": 21},
        ),
        loaded_case(
            id="mybn_f64_channels_last",
            shape=[3, 4, 2, 2],
            dtype="float64",
            layout="channels_last",
            steps=2,
            momentum="cumulative",
            input={"seed": 22},
        ),
    ]
    with Runner(native_paths=(str(lib),), timeout=60) as r:
        info = r.backend_info(["native:mybn"])
        assert info["native:mybn"][0] is None and info["native:mybn"][1].startswith("mybn 1.0 sha256:")
        for lc in cases:
            rows = r.run_pair(lc, "native:mybn")
            assert {x.output for x in rows} == set(lc.case.output_names()), lc.id
            bad = [(x.output, x.step, x.outcome, x.message) for x in rows if x.outcome != "pass"]
            assert not bad, (lc.id, bad)


def test_cli_run_with_native_library(tmp_path):
    """`normconf run CASES --native LIB.so`: the user's library is a backend, results say pass."""
    import csv
    import sys

    lib = build(tmp_path, "mybn", ROOT / "native" / "examples" / "mybn.c")
    out = tmp_path / "reports"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "normconf.cli",
            "run",
            str(SEED),
            "--native",
            str(lib),
            "--backend",
            "native:mybn",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and {row["backend"] for row in rows} == {"native:mybn"}
    assert {row["outcome"] for row in rows} == {"pass"}
    assert {row["case"] for row in rows} == {lc.id for lc in load_file(SEED)}


def test_crashing_library_is_an_error_and_the_run_goes_on(tmp_path):
    if not bundled_library("cpp").exists():
        pytest.skip("libnormconf_cpp.so not built")
    lib = build(tmp_path, "crash", CRASH)
    cases = [lc for lc in load_file(SEED) if lc.id in ("seed_article", "seed_article_eval")]
    with Runner(native_paths=(str(lib),), timeout=60) as r:
        summary = r.run(cases, ["native:crash", "cpp", "numpy"])
    by_backend: dict[str, list] = {}
    for row in summary.rows:
        by_backend.setdefault(row.backend, []).append(row)
    crash = by_backend["native:crash"]
    assert len(crash) == 2 and all(x.outcome == "error" and "SIGSEGV" in x.message for x in crash), crash
    # the other backends' results are complete
    for b in ("cpp", "numpy"):
        assert {x.outcome for x in by_backend[b]} == {"pass"}
        assert {(x.case, x.output) for x in by_backend[b]} >= {
            (lc.id, o) for lc in cases for o in lc.case.output_names()
        }


def test_hanging_library_times_out(tmp_path):
    lib = build(tmp_path, "hang", HANG)
    lc = next(c for c in load_file(SEED) if c.id == "seed_article")
    with Runner(native_paths=(str(lib),), timeout=3) as r:
        rows = r.run_pair(lc, "native:hang")
        assert len(rows) == 1 and rows[0].outcome == "error"
        assert "timeout" in rows[0].message
        # the worker was replaced: the next task in a fresh process still runs (and times out again)
        assert "timeout" in r.run_pair(lc, "native:hang")[0].message


def test_wrong_abi_version_is_an_error_with_the_reason(tmp_path):
    # issue 17: a --native library that cannot be used is an error (the run is not green), no longer
    # "backend unavailable" (outcome unsupported)
    lib = build(tmp_path, "future", WRONG_VERSION)
    lc = next(c for c in load_file(SEED) if c.id == "seed_article")
    with Runner(native_paths=(str(lib),), timeout=60) as r:
        rows = r.run_pair(lc, "native:future")
    assert len(rows) == 1 and rows[0].outcome == "error"
    assert "ABI version 42" in rows[0].message and "version 1" in rows[0].message


def test_library_refusal_is_unsupported_with_its_message(tmp_path):
    lib = build(tmp_path, "f64only", ONLY_FLOAT64)
    lc = next(c for c in load_file(SEED) if c.id == "seed_article_eval")
    with Runner(native_paths=(str(lib),), timeout=60) as r:
        rows = r.run_pair(lc, "native:f64only")
    assert len(rows) == 1 and rows[0].outcome == "unsupported"
    assert "float64 only, sorry" in rows[0].message


def test_missing_library_is_an_error(tmp_path):
    # issue 17: a mistyped --native path is an error with the reason, no longer "unavailable"
    cls = native_adapter_class(str(tmp_path / "libnothere.so"))
    assert cls.id == "native:nothere"
    lc = next(c for c in load_file(SEED) if c.id == "seed_article")
    with Runner(native_paths=(str(tmp_path / "libnothere.so"),), timeout=60) as r:
        rows = r.run_pair(lc, "native:nothere")
    assert len(rows) == 1 and rows[0].outcome == "error"
    assert "no such file" in rows[0].message


def test_each_user_library_gets_its_own_worker_group(tmp_path):
    a = native_adapter_class(str(tmp_path / "a" / "libx.so"))
    b = native_adapter_class(str(tmp_path / "b" / "liby.so"))
    assert a.worker != b.worker and a.worker.startswith("native:") and a.worker != "native"
