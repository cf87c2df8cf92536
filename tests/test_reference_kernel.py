"""The compiled large-case BatchNorm reference (native/src/kernels/reference_bn.c) against the NumPy code.

Bounds (u = 2**-53, gamma_d = d*u / (1 - d*u), Higham's constant for a sum whose every term sees at
most d roundings: |computed - exact| <= gamma_d * sum |terms|):
  - the kernel's documented order (blocks of 128, 8 sequential lanes of 16 from -0.0, 3 pairwise lane
    levels, a binary-counter tree over K blocks) has d_k = 15 + 3 + 2*ceil(log2 K);
  - NumPy's order is not ours to state, so it gets the bound that holds for every order, d = m - 1;
  - the mean is S / m, one more rounding (u * |mean|);
  - the sum of squared deviations sums the terms fl(fl(x - mean)^2): against the exactly rounded sum
    (math.fsum) of those same terms, NumPy computing them with the same IEEE operations, the error is
    gamma_d * sum(terms) + u * |fsum|.  Kernel against NumPy: each side's terms are within gamma_3 of
    (x - its mean)^2, and sum (x - mean')^2 = sum (x - mean)^2 + m (mean - mean')^2.
The elementwise normalization is the same IEEE arithmetic in both: bit-identical for the same statistics.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from normconf import kernels
from normconf.references import batchnorm as bn
from normconf.semantics import Semantics

U = 2.0**-53


@pytest.fixture(autouse=True)
def _kernels_enabled(monkeypatch):
    """Every test starts with the library enabled (it sets NORMCONF_KERNELS=0 itself where it compares)."""
    monkeypatch.delenv("NORMCONF_KERNELS", raising=False)


@pytest.fixture
def lib():
    loaded = bn._kernel_lib()
    if loaded is None:
        pytest.skip(f"kernels library: {kernels.status()}")
    return loaded


def gamma(d: int) -> float:
    return d * U / (1 - d * U)


def d_kernel(m: int) -> int:
    k = max(1, -(-m // 128))
    return 15 + 3 + 2 * math.ceil(math.log2(k))


def ss_bound(m: int, big, e_k, e_n):
    """|ss_kernel - ss_numpy| bound: each side within gamma_{d+3} of sum (x - its mean)^2, which exceeds
    the exact-mean sum (<= big) by m * e^2 (e: that side's mean error bound)."""
    return sum(gamma(d + 3) * (big + m * e * e) + m * e * e for d, e in ((d_kernel(m), e_k), (m - 1, e_n))) * (
        1 + 4 * U
    )


def per_channel(x: np.ndarray, axis: int) -> np.ndarray:
    """(C, m) float64: each channel's elements in memory order (the kernel's sequence)."""
    return np.moveaxis(x.astype(np.float64), axis, 0).reshape(x.shape[axis], -1)


def make(shape: tuple[int, ...], dtype: str, seed: int = 0, loc: float = 5.0) -> np.ndarray:
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    return (np.random.default_rng(seed).standard_normal(shape) * 3 + loc).astype(dt)


LAYOUTS = [
    ((4, 8, 36, 40), 1),  # channels-first, runs of 1440 (not a multiple of 128)
    ((4, 36, 40, 8), -1),  # channels-last: the lockstep rows path
    ((3, 6, 1001), 1),  # odd runs
    ((5, 7, 3), 2),  # channel axis last of a 3-D array
    ((2000, 5), 1),  # (N, C): inner = 1, outer = N
    ((1, 6), 1),  # m = 1
    ((1, 3, 1, 1), 1),  # m = 1, channels-first
    ((0, 4, 3, 3), 1),  # N = 0: m = 0
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("shape,axis", LAYOUTS)
def test_statistics_within_derived_bounds(lib, shape, axis, dtype):
    x = make(shape, dtype)
    mean_k, ss_k = bn.kernel_statistics(lib, x, axis)
    rows = per_channel(x, axis)
    m = rows.shape[1]
    if m == 0:  # NumPy: 0/0 mean, empty sum 0
        assert np.isnan(mean_k).all() and (ss_k == 0).all()
        return
    dk, dn = d_kernel(m), m - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_n, _vb, _vu, _m = bn.batch_statistics(x, axis, Semantics(), x.dtype)  # NumPy (small: below threshold)
    for c, r in enumerate(rows):
        a = float(np.abs(r).sum()) * (1 + 2 * m * U)  # sum |x| (bounded above: its own rounding)
        exact = math.fsum(r) / m
        assert abs(mean_k[c] - exact) <= gamma(dk) * a / m + 2 * U * abs(exact)
        e_k = gamma(dk) * a / m + U * abs(mean_k[c])  # |kernel mean - true mean| bound
        e_n = gamma(dn) * a / m + U * abs(mean_n[c])
        assert abs(mean_k[c] - mean_n[c]) <= e_k + e_n
        terms = (r - mean_k[c]) ** 2
        t = math.fsum(terms)
        assert abs(ss_k[c] - t) <= gamma(dk) * float(terms.sum()) * (1 + 2 * m * U) + U * t
        ss_n = float(((r - mean_n[c]) ** 2).sum())
        assert abs(ss_k[c] - ss_n) <= ss_bound(m, max(ss_k[c], ss_n), e_k, e_n)


def test_constant_channels_nan_and_inf_propagate_like_numpy(lib):
    x = make((3, 5, 20, 20), "float64")
    x[:, 0] = 0.1  # constant channel (0.1 is not a sum of exact multiples: the mean rounds)
    x[:, 1] = -0.0
    x[1, 2, 3, 4] = np.nan
    x[0, 3, 0, 0] = np.inf
    x[0, 4, 0, 0], x[2, 4, 1, 1] = np.inf, -np.inf
    mean_k, ss_k = bn.kernel_statistics(lib, x, 1)
    with np.errstate(invalid="ignore"):
        mean_n, vb_n, _vu, m = bn.batch_statistics(x, 1, Semantics(), x.dtype)
    assert np.isnan(mean_k[2]) and np.isnan(ss_k[2])  # NaN propagates
    assert mean_k[3] == np.inf and np.isnan(ss_k[3])  # inf - inf in the second pass
    assert np.isnan(mean_k[4]) and np.isnan(ss_k[4])
    np.testing.assert_array_equal(np.isnan(mean_k), np.isnan(mean_n))
    np.testing.assert_array_equal(np.isnan(ss_k / m), np.isnan(vb_n))
    assert abs(mean_k[0] - 0.1) <= gamma(d_kernel(m)) * 0.1 + U * 0.1
    assert ss_k[0] <= m * (gamma(d_kernel(m)) * 0.1 + U * 0.1) ** 2 * (1 + gamma(3))
    assert mean_k[1] == 0 and np.signbit(mean_k[1]) and ss_k[1] == 0  # -0.0 is the identity: -0 stays -0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_formats_convert_exactly(lib, dtype):
    bits = np.arange(1 << 16, dtype=np.uint16)
    x = bits.view(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16).reshape(-1, 1)
    one, zero = np.ones(1), np.zeros(1)
    y, x_hat = bn.kernel_normalize(lib, x, 1, zero, one, one, zero, True)  # x_hat = (x - 0) * 1
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on NaN casts
        ref = x.astype(np.float64)
    np.testing.assert_array_equal(x_hat, ref)
    np.testing.assert_array_equal(np.signbit(x_hat), np.signbit(ref))


def _normalize_both(monkeypatch, x, axis, sem, mean, var, g, b, eps):
    monkeypatch.setattr(bn, "KERNEL_MIN_ELEMENTS", 0)
    monkeypatch.setenv("NORMCONF_KERNELS", "0")
    a = bn.normalize(x, mean, var, g, b, eps, axis, sem, x.dtype)
    monkeypatch.setenv("NORMCONF_KERNELS", "1")
    k = bn.normalize(x, mean, var, g, b, eps, axis, sem, x.dtype)
    return a, k


@pytest.mark.parametrize("arithmetic", ["unfolded", "folded"])
@pytest.mark.parametrize("eps_placement", ["inside_sqrt", "outside_sqrt", "none"])
@pytest.mark.parametrize("affine", ["gamma_beta", "gamma_only", "beta_only", "none"])
@pytest.mark.parametrize("shape,axis,dtype", [((3, 6, 9, 11), 1, "float32"), ((3, 9, 11, 6), -1, "float64")])
def test_normalization_is_bit_identical_for_the_same_statistics(
    lib, monkeypatch, arithmetic, eps_placement, affine, shape, axis, dtype
):
    x = make(shape, dtype)
    x.flat[7] = np.nan
    C = x.shape[axis]
    rng = np.random.default_rng(1)
    mean, var = rng.standard_normal(C), rng.random(C) * 4
    var[0] = 0.0  # eps "none": 1/0 = inf, (x - mean) * inf
    g, b = rng.standard_normal(C), rng.standard_normal(C)
    sem = Semantics(arithmetic=arithmetic, eps_placement=eps_placement, affine=affine)
    a, k = _normalize_both(monkeypatch, x, axis, sem, mean, var, g, b, 1e-3)
    for u, v in zip(a, k):
        assert u.dtype == v.dtype == np.float64 and u.shape == v.shape
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(np.signbit(u), np.signbit(v))


def _reference(x_steps, axis, sem=Semantics(), **kw):
    C = x_steps[0].shape[axis]
    rng = np.random.default_rng(2)
    args = dict(
        channel_axis=axis,
        mode="train",
        eps=1e-5,
        momentum=0.1,
        gamma=rng.standard_normal(C),
        beta=rng.standard_normal(C),
        running_mean=np.zeros(C),
        running_var=np.ones(C),
        eval_after=True,
        semantics=sem,
        input_dtype=x_steps[0].dtype,
    )
    args.update(kw)
    return bn.batch_norm_reference(x_steps, **args)


@pytest.mark.parametrize("normalize_variance", ["biased", "unbiased"])
@pytest.mark.parametrize("shape,axis", [((4, 8, 30, 30), 1), ((4, 30, 30, 8), -1)])
def test_reference_outputs_agree_through_the_kernel_path(lib, monkeypatch, normalize_variance, shape, axis):
    steps = [make(shape, "float32", seed=s) for s in (3, 4)]
    sem = Semantics(normalize_variance=normalize_variance)
    monkeypatch.setattr(bn, "KERNEL_MIN_ELEMENTS", 0)
    monkeypatch.setenv("NORMCONF_KERNELS", "0")
    a = _reference(steps, axis, sem)
    monkeypatch.setenv("NORMCONF_KERNELS", "1")
    k = _reference(steps, axis, sem)
    assert a.keys() == k.keys()
    m = int(np.prod(shape)) // shape[axis]
    for step, x in enumerate(steps):
        rows = per_channel(x, axis)
        scale = np.abs(rows).mean(axis=1) * (1 + 2 * m * U)
        e = (gamma(d_kernel(m)) + gamma(m - 1)) * scale + 2 * U * np.abs(a["batch_mean"][step])
        assert (np.abs(k["batch_mean"][step] - a["batch_mean"][step]) <= e).all()
        # the rest follows from the statistics: x_hat = (x - mean) * inv_std, y = x_hat * gamma + beta
        # differ by the propagated statistics differences plus each side's roundings (2 for x_hat, 2 for y)
        shape1 = [1] * x.ndim
        shape1[axis] = -1
        inv = a["inv_std"][step]
        d_inv = np.abs(k["inv_std"][step] - inv)
        d_mu = np.abs(k["batch_mean"][step] - a["batch_mean"][step])
        xh = np.abs(a["x_hat"][step])
        lim = (d_mu * inv).reshape(shape1) + xh * (d_inv / inv).reshape(shape1) + 2 * gamma(2) * xh
        lim *= 1 + 4 * U
        assert (np.abs(k["x_hat"][step] - a["x_hat"][step]) <= lim).all()
        g = np.abs(np.random.default_rng(2).standard_normal(x.shape[axis]))  # _reference's gamma
        lim_y = g.reshape(shape1) * lim + 2 * gamma(2) * np.abs(a["y"][step]) + 2 * gamma(2) * g.reshape(shape1) * xh
        assert (np.abs(k["y"][step] - a["y"][step]) <= lim_y).all()
        # the variance: sum of squared deviations within ss_bound, then one division on each side
        den = m if normalize_variance == "biased" else m - 1
        var_a, var_k = a["batch_var"][step], k["batch_var"][step]
        e_k = gamma(d_kernel(m)) * scale + U * np.abs(k["batch_mean"][step])
        e_n = gamma(m - 1) * scale + U * np.abs(a["batch_mean"][step])
        big = np.maximum(var_a, var_k) * den * (1 + U)
        lim_v = ss_bound(m, big, e_k, e_n) / den + 2 * U * np.maximum(var_a, var_k)
        assert (np.abs(var_k - var_a) <= lim_v).all()


def _spy(monkeypatch):
    calls = []
    real_s, real_n = bn.kernel_statistics, bn.kernel_normalize
    monkeypatch.setattr(bn, "kernel_statistics", lambda *a: calls.append("stats") or real_s(*a))
    monkeypatch.setattr(bn, "kernel_normalize", lambda *a: calls.append("norm") or real_n(*a))
    return calls


@pytest.mark.parametrize(
    "sem,dtype,expect",
    [
        (Semantics(), "float32", ["stats", "norm"]),
        (Semantics(stats_dtype="input"), "float64", ["stats", "norm"]),
        (Semantics(arithmetic="folded"), "float32", ["stats", "norm"]),
        (Semantics(stats_dtype="float32"), "float32", ["norm"]),
        (Semantics(stats_dtype="input"), "float32", ["norm"]),
        (Semantics(stats_summation="sequential"), "float32", ["norm"]),
        (Semantics(variance_algorithm="one_pass"), "float32", ["norm"]),
        (Semantics(arithmetic="folded_fma"), "float32", ["stats"]),
        (Semantics(compute_dtype="float32"), "float32", ["stats"]),
        (Semantics(compute_dtype="input"), "float16", ["stats"]),
    ],
)
def test_the_kernels_run_only_where_the_working_precision_is_float64(lib, monkeypatch, sem, dtype, expect):
    monkeypatch.setattr(bn, "KERNEL_MIN_ELEMENTS", 0)
    calls = _spy(monkeypatch)
    _reference([make((2, 3, 4, 5), dtype)], 1, sem, eval_after=False)
    assert calls == expect


def test_small_cases_and_a_missing_library_run_numpy(monkeypatch):
    calls = _spy(monkeypatch)
    x = make((2, 3, 4, 5), "float32")
    _reference([x], 1)
    assert calls == []  # below KERNEL_MIN_ELEMENTS
    monkeypatch.setattr(bn, "KERNEL_MIN_ELEMENTS", 0)
    monkeypatch.setenv("NORMCONF_KERNELS", "0")
    assert kernels.library() is None
    _reference([x], 1)
    assert calls == []


_DIGEST = """
import hashlib, numpy as np
from normconf.references import batchnorm as bn
from tests.test_reference_kernel import _reference, make
bn.KERNEL_MIN_ELEMENTS = 0
h = hashlib.sha256()
for shape, axis in (((4, 8, 30, 30), 1), ((4, 30, 30, 8), -1)):
    out = _reference([make(shape, "float32")], axis)
    for name in sorted(out):
        h.update(name.encode() + out[name][0].tobytes())
print(h.hexdigest())
"""


def test_bit_identical_across_calls_and_thread_counts(lib, monkeypatch):
    monkeypatch.setattr(bn, "KERNEL_MIN_ELEMENTS", 0)
    x = make((4, 8, 30, 30), "float32")
    one, two = _reference([x], 1), _reference([x], 1)
    for name in one:
        assert one[name][0].tobytes() == two[name][0].tobytes()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digests = set()
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("NORMCONF_KERNELS", None)
        r = subprocess.run([sys.executable, "-c", _DIGEST], env=env, cwd=root, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        digests.add(r.stdout.strip())
    h = hashlib.sha256()
    for shape, axis in (((4, 8, 30, 30), 1), ((4, 30, 30, 8), -1)):
        out = _reference([make(shape, "float32")], axis)
        for name in sorted(out):
            h.update(name.encode() + out[name][0].tobytes())
    assert digests == {h.hexdigest()}


@pytest.mark.parametrize("arithmetic", ["unfolded", "folded"])
@pytest.mark.parametrize("shape,axis", [((3, 6, 9, 11), 1), ((3, 9, 11, 6), -1)])
def test_normalization_without_x_hat_gives_the_same_y(lib, monkeypatch, arithmetic, shape, axis):
    """x_hat left out (the kernel gets NULL and never stores it): y and inv_std bit-identical, x_hat None,
    on both paths."""
    x = make(shape, "float32")
    C = x.shape[axis]
    rng = np.random.default_rng(3)
    mean, var, g, b = rng.standard_normal(C), rng.random(C) * 4, rng.standard_normal(C), rng.standard_normal(C)
    sem = Semantics(arithmetic=arithmetic)
    monkeypatch.setattr(bn, "KERNEL_MIN_ELEMENTS", 0)
    for kernels_on in ("0", "1"):
        monkeypatch.setenv("NORMCONF_KERNELS", kernels_on)
        y, inv, xh = bn.normalize(x, mean, var, g, b, 1e-3, axis, sem, x.dtype)
        y2, inv2, xh2 = bn.normalize(x, mean, var, g, b, 1e-3, axis, sem, x.dtype, with_x_hat=False)
        assert xh is not None and xh2 is None
        assert y.tobytes() == y2.tobytes() and inv.tobytes() == inv2.tobytes()


def test_reference_without_x_hat_has_every_other_output_unchanged(lib, monkeypatch):
    monkeypatch.setattr(bn, "KERNEL_MIN_ELEMENTS", 0)
    steps = [make((4, 8, 30, 30), "float32", seed=s) for s in (0, 1)]
    full = _reference(steps, 1)
    lean = _reference(steps, 1, with_x_hat=False)
    assert set(full) - set(lean) == {"x_hat"} and "x_hat" in full
    for name, arrays in lean.items():
        assert [a.tobytes() for a in arrays] == [a.tobytes() for a in full[name]], name


def _documented_sum(seq) -> float:
    """The kernel's summation order as its header states it, in Python floats (IEEE doubles): blocks of
    128, element j of a block to lane j mod 8 (sequential sums from -0.0), the block sum
    ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)), blocks merged by a binary counter (older + newer), the stack
    folded from the newest."""
    stack: list[tuple[int, float]] = []
    lanes = [-0.0] * 8

    def flush():
        b = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
        level = 0
        while stack and stack[-1][0] == level:
            b = stack.pop()[1] + b
            level += 1
        stack.append((level, b))
        lanes[:] = [-0.0] * 8

    k = 0
    for v in seq:
        lanes[k % 8] += v
        k += 1
        if k == 128:
            flush()
            k = 0
    if k:
        flush()
    if not stack:
        return 0.0
    total = stack[-1][1]
    for _level, v in reversed(stack[:-1]):
        total = v + total
    return total


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize(
    "shape,axis",
    [((3, 4, 29, 31), 1), ((3, 29, 31, 4), -1), ((2, 3, 1001), 1), ((2051, 3), 1), ((5, 2, 7), 1)],
)
def test_statistics_follow_the_documented_order_bit_for_bit(lib, shape, axis, dtype):
    """mean = S / m and ss = sum (x - mean)^2, both in the header's order: exactly, on both paths (one
    channel at a time, channels in lockstep), with runs that are no multiple of 8 or 128 and up to 24
    blocks (5 tree levels)."""
    x = make(shape, dtype, seed=5)
    mean_k, ss_k = bn.kernel_statistics(lib, x, axis)
    for c, row in enumerate(per_channel(x, axis)):
        seq = [float(v) for v in row]
        mu = _documented_sum(seq) / len(seq)
        ss = _documented_sum([(v - mu) * (v - mu) for v in seq])
        assert mean_k[c].tobytes() == np.float64(mu).tobytes(), c
        assert ss_k[c].tobytes() == np.float64(ss).tobytes(), c


def _lanes_fns(lib):
    import ctypes

    p, i64 = ctypes.c_void_p, ctypes.c_int64
    stats, norm = lib.normconf_bn_stats_lanes, lib.normconf_bn_normalize_lanes
    stats.argtypes = [p, ctypes.c_int, i64, i64, i64, p, p, i64]
    norm.argtypes = [p, ctypes.c_int, i64, i64, i64, p, p, p, p, ctypes.c_int, p, p, i64]
    stats.restype = norm.restype = ctypes.c_int
    return stats, norm


def _at_width(lib, x, axis, lanes, folded, with_x_hat, y_offset=0):
    """(mean, ss, y, x_hat or None) from the kernel's copy for ``lanes``; None where that width is not
    built for this CPU.  ``y_offset`` elements shift y's start in its buffer (its alignment)."""
    stats, norm = _lanes_fns(lib)
    xc, code, outer, C, inner = bn._kernel_layout(x, axis)
    mean, ss = np.empty(C), np.empty(C)
    rc = stats(xc.ctypes.data, code, outer, C, inner, mean.ctypes.data, ss.ctypes.data, lanes)
    if rc == -3:
        return None
    assert rc == 0
    rng = np.random.default_rng(7)
    inv, g, b = rng.random(C) + 0.5, rng.standard_normal(C), rng.standard_normal(C)
    buf = np.empty(x.size + y_offset)
    y = buf[y_offset:]
    xh = np.empty(x.size) if with_x_hat else None
    rc = norm(
        xc.ctypes.data,
        code,
        outer,
        C,
        inner,
        mean.ctypes.data,
        inv.ctypes.data,
        g.ctypes.data,
        b.ctypes.data,
        int(folded),
        y.ctypes.data,
        None if xh is None else xh.ctypes.data,
        lanes,
    )
    assert rc == 0
    return mean, ss, y, xh


def _same_bits(a, b) -> bool:
    return all((u is None and v is None) or u.tobytes() == v.tobytes() for u, v in zip(a, b))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("shape,axis", LAYOUTS)
def test_both_vector_widths_give_the_same_bits(lib, shape, axis, dtype):
    """The AVX2 copy (4 lanes) and the 2-lane copy: the same statistics and normalization, bit for bit
    (the width changes how many of the 8 lanes one instruction advances, never an addition's order)."""
    x = make(shape, dtype, seed=6)
    if x.size:
        x.flat[x.size // 2] = np.nan
    for folded in (False, True):
        for with_x_hat in (False, True):
            two = _at_width(lib, x, axis, 2, folded, with_x_hat)
            four = _at_width(lib, x, axis, 4, folded, with_x_hat)
            if four is None:
                pytest.skip("this CPU has no AVX2: only the 2-lane copy runs")
            assert _same_bits(two, four), (folded, with_x_hat)
    assert _lanes_fns(lib)[0](x.ctypes.data, 1, 1, 1, 1, None, None, 3) == -3  # no 3-lane copy


@pytest.mark.parametrize("y_offset", [0, 1, 3])
@pytest.mark.parametrize("folded", [False, True])
def test_streamed_output_of_a_large_case_has_the_same_bits(lib, y_offset, folded):
    """y of >= 32 MiB without x_hat, channels-first: the AVX2 copy writes it with streaming stores, from
    the first 32-byte-aligned element of each run (y_offset moves where that is); the bits are the 2-lane
    copy's, and with x_hat (plain stores) y is the same too."""
    x = make((2, 3, 700, 1000), "float32", seed=8)  # 4.2 M elements: y 33.6 MB
    two = _at_width(lib, x, 1, 2, folded, False, y_offset)
    four = _at_width(lib, x, 1, 4, folded, False, y_offset)
    if four is None:
        pytest.skip("this CPU has no AVX2: only the 2-lane copy runs (no streaming stores)")
    assert _same_bits(two, four)
    with_xh = _at_width(lib, x, 1, 4, folded, True, y_offset)
    assert with_xh[2].tobytes() == four[2].tobytes()
