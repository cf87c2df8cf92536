"""The compiled comparison (native/src/kernels/compare.c) and its NumPy twin give identical results.

Every field of :class:`Comparison` and every metric of the pass (including the worst score and
``any_finite``, which the Comparison does not show) must agree bit for bit (NaN == NaN), on
arrays built to reach every rule: NaN/±Inf on either side, zeros, subnormals, values near
overflow and just around powers of two (the ULP rule's slow path), ties of the worst score,
block and chunk boundaries, non-contiguous and 0-d arrays, every observed dtype.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import math
import struct

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from normconf import compare as cmp
from normconf import kernels
from normconf.compare import Comparison, Tolerance, compare, default_tolerance
from normconf.native import bundled_library

DTYPES = ("float16", "bfloat16", "float32", "float64")
NP_DTYPE = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32, "float64": np.float64}
TOLERANCES = [
    None,  # the dtype's default
    Tolerance(0.0, 0.0),  # lim == 0: scores 0/0 (NaN) and x/0 (inf)
    Tolerance(1e-3, 0.0),
    Tolerance(0.0, 1e-5),
    Tolerance(1e300, 1e-5),  # rtol * |e| overflows near DBL_MAX: inf/inf (NaN) scores
]

needs_lib = pytest.mark.skipif(kernels.library() is None, reason=f"compiled kernels not available: {kernels.status()}")


def test_library_built_in_a_source_checkout():
    """Where the package build ran (libnormconf_cpp.so exists), the kernels library must exist and load."""
    if not bundled_library("cpp").exists():
        pytest.skip("no native build in this checkout (harness/native/_lib/libnormconf_cpp.so missing)")
    assert bundled_library("kernels").exists(), "libnormconf_kernels.so missing next to libnormconf_cpp.so"
    assert kernels._load()[0] is not None, kernels._load()[1]


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return same_float(a, b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def check(obs: np.ndarray, exp: np.ndarray, tol: Tolerance | None, dtype: str, monkeypatch) -> Comparison:
    """Both paths on one input: metrics and Comparison identical; returns the Comparison."""
    tol = tol or default_tolerance(dtype)
    of, ef = np.asarray(obs).reshape(-1), np.asarray(exp, np.float64).reshape(-1)
    if of.size:
        k, n = cmp._kernel_metrics(of, ef, tol, dtype), cmp._numpy_metrics(of, ef, tol, dtype)
        assert k is not None, "the kernel should handle this input"
        assert same(k, n), f"metrics differ:\n kernel {k}\n numpy  {n}"
        held = [ef] + ([ef.astype(np.float32)] if float32_numbers(ef) else [])
        for e_held in held:  # float64, and float32 where the values are float32 numbers (as a worker holds them)
            for lanes in (2, 4):  # both vector widths of the kernel, whichever the machine picks
                w = kernel_lanes(of, e_held, tol, dtype, lanes)
                assert w is None or same(w, n), f"{lanes} lanes, {e_held.dtype}: differ:\n kernel {w}\n numpy  {n}"
        if len(held) > 1:
            assert same(cmp._numpy_metrics(of, held[1], tol, dtype), n), "numpy twin, float32-held expected"
    exps = [exp] + ([np.asarray(exp, np.float64).astype(np.float32)] if float32_numbers(np.asarray(exp)) else [])
    for e_held in exps:
        c_kernel = compare(obs, e_held, tol, dtype)
        monkeypatch.setenv("NORMCONF_KERNELS", "0")
        c_numpy = compare(obs, e_held, tol, dtype)
        monkeypatch.delenv("NORMCONF_KERNELS")
        for f in dataclasses.fields(Comparison):
            a, b = getattr(c_kernel, f.name), getattr(c_numpy, f.name)
            assert same(a, b), f"{f.name}: kernel {a!r} != numpy {b!r} (expected held as {e_held.dtype})"
        if e_held is not exp:
            first = compare(obs, exp, tol, dtype)
            for f in dataclasses.fields(Comparison):
                a, b = getattr(first, f.name), getattr(c_kernel, f.name)
                assert same(a, b), f"{f.name}: float64-held {a!r} != float32-held {b!r}"
    return compare(obs, exp, tol, dtype)


def float32_numbers(e: np.ndarray) -> bool:
    """Every value of float64 ``e`` is a float32 number (NaN and ±Inf included): exact as float32."""
    with np.errstate(over="ignore"):
        back = np.asarray(e, np.float64).astype(np.float32).astype(np.float64)
    return bool(np.array_equal(back, np.asarray(e, np.float64), equal_nan=True))


KIND = cmp.KIND


def kernel_lanes(of: np.ndarray, ef: np.ndarray, tol: Tolerance, dtype: str, lanes: int) -> tuple | None:
    """The kernel's metrics at a given vector width (``normconf_compare_lanes``), None if unavailable;
    ``ef`` float64 or float32."""
    fn = kernels.library().normconf_compare_lanes
    fn.restype = ctypes.c_int
    fn.argtypes = cmp._ARGTYPES[:4] + [ctypes.c_int64] + cmp._ARGTYPES[4:]
    o, e = np.ascontiguousarray(of), np.ascontiguousarray(ef)
    r = cmp._Result()
    nmant, tiny, sub = cmp._finfo(dtype)
    args = (e.size, float(tol.rtol), float(tol.atol), nmant, tiny, sub, ctypes.byref(r))
    if fn(o.ctypes.data, KIND[o.dtype.name], e.ctypes.data, KIND[e.dtype.name], lanes, *args) != 0:
        return None
    return (r.n_bad, r.n_nan, r.n_inf, bool(r.any_finite), r.max_abs, r.max_rel, r.max_ulp, r.worst, r.score)


def expected_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """float64 expected values mixing every regime the comparison has a rule for."""
    pick = rng.integers(0, 12, n)
    e = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
    k = rng.integers(-1021, 1025, n)
    j = rng.integers(1, 400, n).astype(np.float64)
    special = {
        0: 0.0,
        1: np.nan,
        2: np.inf,
        3: -np.inf,
        4: 5e-324 * rng.integers(1, 1000, n),  # float64 subnormals
        5: rng.choice([1e-40, 1e-45, 6e-8, 1e-6, 1e-300, 2.0**-1022]),  # dtype subnormals / tiny
        6: np.finfo(np.float64).max * rng.uniform(0.5, 1.0, n) * rng.choice([-1, 1], n),  # near overflow
        7: np.ldexp(2.0 - j * 2.0**-52, k - 1),  # just below a power of two (ULP slow path)
        8: np.ldexp(1.0 + j * 2.0**-52, np.minimum(k, 1023)),  # just above
        9: np.ldexp(1.0, np.minimum(k, 1023)) * rng.choice([-1, 1], n),  # powers of two
    }
    for code, v in special.items():
        sel = pick == code
        e[sel] = np.broadcast_to(v, e.shape)[sel]
    return e


def observed_values(rng: np.random.Generator, e: np.ndarray, dtype: str) -> np.ndarray:
    """``e`` perturbed (close, far, exact, NaN, ±Inf, huge), cast to ``dtype``."""
    n = e.size
    with np.errstate(all="ignore"):
        o = e * (1 + rng.standard_normal(n) * 10.0 ** rng.integers(-9, -1, n))
        pick = rng.integers(0, 10, n)
        o[pick == 0] = e[pick == 0]
        o[pick == 1] = np.nan
        o[pick == 2] = np.inf
        o[pick == 3] = -np.inf
        o[pick == 4] = -e[pick == 4]
        o[pick == 5] = rng.standard_normal(int((pick == 5).sum())) * 1e300
        o[pick == 6] = 0.0
        return o.astype(NP_DTYPE[dtype])


def dense_finite(rng: np.random.Generator, n: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A realistic finite output: normal values, a relative error around the dtype's epsilon."""
    e = rng.standard_normal(n)
    o = (e * (1 + rng.standard_normal(n) * 1e-6)).astype(NP_DTYPE[dtype])
    return o, e


SIZES = [1, 2, 3, 4, 5, 7, 1023, 1024, 1025, 65535, 65536, 65537]


@needs_lib
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_mixtures_every_dtype_size_and_tolerance(dtype, monkeypatch):
    rng = np.random.default_rng(sum(map(ord, dtype)))
    for n in SIZES:
        e = expected_values(rng, n)
        o = observed_values(rng, e, dtype)
        for tol in TOLERANCES if n < 2000 else TOLERANCES[:2]:
            check(o, e, tol, dtype, monkeypatch)


@needs_lib
@pytest.mark.parametrize("dtype", DTYPES)
def test_finite_outputs_take_the_fast_paths(dtype, monkeypatch):
    """All-finite inputs (NumPy's fast path, the kernel's vector path), with and without e == 0."""
    rng = np.random.default_rng(1 + sum(map(ord, dtype)))
    for n in (1, 4, 1025, 65537):
        o, e = dense_finite(rng, n, dtype)
        tols = TOLERANCES if n < 2000 else TOLERANCES[:2]
        for tol in tols:
            check(o, e, tol, dtype, monkeypatch)
        e[rng.integers(0, n, max(1, n // 100))] = 0.0
        o.reshape(-1)[: n // 3] = e[: n // 3]  # exact matches, including at zeros
        for tol in tols:
            check(o, e, tol, dtype, monkeypatch)


@needs_lib
@pytest.mark.parametrize("dtype", ("float16", "bfloat16", "float32"))
def test_expected_held_as_float32_gives_the_same_bits(dtype, monkeypatch):
    """A worker holds the expected values of a float32, float16 or bfloat16 output as float32 (the
    reference rounded to the output dtype, exact in float32): the kernel at both widths, the NumPy
    twin and ``compare`` give the float64-held results bit for bit (``check`` runs every path on both
    forms; here every expected array is one of float32 numbers, so both always run)."""
    rng = np.random.default_rng(7 + sum(map(ord, dtype)))
    for n in SIZES:
        with np.errstate(over="ignore"):
            e = expected_values(rng, n).astype(NP_DTYPE[dtype]).astype(np.float64)
        assert float32_numbers(e)
        o = observed_values(rng, e, dtype)
        for tol in TOLERANCES if n < 2000 else TOLERANCES[:2]:
            check(o, e, tol, dtype, monkeypatch)
        o, e = dense_finite(rng, n, dtype)
        e = e.astype(NP_DTYPE[dtype]).astype(np.float64)
        e[rng.integers(0, n, max(1, n // 100))] = 0.0
        check(o, e, None, dtype, monkeypatch)
    assert not float32_numbers(np.array([0.1]))  # the helper can say no


@needs_lib
def test_a_quotient_tied_with_the_running_maximum_is_divided(monkeypatch):
    """The kernel's fast pass divides only where a quotient can raise a maximum: d >= RN(max * q).  At
    equality the rounded quotient can still exceed the maximum, so the test must not be strict.
    Element 0 sets the maximum relative error m; element 4 (lane 0 of a later vector at both widths)
    has d == RN(m * q) and RN(d / q) > m, a smaller score and ULP error (so nothing else makes its
    vector divide): a strict ``>`` in the filter reports m as the maximum.  Then the same for the
    score (q = lim), whose maximum decides the worst element."""
    q1, o1 = float.fromhex("0x1.c81c2c320dbd7p+0"), float.fromhex("0x1.c81c2c4d8308cp+0")
    q2, o2 = float.fromhex("0x1.2c9c049a7c2ffp+0"), float.fromhex("0x1.2c9c04ac94ffep+0")
    m, d2 = (o1 - q1) / q1, o2 - q2
    assert m * q2 == d2 and d2 / q2 > m  # the tie
    e = np.full(8, 1.5)
    o = e.copy()
    e[0], o[0], e[4], o[4] = q1, o1, q2, o2
    c = check(o, e, None, "float64", monkeypatch)
    assert c.close and c.max_rel_err == d2 / q2
    # the same for the score d / lim: with rtol 2**-10 and these atol and |e|, lim = 1.5 - 2**-14 at
    # element 0 and exactly 1.5 at element 4; element 4's relative and ULP errors are the smaller
    tol = Tolerance(2.0**-10, float.fromhex("0x1.7ff8000000000p+0"))
    e0, e4 = 2.0**-4, 2.0**-3
    o0, o4 = float.fromhex("0x1.9572c1c007ff3p-1"), float.fromhex("0x1.b576a5a717122p-1")
    lim0, lim4 = tol.atol + tol.rtol * e0, tol.atol + tol.rtol * e4
    m, d2 = (o0 - e0) / lim0, o4 - e4
    assert m * lim4 == d2 and d2 / lim4 > m  # the tie
    e, o = np.full(8, 1.5), np.full(8, 1.5)
    e[0], o[0], e[4], o[4] = e0, o0, e4, o4
    c = check(o, e, tol, "float64", monkeypatch)
    assert c.close and c.worst_index is None
    k = cmp._kernel_metrics(o, e, tol, "float64")
    assert k is not None and k[7] == 4 and k[8] == d2 / lim4, k  # the worst score is element 4's


@needs_lib
def test_a_few_million_elements(monkeypatch):
    rng = np.random.default_rng(5)
    n = 3_000_017
    o, e = dense_finite(rng, n, "float32")
    c = check(o, e, None, "float32", monkeypatch)
    assert c.total == n
    # a handful of mismatches of every kind far apart, including in the last block
    for i, v in zip((17, 1_500_000, n - 1), (np.nan, np.inf, 10.0)):
        o[i] = v
    c = check(o, e, None, "float32", monkeypatch)
    assert c.mismatched == 3 and "NaN positions differ at 1" in c.message


@needs_lib
@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_of_the_worst_score_first_index_wins(dtype, monkeypatch):
    n = 3 * 65536 + 11
    e = np.ones(n)
    o = np.ones(n, NP_DTYPE[dtype])
    where = [5, 1030, 65536, 70_000, n - 1]
    o[where] = 2.0  # the same score at each
    c = check(o, e, None, dtype, monkeypatch)
    assert c.worst_index == (5,) and c.mismatched == len(where)
    o[3] = 4.0  # a larger score earlier
    assert check(o, e, None, dtype, monkeypatch).worst_index == (3,)
    o[3] = 1.0
    o[70_001] = 4.0  # a larger score in a later block
    assert check(o, e, None, dtype, monkeypatch).worst_index == (70_001,)
    # lim == 0 (rtol = atol = 0): every mismatch scores inf (a tie: the first wins), an exact
    # match scores 0/0 = NaN, and the first NaN wins over everything, in whichever block it is
    z = Tolerance(0.0, 0.0)
    o2 = np.full(n, 1.5, NP_DTYPE[dtype])
    assert check(o2, e, z, dtype, monkeypatch).worst_index == (0,)
    o2[[70_000, 66_000]] = 1.0
    c = check(o2, e, z, dtype, monkeypatch)
    assert c.worst_index == (66_000,) and c.mismatched == n - 2


@needs_lib
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_on_either_side(dtype, monkeypatch):
    vals = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e-45, 65504.0, 3e38, 1e308]
    e = np.array([a for a in vals for _ in vals], np.float64)
    with np.errstate(over="ignore"):
        o = np.array([b for _ in vals for b in vals], np.float64).astype(NP_DTYPE[dtype])
    for tol in TOLERANCES:
        c = check(o, e, tol, dtype, monkeypatch)
        assert not c.close
    # all non-finite: no metric is taken
    c = check(np.array([np.nan, np.inf], NP_DTYPE[dtype]), np.array([np.nan, np.inf]), None, dtype, monkeypatch)
    assert c.close and c.max_abs_err == 0.0
    c = check(np.array([np.nan, 1.0], NP_DTYPE[dtype]), np.array([1.0, np.nan]), None, dtype, monkeypatch)
    assert c.mismatched == 2 and c.max_abs_err == 0.0


@needs_lib
@pytest.mark.parametrize("lead", [1, 8, 1024, 1030, 2048])
def test_the_screen_between_chunks_after_a_non_finite_start(lead, monkeypatch):
    """float32 values whose first ``lead`` elements are NaN or inf on one side (a NaN or inf score is the worst
    found, and no finite element came first), then quiet ones: the kernel's screen between chunks skips the
    quiet rest, which must still count as finite elements (their metrics are taken) and never become the worst."""
    for n, bad in itertools.product((lead + 5 * 1024, lead + 5 * 1024 + 13), (np.nan, np.inf)):
        e = np.linspace(1.0, 2.0, n).astype(np.float32)  # lead + 5 * 1024: the screen skips to the very end
        o = e.copy()
        o[:lead] = bad
        c = check(o, e.astype(np.float64), None, "float32", monkeypatch)  # the metrics' any_finite among them
        assert c.worst_index == (0,) and c.max_abs_err == 0 and c.mismatched == lead, (n, bad)
        o[lead + 3000] = np.nextafter(o[lead + 3000], np.float32(3))  # one finite error among the quiet
        c = check(o, e.astype(np.float64), None, "float32", monkeypatch)
        assert c.worst_index == (0,) and c.max_abs_err > 0 and c.mismatched == lead, (n, bad)


@needs_lib
@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts_zero_d_empty_and_squeezable(dtype, monkeypatch):
    rng = np.random.default_rng(9)
    e = expected_values(rng, 6 * 7 * 9)
    o = observed_values(rng, e, dtype).reshape(6, 7, 9)
    e = e.reshape(6, 7, 9)
    check(o.transpose(2, 0, 1).copy().transpose(1, 2, 0), e, None, dtype, monkeypatch)  # F-ordered-ish view
    check(o[:, ::-1, ::2], e[:, ::-1, ::2], None, dtype, monkeypatch)  # negative and step strides
    flat_o = np.repeat(o.reshape(-1), 2)[::2]  # 1-D strided: reshape(-1) keeps the view
    assert not flat_o.flags.c_contiguous
    check(flat_o, e.reshape(-1), None, dtype, monkeypatch)
    check(o, np.asfortranarray(e), None, dtype, monkeypatch)  # non-contiguous expected
    check(np.array(1.5, NP_DTYPE[dtype]), np.array(1.25), None, dtype, monkeypatch)  # 0-d
    c = check(np.array(1.25, NP_DTYPE[dtype]), np.array(1.25), None, dtype, monkeypatch)
    assert c.close and c.worst_index is None
    check(np.zeros((0, 3), NP_DTYPE[dtype]), np.zeros((0, 3)), None, dtype, monkeypatch)  # size 0
    check(o.reshape(1, 6, 7, 9), e, None, dtype, monkeypatch)  # squeezable shape mismatch


def test_other_dtypes_take_the_numpy_path(monkeypatch):
    e = np.array([1.0, 2.0, 3.0])
    for o in (np.array([1, 2, 4], np.int32), np.array([1.0, 2.0, 3.5], ">f8"), np.array([True, False, True])):
        assert cmp._kernel_metrics(o, e, default_tolerance("float64"), "float64") is None
        check_numpy = compare(o, e, default_tolerance("float64"), "float64")
        assert check_numpy.total == 3
    bad = compare(np.array(["a", "b", "c"]), e, default_tolerance("float64"), "float64")
    assert "cannot read observed dtype" in bad.message
    monkeypatch.setenv("NORMCONF_KERNELS", "0")
    assert cmp._kernel_metrics(np.ones(3), e, default_tolerance("float64"), "float64") is None


@needs_lib
def test_kernel_releases_the_gil():
    lib = kernels.library()
    assert not isinstance(lib, ctypes.PyDLL)
    fn = cmp._kernel_fn(lib)
    assert not fn._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]


@needs_lib
def test_both_vector_widths_are_checked():
    """``check`` runs the 2-lane loop everywhere (and the 4-lane one where AVX2 runs)."""
    o, e = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32), np.array([1.0, 2.0, 3.5, 4.0, 5.0])
    w2 = kernel_lanes(o, e, default_tolerance("float32"), "float32", 2)
    assert w2 is not None and w2[0] == 1 and w2[7] == 2
    assert kernel_lanes(o, e, default_tolerance("float32"), "float32", 3) is None
    assert kernel_lanes(o, e.astype(np.float16), default_tolerance("float32"), "float32", 2) is None  # f64/f32 only


def kernel_ulp(a: np.ndarray, dtype: str) -> np.ndarray:
    lib = kernels.library()
    fn = lib.normconf_compare_ulp
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_double, ctypes.c_double, ctypes.c_void_p]
    a = np.ascontiguousarray(a, np.float64)
    out = np.empty_like(a)
    nmant, tiny, sub = cmp._finfo(dtype)
    fn(a.ctypes.data, a.size, nmant, tiny, sub, out.ctypes.data)
    return out


@needs_lib
@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_near_every_power_of_two_matches_the_log2_formula(dtype):
    """compare.ulp (NumPy: floor(log2) / exp2 near powers of two) == the kernel's exact rule, for
    every binade: just below 2**K (j = 1..400 and the band's far end), at and just above 2**K."""
    K = np.arange(-1021, 1025)
    j = np.concatenate([np.arange(1, 401), [65535, 65536, 65537, 70000]]).astype(np.float64)
    below = np.ldexp(2.0 - j[None, :] * 2.0**-52, (K - 1)[:, None]).reshape(-1)
    k = np.minimum(K, 1023)
    above = np.ldexp(1.0 + np.arange(0, 40000, 97)[None, :] * 2.0**-52, k[:, None]).reshape(-1)
    for a in (below, above, -below):
        np.testing.assert_array_equal(kernel_ulp(a, dtype), cmp.ulp(a, dtype))
    # the whole band below a few powers of two, one per band_up threshold class
    for K1 in (-1021, -600, -3, -2, -1, 0, 1, 2, 3, 4, 5, 8, 9, 17, 64, 100, 512, 513, 1000, 1024):
        full = np.ldexp(2.0 - np.arange(1, 65537, dtype=np.float64) * 2.0**-52, K1 - 1)
        np.testing.assert_array_equal(kernel_ulp(full, dtype), cmp.ulp(full, dtype))


@needs_lib
@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_near_powers_of_two_in_all_finite_arrays(dtype, monkeypatch):
    """The same values as expected of an all-finite comparison (the kernel's vector path)."""
    K = np.arange(-1021, 1025, 3)
    j = np.concatenate([np.arange(1, 401), [65535, 65536, 65537]]).astype(np.float64)
    e = np.ldexp(2.0 - j[None, :] * 2.0**-52, (K - 1)[:, None]).reshape(-1)
    rng = np.random.default_rng(3)
    o = e * (1 + rng.standard_normal(e.size) * 1e-9)  # float64 observed: finite everywhere
    c = check(o, e, None, dtype, monkeypatch)
    assert c.max_ulp > 0


@needs_lib
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ulp_rounded_up_power_of_two_in_the_vector_path(dtype, monkeypatch):
    """Arrays whose every element is just below 2**K with the same j and the same rounding class
    of log2 (so all or none take the rounded-up power of two): the max ULP error shows each rule."""
    classes: dict[int, list[int]] = {}
    for K in range(-125 if dtype == "float32" else -1021, 1025):
        q = -2 if K == 0 else abs(K).bit_length() - 1 - (K > 0 and K & (K - 1) == 0)
        classes.setdefault(q, []).append(K)
    for Ks in classes.values():
        for j in (1, 2, 3, 5, 6, 11, 12, 22, 23, 44, 45, 88, 89, 177, 178, 354, 355, 709, 710):
            e = np.ldexp(2.0 - j * 2.0**-52, np.array(Ks) - 1)
            check(e * (1 - 2.0**-40), e, None, dtype, monkeypatch)  # never overflows


#: around the float32 screen's range (atol in [2**-60, 1], rtol <= 1: it runs; outside: the pass without it)
SCREEN_TOLERANCES = [
    None,
    Tolerance(1.0, 1.0),
    Tolerance(0.0, 2.0**-60),
    Tolerance(1e-5, float(np.nextafter(2.0**-60, 0))),
    Tolerance(float(np.nextafter(1.0, 2)), 1e-6),
    Tolerance(1e-5, float(np.nextafter(1.0, 2))),
    Tolerance(0.5, 1e-30),
    Tolerance(2.0**-20, 3e-8),
]


def _screen_inputs(rng: np.random.Generator, tol: Tolerance, n: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``o`` and ``e`` (returned as float64 of float32 numbers) with elements at every threshold the
    float32 screen tests: the tolerance limit and one float32 step either side, maxima of the ULP, relative
    and absolute error and of the score that rise through the array (each a new maximum, late in chunks too)
    and ties of them, tiny, zero and subnormal ``|e|``, opposite ``±FLT_MAX`` (|o - e| overflows float32),
    NaN and infinities."""
    e32 = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)).astype(np.float32)
    u = np.spacing(np.abs(e32)).astype(np.float64)
    o = e32.astype(np.float64) + rng.integers(-2, 3, n) * u  # a few float32 steps away
    lim = tol.atol + tol.rtol * np.abs(e32.astype(np.float64))
    at = rng.choice(n, n // 8, replace=False)  # at the limit: floor(lim / u) steps, and one either side
    k = np.floor(np.minimum(lim[at] / u[at], 2.0**22)) + rng.integers(-1, 2, at.size)
    o[at] = e32[at] + np.sign(rng.standard_normal(at.size)) * k * u[at]
    rise = np.sort(rng.choice(n, 40, replace=False))  # growing ULP / relative / absolute errors, then ties
    o[rise] = e32[rise].astype(np.float64) + np.arange(1, 41) * u[rise]
    o[rise[-5:]] = e32[rise[-5:]].astype(np.float64) + 40 * u[rise[-5:]]
    small = rng.choice(n, 24, replace=False)
    e32[small[:6]] = 0.0
    e32[small[6:12]] = np.float32(1e-40) * rng.integers(1, 100, 6)  # float32 subnormals
    e32[small[12:18]] = np.float32(2.0**-61) * rng.uniform(1, 4, 6)  # below the screen's 2**-60
    o[small[:18]] = e32[small[:18]].astype(np.float64) * rng.choice([0.0, 1.0, 1.5], 18)
    big = small[18:21]
    e32[big] = np.finfo(np.float32).max
    o[big] = -np.finfo(np.float64).max  # becomes -inf in float32: also a non-finite element
    o[small[21]] = -float(np.finfo(np.float32).max)
    e32[small[21]] = np.finfo(np.float32).max  # |o - e| = 2 FLT_MAX: overflows float32, finite in float64
    o[small[22]], e32[small[23]] = np.nan, np.inf
    with np.errstate(over="ignore"):
        return o.astype(np.float32), e32.astype(np.float64)


@needs_lib
@pytest.mark.parametrize("tol", SCREEN_TOLERANCES, ids=str)
def test_the_float32_screen_at_every_threshold(tol, monkeypatch):
    """float32 observed and expected values of a float32 output: the kernel's 8-lane float32 screen skips
    elements that certainly change no count and no maximum (compare.c, screen8).  With elements at each
    threshold it tests, over several chunks, the results are the NumPy twin's and the other width's bit for
    bit; then the same arrays without their non-finite elements, and with one element far off late in the
    last chunk."""
    rng = np.random.default_rng(23)
    t = tol or default_tolerance("float32")
    for n in (64, 1031, 5 * 1024 + 12):
        o, e = _screen_inputs(rng, t, n)
        check(o, e, tol, "float32", monkeypatch)
        fin = np.isfinite(o) & np.isfinite(e)
        o2, e2 = np.where(fin, o, np.float32(1.0)), np.where(fin, e, 1.0)
        check(o2, e2, tol, "float32", monkeypatch)
        o3, e3 = o2.copy(), e2.copy()  # one late element 2**13 float32 steps off (bad under most tolerances)
        e3[-9], o3[-9] = 1.0, np.float32(1.0 + 2**-10)
        check(o3, e3, tol, "float32", monkeypatch)


def _screen_fn():
    fn = kernels.library().normconf_compare_screen
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_double] * 6
    return fn


def _screened(o: np.ndarray, e: np.ndarray, tol: Tolerance, maxima: tuple[float, float, float, float]) -> int:
    """How many leading elements of float32 ``o``, ``e`` the kernel's float32 screen lets the fast pass skip."""
    o, e = np.ascontiguousarray(o, np.float32), np.ascontiguousarray(e, np.float32)
    return int(_screen_fn()(o.ctypes.data, e.ctypes.data, o.size, float(tol.rtol), float(tol.atol), *maxima))


def _changes(o: np.ndarray, e: np.ndarray, tol: Tolerance, maxima: tuple[float, float, float, float]) -> np.ndarray:
    """Elements that would change a result of the pass with these running maxima (abs, rel, ulp, score): not
    finite on both sides, bad, or raising one of them, computed exactly as the NumPy twin computes them."""
    of, ef = np.asarray(o, np.float64), np.asarray(e, np.float64)
    with np.errstate(all="ignore"):
        ae, d = np.abs(ef), np.abs(of - ef)
        lim = tol.atol + tol.rtol * ae
        mabs, mrel, mulp, score = maxima
        raises = (d > mabs) | (d / ae > mrel) | (d / cmp.ulp(ae, "float32") > mulp) | (d / lim > score)
        return ~(np.isfinite(of) & np.isfinite(ef)) | (d > lim) | raises


def _vector_cases(rng: np.random.Generator, k: int, tol: Tolerance) -> tuple[np.ndarray, np.ndarray]:
    """k vectors of 8 float32 (o, e): lane 0 an element of any regime (a few float32 steps off, the last step
    within the tolerance or the first beyond it, far off, tiny, zero, subnormal or non-finite ``e``), the
    other lanes quiet (o == e == 1)."""
    o, e = np.ones((k, 8), np.float32), np.ones((k, 8), np.float32)
    e0 = (rng.standard_normal(k) * 10.0 ** rng.integers(-20, 20, k)).astype(np.float32)
    pick = rng.integers(0, 10, k)
    e0[pick == 0] = np.float32(2.0**-60) * rng.uniform(0.5, 2.0, int((pick == 0).sum())).astype(np.float32)
    e0[pick == 1] = 0.0
    e0[pick == 2] = np.float32(1e-41)
    e0[pick == 7] = np.float32(2.0**-126) * rng.uniform(1, 2**30, int((pick == 7).sum())).astype(np.float32)
    u = np.spacing(np.abs(e0)).astype(np.float64)
    o0 = e0 + np.where(rng.random(k) < 0.6, rng.integers(-8, 9, k), rng.integers(-300, 300, k)) * u
    lim = tol.atol + tol.rtol * np.abs(e0.astype(np.float64))
    at = (pick >= 8) & (lim / u < 2.0**22)  # the last float32 step within lim, or the first beyond it
    o0[at] = e0[at] + (np.floor(lim[at] / u[at]) + (pick[at] == 9)) * u[at]
    o0[pick == 3] = e0[pick == 3] * rng.uniform(0.5, 2.0, int((pick == 3).sum()))
    o0[pick == 4] = -e0[pick == 4]
    with np.errstate(over="ignore"):
        o[:, 0] = o0.astype(np.float32)
    o[pick == 5, 0] = np.nan
    e[:, 0] = e0
    e[pick == 6, 0] = np.inf
    return o, e


@needs_lib
@pytest.mark.skipif(
    kernels.library() is not None and _screen_fn()(None, None, 0, 0.0, 1e-6, 0, 0, 0, 0) < 0,  # n = 0 reads nothing
    reason="the float32 screen needs AVX2",
)
@pytest.mark.parametrize(
    "tol", [t for t in SCREEN_TOLERANCES if t is None or (2.0**-60 <= t.atol <= 1 and t.rtol <= 1)]
)
def test_the_float32_screen_never_skips_an_element_that_changes_a_result(tol):
    """The screen's claim, element by element: an element it skips changes no count and no maximum.  Each
    vector holds one element of any regime; its running maxima are that element's own abs, rel, ulp error and
    score (so it raises none), then each of them just below it in turn (so it raises that one) and, with
    other maxima, random ones.  Wherever ``_changes`` says it matters the screen must flag it (skip 0), and
    with maxima twice its values (each at least 2**-30: the screen takes smaller ones as 0), finite and within
    the tolerance by more than the screen's margin, the screen must skip it (or the fast path would never
    run)."""
    tol = tol or default_tolerance("float32")
    rng = np.random.default_rng(31)
    o, e = _vector_cases(rng, 4000, tol)
    skipped_any = quiet = 0
    for ov, ev in zip(o, e):
        of, ef = ov[0].astype(np.float64), ev[0].astype(np.float64)
        with np.errstate(all="ignore"):
            d = abs(of - ef)
            own = [
                d,
                d / abs(ef),
                d / float(cmp.ulp(np.array([ef]), "float32")[0]),
                d / (tol.atol + tol.rtol * abs(ef)),
            ]
        own = [float(v) if np.isfinite(v) else 0.0 for v in own]
        trials = [tuple(own), tuple(2 * v for v in own)]
        for i in range(4):
            m = [2 * v for v in own]
            m[i] = float(np.nextafter(own[i], 0)) if own[i] > 0 else 0.0
            trials.append(tuple(m))
        trials.append(tuple(float(v) for v in rng.uniform(0, 1, 4) * np.array(own) * 2))
        for maxima in trials:
            n = _screened(ov, ev, tol, maxima)
            assert n in (0, 8)
            if n == 8:
                assert not _changes(ov, ev, tol, maxima).any(), (ov[0], ev[0], tol, maxima)
                skipped_any += 1
        clear = own[3] <= 1 - 2.0**-18  # not within the screen's margin of the tolerance limit
        if not _changes(ov, ev, tol, trials[1]).any() and abs(ef) >= 2.0**-59 and min(own) >= 2.0**-30 and clear:
            assert _screened(ov, ev, tol, trials[1]) == 8, (ov[0], ev[0], tol)  # clearly quiet: skipped
            quiet += 1
    assert skipped_any >= quiet
    assert quiet > 100 or (tol.rtol == 0 and tol.atol < 1e-9)  # there, every |o - e| > 0 is bad


@needs_lib
@pytest.mark.skipif(
    kernels.library() is not None and _screen_fn()(None, None, 0, 0.0, 1e-6, 0, 0, 0, 0) < 0,
    reason="the float32 screen needs AVX2",
)
def test_the_float32_screen_stops_at_the_first_flagged_vector():
    """The screen tests two vectors of 8 at a time and one more at the end: whatever the number of vectors
    (its entry point takes whole ones; the pass's partial last vector is the pass's, tested through the
    kernel above) and wherever the one element that matters is, it returns the start of that element's
    vector of 8 (the first, if two matter), and with none all n."""
    tol = default_tolerance("float32")
    maxima = (1.0, 1.0, 1.0, 1.0)  # quiet elements (o == e == 1) raise none of them
    for n in range(0, 97, 8):
        o, e = np.ones(n, np.float32), np.ones(n, np.float32)
        assert _screened(o, e, tol, maxima) == n, n
        for p in range(n):
            bad = o.copy()
            bad[p] = 3.0  # far beyond the tolerance
            want = 8 * (p // 8)
            assert _screened(bad, e, tol, maxima) == want, (n, p)
            if p + 9 < n:
                bad[p + 9] = 3.0  # a second one later changes nothing
                assert _screened(bad, e, tol, maxima) == want, (n, p)


@needs_lib
@settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    exp=hnp.arrays(np.float32, st.integers(8, 70), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
    data=st.data(),
    tol=st.sampled_from(SCREEN_TOLERANCES),
)
def test_hypothesis_float32_values_through_the_screen(exp, data, tol):
    """Arbitrary float32 values, observed near the expected ones (a few float32 steps) or anywhere."""
    near = data.draw(hnp.arrays(np.int64, exp.shape, elements=st.integers(-3, 3)))
    anywhere = data.draw(hnp.arrays(np.float32, exp.shape, elements=st.floats(width=32)))
    pick = data.draw(hnp.arrays(np.bool_, exp.shape))
    with np.errstate(all="ignore"):
        close = (exp.astype(np.float64) + near * np.spacing(np.abs(exp)).astype(np.float64)).astype(np.float32)
    obs = np.where(pick, anywhere, close).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        check(obs, exp.astype(np.float64), tol, "float32", mp)


@needs_lib
def test_the_screen_between_chunks_flags_an_element_that_raises_only_the_score(monkeypatch):
    """The running maxima come from different elements: A (abs and score), B (rel and ULP error), both in the
    first chunk; D, chunks later, raises the score alone (its abs, rel and ULP error stay below theirs).  The
    screen between chunks must flag D by the score's maximum, the best score so far: D is the worst element."""
    n = 8 * 1024
    e = np.ones(n, np.float32)
    o = e.copy()  # quiet: exact
    e[10], o[10] = 1000.0, np.float32(1000.0) + np.float32(1e-3)  # A: abs 1e-3, ULP error 16, score 0.76
    e[20], o[20] = np.float32(1e-3), np.float32(1e-3) + np.float32(1e-8)  # B: rel 1e-5, ULP error 86
    d = 5 * 1024 + 3
    o[d] = np.float32(1.0) + np.float32(9e-6)  # D: abs 9e-6, rel 9e-6, ULP error 75, score 0.80
    c = check(o, e.astype(np.float64), None, "float32", monkeypatch)
    assert c.close and c.worst_observed == float(o[d])  # a passing output names its worst value, not its index


@needs_lib
@settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(1000, 9000),
    spots=st.lists(
        st.tuples(
            st.floats(0, 1, exclude_max=True),
            st.sampled_from([-3, -1, 1, 2, 5, 40, 10**6]),  # float32 steps off the expected value
            st.sampled_from(["steps", "nan", "inf", "zero_e", "tiny_e"]),
        ),
        max_size=12,
    ),
    tol=st.sampled_from(SCREEN_TOLERANCES),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_long_float32_outputs_across_chunks(n, spots, tol, seed):
    """Outputs of several 1024-element chunks, quiet but for a few elements anywhere (off by some float32
    steps, non-finite, or against a zero or tiny expected value): the screen inside a chunk and between
    chunks (once a worst element is known) give the NumPy twin's counts, maxima and first worst element."""
    rng = np.random.default_rng(seed)
    exp = rng.standard_normal(n).astype(np.float32)
    obs = (exp.astype(np.float64) + rng.integers(-1, 2, n) * np.spacing(np.abs(exp))).astype(np.float32)
    for where, steps, kind in spots:
        i = int(where * n)
        if kind == "nan":
            obs[i] = np.nan
        elif kind == "inf":
            obs[i] = np.inf
        elif kind in ("zero_e", "tiny_e"):
            exp[i] = 0.0 if kind == "zero_e" else np.float32(2.0**-62)
            obs[i] = np.float32(steps * 1e-7)
        else:
            obs[i] = np.float32(exp[i] + steps * np.spacing(np.abs(exp[i])))
    with pytest.MonkeyPatch.context() as mp:
        check(obs, exp.astype(np.float64), tol, "float32", mp)


@needs_lib
@settings(max_examples=120, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    dtype=st.sampled_from(DTYPES),
    exp=hnp.arrays(np.float64, st.integers(0, 40), elements=st.floats(allow_nan=True, allow_infinity=True)),
    data=st.data(),
    tol=st.sampled_from(TOLERANCES),
)
def test_hypothesis_arbitrary_values(dtype, exp, data, tol):
    elements = st.floats(width=16 if dtype == "float16" else 32 if dtype != "float64" else 64)
    obs = data.draw(hnp.arrays(np.float64, exp.shape, elements=elements))
    with np.errstate(over="ignore"):
        obs = obs.astype(NP_DTYPE[dtype])
    with pytest.MonkeyPatch.context() as mp:
        check(obs, exp, tol, dtype, mp)
