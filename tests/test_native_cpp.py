"""The bundled C++ BatchNorm (backend ``cpp``): its own C++ unit test, the seed case, train/eval twins,
multi-step training, ranks/layouts/dtypes, argument validation through the C ABI."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from normconf.adapters.native import CppAdapter
from normconf.cases import Case, load_file
from normconf.inputs import generate
from normconf.native import (
    EINVAL,
    EUNSUPPORTED,
    FLOAT32,
    OP_BATCH_NORM,
    TRAIN,
    NativeCallError,
    NormconfCallV2,
    bundled_library,
    call_forward,
    load,
)
from normconf.runner import Runner
from tests.helpers import loaded_case

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "cases" / "seed_article.yaml"

# docs/seed.md: reference y (biased variance, eps 1e-5), derived
# independently of this code, published with 6 decimals.
DESIGN_Y = np.array(
    [
        [0.073358, -0.228133, 0.349912, 1.054900, 1.147841, -0.554558],
        [-2.392967, -0.831113, 0.952892, -1.567836, 1.014097, -0.946722],
        [-0.233800, -0.534156, 1.462932, 0.028021, 0.891688, 0.313643],
    ]
)


def test_cpp_library_is_built_by_the_package_build():
    # not a skip: `pip install -e .` / `make install` must have compiled it (nothing compiles at run time)
    assert bundled_library("cpp").exists(), "libnormconf_cpp.so missing: run `pip install -e .` (or make install)"
    assert CppAdapter().available() is None


@pytest.fixture(scope="module")
def runner():
    with Runner(timeout=120) as r:
        yield r


def _outcomes(rows) -> dict[tuple[str, int | None], str]:
    return {(r.output, r.step): r.outcome for r in rows}


def test_cpp_unit_test_compiles_and_passes(tmp_path):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = tmp_path / "test_batch_norm"
    src = ROOT / "native"
    subprocess.run(
        [
            cxx,
            "-std=c++17",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{src / 'include'}",
            f"-I{src / 'src'}",
            str(src / "tests" / "test_batch_norm.cpp"),
            str(src / "src" / "cpp_abi.cpp"),
            "-o",
            str(exe),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "all checks passed" in r.stdout


def test_seed_y_matches_design_numbers():
    lc = next(c for c in load_file(SEED) if c.id == "seed_article")
    obs = CppAdapter().run(lc.case, generate(lc.case))
    y = obs.outputs["y"][0]
    assert y.dtype == np.float32 and y.shape == (3, 1, 1, 6)
    # 1e-6: the published numbers are rounded to 6 decimals (5e-7) and y is float32 (ulp 2.4e-7 at |y| < 2.4)
    np.testing.assert_allclose(y.reshape(3, 6), DESIGN_Y, rtol=0, atol=1e-6)
    # docs/seed.md: mean 7.863889, biased variance 1946.064931 (float32 statistics: ulp(1946) = 1.2e-4)
    assert abs(obs.outputs["batch_mean"][0][0] - 7.863889) < 1e-5
    assert abs(obs.outputs["batch_var"][0][0] - 1946.064931) < 2e-3


@pytest.mark.parametrize("case_id", ["seed_article", "seed_article_eval", "seed_article_train_affine"])
def test_seed_cases_pass_on_cpp(runner, case_id):
    lc = next(c for c in load_file(SEED) if c.id == case_id)
    rows = runner.run_pair(lc, "cpp")
    outs = _outcomes(rows)
    expected_outputs = set(lc.case.output_names())
    assert {o for o, _ in outs} == expected_outputs, rows
    assert set(outs.values()) == {"pass"}, [(r.output, r.outcome, r.message) for r in rows]


MULTI = [
    dict(
        id="cpp_multi_step_nchw",
        shape=[4, 3, 5, 6],
        steps=5,
        mode="train",
        momentum={"batch_weight": 0.3},
        affine={"gamma": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": 3}, "beta": [0.1, -0.2, 0.3]},
        running_mean=[0.5, -1.0, 2.0],
        running_var=[2.0, 0.5, 1.5],
        eval_after=True,
        input={"dist": "normal", "mean": 3.0, "std": 2.0, "seed": 11},
    ),
    dict(
        id="cpp_channels_last_rank3",
        shape=[8, 4, 7],
        layout="channels_last",
        steps=3,
        mode="train",
        input={"dist": "uniform", "low": -5.0, "high": 5.0, "seed": 5},
        eps=1e-3,
    ),
    dict(
        id="cpp_rank2_f64",
        shape=[16, 5],
        dtype="float64",
        steps=4,
        momentum={"running_weight": 0.99},
        input={"seed": 7},
    ),
    dict(
        id="cpp_rank5_cumulative",
        shape=[2, 3, 2, 3, 4],
        steps=4,
        momentum="cumulative",
        input={"seed": 9},
        eval_after=True,
    ),
    dict(
        id="cpp_eval_channels_last_rank5",
        shape=[2, 3, 2, 3, 4],
        layout="channels_last",
        mode="eval",
        steps=2,
        running_mean=[0.1, 0.2, 0.3],
        running_var=[1.5, 0.7, 2.2],
        affine={"gamma": 2.0, "beta": -1.0},
        input={"seed": 13},
    ),
    dict(id="cpp_no_affine_single_element_per_channel", shape=[1, 4], affine=False, input={"seed": 1}),
]


@pytest.mark.parametrize("spec", MULTI, ids=[m["id"] for m in MULTI])
def test_multi_step_and_shapes_pass_on_cpp(runner, spec):
    lc = loaded_case(**spec)
    rows = runner.run_pair(lc, "cpp")
    outs = _outcomes(rows)
    assert {o for o, _ in outs} == set(lc.case.output_names())
    assert len(rows) == len(lc.case.output_names()) * lc.case.steps - (lc.case.steps - 1) * lc.case.eval_after
    assert set(outs.values()) == {"pass"}, [
        (r.output, r.step, r.outcome, r.message) for r in rows if r.outcome != "pass"
    ]
    if lc.case.layout == "channels_last":
        assert any("transposed" in r.notes for r in rows)


def test_cpp_convention_is_detected_when_the_case_asks_for_another(runner):
    # cpp blends the *biased* variance into running_var; a case asking for the unbiased one must see it
    lc = loaded_case(
        id="cpp_unbiased_running", shape=[4, 2, 3], steps=2, running_variance="unbiased", input={"seed": 2}
    )
    rows = runner.run_pair(lc, "cpp")
    outs = _outcomes(rows)
    # mismatch, or explained once the explanation engine is wired in -- then by the biased running variance
    for k in (1, 2):
        assert outs[("running_var", k)] in ("mismatch", "explained")
    for r in rows:
        if r.outcome == "explained":
            assert "running_variance=biased" in r.explanation, r.explanation
    assert outs[("y", 1)] == "pass" and outs[("running_mean", 2)] == "pass"


def test_half_dtypes_and_param_dtype_are_carried_by_abi_v2():
    # ABI v2 carries float16/bfloat16 and a parameter dtype of its own: nothing is refused up front
    a = CppAdapter()
    for dt in ("float16", "bfloat16", "float64"):
        assert a.unsupported(Case.model_validate(dict(id="h", shape=[2, 2], dtype=dt))) is None
    assert (
        a.unsupported(Case.model_validate(dict(id="p", shape=[2, 2], dtype="float16", param_dtype="float32"))) is None
    )


# --- argument validation: error codes, never an abort --------------------------------------------


def _seed_call(lib_keep: list) -> NormconfCallV2:
    """A valid ABI v2 batch_norm call (the bundled library speaks v2)."""
    x = np.arange(18, dtype=np.float32)
    y = np.zeros(18, np.float32)
    rm, rv = np.zeros(1, np.float32), np.ones(1, np.float32)
    lib_keep.extend([x, y, rm, rv])
    c = NormconfCallV2()
    c.op = OP_BATCH_NORM
    c.dtype = c.param_dtype = FLOAT32
    c.rank, c.mode = 4, TRAIN
    for i, d in enumerate((3, 1, 1, 6)):
        c.dims[i] = d
    c.x_len, c.eps, c.momentum, c.step = 18, 1e-5, 0.1, 1
    c.x, c.y, c.running_mean, c.running_var = x.ctypes.data, y.ctypes.data, rm.ctypes.data, rv.ctypes.data
    return c


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x_len=17), "x_len"),
        (dict(eps=0.0), "eps"),
        (dict(eps=-1e-5), "eps"),
        (dict(eps=float("nan")), "eps"),
        (dict(rank=1, dims=(18, 0, 0, 0)), "batch_norm: rank"),
        (dict(rank=9), "rank"),
        (dict(dims=(3, 0, 1, 6), x_len=0), "dims[1]"),
        (dict(dims=(-1, 1, 1, 6)), "dims[0]"),
        (dict(dtype=9), "dtype"),
        (dict(momentum=1.5), "momentum"),
        (dict(step=0), "step"),
        (dict(x=None), "NULL"),
    ],
)
def test_bad_arguments_return_einval(change, message):
    lib = load(str(bundled_library("cpp")))
    keep: list = []
    c = _seed_call(keep)
    for k, v in change.items():
        if k == "dims":
            for i, d in enumerate(v):
                c.dims[i] = d
        else:
            setattr(c, k, v)
    assert lib.forward(c) == EINVAL
    assert message in lib.last_error()


def test_empty_training_batch_is_unsupported_and_eval_of_empty_batch_works():
    lib = load(str(bundled_library("cpp")))
    keep: list = []
    c = _seed_call(keep)
    c.dims[0], c.x_len = 0, 0
    assert lib.forward(c) == EUNSUPPORTED
    x = np.zeros((0, 2, 3), np.float32)
    r = call_forward(
        lib,
        x,
        mode=1,
        eps=1e-5,
        momentum=0.1,
        step=1,
        gamma=None,
        beta=None,
        running_mean=np.zeros(2, np.float32),
        running_var=np.ones(2, np.float32),
    )
    assert r.y.shape == (0, 2, 3)


def test_call_error_is_raised_with_the_library_message():
    lib = load(str(bundled_library("cpp")))
    with pytest.raises(NativeCallError, match="EINVAL.*eps"):
        call_forward(
            lib,
            np.ones((2, 2), np.float32),
            mode=TRAIN,
            eps=0.0,
            momentum=0.1,
            step=1,
            gamma=None,
            beta=None,
            running_mean=np.zeros(2, np.float32),
            running_var=np.ones(2, np.float32),
        )


def test_struct_size_mismatch_is_refused():
    lib = load(str(bundled_library("cpp")))
    keep: list = []
    c = _seed_call(keep)
    c.struct_size = 16  # forward() fills in the right size; call the raw symbol to send a wrong one
    fn = lib._forward
    assert fn(ctypes.byref(c)) == EINVAL
    assert "struct_size" in lib.last_error()
