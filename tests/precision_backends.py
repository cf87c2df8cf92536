"""Precision-only backends: BatchNorm with the case's own conventions, in a low working precision.

An independent emulator (it shares no arithmetic code with ``normconf.references.batchnorm``)
of what a backend does when it follows *every* convention of the case exactly
(the case's variance estimators, eps inside the square root, batch statistics in
train mode, the given running statistics in eval mode, the case's momentum) and
differs from the float64 reference only in its floating-point arithmetic.  The
explanation engine must never "explain" such a backend with a convention
change: that is the false-explanation guard these backends serve.

Conventions of :func:`precision_outputs` (``wd`` is the working dtype):

* **Inputs** ``x`` (already rounded to the case dtype), gamma, beta and the
  running statistics are converted to ``wd`` first; gamma = 1 and beta = 0 when
  the case has no affine parameters.  ``eps`` and the batch weight ``w`` are
  rounded to ``wd``.
* **Every operation rounds to wd**: each addition of a sum, the mean, each
  ``x - mean``, each square, the variance, ``var + eps``, ``sqrt``, ``1 / .``,
  ``x_hat``, ``y`` and each step of the running update.  Binary operations are
  NumPy's own on ``wd`` operands (float16 and bfloat16 operations are computed
  in float32 and rounded once, which is correctly rounded for +, -, *, /, sqrt
  because float32 has at least 2p + 2 bits for either format's p).  Divisions by
  the element count ``m`` (or ``m - 1``) divide by the exact integer and round
  once (``m`` = 4095 is not a float16 number, 257 is not a bfloat16 one).
* **Sums** over the ``m = N x spatial`` elements of a channel (in logical order:
  batch index first, then the spatial positions, whatever the layout), in
  ``order``:

  ``pairwise``   NumPy's own ``np.sum(a, axis=1, dtype=wd)`` over the per-channel
                 row: pairwise in float32 (blocks of 8 unrolled, then halving);
                 **for float16 NumPy accumulates this sum in float32 and rounds
                 once** and for bfloat16 (ml_dtypes) it is a sequential loop, so
                 ``pairwise`` is "whatever numpy does", not a per-add-rounded
                 pairwise tree in those two dtypes;
  ``forward``    one element at a time, first to last (``np.cumsum`` in ``wd``,
                 which rounds after each addition: verified in the tests);
  ``backward``   the same, last to first;
  ``block8`` / ``block64`` / ``block4096``
                 sequential within consecutive blocks of that many elements, then
                 sequential over the block sums;
  ``kahan``      Kahan's compensated summation (every operation in ``wd``);
  ``permuted``   ``forward`` over ``np.random.default_rng(seed).permutation(m)``
                 (one permutation, used for every sum of every step).

* **Statistics** (train mode): two-pass; ``mean = sum(x) / m``, then
  ``ss = sum((x - mean)**2)`` in the same order; biased ``ss / m``, unbiased
  ``ss / (m - 1)``.  The variance used to normalize (and reported as
  ``batch_var``) is the case's ``normalize_variance`` estimator, the one blended
  into the running variance is ``running_variance``.
* **Running update**: ``running = (1 - w) * old + w * batch`` evaluated as
  ``round(round(round(1 - w) * old) + round(w * batch))``; ``w = 1/k`` at 1-based
  step ``k`` for a cumulative average (``case.momentum_weight is None``).
* **Normalization**: ``inv_std = 1 / sqrt(var + eps)``; ``x_hat = (x - mean) * inv_std``;
  ``arithmetic``:

  ``unfolded``   ``y = x_hat * gamma + beta``;
  ``folded``     ``a = gamma * inv_std``, ``b = beta - mean * a``, ``y = x * a + b``;
  ``folded_fma`` ``a``, ``b`` as folded, ``y = fma(x, a, b)`` emulated as
                 ``round_wd(float64(x) * float64(a) + float64(b))`` (the product is
                 exact in float64 for float32/float16/bfloat16 operands; the sum is
                 rounded to float64 and then to ``wd``, which can differ from a true
                 fma in the last bit in rare double-rounding ties).

* **Outputs**: the names of ``case.output_names()`` (train: y, batch_mean,
  batch_var, running_mean, running_var [, eval_y]; eval: y), each a list with one
  array per step (eval_y: one array, inference on the last step's ``x`` with the
  final running statistics), in the reference's shapes and layout, cast to
  ``np_dtype(output_dtype(case, name))``.  With ``intermediates=True`` the
  per-step ``inv_std`` and ``x_hat`` are added (cast the same way).
  Non-finite values (e.g. a float16 sum overflowing to inf) propagate as IEEE
  arithmetic makes them; no warning is raised.
"""

from __future__ import annotations

import math
from typing import Iterator

import ml_dtypes
import numpy as np

from normconf.cases import Case
from normconf.inputs import Inputs, np_dtype
from normconf.results import output_dtype

ORDERS = ("pairwise", "forward", "backward", "block8", "block64", "block4096", "kahan", "permuted")
WORKING = ("float32", "float16", "bfloat16")
ARITHMETIC = ("unfolded", "folded", "folded_fma")

_WD = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def working_dtype(working: str) -> np.dtype:
    """The NumPy dtype of a working precision name."""
    try:
        return _WD[working]
    except KeyError:
        raise ValueError(f"working must be one of {WORKING}, got {working!r}") from None


def _r(v, wd: np.dtype) -> np.ndarray:
    """``v`` rounded to ``wd`` (one rounding from whatever precision ``v`` holds)."""
    return np.asarray(v).astype(wd)


def _sequential(rows: np.ndarray, wd: np.dtype) -> np.ndarray:
    """Sum of each row (last axis) one element at a time, first to last, rounding after each add."""
    if rows.shape[-1] == 0:
        return np.zeros(rows.shape[:-1], wd)
    return np.cumsum(rows, axis=-1, dtype=wd)[..., -1]


def _kahan(rows: np.ndarray, wd: np.dtype) -> np.ndarray:
    """Kahan compensated sum of each row of ``rows`` (C, m), vectorized over the rows."""
    cols = np.ascontiguousarray(rows.T)  # (m, C): one contiguous (C,) vector per element
    s = np.zeros(rows.shape[0], wd)
    c = np.zeros(rows.shape[0], wd)
    for xj in cols:
        y = xj - c
        t = s + y
        c = (t - s) - y
        s = t
    return s


def channel_sums(rows: np.ndarray, order: str, wd: np.dtype, perm: np.ndarray | None = None) -> np.ndarray:
    """Per-row sums of ``rows`` (C, m), already in ``wd``, accumulated in ``wd`` in ``order``.

    ``perm`` is the element permutation of ``order="permuted"``.
    """
    rows = np.asarray(rows)
    if rows.dtype != wd:
        raise TypeError(f"rows must already be in the working dtype {wd}, got {rows.dtype}")
    if order == "pairwise":
        return np.sum(rows, axis=1, dtype=wd)
    if order == "forward":
        return _sequential(rows, wd)
    if order == "backward":
        return _sequential(rows[:, ::-1], wd)
    if order.startswith("block"):
        b = int(order[len("block") :])
        C, m = rows.shape
        nb = -(-m // b)
        if nb <= 1:
            return _sequential(rows, wd)
        padded = np.zeros((C, nb * b), wd)  # trailing zeros add exactly (acc + 0 == acc)
        padded[:, :m] = rows
        block_sums = _sequential(padded.reshape(C, nb, b), wd)  # (C, nb)
        return _sequential(block_sums, wd)
    if order == "kahan":
        return _kahan(rows, wd)
    if order == "permuted":
        if perm is None or len(perm) != rows.shape[1]:
            raise ValueError("order='permuted' needs a permutation of the row length")
        return _sequential(rows[:, perm], wd)
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def _div_count(s: np.ndarray, n: int, wd: np.dtype) -> np.ndarray:
    """``s / n`` for the exact integer ``n``, rounded once to ``wd`` (NaN/inf for n == 0 as IEEE says)."""
    if n == 0:
        return _r(np.asarray(s, np.float64) / 0.0, wd)
    return _r(np.asarray(s, np.float64) / float(n), wd)  # float64 quotient, then wd: innocuous double rounding


def _bcast(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return v.reshape(shape)


def _rows(x: np.ndarray, axis: int) -> np.ndarray:
    """(C, m) C-contiguous copy of ``x``: each channel's elements in logical order (batch index, then spatial).

    Contiguous, so that ``np.sum(axis=1)`` is NumPy's pairwise row sum whatever the layout (on a
    strided view of a channels-last array NumPy would add whole rows elementwise, i.e. sequentially).
    """
    ch = axis % x.ndim
    return np.ascontiguousarray(np.moveaxis(x, ch, 0).reshape(x.shape[ch], -1))


class _Emulator:
    def __init__(self, case: Case, inputs: Inputs, order: str, working: str, arithmetic: str, seed: int):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if arithmetic not in ARITHMETIC:
            raise ValueError(f"arithmetic must be one of {ARITHMETIC}, got {arithmetic!r}")
        self.case, self.order, self.arithmetic = case, order, arithmetic
        self.wd = wd = working_dtype(working)
        self.axis = case.channel_axis
        C = case.channels
        self.gamma = _r(inputs.gamma if inputs.gamma is not None else np.ones(C), wd)
        self.beta = _r(inputs.beta if inputs.beta is not None else np.zeros(C), wd)
        self.eps = _r(case.eps, wd)
        self.one = _r(1.0, wd)
        self.seed = seed
        self._perm: np.ndarray | None = None

    def perm(self, m: int) -> np.ndarray | None:
        if self.order != "permuted":
            return None
        if self._perm is None or len(self._perm) != m:
            self._perm = np.random.default_rng(self.seed).permutation(m)
        return self._perm

    def statistics(self, xw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, biased var, unbiased var) of ``xw`` (already in wd), two-pass, in ``order``."""
        wd = self.wd
        rows = _rows(xw, self.axis)
        m = rows.shape[1]
        perm = self.perm(m)
        mean = _div_count(channel_sums(rows, self.order, wd, perm), m, wd)
        d = rows - mean[:, None]  # wd - wd: rounded to wd
        sq = d * d
        ss = channel_sums(sq, self.order, wd, perm)
        var_b = _div_count(ss, m, wd)
        var_u = _div_count(ss, m - 1, wd) if m > 1 else np.full_like(var_b, np.nan)
        return mean, var_b, var_u

    def update(self, old: np.ndarray, batch: np.ndarray, w: float) -> np.ndarray:
        wd = self.wd
        ww = _r(w, wd)
        return (self.one - ww) * old + ww * batch  # each operation on wd operands rounds to wd

    def normalize(self, xw: np.ndarray, mean: np.ndarray, var: np.ndarray):
        """(y, inv_std, x_hat) of ``xw`` (in wd) with per-channel ``mean``/``var`` (in wd)."""
        wd, nd, ax = self.wd, xw.ndim, self.axis
        inv_std = self.one / np.sqrt(var + self.eps)
        mu, inv = _bcast(mean, nd, ax), _bcast(inv_std, nd, ax)
        g, b = _bcast(self.gamma, nd, ax), _bcast(self.beta, nd, ax)
        x_hat = (xw - mu) * inv
        if self.arithmetic == "unfolded":
            y = x_hat * g + b
        else:
            a = g * inv
            shift = b - mu * a
            if self.arithmetic == "folded":
                y = xw * a + shift
            else:  # folded_fma: one rounding of the exact x*a + shift
                y = _r(xw.astype(np.float64) * a.astype(np.float64) + shift.astype(np.float64), wd)
        return y, inv_std, x_hat

    def run(self, inputs: Inputs) -> dict[str, list[np.ndarray]]:
        case, wd = self.case, self.wd
        out: dict[str, list[np.ndarray]] = {}

        def put(name, v):
            out.setdefault(name, []).append(v)

        rm = _r(inputs.running_mean, wd)
        rv = _r(inputs.running_var, wd)
        xs = [_r(x, wd) for x in inputs.x]
        for k, xw in enumerate(xs, start=1):
            if case.mode == "eval":
                y, inv_std, x_hat = self.normalize(xw, rm, rv)
                put("y", y)
                put("inv_std", inv_std)
                put("x_hat", x_hat)
                continue
            mean, var_b, var_u = self.statistics(xw)
            var_norm = var_b if case.semantics.normalize_variance == "biased" else var_u
            var_run = var_b if case.semantics.running_variance == "biased" else var_u
            w = case.momentum_weight
            w = 1.0 / k if w is None else float(w)
            y, inv_std, x_hat = self.normalize(xw, mean, var_norm)
            rm = self.update(rm, mean, w)
            rv = self.update(rv, var_run, w)
            put("y", y)
            put("batch_mean", mean)
            put("batch_var", var_norm)
            put("running_mean", rm)
            put("running_var", rv)
            put("inv_std", inv_std)
            put("x_hat", x_hat)
        if case.mode == "train" and case.eval_after:
            y, _, _ = self.normalize(xs[-1], rm, rv)
            put("eval_y", y)
        return out


def precision_outputs(
    case: Case, inputs: Inputs, *, order: str, working: str, arithmetic: str, seed: int = 0, intermediates: bool = False
) -> dict[str, list[np.ndarray]]:
    """The outputs of a backend that follows ``case``'s conventions in ``working`` precision.

    See the module docstring for the exact arithmetic.  ``order`` is one of
    :data:`ORDERS`, ``working`` one of :data:`WORKING`, ``arithmetic`` one of
    :data:`ARITHMETIC`; ``seed`` draws the permutation of ``order="permuted"``.
    Returns ``{name: [one array per step]}`` for ``case.output_names()`` (plus
    ``inv_std`` and ``x_hat`` with ``intermediates``), each array in
    ``np_dtype(output_dtype(case, name))``.
    """
    with np.errstate(all="ignore"):
        em = _Emulator(case, inputs, order, working, arithmetic, seed)
        raw = em.run(inputs)
        names = list(case.output_names()) + (["inv_std", "x_hat"] if intermediates else [])
        return {name: [np.asarray(a).astype(np_dtype(output_dtype(case, name))) for a in raw[name]] for name in names}


# ----------------------------------------------------------------------------------------
# examples for the false-explanation guard


def _shape(rng: np.random.Generator, m: int, C: int) -> list[int]:
    """A logical (N, C, *spatial) shape of rank 2-4 with about ``m`` (>= 2) elements per channel."""
    rank = int(rng.choice([2, 3, 4]))
    if rank == 2 or m < 4:
        return [m, C]
    if rank == 3:
        n = int(rng.integers(1, min(8, m // 2) + 1))
        return [n, C, max(2, round(m / n))]
    n = int(rng.integers(1, min(4, m // 4) + 1))
    h = max(1, round(math.sqrt(m / n) * float(rng.uniform(0.6, 1.6))))
    w = max(2, round(m / (n * h)))
    return [n, C, h, w]


def guard_examples(n: int = 520, seed: int = 0) -> Iterator[tuple[Case, str, str, str]]:
    """``n`` deterministic, diverse ``(case, order, working, arithmetic)`` tuples.

    Orders and arithmetics cycle so that every (order, arithmetic) pair occurs
    equally often (24 pairs); everything else is drawn from
    ``np.random.default_rng(seed)``: rank 2-4 shapes with 2 to ~4096 elements
    per channel and at most 20000 input elements per case, C 1-8, both layouts,
    the four dtypes (float16/bfloat16 with float32 parameters), train (1-3 steps,
    batch weight 0.1/0.01/0.5 or cumulative, eval_after sometimes) and eval, both
    variance estimators, eps 1e-5/1e-3, input mean 0/1/10/100/1000 with std 1 or
    0.01, affine true/false/random.  ``working`` is float32 for float32/float64
    cases, float32 or the case dtype for float16/bfloat16 cases.
    """
    rng = np.random.default_rng(seed)
    for i in range(n):
        order = ORDERS[i % len(ORDERS)]
        arithmetic = ARITHMETIC[(i // len(ORDERS)) % len(ARITHMETIC)]
        dtype = str(rng.choice(["float16", "bfloat16", "float32", "float64"]))
        working = "float32" if dtype in ("float32", "float64") else str(rng.choice(["float32", dtype]))
        mode = "train" if rng.random() < 0.75 else "eval"
        steps = int(rng.integers(1, 4)) if mode == "train" else int(rng.integers(1, 3))
        m = int(round(math.exp(rng.uniform(math.log(2), math.log(4096)))))
        m = max(2, m)
        C = int(rng.integers(1, 9))
        C = max(1, min(C, 20000 // (m * steps)))
        if m * C * steps > 20000:
            m = max(2, 20000 // (C * steps))
        shape = _shape(rng, m, C)
        while math.prod(shape) * steps > 20000:  # rounding of the spatial sizes may overshoot a little
            if len(shape) > 2 and shape[-1] > 2:
                shape[-1] -= 1
            else:
                shape[0] -= 1
        mean = float(rng.choice([0.0, 1.0, 10.0, 100.0, 1000.0]))
        std = 1.0 if rng.random() < 0.8 else 0.01
        d: dict = dict(
            id=f"guard_{i:04d}",
            shape=shape,
            layout=str(rng.choice(["channels_first", "channels_last"])),
            dtype=dtype,
            param_dtype="float32" if dtype in ("float16", "bfloat16") else None,
            mode=mode,
            steps=steps,
            eps=float(rng.choice([1e-5, 1e-3])),
            normalize_variance=str(rng.choice(["biased", "unbiased"])),
            running_variance=str(rng.choice(["biased", "unbiased"])),
            input={"dist": "normal", "mean": mean, "std": std, "seed": int(rng.integers(0, 2**31))},
        )
        mw = rng.choice(["0.1", "0.01", "0.5", "cumulative"])
        d["momentum"] = "cumulative" if mw == "cumulative" else {"batch_weight": float(mw)}
        if mode == "train":
            d["eval_after"] = bool(rng.random() < 0.4)
        else:  # running statistics near the data's, so that y is O(1) as in a trained model
            d["running_mean"] = {"dist": "normal", "mean": mean, "std": 0.1 * std, "seed": int(rng.integers(0, 2**31))}
            d["running_var"] = {
                "dist": "uniform",
                "low": 0.5 * std * std,
                "high": 2.0 * std * std,
                "seed": int(rng.integers(0, 2**31)),
            }
        a = rng.random()
        if a < 0.3:
            d["affine"] = False
        elif a < 0.7:
            d["affine"] = {
                "gamma": {"dist": "uniform", "low": 0.5, "high": 2.0, "seed": int(rng.integers(0, 2**31))},
                "beta": {"dist": "normal", "std": 0.5, "seed": int(rng.integers(0, 2**31))},
            }
        d = {k: v for k, v in d.items() if v is not None}
        yield Case.model_validate(d), order, working, arithmetic
