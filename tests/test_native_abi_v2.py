"""The C ABI v2 (native/include/normconf.h) end to end, on real compiled libraries (no mocks):

* the ctypes struct matches the header; the C++ LayerNorm unit test compiles and passes;
* the bundled ``cpp`` library speaks v2 and runs batch_norm and layer_norm (float32, float64,
  float16, bfloat16, mixed parameter dtypes) equal to a NumPy float64 computation rounded once;
* a v1 library (native/examples/mybn.c) still loads and runs batch_norm, and layer_norm is
  ``unsupported`` for it; myln.c (v2, layer_norm only, plain C) compiles and runs;
* the loader's errors (wrong version, missing symbols) keep their kinds; the backward
  direction is EUNSUPPORTED.

References are computed here with NumPy directly (float64, then one rounding with NumPy's /
ml_dtypes' correctly rounded casts), not with harness internals.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

from normconf.adapters.base import Unsupported
from normconf.adapters.native import ABI_OPS, CppAdapter, TinyDnnAdapter, native_adapter_class
from normconf.native import (
    BACKWARD,
    EUNSUPPORTED,
    FLOAT32,
    OP_BATCH_NORM,
    OP_LAYER_NORM,
    TRAIN,
    NativeLibraryError,
    NativeUnsupported,
    NormconfCallV2,
    bundled_library,
    call_forward,
    include_dir,
    load,
)
from normconf.native.layer_norm import call_layer_norm

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = include_dir()
EXAMPLES = ROOT / "native" / "examples"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
CXX = shutil.which("c++") or shutil.which("g++")
BF16 = np.dtype(ml_dtypes.bfloat16)
NP = {
    "float16": np.dtype(np.float16),
    "bfloat16": BF16,
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}

needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc)")


def build(tmp_path: Path, name: str, source: str | Path) -> Path:
    """Compile a C source (text or file) against the normconf headers into tmp_path/lib<name>.so."""
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


@pytest.fixture(scope="module")
def cpp():
    path = bundled_library("cpp")
    assert path.exists(), "libnormconf_cpp.so missing: run `pip install -e .` (or make install)"
    return load(str(path))


# --- NumPy float64 references ---------------------------------------------------------------


def ln_reference(x, axes, eps, gamma=None, beta=None):
    """(y, mean, inv_std) in float64; mean/inv_std keepdims."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    pshape = [d if i in axes else 1 for i, d in enumerate(x.shape)]
    g = 1.0 if gamma is None else np.asarray(gamma, np.float64).reshape(pshape)
    b = 0.0 if beta is None else np.asarray(beta, np.float64).reshape(pshape)
    return g * ((x - mean) / np.sqrt(var + eps)) + b, mean, 1.0 / np.sqrt(var + eps)


def bn_reference(x, eps, gamma, beta):
    """(y, batch_mean, biased batch_var) in float64 for channels-first x."""
    x = np.asarray(x, np.float64)
    axes = (0, *range(2, x.ndim))
    shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    y = gamma.astype(np.float64).reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return y + beta.astype(np.float64).reshape(shape), mean, var


def ulps(got: np.ndarray, want64: np.ndarray) -> np.ndarray:
    """Distance in units in the last place of got's dtype between got and want64 rounded to it."""
    want = want64.astype(got.dtype)
    bits = {2: np.int16, 4: np.int32, 8: np.int64}[got.dtype.itemsize]

    def ordered(a):
        i = a.view(bits).astype(np.int64)
        return np.where(i < 0, np.iinfo(bits).min - i, i)

    return np.abs(ordered(got) - ordered(want))


def near(got: np.ndarray, want64: np.ndarray, max_ulps: int = 1) -> bool:
    """got is want64 rounded once to got's dtype, within max_ulps; float64 results (no rounding
    step to check: the two float64 computations differ in summation order) to 1e-12 relative."""
    if got.dtype == np.float64:
        return bool(np.allclose(got, want64, rtol=1e-12, atol=1e-13))
    return bool(ulps(got, want64).max() <= max_ulps)


def rand(shape, dtype, seed, loc=0.5, scale=2.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape).astype(NP[dtype])


# --- the header --------------------------------------------------------------------------------


@needs_cc
def test_ctypes_struct_v2_matches_the_header(tmp_path):
    fields = [f for f, _ in NormconfCallV2._fields_]
    prints = "\n".join(f'    printf("{f} %zu\\n", offsetof(normconf_call, {f}));' for f in fields)
    prog = tmp_path / "layout.c"
    prog.write_text(f"""#include <stddef.h>
#include <stdio.h>
#include "normconf.h"
int main(void) {{
    printf("sizeof %zu\\n", sizeof(normconf_call));
{prints}
    return 0;
}}
""")
    exe = tmp_path / "layout"
    subprocess.run(
        [CC, "-std=c99", "-Wall", "-Werror", f"-I{INCLUDE}", str(prog), "-o", str(exe)], check=True, capture_output=True
    )
    got = dict(line.split() for line in subprocess.run([str(exe)], capture_output=True, text=True).stdout.splitlines())
    assert int(got["sizeof"]) == ctypes.sizeof(NormconfCallV2) == 328  # the size normconf.h documents
    for f in fields:
        assert int(got[f]) == getattr(NormconfCallV2, f).offset, f
    assert NormconfCallV2.x.offset == 152 and NormconfCallV2.reserved.offset == 264  # the header's comments


def test_cpp_layer_norm_unit_test_compiles_and_passes(tmp_path):
    if CXX is None:
        pytest.skip("no C++ compiler")
    src = ROOT / "native"
    exe = tmp_path / "test_layer_norm"
    subprocess.run(
        [
            CXX,
            "-std=c++17",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            f"-I{src / 'include'}",
            f"-I{src / 'src'}",
            str(src / "tests" / "test_layer_norm.cpp"),
            str(src / "src" / "cpp_abi.cpp"),
            "-o",
            str(exe),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "all checks passed" in r.stdout


# --- the bundled cpp library (v2) -------------------------------------------------------------


def test_bundled_cpp_speaks_v2_with_both_ops(cpp):
    assert cpp.abi == 2 and cpp.ops == ("batch_norm", "layer_norm")
    assert cpp.name.startswith("normconf cpp 2")
    assert not cpp.supports("layer_norm", "backward") and not cpp.supports("rms_norm")
    assert CppAdapter.ops == ("batch_norm", "layer_norm") and "(ABI 2)" in CppAdapter().version()


LN_SHAPES = [  # (shape, normalized axes)
    ((4, 7), (1,)),
    ((2, 3, 5), (2,)),
    ((2, 3, 5), (1, 2)),
    ((2, 3, 5, 4), (1,)),  # a middle axis (not expressible in torch/ONNX, fine here)
    ((3, 4, 2, 5), (0, 2)),  # non-contiguous set of axes
    ((6,), (0,)),  # rank 1: one row
    ((2, 1, 3, 2, 4), (0, 1, 2, 3, 4)),
]


@pytest.mark.parametrize("shape, axes", LN_SHAPES, ids=[f"{s}-{a}" for s, a in LN_SHAPES])
@pytest.mark.parametrize("affine", [True, False])
def test_cpp_layer_norm_float32_equals_numpy_rounded_once(cpp, shape, axes, affine):
    x = rand(shape, "float32", seed=len(shape) * 10 + len(axes))
    pshape = tuple(shape[a] for a in axes)
    g = rand(pshape, "float32", 1, loc=1.0, scale=0.3) if affine else None
    b = rand(pshape, "float32", 2, loc=0.0, scale=0.5) if affine else None
    r = call_layer_norm(cpp, x, norm_axes=axes, eps=1e-3, gamma=g, beta=b, param_dtype="float32")
    y, mean, inv_std = ln_reference(x, axes, 1e-3, g, b)
    stats_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    assert r.y.dtype == np.float32 and r.y.shape == shape
    assert r.mean.shape == r.inv_std.shape == stats_shape and r.mean.dtype == np.float32
    # statistics and y are computed in double and rounded once: at most 1 ulp from NumPy's rounding
    assert near(r.y, y)
    assert near(r.mean, mean) and near(r.inv_std, inv_std)
    assert (ulps(r.y, y) == 0).mean() > 0.95  # almost all bit-identical (the residue: double-precision ties)


def test_cpp_layer_norm_float64(cpp):
    x = rand((3, 4, 6), "float64", 5, loc=100.0, scale=0.01)  # large offset: two passes keep the variance
    g, b = rand((6,), "float64", 6), rand((6,), "float64", 7)
    r = call_layer_norm(cpp, x, norm_axes=(2,), eps=1e-12, gamma=g, beta=b, param_dtype="float64")
    y, mean, inv_std = ln_reference(x, (2,), 1e-12, g, b)
    np.testing.assert_allclose(r.y, y, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r.mean, mean, rtol=1e-15)
    np.testing.assert_allclose(r.inv_std, inv_std, rtol=1e-9)


@pytest.mark.parametrize(
    "dtype, params",
    [
        ("float16", "float16"),
        ("float16", "float32"),
        ("bfloat16", "bfloat16"),
        ("bfloat16", "float32"),
        ("float32", "float64"),
    ],
)
def test_cpp_layer_norm_half_and_mixed_dtypes(cpp, dtype, params):
    x = rand((8, 16), dtype, 11)
    g = rand((16,), params, 12, loc=1.0, scale=0.5)
    b = rand((16,), params, 13, loc=0.0, scale=0.5)
    r = call_layer_norm(cpp, x, norm_axes=(1,), eps=1e-5, gamma=g, beta=b, param_dtype=params)
    assert r.y.dtype == NP[dtype] and r.mean.dtype == r.inv_std.dtype == NP[params]
    y, mean, inv_std = ln_reference(x, (1,), 1e-5, g, b)
    # one rounding from double to the 16-bit storage (round-to-nearest-even): NumPy / ml_dtypes round
    # float64 correctly too, so the results agree bit for bit but for double-precision ties
    assert near(r.y, y) and (ulps(r.y, y) == 0).mean() > 0.98
    assert near(r.mean, mean) and near(r.inv_std, inv_std)


def test_cpp_batch_norm_v2_float32_and_float16(cpp):
    for dtype, params in (("float32", "float32"), ("float16", "float32"), ("bfloat16", "bfloat16")):
        x = rand((4, 3, 5), dtype, 21)
        g = np.array([0.5, 1.0, 2.0], NP[params])
        b = np.array([1.0, 0.0, -1.0], NP[params])
        rm, rv = np.full(3, 0.5, NP[params]), np.full(3, 2.0, NP[params])
        r = call_forward(
            cpp, x, mode=TRAIN, eps=1e-5, momentum=0.25, step=1, gamma=g, beta=b, running_mean=rm, running_var=rv
        )
        y, bm, bv = bn_reference(x, 1e-5, g, b)
        assert r.y.dtype == NP[dtype] and r.batch_mean.dtype == NP[params] and r.running_updated
        assert near(r.y, y), dtype
        assert near(r.batch_mean, bm) and near(r.batch_var, bv)
        assert near(rm, 0.75 * 0.5 + 0.25 * bm) and near(rv, 0.75 * 2.0 + 0.25 * bv)


def _raw_call(op: int, x: np.ndarray, y: np.ndarray, keep: list) -> NormconfCallV2:
    c = NormconfCallV2()
    c.op, c.dtype, c.param_dtype, c.rank = op, FLOAT32, FLOAT32, x.ndim
    for i, d in enumerate(x.shape):
        c.dims[i] = d
    c.x_len, c.eps, c.x, c.y = x.size, 1e-5, x.ctypes.data, y.ctypes.data
    c.axes_mask = 1 << (x.ndim - 1)
    rm, rv = np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
    c.running_mean, c.running_var, c.step, c.momentum = rm.ctypes.data, rv.ctypes.data, 1, 0.1
    keep.extend([x, y, rm, rv])
    return c


@pytest.mark.parametrize("op", [OP_BATCH_NORM, OP_LAYER_NORM])
def test_backward_direction_is_unsupported(cpp, op):
    keep: list = []
    x, y = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    c = _raw_call(op, x, y, keep)
    assert cpp.forward(c) == 0  # the same call forward is fine
    c.direction = BACKWARD
    assert cpp.forward(c) == EUNSUPPORTED
    assert "gradients" in cpp.last_error()
    with pytest.raises(NativeUnsupported, match="gradients"):
        cpp.check(EUNSUPPORTED, "backward")


def test_a_v1_struct_is_refused_by_a_v2_library(cpp):
    from normconf.native import NormconfCall

    with pytest.raises(TypeError, match="NormconfCallV2"):
        cpp.forward(NormconfCall())


# --- adapters: layer_norm cases (the harness's case/input interface) ----------------------------


def ln_case(**over):
    fields = dict(
        op="layer_norm",
        id="ln_native",
        shape=[3, 4, 5],
        norm_axes=(2,),
        normalized_shape=(5,),
        eps=1e-5,
        dtype="float32",
        params_dtype="float32",
        steps=2,
        rms_scaling=False,
    )
    fields.update(over)
    return SimpleNamespace(**fields)


def ln_inputs(case, seed=31, affine=True):
    xs = tuple(rand(case.shape, case.dtype, seed + k) for k in range(case.steps))
    g = rand(case.normalized_shape, case.params_dtype, seed + 10, loc=1.0, scale=0.2) if affine else None
    b = rand(case.normalized_shape, case.params_dtype, seed + 11, scale=0.3) if affine else None
    return SimpleNamespace(x=xs, gamma=g, beta=b)


def check_ln_observed(obs, case, inputs):
    assert set(obs.outputs) == {"y", "mean", "inv_std"}
    stats_shape = tuple(1 if i in case.norm_axes else d for i, d in enumerate(case.shape))
    for k, x in enumerate(inputs.x):
        y, mean, inv_std = ln_reference(x, case.norm_axes, case.eps, inputs.gamma, inputs.beta)
        got = obs.outputs["y"][k]
        assert got.shape == tuple(case.shape) and got.dtype == NP[case.dtype]
        assert obs.outputs["mean"][k].shape == stats_shape and obs.outputs["mean"][k].dtype == NP[case.params_dtype]
        assert near(got, y)
        assert near(obs.outputs["mean"][k], mean)
        assert near(obs.outputs["inv_std"][k], inv_std)


@pytest.mark.parametrize(
    "over",
    [
        {},
        dict(shape=[2, 6, 3], norm_axes=(0, 2), normalized_shape=(2, 3)),
        dict(dtype="float16"),
        dict(dtype="bfloat16", params_dtype="bfloat16"),
    ],
)
def test_cpp_adapter_runs_layer_norm_cases(over):
    case = ln_case(**over)
    inputs = ln_inputs(case)
    a = CppAdapter()
    assert a.unsupported(case) is None
    obs = a.run_case(case, inputs)  # the worker's entry: picks run_layer_norm by the case's op
    check_ln_observed(obs, case, inputs)


def test_cpp_adapter_without_affine_and_rms_scaling():
    a = CppAdapter()
    case = ln_case()
    inputs = ln_inputs(case, affine=False)
    check_ln_observed(a.run_layer_norm(case, inputs), case, inputs)
    rms = ln_case(rms_scaling=True)
    assert "RMS" in a.unsupported(rms)
    with pytest.raises(Unsupported, match="RMS"):
        a.run_layer_norm(rms, ln_inputs(rms))


def test_tinydnn_declares_batch_norm_only():
    a = TinyDnnAdapter()
    assert TinyDnnAdapter.ops == ("batch_norm",)
    assert "layer_norm" in a.unsupported(ln_case())


# --- user libraries: v1 still loads; v2 examples ---------------------------------------------


@needs_cc
def test_v1_library_runs_batch_norm_and_is_unsupported_for_layer_norm(tmp_path):
    lib_path = build(tmp_path, "mybn", EXAMPLES / "mybn.c")
    lib = load(str(lib_path))
    assert lib.abi == 1 and lib.ops == ("batch_norm",) and lib.name == "mybn 1.0"
    x = rand((5, 3, 4), "float32", 41)
    g, b = np.array([1.5, 1.0, 0.5], np.float32), np.array([0.0, 1.0, 2.0], np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    r = call_forward(
        lib, x, mode=TRAIN, eps=1e-5, momentum=0.1, step=1, gamma=g, beta=b, running_mean=rm, running_var=rv
    )
    y, bm, bv = bn_reference(x, 1e-5, g, b)
    assert near(r.y, y) and near(r.batch_mean, bm)
    with pytest.raises(NativeUnsupported, match="float32 and float64"):  # v1 carries no half types
        call_forward(
            lib,
            x.astype(np.float16),
            mode=TRAIN,
            eps=1e-5,
            momentum=0.1,
            step=1,
            gamma=None,
            beta=None,
            running_mean=rm.astype(np.float16),
            running_var=rv.astype(np.float16),
        )
    with pytest.raises(NativeUnsupported, match="layer_norm"):
        call_layer_norm(lib, x, norm_axes=(2,), eps=1e-5, gamma=None, beta=None, param_dtype="float32")

    cls = native_adapter_class(str(lib_path))
    assert cls.ops == ABI_OPS  # planning sees every op the ABI carries; the loaded library narrows it
    a = cls()
    assert a.ops == ("batch_norm",)
    case = ln_case()
    assert "layer_norm" in a.unsupported(case)
    with pytest.raises(Unsupported, match="layer_norm"):
        a.run_layer_norm(case, ln_inputs(case))


@needs_cc
def test_myln_example_v2_layer_norm_only(tmp_path):
    lib_path = build(tmp_path, "myln", EXAMPLES / "myln.c")
    lib = load(str(lib_path))
    assert lib.abi == 2 and lib.ops == ("layer_norm",) and lib.name == "myln 1.0"
    for shape, axes in LN_SHAPES:
        for dtype in ("float32", "float64"):
            x = rand(shape, dtype, 51)
            pshape = tuple(shape[a] for a in axes)
            g, b = rand(pshape, dtype, 52, loc=1.0), rand(pshape, dtype, 53)
            r = call_layer_norm(lib, x, norm_axes=axes, eps=1e-4, gamma=g, beta=b, param_dtype=dtype)
            y, mean, inv_std = ln_reference(x, axes, 1e-4, g, b)
            assert near(r.y, y), (shape, axes, dtype)
            assert near(r.mean, mean) and near(r.inv_std, inv_std)
    with pytest.raises(NativeUnsupported, match="float32 or float64 only"):  # the library's own refusal
        call_layer_norm(
            lib, rand((2, 4), "float16", 1), norm_axes=(1,), eps=1e-5, gamma=None, beta=None, param_dtype="float16"
        )
    keep: list = []
    c = _raw_call(OP_LAYER_NORM, np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32), keep)
    c.direction = BACKWARD
    assert lib.forward(c) == EUNSUPPORTED

    a = native_adapter_class(str(lib_path))()
    assert a.ops == ("layer_norm",)
    case = ln_case()
    inputs = ln_inputs(case)
    assert a.unsupported(case) is None
    check_ln_observed(a.run_case(case, inputs), case, inputs)
    bn_case = SimpleNamespace(op="batch_norm", dtype="float32")
    assert "batch_norm" in a.unsupported(bn_case)


# --- the loader's errors --------------------------------------------------------------------

V2_PROLOGUE = '#include "normconf.h"\n'
SUPPORTS = "int32_t normconf_supports(int32_t op, int32_t d) { return op == NORMCONF_OP_BATCH_NORM && d == 0; }\n"
RUN = "int32_t normconf_run(normconf_call* c) { (void)c; return NORMCONF_EINTERNAL; }\n"
BAD_LIBS = {
    "future": (
        V2_PROLOGUE + "int32_t normconf_abi_version(void) { return 3; }\n" + SUPPORTS + RUN,
        "abi",
        "ABI version 3",
    ),
    "claims1": (
        V2_PROLOGUE + "int32_t normconf_abi_version(void) { return 1; }\n" + SUPPORTS + RUN,
        "abi",
        "ABI version 1 (normconf_abi_version)",
    ),
    "norun": (V2_PROLOGUE + "int32_t normconf_abi_version(void) { return 2; }\n" + SUPPORTS, "symbols", "normconf_run"),
    "nosupports": (
        V2_PROLOGUE + "int32_t normconf_abi_version(void) { return 2; }\n" + RUN,
        "symbols",
        "normconf_supports",
    ),
    "nothing": ("int normconf_something_else(void) { return 0; }\n", "symbols", "neither normconf_abi_version"),
    "v1future": (
        '#include "normconf_bn.h"\nint32_t normconf_bn_abi_version(void) { return 9; }\n'
        "int32_t normconf_bn_forward(normconf_bn_call* c) { (void)c; return 0; }\n",
        "abi",
        "ABI version 9",
    ),
}


@needs_cc
@pytest.mark.parametrize("name", sorted(BAD_LIBS))
def test_unusable_libraries_have_the_right_error_kind(tmp_path, name):
    source, kind, message = BAD_LIBS[name]
    path = build(tmp_path, name, source)
    with pytest.raises(NativeLibraryError) as info:
        load(str(path))
    assert info.value.kind == kind and message in str(info.value), str(info.value)


@needs_cc
def test_a_library_with_both_abis_is_driven_through_v2(tmp_path):
    source = """#include <string.h>
#include "normconf.h"
#include "normconf_bn.h"
int32_t normconf_abi_version(void) { return NORMCONF_ABI_VERSION; }
int32_t normconf_supports(int32_t op, int32_t d) { return op == NORMCONF_OP_BATCH_NORM && d == NORMCONF_FORWARD; }
int32_t normconf_run(normconf_call* c) {
    for (int64_t i = 0; i < c->x_len; ++i) ((float*)c->y)[i] = 7.0f;
    return NORMCONF_OK;
}
int32_t normconf_bn_abi_version(void) { return NORMCONF_BN_ABI_VERSION; }
int32_t normconf_bn_forward(normconf_bn_call* c) { (void)c; return NORMCONF_BN_EINVAL; }
"""
    lib = load(str(build(tmp_path, "both", source)))
    assert lib.abi == 2 and lib.ops == ("batch_norm",)
    r = call_forward(
        lib,
        np.ones((2, 2), np.float32),
        mode=TRAIN,
        eps=1e-5,
        momentum=0.1,
        step=1,
        gamma=None,
        beta=None,
        running_mean=np.zeros(2, np.float32),
        running_var=np.ones(2, np.float32),
    )
    assert np.all(r.y == 7.0) and not r.running_updated


# --- through the runner's workers (real case files) -----------------------------------------

LN_YAML = """defaults:
  op: layer_norm
  input: {dist: normal, mean: 0.5, std: 1.5, seed: 9001}
cases:
  - {id: ln_v2_rows, shape: [4, 6, 8]}
  - {id: ln_v2_middle, shape: [3, 5, 4], axes: [1], affine: {gamma: {dist: uniform, low: 0.5, high: 2.0, seed: 3}}}
  - {id: ln_v2_half, shape: [4, 32], dtype: float16, param_dtype: float32}
  - {id: ln_v2_bf16, shape: [2, 3, 16], axes: [-2, -1], dtype: bfloat16, steps: 2}
"""


@needs_cc
def test_runner_layer_norm_cases_on_v2_and_v1_libraries(tmp_path):
    from normconf.cases import load_file
    from normconf.runner import Runner

    f = tmp_path / "ln_native.yaml"
    f.write_text(LN_YAML)
    cases = load_file(f)
    mybn = build(tmp_path, "mybn", EXAMPLES / "mybn.c")
    with Runner(native_paths=(str(mybn),), timeout=120) as r:
        for lc in cases:
            rows = r.run_pair(lc, "cpp")
            assert {x.output for x in rows} == set(lc.case.output_names()), lc.id
            assert {x.outcome for x in rows} == {"pass"}, [(x.output, x.outcome, x.message) for x in rows]
            for backend in ("native:mybn", "tiny-dnn"):  # ABI v1: no layer_norm, decided without a call
                rows = r.run_pair(lc, backend)
                assert len(rows) == 1 and rows[0].outcome in ("unsupported", "unavailable"), (backend, rows)
                if rows[0].outcome == "unsupported":
                    assert "layer_norm" in rows[0].message
