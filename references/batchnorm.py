"""NumPy reference BatchNorm: every convention is a parameter (:class:`Semantics`).

The oracle runs in float64 on inputs that were already rounded to the case's
dtype.  Semantics knobs that ask for another working precision (``stats_dtype``,
``compute_dtype``) make it emulate that precision instead; the explanation
engine uses those to recognise what a backend did.

Outputs (names used everywhere in normconf), each a list with one array per step:

``y``
    the normalized, affine-transformed output, same shape and layout as ``x``;
``batch_mean`` / ``batch_var``
    per-channel batch mean and the variance *used to normalize*
    (``Semantics.normalize_variance`` estimator, unless ``Semantics.reported_variance``
    names another); train mode only;
``running_mean`` / ``running_var``
    running statistics after the step (train mode only):
    ``new = (1 - w) * old + w * batch`` with ``w`` the batch weight (see
    :mod:`normconf.semantics`), the running variance using the
    ``Semantics.running_variance`` estimator;
``inv_std``
    per-channel ``1 / sqrt(var + eps)`` used to normalize (intermediate stage);
``x_hat``
    ``(x - mean) * inv_std`` before the affine transform (intermediate stage);
``eval_y``
    (only with ``eval_after``) the output of an inference pass on the last
    batch with the final running statistics.

Large cases (at least :data:`KERNEL_MIN_ELEMENTS` elements per step) computed in float64 with the
default pairwise two-pass statistics run on compiled kernels (native/src/kernels/reference_bn.c,
through :func:`normconf.kernels.library`): the statistics sum each channel's elements in memory
order, in blocks of 128 (8 lanes each, pairwise over lanes) combined by a binary-counter pairwise
tree, deterministic and layout-independent; the elementwise normalization is the same IEEE
arithmetic as the NumPy code.  Everything else, and every case without the library, runs the
NumPy code below.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any, Sequence, cast

import numpy as np
import numpy.typing as npt

from normconf.semantics import Semantics

#: every output, in stage order — the one list of BatchNorm's outputs (normconf.outputs re-exports these)
OUTPUT_NAMES = ("y", "batch_mean", "batch_var", "running_mean", "running_var", "inv_std", "x_hat", "eval_y")
#: the outputs that depend only on one channel (shape (C,))
PER_CHANNEL_OUTPUTS = ("batch_mean", "batch_var", "running_mean", "running_var", "inv_std")
#: outputs shaped like ``x`` (returned in the case dtype; the rest in the parameter dtype)
DATA_OUTPUTS = ("y", "x_hat", "eval_y")
#: the batch and running statistics (the reference's statistics-only path computes just these)
STATISTICS = ("batch_mean", "batch_var", "running_mean", "running_var")
#: what a complete backend reports, in the order results list them; then the intermediate stages
MAIN_OUTPUTS = ("y", "batch_mean", "batch_var", "running_mean", "running_var", "eval_y")
STAGE_OUTPUTS = ("inv_std", "x_hat")


def _np_dtype(name: str) -> np.dtype[Any]:
    if name == "bfloat16":
        import ml_dtypes

        return cast("np.dtype[Any]", np.dtype(ml_dtypes.bfloat16))
    return np.dtype(name)


def _working(choice: str, input_dtype: np.dtype[Any]) -> np.dtype[Any]:
    if choice == "input":
        return input_dtype
    return np.dtype(choice)


def _reduce_axes(ndim: int, channel_axis: int) -> tuple[int, ...]:
    ch = channel_axis % ndim
    return tuple(a for a in range(ndim) if a != ch)


def _bcast(v: np.ndarray, ndim: int, channel_axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[channel_axis % ndim] = -1
    return v.reshape(shape)


#: elements per step from which the compiled kernels compute the float64 reference: below it NumPy's
#: passes run in cache and cost a millisecond or less, and small cases (every library case but
#: shape_big_rank4) keep NumPy's own summation order; above it NumPy's many passes (a float64 copy,
#: sums, a squared-deviation array, x_hat, y) dominate: measured CPU (float32 train, y only) 3.3 vs
#: 0.37 ms at 2^18, 7.6 vs 1.0 ms at 1e6, 1.1 vs 0.6 ms at 2^16 (docs/performance.md)
KERNEL_MIN_ELEMENTS = 1 << 18

_KERNEL_DTYPES = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3}


def _kernel_lib() -> Any:
    """The kernels library with the reference's two functions typed, or ``None``."""
    from normconf import kernels

    lib = kernels.library()
    if lib is None or not hasattr(lib, "normconf_bn_stats") or not hasattr(lib, "normconf_bn_normalize"):
        return None
    if lib.normconf_bn_stats.argtypes is None:
        import ctypes

        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.normconf_bn_stats.argtypes = [p, ctypes.c_int, i64, i64, i64, p, p]
        lib.normconf_bn_stats.restype = ctypes.c_int
        lib.normconf_bn_normalize.argtypes = [p, ctypes.c_int, i64, i64, i64, p, p, p, p, ctypes.c_int, p, p]
        lib.normconf_bn_normalize.restype = ctypes.c_int
    return lib


def _kernel_layout(x: np.ndarray, channel_axis: int) -> tuple[np.ndarray, int, int, int, int]:
    """(C-contiguous x, dtype code, outer, C, inner): x viewed as (outer, C, inner)."""
    ch = channel_axis % x.ndim
    xc = np.ascontiguousarray(x)
    return (
        xc,
        _KERNEL_DTYPES[str(x.dtype)],
        int(np.prod(x.shape[:ch], dtype=np.int64)),
        int(x.shape[ch]),
        int(np.prod(x.shape[ch + 1 :], dtype=np.int64)),
    )


def _kernel_eligible(x: np.ndarray, working: np.dtype[Any]) -> Any:
    """The library when ``x`` is large, of a dtype the kernels read, and the working precision is float64."""
    if x.ndim == 0 or x.size < KERNEL_MIN_ELEMENTS or working != np.float64 or str(x.dtype) not in _KERNEL_DTYPES:
        return None
    return _kernel_lib()


def kernel_statistics(lib: Any, x: np.ndarray, channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, two-pass sum of squared deviations) from the compiled kernel, float64."""
    xc, code, outer, C, inner = _kernel_layout(x, channel_axis)
    mean, ss = np.empty(C), np.empty(C)
    if lib.normconf_bn_stats(xc.ctypes.data, code, outer, C, inner, mean.ctypes.data, ss.ctypes.data) != 0:
        raise RuntimeError("normconf_bn_stats failed (out of memory?)")
    return mean, ss


def kernel_normalize(
    lib: Any,
    x: np.ndarray,
    channel_axis: int,
    mu: np.ndarray,
    inv: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    folded: bool,
    with_x_hat: bool = True,
    y_round: np.dtype[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(y, x_hat) from the compiled kernel: x_hat = (x - mu)*inv; y = x_hat*p + q, or x*p + q when folded.
    ``with_x_hat=False``: x_hat is neither stored nor returned (None); y is the same.  ``y_round``: y
    rounded to that dtype and held as float32 (:func:`_rounded_y`), computed :data:`_ROUND_BLOCK`
    elements of whole (outer) rows at a time, so no full-size float64 y exists (the same values)."""
    xc, code, outer, C, inner = _kernel_layout(x, channel_axis)
    vec = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float64).reshape(-1), (C,))) for v in (mu, inv, p, q)]
    x_hat = np.empty(x.shape) if with_x_hat else None
    args = [v.ctypes.data for v in vec]

    def run(o0: int, o1: int, y_out: np.ndarray) -> None:
        first = o0 * C * inner  # the rows' first element: x, y_out's rows and x_hat's are contiguous from there
        if lib.normconf_bn_normalize(
            xc.ctypes.data + first * xc.itemsize,
            code,
            o1 - o0,
            C,
            inner,
            *args,
            int(folded),
            y_out.ctypes.data,
            None if x_hat is None else x_hat.ctypes.data + first * x_hat.itemsize,
        ):
            raise RuntimeError("normconf_bn_normalize failed")

    if y_round is None:
        y = np.empty(x.shape)
        run(0, outer, y)
        return y, x_hat
    y32 = np.empty(x.shape, np.float32)
    flat = y32.reshape(-1)
    row = C * inner
    step = max(1, _ROUND_BLOCK // max(1, row))
    block = np.empty(min(outer, step) * row)
    for o0 in range(0, outer, step):
        o1 = min(outer, o0 + step)
        part = block[: (o1 - o0) * row]
        run(o0, o1, part)
        flat[o0 * row : o1 * row] = _rounded_y(part, y_round)
    return y32, x_hat


#: elements per block of a rounded y (:func:`kernel_normalize`): its float64 block stays in cache
_ROUND_BLOCK = 1 << 17


def _rounded_y(y: np.ndarray, y_round: np.dtype[Any]) -> np.ndarray:
    """``y`` (float64) rounded to ``y_round`` (IEEE round-to-nearest-even) and held as float32: exactly
    :func:`normconf.oracle.round_to_output_dtypes` with ``compact`` (the same two conversions)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(y, np.float64).astype(y_round).astype(np.float32, copy=False)


#: elements per block of the elementwise passes (their temporaries stay in cache)
_BLOCK = 1 << 16


def _blocks(x: np.ndarray) -> list[slice]:
    """Slices of ``x``'s first axis (the batch axis, never the channel axis) of about ``_BLOCK`` elements."""
    n0 = x.shape[0] if x.ndim else 1
    row = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    step = max(1, _BLOCK // max(1, row))
    return [slice(s, s + step) for s in range(0, n0, step)]


def batch_statistics(
    x: np.ndarray, channel_axis: int, sem: Semantics, input_dtype: np.dtype[Any]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Per-channel (mean, biased var, unbiased var, m) under ``sem``'s algorithm and precision.

    ``m`` is the number of elements per channel (N x spatial).  With ``m == 1``
    the unbiased variance is NaN (0/0), with ``m == 0`` everything is NaN.
    """
    wd = _working(sem.stats_dtype, input_dtype)
    axes = _reduce_axes(x.ndim, channel_axis)
    m = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    lib = (
        _kernel_eligible(x, wd) if sem.stats_summation == "pairwise" and sem.variance_algorithm == "two_pass" else None
    )
    if lib is not None:
        mean, ss = kernel_statistics(lib, x, channel_axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            var_b = ss / np.float64(m)
            var_u = ss / np.float64(m - 1) if m > 1 else np.full_like(var_b, np.nan)
        return mean, var_b, var_u, m
    xs = x.astype(wd, copy=False)
    if sem.stats_summation == "sequential":
        ch = channel_axis % x.ndim

        def total(a: np.ndarray) -> np.ndarray:
            """Per-channel sum accumulated one element at a time (N-major, then spatial) in ``wd``."""
            flat = np.moveaxis(a, ch, 0).reshape(a.shape[ch], -1)
            if flat.shape[1] == 0:
                return np.zeros(flat.shape[0], wd)
            return np.cumsum(flat, axis=1, dtype=wd)[:, -1]
    else:

        def total(a: np.ndarray) -> np.ndarray:
            return cast(np.ndarray, a.sum(axis=axes, dtype=wd))

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if sem.variance_algorithm == "two_pass":
            mean = (total(xs) / wd.type(m)).astype(wd)
            mb = _bcast(mean, x.ndim, channel_axis)
            # (x - mean)**2, one cache-sized block at a time, in place in our own working copy if we made one
            d = np.empty_like(xs) if np.may_share_memory(xs, x) else xs
            for sl in _blocks(xs):
                np.subtract(xs[sl], mb, out=d[sl])
                np.multiply(d[sl], d[sl], out=d[sl])
            ss = total(d)
            del d
            var_b = (ss / wd.type(m)).astype(wd)
            var_u = (ss / wd.type(m - 1)).astype(wd) if m > 1 else np.full_like(var_b, np.nan)
        else:
            s = total(xs)
            sq = np.empty_like(xs) if np.may_share_memory(xs, x) else xs
            for sl in _blocks(xs):
                np.multiply(xs[sl], xs[sl], out=sq[sl])
            s2 = total(sq)
            del sq
            mean = (s / wd.type(m)).astype(wd)
            var_b = (s2 / wd.type(m) - mean * mean).astype(wd)
            if sem.variance_algorithm == "one_pass_clamped":
                var_b = np.maximum(var_b, wd.type(0))
            var_u = (var_b * wd.type(m) / wd.type(m - 1)).astype(wd) if m > 1 else np.full_like(var_b, np.nan)
    return (
        mean.astype(np.float64),
        var_b.astype(np.float64),
        var_u.astype(np.float64),
        m,
    )


#: per-channel statistics of read-only batches (a worker's inputs), by the batch's identity and what they
#: depend on (channel axis, input dtype, stats_dtype, stats_summation, variance_algorithm): the explanation
#: search reruns the reference under dozens of alternatives that change none of these.  The batch is held
#: by a weak reference (an entry never keeps an array alive; a dead or reused identity is a miss), the
#: statistics read-only (a caller cannot change them for the next one).  Values identical to a fresh call.
#: key -> (weak reference to the batch, (mean, biased var, unbiased var, m))
_STATS_MEMO: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
_STATS_MEMO_SIZE = 4096
_STATS_LOCK = threading.Lock()


def memo_batch_statistics(
    x: np.ndarray, channel_axis: int, sem: Semantics, input_dtype: np.dtype[Any]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """:func:`batch_statistics`, memoized for read-only ``x`` (:data:`_STATS_MEMO`)."""
    if x.flags.writeable:
        return batch_statistics(x, channel_axis, sem, input_dtype)
    key = (
        id(x),
        channel_axis % max(1, x.ndim),
        input_dtype,
        sem.stats_dtype,
        sem.stats_summation,
        sem.variance_algorithm,
    )
    with _STATS_LOCK:
        hit = _STATS_MEMO.get(key)
        if hit is not None and hit[0]() is x:
            _STATS_MEMO.move_to_end(key)
            return hit[1]  # type: ignore[no-any-return]
    value = batch_statistics(x, channel_axis, sem, input_dtype)
    for a in value[:3]:
        a.flags.writeable = False
    with _STATS_LOCK:
        _STATS_MEMO[key] = (weakref.ref(x), value)
        _STATS_MEMO.move_to_end(key)
        while len(_STATS_MEMO) > _STATS_MEMO_SIZE:
            _STATS_MEMO.popitem(last=False)
    return value


def _inv_std(var: np.ndarray, eps: float, sem: Semantics, input_dtype: np.dtype[Any]) -> np.ndarray:
    """Per-channel 1/sqrt(var + eps) (or ``sem``'s eps placement) in the compute dtype: what
    :func:`normalize` normalizes with, and the statistics-only path's ``inv_std`` (the same bits)."""
    cd = _working(sem.compute_dtype, input_dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = var.astype(cd)
        e = cd.type(eps)
        if sem.eps_placement == "inside_sqrt":
            denom = np.sqrt(v + e)
        elif sem.eps_placement == "outside_sqrt":
            denom = np.sqrt(v) + e
        else:
            denom = np.sqrt(v)
        return cast(np.ndarray, (cd.type(1) / denom).astype(cd))


def normalize(
    x: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
    channel_axis: int,
    sem: Semantics,
    input_dtype: np.dtype[Any],
    with_x_hat: bool = True,
    y_round: np.dtype[Any] | None = None,
) -> tuple[np.ndarray, npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """(y, inv_std, x_hat) for given per-channel statistics, under ``sem``'s arithmetic;
    ``with_x_hat=False``: x_hat is None (where the compiled kernel runs, it is then never stored).
    ``y_round`` (float32, float16 or bfloat16): y is returned rounded to it and held as float32 — the
    expected values as :func:`normconf.oracle.round_to_output_dtypes` holds them with ``compact``, the
    same numbers; where the compiled kernel runs, without a full-size float64 y."""
    cd = _working(sem.compute_dtype, input_dtype)
    nd = x.ndim
    C = x.shape[channel_axis % nd]
    g = np.ones(C) if (gamma is None or sem.affine in ("beta_only", "none")) else np.asarray(gamma, np.float64)
    b = np.zeros(C) if (beta is None or sem.affine in ("gamma_only", "none")) else np.asarray(beta, np.float64)
    inv_std = _inv_std(var, eps, sem, input_dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mu = _bcast(mean.astype(cd), nd, channel_axis)
        inv = _bcast(inv_std, nd, channel_axis)
        gg = _bcast(g.astype(cd), nd, channel_axis)
        bb = _bcast(b.astype(cd), nd, channel_axis)
        folded = sem.arithmetic in ("folded", "folded_fma")
        fma = sem.arithmetic == "folded_fma"
        if folded:
            a = (gg * inv).astype(cd)
            shift = (bb - mu * a).astype(cd)
        lib = None if fma else _kernel_eligible(x, cd)
        if lib is not None:
            p, q = (a, shift) if folded else (gg, bb)
            y, xh = kernel_normalize(lib, x, channel_axis, mu, inv, p, q, folded, with_x_hat, y_round)
            return y, inv_std.astype(np.float64), xh
        # x_hat = (x - mu) * inv;  y = x*a + shift (folded) or x_hat*gamma + beta, one block at a time
        # (elementwise, so the same bits as whole-array expressions, without whole-array temporaries)
        x_hat = np.empty(x.shape, cd)
        y = np.empty(x.shape, cd)
        for sl in _blocks(x):
            xc = x[sl].astype(cd, copy=False)
            np.subtract(xc, mu, out=x_hat[sl])
            np.multiply(x_hat[sl], inv, out=x_hat[sl])
            if fma:  # one rounding of the exact x*a + b: the product is exact in a twice-as-wide format
                wide = np.longdouble if cd == np.float64 else np.float64
                y[sl] = (xc.astype(wide) * a.astype(wide) + shift.astype(wide)).astype(cd)
            elif folded:
                np.multiply(xc, a, out=y[sl])
                np.add(y[sl], shift, out=y[sl])
            else:
                np.multiply(x_hat[sl], gg, out=y[sl])
                np.add(y[sl], bb, out=y[sl])
    return (
        y.astype(np.float64, copy=False) if y_round is None else _rounded_y(y, y_round),
        inv_std.astype(np.float64),
        x_hat.astype(np.float64, copy=False) if with_x_hat else None,
    )


def batch_norm_reference(
    x_steps: Sequence[np.ndarray],
    *,
    channel_axis: int,
    mode: str,
    eps: float,
    momentum: float | None,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eval_after: bool = False,
    semantics: Semantics = Semantics(),
    input_dtype: str | np.dtype[Any] = "float64",
    statistics_only: bool = False,
    with_x_hat: bool = True,
    y_round: np.dtype[Any] | None = None,
    with_eval_y: bool = False,
) -> dict[str, list[np.ndarray]]:
    """Run BatchNorm over ``x_steps`` (one batch per step) and return every output
    (``with_x_hat=False``: every output but ``x_hat``, which is then never materialized).
    Every output is float64, except ``y`` and ``eval_y`` with ``y_round`` (float32, float16 or
    bfloat16): rounded to it and held as float32 (:func:`normalize`), the expected values.

    ``momentum`` is the batch weight ``w`` (``None``: cumulative average).
    ``mode`` is ``"train"`` (batch statistics, running update each step) or
    ``"eval"`` (normalize with the given running statistics, no update).
    ``statistics_only`` skips the normalization: only batch_mean, batch_var,
    running_mean and running_var (train mode) are returned, plus ``norm_mean`` /
    ``norm_var``, the per-channel statistics each step normalizes with (both modes),
    so that a caller can normalize a few elements exactly as :func:`normalize`
    would (the explanation engine's cheap paths), and ``inv_std`` (the same bits as
    the full run's: both come from :func:`_inv_std`).  ``with_eval_y`` (train mode with
    ``eval_after``): the statistics-only run also returns ``eval_y``, the one
    normalization of the last batch with the final running statistics; the same
    bits as the full run's (the running statistics never depend on a step's
    normalization), without normalizing every step.
    """
    sem = semantics
    in_dt = input_dtype if isinstance(input_dtype, np.dtype) else _np_dtype(str(input_dtype))
    if sem.channel_axis_swapped:
        channel_axis = -1 if channel_axis % x_steps[0].ndim == 1 else 1
        C = x_steps[0].shape[channel_axis]
        if gamma is not None and len(gamma) != C or len(running_mean) != C:
            raise ValueError("channel axis swap is incompatible with the per-channel parameters")
    eps_v = sem.eps_used(eps)
    rm = np.asarray(running_mean, np.float64).copy()
    rv = np.asarray(running_var, np.float64).copy()
    if sem.initial_running == "zeros":
        rm[:] = 0.0
        rv[:] = 0.0
    out: dict[str, list[np.ndarray]] = {}

    def put(name: str, value: np.ndarray) -> None:
        held = np.float32 if y_round is not None and name in ("y", "eval_y") else np.float64
        out.setdefault(name, []).append(np.asarray(value, held))

    for k, x in enumerate(x_steps, start=1):
        if mode == "eval":
            if sem.eval_statistics == "blended":
                e_mean, e_vb, e_vu, _m = memo_batch_statistics(x, channel_axis, sem, in_dt)
                e_var = e_vb if sem.running_variance == "biased" else e_vu
                w_e = sem.batch_weight(momentum, 1)  # one update of the given statistics (1 when cumulative)
                n_mean, n_var = (1 - w_e) * rm + w_e * e_mean, (1 - w_e) * rv + w_e * e_var
            elif sem.eval_statistics == "batch":
                e_mean, e_vb, e_vu, _m = memo_batch_statistics(x, channel_axis, sem, in_dt)
                n_mean, n_var = e_mean, (e_vb if sem.normalize_variance == "biased" else e_vu)
            else:
                n_mean, n_var = rm, rv
            if statistics_only:
                put("norm_mean", n_mean)
                put("norm_var", n_var)
                put("inv_std", _inv_std(n_var, eps_v, sem, in_dt))
                continue
            y, inv_std, x_hat = normalize(
                x, n_mean, n_var, gamma, beta, eps_v, channel_axis, sem, in_dt, with_x_hat, y_round
            )
            put("y", y)
            put("inv_std", inv_std)
            if x_hat is not None:
                put("x_hat", x_hat)
            continue
        mean, var_b, var_u, _m = memo_batch_statistics(x, channel_axis, sem, in_dt)
        var_norm = var_b if sem.normalize_variance == "biased" else var_u
        var_run = var_b if sem.running_variance == "biased" else var_u
        w = sem.batch_weight(momentum, k)
        new_rm = (1.0 - w) * rm + w * mean
        new_rv = (1.0 - w) * rv + w * var_run
        if sem.train_statistics == "batch":
            norm_mean, norm_var = mean, var_norm
        elif sem.train_statistics == "running":
            norm_mean, norm_var = rm, rv
        else:  # blended: running statistics updated first, then used
            norm_mean, norm_var = new_rm, new_rv
        if statistics_only:
            put("norm_mean", norm_mean)
            put("norm_var", norm_var)
            put("inv_std", _inv_std(norm_var, eps_v, sem, in_dt))
        else:
            y, inv_std, x_hat = normalize(
                x, norm_mean, norm_var, gamma, beta, eps_v, channel_axis, sem, in_dt, with_x_hat, y_round
            )
        rm, rv = new_rm, new_rv
        if not statistics_only:
            put("y", y)
        put("batch_mean", mean)
        put(
            "batch_var",
            var_norm
            if sem.reported_variance == "as_normalized"
            else (var_b if sem.reported_variance == "biased" else var_u),
        )
        put("running_mean", rm)
        put("running_var", rv)
        if not statistics_only:
            put("inv_std", inv_std)
            if x_hat is not None:
                put("x_hat", x_hat)
    if eval_after and mode == "train" and (with_eval_y or not statistics_only):
        y, _, _ = normalize(
            x_steps[-1], rm, rv, gamma, beta, eps_v, channel_axis, sem, in_dt, with_x_hat=False, y_round=y_round
        )
        put("eval_y", y)
    return out
