"""Counterfactual explanation engine: *why* does a backend's output differ from the reference?

When an output mismatches, the reference is rerun under alternative
:class:`~harness.semantics.Semantics` — the case's own conventions with one knob
changed (and, when no single knob suffices, two) — and every alternative whose
output reproduces the backend's within the case tolerance is a candidate
explanation.  Candidates are ranked (fewest knobs first, then structural
conventions before known default values, precision variants and freely solved
values, then by residual); the top one becomes the row's ``explanation``
(``knob=value[,knob=value]``, :meth:`Semantics.label` relative to the case) and
``explanation_text`` states it with the numbers.  When nothing matches, the row
stays ``mismatch`` and the text says which alternatives came closest and what
the error looks like (uniform scale, per-channel offset, permuted channels, a
few elements, NaN/Inf positions).

Numeric knobs are *solved* rather than guessed: eps from the per-channel scale
between the backend's and the reference's normalized output, the momentum
(batch weight) from the running statistics; a solved value close to a known
framework default is named as that default.

Rules the engine keeps:

* it sees only the case, the inputs and the arrays — never a backend's name;
* alternatives are evaluated only on a mismatch, one at a time, and only those
  that can affect the output in question; each alternative's outputs live in a
  small byte-bounded LRU keyed by (case, inputs, semantics), so the other
  outputs and steps of the same pair reuse them while memory stays bounded on
  large cases (arrays above the budget are recomputed, never all kept).

Entry points: :func:`explain` (the ``EXPLAINER`` hook of :mod:`harness.results`),
:func:`explain_output` (structured result, for tests and tools) and
:func:`localize` (per-stage localization over all rows of one pair).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from harness.semantics import Semantics

# ----------------------------------------------------------------------------------------
# Knowledge: known default values and documentation pointers (text only, no backend logic)

#: eps values that are documented defaults somewhere: value -> who uses it
KNOWN_EPS: dict[float, str] = {
    1e-3: "the Keras / tf.keras BatchNormalization default epsilon=1e-3",
    1e-4: "the tf.nn.fused_batch_norm / FusedBatchNormV3 op default epsilon=1e-4",
    1e-5: "the PyTorch / ONNX default eps=1e-5",
    1e-6: "a common eps=1e-6",
    1e-8: "a common eps=1e-8",
    1e-12: "a common eps=1e-12",
    0.0: "eps=0",
}

#: batch weights w (running = (1-w)*running + w*batch) that are documented defaults
KNOWN_BATCH_WEIGHTS: dict[float, str] = {
    0.1: "PyTorch's default momentum=0.1 (ONNX/Keras-style momentum 0.9)",
    0.01: "Keras' default momentum=0.99 (batch weight 0.01)",
    0.001: "a momentum of 0.999 in the Keras/ONNX direction (batch weight 0.001)",
    0.9: "momentum 0.9 read in the PyTorch direction (batch weight 0.9)",
    0.99: "momentum 0.99 read in the PyTorch direction (batch weight 0.99)",
    0.999: "momentum 0.999 read in the PyTorch direction (batch weight 0.999)",
    0.5: "batch weight 0.5",
    1.0: "running statistics replaced by the batch statistics (batch weight 1, e.g. exponential_avg_factor=1)",
    0.0: "running statistics never updated (batch weight 0)",
}

_DOC_TORCH_BN = "https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html"
_DOC_KERAS_BN = "https://keras.io/api/layers/normalization_layers/batch_normalization/"
_DOC_ONNX_BN = "https://onnx.ai/onnx/operators/onnx__BatchNormalization.html"

#: documentation pointers per knob (value-independent text; the engine never names a backend it ran)
DOCS: dict[str, str] = {
    "normalize_variance": (
        "PyTorch, Keras and ONNX normalize with the biased (population) variance; PyTorch's BatchNorm "
        f"docs: 'calculated via the biased estimator, equivalent to torch.var(input, unbiased=False)' ({_DOC_TORCH_BN})"
    ),
    "running_variance": (
        "PyTorch documents that 'the value stored in the moving average of the variance is calculated via the "
        f"unbiased estimator' ({_DOC_TORCH_BN}); Keras and ONNX BatchNormalization-15 blend the population "
        f"(biased) variance ({_DOC_KERAS_BN}, {_DOC_ONNX_BN})"
    ),
    "momentum_direction": (
        "PyTorch's momentum weights the batch: running = (1-momentum)*running + momentum*batch "
        f"({_DOC_TORCH_BN}); Keras' and ONNX's momentum weights the old value: "
        f"moving = moving*momentum + batch*(1-momentum) ({_DOC_KERAS_BN}, {_DOC_ONNX_BN})"
    ),
    "running_average": f"PyTorch's momentum=None selects a cumulative moving average ({_DOC_TORCH_BN})",
    "momentum_override": (
        f"momentum defaults: PyTorch 0.1 (batch weight), Keras 0.99 and ONNX 0.9 (weight of the old value) "
        f"({_DOC_TORCH_BN}, {_DOC_KERAS_BN}, {_DOC_ONNX_BN})"
    ),
    "eps_override": (
        f"eps defaults: PyTorch and ONNX 1e-5, Keras 1e-3, tf.nn.fused_batch_norm 1e-4 "
        f"({_DOC_TORCH_BN}, {_DOC_KERAS_BN}, {_DOC_ONNX_BN})"
    ),
    "eps_placement": f"PyTorch, Keras and ONNX all add eps inside the square root: (x-mean)/sqrt(var+eps) ({_DOC_ONNX_BN})",
    "train_statistics": (
        "training mode normalizes with the batch statistics and then updates the running ones "
        f"(PyTorch module.train()/eval(), Keras training=True/False) ({_DOC_TORCH_BN}, {_DOC_KERAS_BN})"
    ),
    "eval_statistics": (
        "inference normalizes with the running statistics; batch statistics in inference mean the model was "
        f"left in training mode (PyTorch module.eval(), Keras training=False) ({_DOC_TORCH_BN}, {_DOC_KERAS_BN})"
    ),
    "initial_running": f"running statistics conventionally start at mean 0, variance 1 ({_DOC_TORCH_BN}, {_DOC_KERAS_BN})",
}

# ----------------------------------------------------------------------------------------
# Which knobs can change which output (so irrelevant alternatives are never evaluated)

_PER_CHANNEL = ("batch_mean", "batch_var", "running_mean", "running_var", "inv_std")
#: outputs the reference can produce without normalizing (its cheap statistics-only path)
_STATS = ("batch_mean", "batch_var", "running_mean", "running_var")
_ALL = frozenset(["y", "x_hat", "inv_std", "batch_mean", "batch_var", "running_mean", "running_var", "eval_y"])
_NORM = frozenset(["y", "x_hat", "inv_std"])
_RUN = frozenset(["running_mean", "running_var", "eval_y"])


def _affected(knob: str, mode: str, sem: Semantics) -> frozenset[str]:
    """Outputs a change of ``knob`` can alter (a superset is fine; it only saves work)."""
    if mode == "eval":
        eval_norm = frozenset(["y", "x_hat", "inv_std"])
        if knob in ("eps_override", "eps_placement", "compute_dtype", "arithmetic", "channel_axis_swapped", "eval_statistics"):
            return eval_norm
        if knob == "apply_affine":
            return frozenset(["y"])
        if knob == "initial_running":
            return eval_norm if sem.eval_statistics == "running" else frozenset()
        if knob in ("normalize_variance", "stats_dtype", "variance_algorithm", "stats_summation"):
            return eval_norm if sem.eval_statistics == "batch" else frozenset()
        return frozenset()
    blended = sem.train_statistics != "batch"
    table = {
        "normalize_variance": _NORM | {"batch_var"},
        "running_variance": frozenset(["running_var", "eval_y"]) | (_NORM if blended else frozenset()),
        "momentum_direction": _RUN | (_NORM if blended else frozenset()),
        "running_average": _RUN | (_NORM if blended else frozenset()),
        "momentum_override": _RUN | (_NORM if blended else frozenset()),
        "eps_override": _NORM | {"eval_y"},
        "eps_placement": _NORM | {"eval_y"},
        "train_statistics": _NORM,
        "eval_statistics": frozenset(),
        "variance_algorithm": _ALL,
        "stats_dtype": _ALL,
        "stats_summation": _ALL,
        "arithmetic": frozenset(["y", "x_hat", "eval_y"]),
        "compute_dtype": _NORM | {"eval_y"},
        "channel_axis_swapped": _ALL,
        "apply_affine": frozenset(["y", "eval_y"]),
        "initial_running": _RUN | (_NORM if blended else frozenset()),
    }
    return table.get(knob, _ALL)


def _can_affect(alt: Semantics, base: Semantics, output: str, mode: str) -> bool:
    return any(output in _affected(k, mode, alt) for k in alt.differences(base))


# ----------------------------------------------------------------------------------------
# Reference outputs under alternative semantics: a small byte-bounded LRU


class _ReferenceCache:
    """LRU of reference outputs keyed by (case JSON, inputs identity, semantics).

    Per-channel outputs are small and always kept; full-size arrays (y, x_hat,
    eval_y) only while the cache stays under ``max_bytes``.  An entry keeps its
    ``inputs`` object alive so the identity in the key cannot be reused.
    """

    def __init__(self, max_bytes: int = 192 << 20, max_entries: int = 256):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._d: OrderedDict[tuple, tuple[Any, dict[str, list[np.ndarray]], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.computed = 0  # reference runs (for tests and measurements)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def get(self, case, inputs, sem: Semantics, output: str) -> list[np.ndarray] | None:
        """The ``output`` steps under ``sem``; ``None`` if the reference cannot run this semantics."""
        key = (_case_key(case), id(inputs), sem)
        with self._lock:
            hit = self._d.get(key)
            if hit is not None and output in hit[1]:
                self._d.move_to_end(key)
                return hit[1][output]
            if hit is not None and hit[1].get("__error__") is not None:
                return None
        from harness.oracle import reference_outputs

        self.computed += 1
        stats_only = output in _STATS and case.mode == "train"
        try:
            with np.errstate(all="ignore"):
                out = reference_outputs(case, inputs, sem, statistics_only=stats_only)
        except (ValueError, ZeroDivisionError, FloatingPointError, OverflowError):
            self._store(key, inputs, {"__error__": [np.zeros(0)]})
            return None
        result = out.get(output)
        keep = {k: v for k, v in out.items() if k in _PER_CHANNEL}
        big = {k: v for k, v in out.items() if k not in _PER_CHANNEL}
        for k, v in big.items():
            nb = sum(a.nbytes for a in v)
            if nb * 4 <= self.max_bytes:
                keep[k] = v
        self._store(key, inputs, keep)
        return result

    def _store(self, key, inputs, value: dict) -> None:
        nb = sum(a.nbytes for v in value.values() for a in v)
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._d[key] = (inputs, value, nb)
            self._bytes += nb
            while self._d and (self._bytes > self.max_bytes or len(self._d) > self.max_entries):
                _, (_, _, b) = self._d.popitem(last=False)
                self._bytes -= b


_CACHE = _ReferenceCache()
_CASE_KEYS: "OrderedDict[int, tuple[Any, str]]" = OrderedDict()


_CASE_KEYS_LOCK = threading.Lock()


def _case_key(case) -> str:
    with _CASE_KEYS_LOCK:
        hit = _CASE_KEYS.get(id(case))
        if hit is not None and hit[0] is case:
            return hit[1]
    key = case.model_dump_json()
    with _CASE_KEYS_LOCK:
        _CASE_KEYS[id(case)] = (case, key)
        while len(_CASE_KEYS) > 64:
            _CASE_KEYS.popitem(last=False)
    return key


# ----------------------------------------------------------------------------------------
# Residuals


def _as_f64(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    a = np.asarray(a)
    if a.shape != shape:
        if a.size == int(np.prod(shape)) and a.squeeze().shape == tuple(d for d in shape if d != 1):
            a = a.reshape(shape)
        else:
            return None
    try:
        return a.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        return None


_CHUNK = 1 << 20


def residual(obs: np.ndarray, alt: np.ndarray, atol: float, rtol: float) -> tuple[float, float]:
    """(worst error in units of the tolerance, max abs error) of ``obs`` against ``alt``.

    Same closeness rule as :func:`harness.compare.compare`: ``|o - a| <= atol + rtol*|a|``,
    NaN positions and infinities must agree (a disagreement is ``inf``).  Works in
    chunks so a large array never needs more than a few MiB of temporaries; a chunk
    without NaN/Inf takes the fast path (a handful of passes).
    """
    o = obs.reshape(-1)
    a = alt.reshape(-1)
    worst = 0.0
    max_abs = 0.0
    with np.errstate(all="ignore"):
        for s in range(0, o.size, _CHUNK):
            oc = o[s:s + _CHUNK].astype(np.float64, copy=False)
            ac = a[s:s + _CHUNK]
            d = np.subtract(oc, ac)
            np.abs(d, out=d)
            bound = np.abs(ac)
            bound *= rtol
            bound += atol
            m_abs = float(d.max()) if d.size else 0.0
            if math.isfinite(m_abs) and atol > 0:
                d /= bound
                worst = max(worst, float(d.max()))
                max_abs = max(max_abs, m_abs)
                continue
            # slow path: NaN/Inf somewhere in this chunk (or atol == 0)
            no, na = np.isnan(oc), np.isnan(ac)
            if (no != na).any():
                return math.inf, math.inf
            fin = np.isfinite(oc) & np.isfinite(ac)
            nonfin = ~fin & ~(no | na)
            if nonfin.any() and (oc[nonfin] != ac[nonfin]).any():
                return math.inf, math.inf
            dd = np.abs(oc[fin] - ac[fin])
            bb = bound[fin]
            if dd.size:
                r = np.where(bb > 0, dd / np.where(bb > 0, bb, 1.0), np.where(dd > 0, np.inf, 0.0))
                worst = max(worst, float(r.max()))
                max_abs = max(max_abs, float(dd.max()))
    return worst, max_abs


def _digest(a: np.ndarray) -> str:
    """Exact fingerprint of a small array ("" for large ones: their sampled elements are compared instead)."""
    if a.size > 65536:
        return ""
    return hashlib.blake2b(np.ascontiguousarray(a).view(np.uint8), digest_size=16).hexdigest()


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit the same numbers (NaN = NaN); sampled elements first, so a difference exits early."""
    if a.shape != b.shape:
        return False
    if not np.array_equal(_sketch(a, 1024), _sketch(b, 1024), equal_nan=True):
        return False
    fa, fb = a.reshape(-1), b.reshape(-1)
    for s in range(0, fa.size, _CHUNK):
        if not np.array_equal(fa[s:s + _CHUNK], fb[s:s + _CHUNK], equal_nan=True):
            return False
    return True


def _sketch(a: np.ndarray, n: int = 4096) -> np.ndarray:
    """Evenly spaced elements of ``a`` (all of them when small): to recognise equivalent alternatives."""
    flat = a.reshape(-1)
    if flat.size <= n:
        return flat.astype(np.float64, copy=True)
    return flat[np.linspace(0, flat.size - 1, n).astype(np.int64)].astype(np.float64)


def _same_numbers(a: np.ndarray, b: np.ndarray, tol) -> bool:
    """Two alternatives' outputs agree far inside the tolerance (1/1000 of it): one explanation."""
    if a.shape != b.shape:
        return False
    with np.errstate(all="ignore"):
        na, nb = np.isnan(a), np.isnan(b)
        if (na != nb).any():
            return False
        m = ~na
        return bool(np.all(np.abs(a[m] - b[m]) <= 1e-3 * (tol.atol + tol.rtol * np.abs(a[m]))))


# ----------------------------------------------------------------------------------------
# Candidates


#: kind ranks: structural conventions first, then documented default values, precision, solved values
KIND_RANK = {"structural": 0, "known_value": 1, "precision": 2, "solved_value": 3}


@dataclass
class Candidate:
    """One alternative semantics and how well it reproduces the observed output."""

    semantics: Semantics
    label: str
    kind: str
    note: str = ""  # solver details, e.g. "solved 0.000999 from the per-channel scale"
    score: float = math.inf  # worst error in tolerance units (<= 1: reproduces the output)
    max_abs: float = math.inf
    digest: str = ""
    equivalents: list[str] = field(default_factory=list)
    sketch: np.ndarray | None = field(default=None, repr=False)  # a few thousand elements of its output

    @property
    def n_knobs(self) -> int:
        return self.label.count(",") + 1 if self.label else 0

    @property
    def matches(self) -> bool:
        return self.score <= 1.0

    def rank_key(self) -> tuple:
        return (self.n_knobs, KIND_RANK.get(self.kind, 9), self.score)


@dataclass
class Finding:
    """What the engine found for one mismatching output (one step)."""

    matches: list[Candidate]
    closest: list[Candidate]
    label: str
    text: str
    evaluated: int = 0

    @property
    def explained(self) -> bool:
        return bool(self.matches)


def _precision_variants(base: Semantics, dtype: str) -> list[Semantics]:
    out: list[Semantics] = []
    seen: set[tuple] = set()

    def resolved(s: Semantics) -> tuple:
        r = lambda v: dtype if v == "input" else v  # noqa: E731
        return (s.variance_algorithm, r(s.stats_dtype), s.stats_summation, s.arithmetic, r(s.compute_dtype))

    seen.add(resolved(base))
    combos = []
    for alg in ("two_pass", "one_pass", "one_pass_clamped"):
        for sd in ("float64", "float32", "input"):
            combos.append(dict(variance_algorithm=alg, stats_dtype=sd))
    for alg in ("two_pass", "one_pass"):
        for sd in ("float32", "input"):
            combos.append(dict(variance_algorithm=alg, stats_dtype=sd, stats_summation="sequential"))
    for ar in ("unfolded", "folded"):
        for cd in ("float64", "float32", "input"):
            combos.append(dict(arithmetic=ar, compute_dtype=cd))
    for ch in combos:
        s = base.replace(**ch)
        key = resolved(s)
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
    return out


def single_alternatives(case, base: Semantics) -> list[tuple[Semantics, str]]:
    """The catalog: every alternative that differs from ``base`` in one convention (kind, semantics)."""
    alts: list[tuple[Semantics, str]] = []

    def add(kind: str, **ch) -> None:
        s = base.replace(**ch)
        if s != base:
            alts.append((s, kind))

    flip = {"biased": "unbiased", "unbiased": "biased"}
    add("structural", normalize_variance=flip[base.normalize_variance])
    add("structural", running_variance=flip[base.running_variance])
    w = case.momentum_weight
    if w is not None:
        if abs(w - 0.5) > 1e-12:
            add("structural", momentum_direction="reversed" if base.momentum_direction == "as_given" else "as_given")
        add("structural", running_average="cumulative")
    for p in ("outside_sqrt", "none", "inside_sqrt"):
        add("structural", eps_placement=p)
    if case.mode == "train":
        for t in ("running", "blended", "batch"):
            add("structural", train_statistics=t)
    else:
        add("structural", eval_statistics="batch" if base.eval_statistics == "running" else "running")
    if case.rank >= 3:
        add("structural", channel_axis_swapped=not base.channel_axis_swapped)
    if case.has_affine:
        add("structural", apply_affine=not base.apply_affine)
    add("structural", initial_running="zeros" if base.initial_running == "as_given" else "as_given")
    alts.extend((s, "precision") for s in _precision_variants(base, case.dtype))
    return alts


# --- solvers -------------------------------------------------------------------------------


def _channel_view(a: np.ndarray, channel_axis: int) -> np.ndarray:
    """(C, rest) view of an array in the case layout."""
    return np.moveaxis(a, channel_axis % a.ndim, 0).reshape(a.shape[channel_axis % a.ndim], -1)


def _known_near(value: float, table: dict[float, str], rel: float) -> float | None:
    best, dist = None, math.inf
    for k in table:
        if k == 0.0:
            d = abs(value) if abs(value) < 1e-9 else math.inf
        else:
            d = abs(value - k) / abs(k)
        if d < dist:
            best, dist = k, d
    return best if dist <= rel else None


def solve_eps(case, inputs, sem: Semantics, output: str, step: int, obs: np.ndarray) -> tuple[float | None, str]:
    """The eps that makes the reference (under ``sem``) reproduce ``obs``'s per-channel scale.

    From the normalized output: per channel, the least-squares factor ``r`` between
    the backend's ``x_hat`` (``(y - beta) / gamma``) and the reference's gives the
    backend's ``inv_std = r * inv_std_ref``; eps = 1/inv_std² - var.  Returns
    (eps or None, how it was found).
    """
    if output not in ("y", "x_hat", "inv_std", "eval_y") or sem.eps_placement != "inside_sqrt":
        return None, ""
    if case.mode == "train" and sem.train_statistics != "batch" and output != "eval_y":
        return None, ""
    if output == "eval_y" and (sem.channel_axis_swapped or case.mode != "train"):
        return None, ""
    eps0 = float(sem.eps_override if sem.eps_override is not None else case.eps)
    if output == "eval_y":
        # inference on the last batch with the final running statistics
        rm_steps = _CACHE.get(case, inputs, sem, "running_mean")
        rv_steps = _CACHE.get(case, inputs, sem, "running_var")
        if rm_steps is None or rv_steps is None:
            return None, ""
        x_last = np.asarray(inputs.x[-1], np.float64)
        shape = [1] * x_last.ndim
        shape[case.channel_axis % x_last.ndim] = -1
        with np.errstate(all="ignore"):
            inv_ref = 1.0 / np.sqrt(rv_steps[-1] + eps0)
        xr_fn = lambda: (x_last - rm_steps[-1].reshape(shape)) * inv_ref.reshape(shape)  # noqa: E731
    else:
        inv_ref_steps = _CACHE.get(case, inputs, sem, "inv_std")
        if inv_ref_steps is None:
            return None, ""
        inv_ref = inv_ref_steps[step - 1]

        def xr_fn():
            xr_steps = _CACHE.get(case, inputs, sem, "x_hat")
            return None if xr_steps is None else xr_steps[step - 1]
    with np.errstate(all="ignore"):
        if output == "inv_std":
            o = _as_f64(obs, inv_ref.shape)
            if o is None:
                return None, ""
            r = o / inv_ref
        else:
            xr = xr_fn()
            if xr is None:
                return None, ""
            o = _as_f64(obs, xr.shape)
            if o is None:
                return None, ""
            ax = case.channel_axis
            if output in ("y", "eval_y") and case.has_affine and sem.apply_affine:
                g = np.asarray(inputs.gamma, np.float64)
                b = np.asarray(inputs.beta, np.float64)
                shape = [1] * o.ndim
                shape[ax % o.ndim] = -1
                o = (o - b.reshape(shape)) / np.where(g == 0, np.nan, g).reshape(shape)
            oc, rc = _channel_view(o, ax), _channel_view(xr, ax)
            fin = np.isfinite(oc) & np.isfinite(rc)
            num = np.where(fin, oc * rc, 0.0).sum(axis=1)
            den = np.where(fin, rc * rc, 0.0).sum(axis=1)
            r = np.where(den > 0, num / den, np.nan)
        var_used = 1.0 / (inv_ref * inv_ref) - eps0
        eps_c = 1.0 / (r * inv_ref) ** 2 - var_used
    eps_c = eps_c[np.isfinite(eps_c)]
    if eps_c.size == 0:
        return None, ""
    est = float(np.median(eps_c))
    if not est > 0:
        return None, ""
    spread = float(np.max(np.abs(eps_c - est))) / est
    if spread > 0.05:
        return None, ""
    how = f"solved eps = {est:.6g} from the per-channel scale of the normalized output"
    if eps_c.size > 1:
        how += f" ({eps_c.size} channels agree within {100 * spread:.2g}%)"
    return est, how


def _batch_stats(case, inputs, sem: Semantics, k: int):
    """Per-channel (mean, var used for the running update) of step ``k`` under ``sem``."""
    from references.batchnorm import batch_statistics

    from harness.inputs import np_dtype

    x = inputs.x[k - 1]
    ax = case.channel_axis
    if sem.channel_axis_swapped:
        ax = -1 if ax % x.ndim == 1 else 1
    with np.errstate(all="ignore"):
        mean, vb, vu, _m = batch_statistics(x, ax, sem, np_dtype(case.dtype))
    return mean, (vb if sem.running_variance == "biased" else vu)


def solve_momentum(case, inputs, sem: Semantics, output: str, step: int, obs: np.ndarray) -> tuple[float | None, str]:
    """The constant batch weight w that reproduces ``obs`` (running_mean/var after ``step``)."""
    if output not in ("running_mean", "running_var") or case.mode != "train":
        return None, ""
    C = case.channels
    o = _as_f64(obs, (C,))
    if o is None or not np.isfinite(o).any():
        return None, ""
    init = np.asarray(inputs.running_mean if output == "running_mean" else inputs.running_var, np.float64).copy()
    if sem.initial_running == "zeros":
        init[:] = 0.0
    stats = []
    for k in range(1, step + 1):
        mean, var_run = _batch_stats(case, inputs, sem, k)
        stats.append(mean if output == "running_mean" else var_run)

    def sim(w: float) -> np.ndarray:
        r = init.copy()
        for s in stats:
            r = (1.0 - w) * r + w * s
        return r

    fin = np.isfinite(o)
    with np.errstate(all="ignore"):
        if step == 1:
            d = stats[0] - init
            m = fin & np.isfinite(d)
            den = float((d[m] ** 2).sum())
            if den <= 0:
                return None, ""
            w = float(((o[m] - init[m]) * d[m]).sum() / den)
        else:
            def loss(w: float) -> float:
                v = sim(w)[fin] - o[fin]
                return float(np.nansum(v * v))

            grid = np.linspace(0.0, 1.0, 401)
            losses = [loss(g) for g in grid]
            i = int(np.nanargmin(losses))
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            phi = (math.sqrt(5) - 1) / 2
            a, b = lo, hi
            c, d2 = b - phi * (b - a), a + phi * (b - a)
            for _ in range(80):
                if loss(c) < loss(d2):
                    b = d2
                else:
                    a = c
                c, d2 = b - phi * (b - a), a + phi * (b - a)
            w = (a + b) / 2
    if not (math.isfinite(w) and -1e-6 <= w <= 1 + 1e-6):
        return None, ""
    w = min(max(w, 0.0), 1.0)
    return w, f"solved batch weight w = {w:.6g} from {output} after step {step}"


def solved_alternatives(case, inputs, sem: Semantics, output: str, step: int, obs: np.ndarray) -> list[tuple[Semantics, str, str]]:
    """Alternatives with a numeric knob solved from ``obs`` (semantics, kind, note), on top of ``sem``."""
    out: list[tuple[Semantics, str, str]] = []
    eps, how = solve_eps(case, inputs, sem, output, step, obs)
    if eps is not None:
        near = _known_near(eps, KNOWN_EPS, 0.25)
        cur = float(sem.eps_override if sem.eps_override is not None else case.eps)
        if near is not None and near != cur and near > 0:
            out.append((sem.replace(eps_override=near), "known_value", f"{how}; {near:g} is {KNOWN_EPS[near]}"))
        rounded = float(f"{eps:.4g}")
        if near is None or abs(rounded - near) > 1e-3 * near:
            if abs(rounded - cur) > 1e-6 * cur:
                out.append((sem.replace(eps_override=rounded), "solved_value", how))
    w, how = solve_momentum(case, inputs, sem, output, step, obs)
    if w is not None and case.momentum_weight is not None:
        # the case's momentum held in float32 (either direction): 0.1 -> float32(0.1), or 1 - float32(0.9)
        cw = float(case.momentum_weight)
        for w32, form in ((float(np.float32(cw)), f"float32({cw:g})"),
                          (1.0 - float(np.float32(1.0 - cw)), f"1 − float32({1 - cw:g})")):
            if w32 != cw and abs(w - w32) < abs(w - cw) and abs(w - w32) <= 0.5 * abs(w32 - cw):
                out.append((sem.replace(momentum_direction="as_given", running_average="exponential",
                                        momentum_override=w32),
                            "known_value", f"{how}; {w32!r} = {form}: the momentum held in float32"))
    if w is not None:
        cur = case.momentum_weight
        near = _known_near(w, KNOWN_BATCH_WEIGHTS, 0.05)
        base = sem.replace(momentum_direction="as_given", running_average="exponential")
        if near is not None and (cur is None or abs(near - cur) > 1e-12):
            out.append((base.replace(momentum_override=near), "known_value", f"{how}; {near:g} is {KNOWN_BATCH_WEIGHTS[near]}"))
        rounded = float(f"{w:.4g}")
        if near is None or abs(rounded - near) > 1e-3 * max(near, 1e-3):
            if cur is None or abs(rounded - cur) > 1e-9:
                out.append((base.replace(momentum_override=rounded), "solved_value", how))
    return out


# ----------------------------------------------------------------------------------------
# Texts


def _num(v: float) -> str:
    """Shortest text that still tells ``v`` apart from its neighbours (0.1, but 0.10000002384185791)."""
    s = f"{v:g}"
    return s if float(s) == v else repr(float(v))


def _m(case) -> int:
    return int(np.prod(case.shape)) // case.channels if case.channels else 0


def describe_change(case, base: Semantics, alt: Semantics, output: str) -> str:
    """One clause per changed knob, with the numbers that follow from the case."""
    m = _m(case)
    parts: list[str] = []
    w = case.momentum_weight
    for knob, val in alt.differences(base).items():
        if knob == "normalize_variance":
            if val == "unbiased":
                s = f"normalizes with the unbiased variance (divides by m−1 = {m - 1}, not m = {m})"
                if m > 1:
                    if output == "batch_var":
                        s += f": batch variance scaled by {m}/{m - 1} = {m / (m - 1):.6f}"
                    elif output in ("y", "x_hat", "inv_std"):
                        s += f": output scaled by √({m - 1}/{m}) = {math.sqrt((m - 1) / m):.6f} where var ≫ eps"
            else:
                s = f"normalizes with the biased variance (divides by m = {m}, not m−1 = {m - 1})"
                if m > 1 and output in ("y", "x_hat", "inv_std"):
                    s += f": output scaled by √({m}/{m - 1}) = {math.sqrt(m / (m - 1)):.6f} where var ≫ eps"
            parts.append(s)
        elif knob == "running_variance":
            if val == "unbiased":
                parts.append(f"updates the running variance with the unbiased batch variance (divides by m−1 = {m - 1}, "
                             f"not m = {m}): the batch term is scaled by {m}/{m - 1} = {m / max(m - 1, 1):.6f}")
            else:
                parts.append(f"updates the running variance with the biased batch variance (divides by m = {m}, "
                             f"not m−1 = {m - 1}): the batch term is scaled by {m - 1}/{m} = {(m - 1) / max(m, 1):.6f}")
        elif knob == "momentum_direction":
            if w is not None:
                parts.append(f"weights the running average the other way round: batch weight {1 - w:g} instead of {w:g} "
                             f"(running = {w:g}·running + {1 - w:g}·batch, not {1 - w:g}·running + {w:g}·batch): "
                             f"the momentum {w:g} was read as the weight of the old value")
            else:
                parts.append("weights the running average the other way round")
        elif knob == "running_average":
            if val == "cumulative":
                parts.append(f"keeps a cumulative average (batch weight 1/k at step k) instead of the exponential one with batch weight {w:g}")
            else:
                parts.append("keeps an exponential moving average instead of the cumulative one")
        elif knob == "momentum_override":
            cur = "a cumulative average (1/k)" if w is None else f"{w:.12g}"
            name = KNOWN_BATCH_WEIGHTS.get(float(val))
            parts.append(f"updates the running statistics with batch weight {_num(val)} instead of {cur}"
                         + (f" ({name})" if name else ""))
        elif knob == "eps_override":
            name = KNOWN_EPS.get(float(val))
            parts.append(f"uses eps = {val:g} instead of {case.eps:g}" + (f" ({name})" if name else ""))
        elif knob == "eps_placement":
            parts.append({"outside_sqrt": "adds eps outside the square root: (x−mean)/(√var + eps)",
                          "none": "adds no eps: (x−mean)/√var",
                          "inside_sqrt": "adds eps inside the square root: (x−mean)/√(var + eps)"}[val])
        elif knob == "train_statistics":
            parts.append({"running": "normalizes a training batch with the running statistics (inference behaviour in training mode)",
                          "blended": "updates the running statistics first and normalizes the training batch with the updated ones",
                          "batch": "normalizes the training batch with its own statistics"}[val])
        elif knob == "eval_statistics":
            parts.append("normalizes in inference mode with the batch's own statistics instead of the running ones "
                         "(left in training mode)" if val == "batch" else "normalizes in inference mode with the running statistics")
        elif knob == "variance_algorithm":
            parts.append({"one_pass": "computes the variance in one pass as E[x²]−E[x]² (not clamped at 0)",
                          "one_pass_clamped": "computes the variance in one pass as max(E[x²]−E[x]², 0)",
                          "two_pass": "computes the variance in two passes, mean((x−mean)²)"}[val])
        elif knob == "stats_dtype":
            dt = case.dtype if val == "input" else val
            parts.append(f"accumulates the batch statistics in {dt}")
        elif knob == "stats_summation":
            parts.append("sums one element at a time (a sequential loop over N, then the spatial positions) "
                         "instead of pairwise" if val == "sequential" else "sums pairwise")
        elif knob == "arithmetic":
            parts.append("applies a folded affine x·a + b (a = γ/√(var+eps), b = β − mean·a)" if val == "folded"
                         else "applies the affine unfolded, γ·(x−mean)/√(var+eps) + β")
        elif knob == "compute_dtype":
            dt = case.dtype if val == "input" else val
            parts.append(f"normalizes in {dt} arithmetic")
        elif knob == "channel_axis_swapped":
            parts.append("computes the statistics over the wrong axis ("
                         + ("channels-first data read as channels-last" if case.layout == "channels_first"
                            else "channels-last data read as channels-first") + ")")
        elif knob == "apply_affine":
            parts.append("ignores gamma/beta (no affine transform)" if val is False else "applies gamma/beta")
        elif knob == "initial_running":
            parts.append("starts the running statistics at mean 0 and variance 0 instead of the given initial values"
                         if val == "zeros" else "starts from the given initial running statistics")
        else:
            parts.append(f"{knob}={val}")
    return "; ".join(parts)


def _docs_for(base: Semantics, alt: Semantics) -> str:
    keys = [k for k in alt.differences(base) if k in DOCS]
    return " ".join(f"[{DOCS[k]}]" for k in keys)


def _fmt_tol(tol) -> str:
    return f"tolerance atol {tol.atol:g} + rtol {tol.rtol:g}·|expected|"


def _explained_text(case, base: Semantics, best: Candidate, others: list[Candidate], output: str,
                    tol, plain_max_abs: float) -> str:
    text = describe_change(case, base, best.semantics, output)
    if best.note:
        text += f" ({best.note})"
    text += (f"; residual after this correction {best.max_abs:.2g} (max {best.score:.2g}× the {_fmt_tol(tol)}), "
             f"error without it {plain_max_abs:.3g}")
    if best.equivalents:
        text += f"; indistinguishable on this output from {', '.join(best.equivalents)}"
    if others:
        text += "; also consistent: " + ", ".join(f"{c.label} (residual {c.max_abs:.2g})" for c in others[:3])
    docs = _docs_for(base, best.semantics)
    if docs:
        text += f". {docs}"
    return text


# --- the shape of an unexplained error -------------------------------------------------------


def _close(o: np.ndarray, e: np.ndarray, tol) -> bool:
    with np.errstate(all="ignore"):
        return bool(np.all(np.abs(o - e) <= tol.atol + tol.rtol * np.abs(e)))


def error_shape(case, output: str, obs: np.ndarray, exp: np.ndarray, tol) -> str:
    """What the error looks like: NaN/Inf positions, uniform/per-channel scale or offset,
    permuted channels, a few elements, or spread over the array."""
    e = np.asarray(exp, np.float64)
    o = _as_f64(obs, e.shape)
    if o is None:
        return f"shape {tuple(np.shape(obs))} instead of {e.shape}"
    parts: list[str] = []
    with np.errstate(all="ignore"):
        bad_nan = np.isnan(o) != np.isnan(e)
        bad_inf = (np.isinf(o) | np.isinf(e)) & ~(np.isnan(o) | np.isnan(e)) & (o != e)
        nonfin = bad_nan | bad_inf
        if nonfin.any():
            idx = [list(map(int, i)) for i in np.argwhere(nonfin)[:5]]
            kinds = []
            if bad_nan.any():
                kinds.append(f"{int(bad_nan.sum())} NaN where finite values were expected" if np.isnan(o).sum() > np.isnan(e).sum()
                             else f"NaN positions differ at {int(bad_nan.sum())} elements")
            if bad_inf.any():
                kinds.append(f"Inf/sign differs at {int(bad_inf.sum())} elements")
            parts.append("; ".join(kinds) + f" (first at {idx})")
        fin = np.isfinite(o) & np.isfinite(e)
        bad = fin & (np.abs(o - e) > tol.atol + tol.rtol * np.abs(e))
        n_bad, total = int(bad.sum()), int(e.size)
        if n_bad == 0:
            return "; ".join(parts) if parts else "no finite element is out of tolerance"
        of, ef = o[fin], e[fin]
        if fin.all():
            # uniform scale (includes a sign flip)
            den = float((ef * ef).sum())
            if den > 0:
                k = float((of * ef).sum() / den)
                if _close(of, k * ef, tol):
                    if abs(k + 1) < 1e-3:
                        parts.append("the sign is flipped (observed = −expected)")
                    elif abs(k) < 1e-3:
                        parts.append(f"the output is (nearly) all zeros (max |observed| {float(np.abs(of).max()):.3g})")
                    else:
                        parts.append(f"a uniform scale: observed ≈ {_factor(k)} × expected")
                    return "; ".join(parts)
            d = float(np.mean(of - ef))
            if _close(of, ef + d, tol):
                parts.append(f"a uniform offset: observed ≈ expected {'+' if d >= 0 else '−'} {abs(d):.6g}")
                return "; ".join(parts)
            if output not in _PER_CHANNEL and e.ndim >= 2:
                ax = case.channel_axis
                oc, ec = _channel_view(o, ax), _channel_view(e, ax)
                den_c = (ec * ec).sum(axis=1)
                k_c = np.where(den_c > 0, (oc * ec).sum(axis=1) / np.where(den_c > 0, den_c, 1), 1.0)
                if _close(oc, ec * k_c[:, None], tol):
                    parts.append(f"a per-channel scale: factors {_short(k_c)}")
                    return "; ".join(parts)
                d_c = (oc - ec).mean(axis=1)
                if _close(oc, ec + d_c[:, None], tol):
                    parts.append(f"a per-channel offset: {_short(d_c)}")
                    return "; ".join(parts)
                perm = _channel_permutation(oc, ec, tol)
                if perm is not None:
                    moved = [(i, j) for i, j in enumerate(perm) if i != j]
                    parts.append("permuted channels: observed channel ← expected channel "
                                 + ", ".join(f"{i}←{j}" for i, j in moved[:8]) + (" …" if len(moved) > 8 else ""))
                    return "; ".join(parts)
            elif output in _PER_CHANNEL and e.ndim == 1 and e.size > 1:
                perm = _channel_permutation(o[:, None], e[:, None], tol)
                if perm is not None:
                    moved = [(i, j) for i, j in enumerate(perm) if i != j]
                    parts.append("permuted channels: " + ", ".join(f"{i}←{j}" for i, j in moved[:8]))
                    return "; ".join(parts)
        if n_bad <= max(3, total // 1000):
            idx = np.argwhere(bad)[:5]
            items = ", ".join(f"{list(map(int, i))}: {o[tuple(i)]:.6g} vs {e[tuple(i)]:.6g}" for i in idx)
            parts.append(f"only {n_bad} of {total} elements are off ({items})")
        else:
            err = np.abs(of - ef)
            rel = float(np.sqrt(np.mean((of - ef) ** 2)) / max(float(np.sqrt(np.mean(ef * ef))), 1e-300))
            parts.append(f"spread over {n_bad} of {total} elements ({100 * n_bad / total:.3g}%), no uniform or "
                         f"per-channel pattern; max abs error {float(err.max()):.3g}, relative RMS error {rel:.3g}")
    return "; ".join(parts)


def _factor(k: float) -> str:
    """A scale factor, with its distance from 1 when it would print as 1."""
    if k != 1 and abs(k - 1) < 1e-4:
        return f"(1 {'+' if k > 1 else '−'} {abs(k - 1):.3g})"
    return f"{k:.6g}"


def _short(v: np.ndarray, n: int = 4) -> str:
    s = ", ".join(f"{x:.6g}" for x in v[:n])
    return f"[{s}{', …' if v.size > n else ''}]"


def _channel_permutation(oc: np.ndarray, ec: np.ndarray, tol) -> list[int] | None:
    C = oc.shape[0]
    if C < 2 or C > 4096:
        return None
    perm: list[int] = []
    used: set[int] = set()
    for i in range(C):
        found = None
        for j in range(C):
            if j not in used and _close(oc[i], ec[j], tol):
                found = j
                break
        if found is None:
            return None
        perm.append(found)
        used.add(found)
    return None if perm == list(range(C)) else perm


# ----------------------------------------------------------------------------------------
# The search


#: how many of the closest single alternatives are combined into pairs when none matches
PAIR_TOP_K = 4
#: an alternative "moves towards" the backend's output when it leaves at most this fraction of the error
REDUCES = 0.9
#: a single alternative leaving at most this many tolerances is combined with every precision variant
NEAR_MISS = 100.0


def _pair_kind(*kinds: str) -> str:
    for k in ("solved_value", "precision", "known_value"):
        if k in kinds:
            return k
    return "structural"


def _pairs(singles: list[Candidate], base: Semantics, plain_max_abs: float, evaluate, solve,
           precision_sems: list[Semantics] = ()) -> list[Candidate]:
    """Two-knob alternatives, tried only when some single alternative moves the output towards the
    backend's (leaves at most ``REDUCES`` of the error): a pure fault (noise, a flipped sign) costs nothing.

    * pairs among the ``PAIR_TOP_K`` closest such alternatives;
    * each of the two closest combined with every structural alternative;
    * the closest, when within ``NEAR_MISS``× the tolerance, with every precision variant;
    * numeric knobs (eps, momentum) re-solved on top of every structural alternative.
    """
    reducing = sorted((c for c in singles if math.isfinite(c.score) and c.max_abs < REDUCES * plain_max_abs),
                      key=lambda c: c.score)
    if not reducing:
        return []
    structural = [c for c in singles if c.kind == "structural"]
    out: list[Candidate] = []
    precision = [Candidate(p, "", "precision") for p in precision_sems]

    def combine(a: Candidate, b: Candidate) -> None:
        da, db = a.semantics.differences(base), b.semantics.differences(base)
        if not da or not db or set(da) & set(db):
            return
        c = evaluate(a.semantics.replace(**db), _pair_kind(a.kind, b.kind))
        if c is not None:
            out.append(c)

    top = reducing[:PAIR_TOP_K]
    for i, a in enumerate(top):
        for b in top[i + 1:]:
            combine(a, b)
    for a in top[:2]:
        for b in structural:
            combine(a, b)
    # a near miss (within NEAR_MISS× the tolerance): the rest may be working precision
    if top[0].score <= NEAR_MISS:
        for b in precision:
            combine(top[0], b)
    for a in structural:
        for s, kind, note in solve(a.semantics):
            if len(s.differences(base)) == 2:
                c = evaluate(s, _pair_kind(kind, a.kind), note)
                if c is not None:
                    out.append(c)
    return out


def explain_output(case, inputs, output: str, step: int, observed: np.ndarray,
                   expected: np.ndarray | None = None, tol=None, memory: list | None = None) -> Finding:
    """Search the catalog for conventions that reproduce ``observed`` (``output`` at 1-based ``step``).

    ``memory`` is the list of conventions that explained earlier outputs *of the same case ×
    backend pair* (the caller keeps one list per pair, so nothing leaks between backends and the
    result does not depend on which backends ran before); ``None``: no recall.
    """
    base = case.semantics
    if tol is None:
        from harness.results import tolerance_for

        tol = tolerance_for(case, output)
    if expected is None:
        exp_steps = _CACHE.get(case, inputs, base, output)
        expected = exp_steps[step - 1]
    expected = np.asarray(expected, np.float64)
    obs = _as_f64(np.asarray(observed), expected.shape)
    if obs is None:
        return Finding([], [], "", f"observed shape {tuple(np.shape(observed))} differs from the expected "
                       f"{expected.shape}: no convention explains a shape change", 0)
    _, plain_max_abs = residual(obs, expected, tol.atol, tol.rtol)
    tried: dict[Semantics, Candidate] = {}
    evaluated = 0
    singles_recalled: list[Candidate] = []
    pairs_recalled: list[Candidate] = []

    def evaluate(sem: Semantics, kind: str, note: str = "") -> Candidate | None:
        nonlocal evaluated
        if sem in tried:
            return tried[sem]
        if sem == base or not _can_affect(sem, base, output, case.mode):
            return None
        alt_steps = _CACHE.get(case, inputs, sem, output)
        evaluated += 1
        if alt_steps is None or len(alt_steps) < step:
            tried[sem] = None  # type: ignore[assignment]
            return None
        alt = alt_steps[step - 1]
        if alt.shape != expected.shape:
            tried[sem] = None  # type: ignore[assignment]
            return None
        if _identical(alt, expected):  # no effect on this output: cannot explain a difference
            tried[sem] = None  # type: ignore[assignment]
            return None
        dg = _digest(alt)
        score, max_abs = residual(obs, alt, tol.atol, tol.rtol)
        c = Candidate(sem, sem.label(base), kind, note, score, max_abs, dg, sketch=_sketch(alt) if score <= 1.0 else None)
        tried[sem] = c
        return c

    # conventions that explained other outputs of this case (e.g. the momentum solved from running_mean,
    # tried again on eval_y, where it cannot be solved directly)
    for sem_r, kind_r, note_r, src in (list(memory) if memory is not None else []):
        if sem_r.differences(base) and len(sem_r.differences(base)) <= 3:
            c = evaluate(sem_r, kind_r, (note_r + "; " if note_r else "") + f"the convention found for {src}")
            if c is not None:
                (singles_recalled if c.n_knobs == 1 else pairs_recalled).append(c)
    # structural conventions and solved values first; when one of them reproduces the output no
    # precision variant can outrank it (ranking: fewest knobs, then kind, then residual): skip those
    catalog = single_alternatives(case, base)
    singles = singles_recalled + [c for s, kind in catalog if kind == "structural" and (c := evaluate(s, kind)) is not None]
    for s, kind, note in solved_alternatives(case, inputs, base, output, step, obs):
        c = evaluate(s, kind, note)
        if c is not None:
            singles.append(c)
    if not any(c.matches and c.kind in ("structural", "known_value") for c in singles):
        singles += [c for s, kind in catalog if kind != "structural" and (c := evaluate(s, kind)) is not None]
    cands = list(singles) + pairs_recalled
    if not any(c.matches for c in singles):
        cands += _pairs(singles, base, plain_max_abs, evaluate,
                        lambda sem: solved_alternatives(case, inputs, sem, output, step, obs),
                        [s for s, kind in catalog if kind == "precision"])
    cands = [c for c in {id(c): c for c in cands}.values()]
    matches = sorted((c for c in cands if c.matches), key=Candidate.rank_key)
    # alternatives that produce the identical output are one explanation
    grouped: list[Candidate] = []
    for c in matches:
        same = next((g for g in grouped if (g.digest and g.digest == c.digest) or _same_numbers(g.sketch, c.sketch, tol)), None)
        if same is not None:
            same.equivalents.append(c.label)
        else:
            grouped.append(c)
    closest = sorted((c for c in cands if not c.matches and c.max_abs < REDUCES * plain_max_abs),
                     key=lambda c: (c.score, c.rank_key()))[:3]
    if grouped:
        best = grouped[0]
        _remember(memory, best, f"{output}" + (f" step {step}" if case.steps > 1 and output != "eval_y" else ""))
        text = _explained_text(case, base, best, grouped[1:], output, tol, plain_max_abs)
        return Finding(grouped, closest, best.label, text, evaluated)
    shape = error_shape(case, output, obs, expected, tol)
    if not closest:
        text = (f"no convention of the catalog reproduces it: none of the {evaluated} alternatives tried "
                f"reduces the error (so no pairs were tried); the error is {shape}")
    else:
        text = f"no single convention or pair of conventions reproduces it; the error is {shape}"
        text += f"; closest alternatives (error without any: {plain_max_abs:.3g}): " + ", ".join(
            f"{c.label} (leaves {c.max_abs:.3g}, {c.score:.3g}× tolerance)" if math.isfinite(c.score)
            else f"{c.label} (NaN/Inf positions differ)" for c in closest)
    return Finding([], closest, "", text, evaluated)


def _remember(memory: list | None, c: Candidate, where: str) -> None:
    """Keep a convention that explained an output, for the later outputs of the same pair."""
    if memory is None:
        return
    if all(sm != c.semantics for sm, *_ in memory):
        memory.append((c.semantics, c.kind, c.note, where))
        del memory[:-8]


def explain(case, inputs, output: str, step: int, observed: np.ndarray, expected: np.ndarray, tol,
            memory: list | None = None) -> tuple[str, str] | None:
    """The :data:`harness.results.EXPLAINER` hook: (label, text); label ``""`` = still a mismatch.

    ``memory``: one list per case × backend pair (see :func:`explain_output`).
    """
    try:
        f = explain_output(case, inputs, output, step, observed, expected, tol, memory)
    except Exception as e:  # the engine must never turn a result into a crash
        return "", f"explanation engine failed: {type(e).__name__}: {e}"
    return f.label, f.text


# ----------------------------------------------------------------------------------------
# Per-stage localization over one pair's rows

#: dataflow order of the stages a backend may expose
STAGES = ("batch_mean", "batch_var", "inv_std", "x_hat", "y", "running_mean", "running_var", "eval_y")


def localize(case, rows: Sequence[Any]) -> str:
    """Which stage diverges first; appended to the pair's non-pass rows' ``explanation_text``.

    Works on the rows' outcomes only (one per output and step), so it needs no
    arrays; a pair with fewer than two stages gets nothing.  Returns the text.
    """
    per = [r for r in rows if getattr(r, "output", "") in STAGES and getattr(r, "step", None)]
    stages = {r.output for r in per}
    if len(stages) < 2:
        return ""
    bad = [r for r in per if r.outcome in ("mismatch", "explained")]
    if not bad:
        return ""
    first_step = min(r.step for r in bad)
    at = {r.output: r.outcome for r in per if r.step == first_step}
    order = [s for s in STAGES if s in at]
    first = next(s for s in order if at[s] != "pass")
    agree = [s for s in order[: order.index(first)] if at[s] == "pass"]
    later = [s for s in order[order.index(first) + 1:] if at[s] != "pass"]
    text = f"first diverging stage: {first} (step {first_step})"
    if agree:
        text += f"; agree before it: {', '.join(agree)}"
    if later:
        text += f"; also differ: {', '.join(later)}"
    for r in bad:
        r.explanation_text = f"{r.explanation_text} [{text}]" if r.explanation_text else f"[{text}]"
    # a reported batch variance "explained" by the normalization estimator while y agrees at that step:
    # the backend normalizes as the case asks and only reports another estimator
    outcome_at = {(r.output, r.step): r.outcome for r in per}
    for r in bad:
        if r.output == "batch_var" and "normalize_variance=" in (r.explanation or "") and outcome_at.get(("y", r.step)) == "pass":
            est = r.explanation.split("normalize_variance=")[1].split(",")[0]
            r.explanation_text += (f" [y agrees at step {r.step}: the normalization itself follows the case; only the "
                                   f"reported batch variance is the {est} one (often the estimator of the running update)]")
    return text
