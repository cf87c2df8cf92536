"""The knob catalog, as data: one :class:`Knob` entry per convention the engine can name.

Each entry says which alternative values the search tries (``alternatives``), whether
they are discrete conventions, documented default values or numbers solved from the
data (``kind``), which outputs a change can alter (``affects``), how to say it with the
case's numbers (``describe``) and where the convention is documented (``docs``).
Adding a knob is one entry here plus its field in :class:`normconf.semantics.Semantics`
and its meaning in the reference.

Precision (working dtype, variance algorithm, summation order, folded/FMA arithmetic)
is *not* in this catalog: it is judged by derived error bounds (:mod:`.bounds`), never
by emulating one summation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from normconf.references.batchnorm import OUTPUT_NAMES
from normconf.semantics import Semantics

#: eps values that are documented defaults somewhere: value -> who uses it
KNOWN_EPS: dict[float, str] = {
    1e-3: "the Keras / tf.keras BatchNormalization default epsilon=1e-3",
    1e-4: "the tf.nn.fused_batch_norm / FusedBatchNormV3 op default epsilon=1e-4",
    1e-5: "the PyTorch / ONNX default eps=1e-5 (also cuDNN's minimum CUDNN_BN_MIN_EPSILON)",
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
_DOC_CUDNN = "https://docs.nvidia.com/deeplearning/cudnn/api/cudnn-ops-library.html (CUDNN_BN_MIN_EPSILON)"

#: output groups
ALL = frozenset(OUTPUT_NAMES)
NORM = frozenset(["y", "x_hat", "inv_std"])
RUN = frozenset(["running_mean", "running_var", "eval_y"])
NONE: frozenset[str] = frozenset()


def _m(case) -> int:
    return int(np.prod(case.shape)) // case.channels if case.channels else 0


def _num(v: float) -> str:
    """Shortest text that still tells ``v`` apart from its neighbours (0.1, but 0.10000002384185791)."""
    s = f"{v:g}"
    return s if float(s) == v else repr(float(v))


def _blended(sem: Semantics) -> bool:
    return sem.train_statistics != "batch"


@dataclass(frozen=True)
class Knob:
    """One convention: its alternatives, what it can change, how to say it."""

    name: str
    #: "structural" (a discrete convention), "known_value" (a documented default number),
    #: "solved_value" (a number solved from the data; must be corroborated)
    kind: str
    #: (case, base semantics) -> alternative values to try in the search (solved knobs: none)
    alternatives: Callable[[Any, Semantics], list]
    #: (mode, semantics) -> outputs that a change of this knob can alter (a superset is fine)
    affects: Callable[[str, Semantics], frozenset]
    #: (case, value, output) -> one clause with the numbers that follow from the case
    describe: Callable[[Any, Any, str], str]
    docs: str = ""


def _flip(v: str) -> str:
    return {"biased": "unbiased", "unbiased": "biased"}[v]


def _describe_normalize(case, val, output) -> str:
    m = _m(case)
    if val == "unbiased":
        s = f"normalizes with the unbiased variance (divides by m−1 = {m - 1}, not m = {m})"
        if m > 1:
            if output == "batch_var":
                s += f": batch variance scaled by {m}/{m - 1} = {m / (m - 1):.6f}"
            elif output in ("y", "x_hat", "inv_std"):
                s += f": output scaled by √({m - 1}/{m}) = {math.sqrt((m - 1) / m):.6f} where var ≫ eps"
        return s
    s = f"normalizes with the biased variance (divides by m = {m}, not m−1 = {m - 1})"
    if m > 1 and output in ("y", "x_hat", "inv_std"):
        s += f": output scaled by √({m}/{m - 1}) = {math.sqrt(m / (m - 1)):.6f} where var ≫ eps"
    return s


def _describe_running_var(case, val, output) -> str:
    m = _m(case)
    if val == "unbiased":
        return (
            f"updates the running variance with the unbiased batch variance (divides by m−1 = {m - 1}, "
            f"not m = {m}): the batch term is scaled by {m}/{m - 1} = {m / max(m - 1, 1):.6f}"
        )
    return (
        f"updates the running variance with the biased batch variance (divides by m = {m}, "
        f"not m−1 = {m - 1}): the batch term is scaled by {m - 1}/{m} = {(m - 1) / max(m, 1):.6f}"
    )


def _describe_direction(case, val, output) -> str:
    w = case.momentum_weight
    if w is None:
        return "weights the running average the other way round"
    return (
        f"weights the running average the other way round: batch weight {1 - w:g} instead of {w:g} "
        f"(running = {w:g}·running + {1 - w:g}·batch, not {1 - w:g}·running + {w:g}·batch): "
        f"the momentum {w:g} was read as the weight of the old value"
    )


def _describe_momentum(case, val, output) -> str:
    w = case.momentum_weight
    cur = "a cumulative average (1/k)" if w is None else f"{w:.12g}"
    name = KNOWN_BATCH_WEIGHTS.get(float(val))
    return f"updates the running statistics with batch weight {_num(val)} instead of {cur}" + (
        f" ({name})" if name else ""
    )


def _describe_eps(case, val, output) -> str:
    name = KNOWN_EPS.get(float(val))
    return f"uses eps = {_num(val)} instead of {case.eps:g}" + (f" ({name})" if name else "")


def _describe_eps_min(case, val, output) -> str:
    return (
        f"raises eps to a minimum of {_num(val)} (max(eps, {_num(val)})), so the case's eps = {case.eps:g} "
        f"becomes {max(case.eps, float(val)):g}"
    )


def _affects_norm_and_eval(mode, sem):
    return NORM if mode == "eval" else NORM | {"eval_y"}


def _affects_running(extra: frozenset):
    def f(mode, sem):
        if mode == "eval":
            return NORM if sem.eval_statistics == "blended" else NONE
        return extra | (NORM if _blended(sem) else NONE)

    return f


def _affects_stats(mode, sem):
    if mode == "eval":
        return NORM if sem.eval_statistics != "running" else NONE
    return NORM | {"batch_var"}


def _momentum_alternatives(case, base):
    w = case.momentum_weight
    if w is None or abs(w - 0.5) <= 1e-12:
        return []
    return ["reversed" if base.momentum_direction == "as_given" else "as_given"]


_KNOBS = [
    Knob(
        "normalize_variance",
        "structural",
        lambda c, b: [_flip(b.normalize_variance)],
        _affects_stats,
        _describe_normalize,
        "PyTorch, Keras and ONNX normalize with the biased (population) variance; PyTorch's BatchNorm docs: "
        f"'calculated via the biased estimator, equivalent to torch.var(input, unbiased=False)' ({_DOC_TORCH_BN})",
    ),
    Knob(
        "reported_variance",
        "structural",
        lambda c, b: (
            [_flip(b.normalize_variance)] if c.mode == "train" and b.reported_variance == "as_normalized" else []
        ),
        lambda mode, sem: frozenset(["batch_var"]) if mode == "train" else NONE,
        lambda c, v, o: (
            f"reports the {v} batch variance as batch_var (divides by "
            + (f"m−1 = {_m(c) - 1}" if v == "unbiased" else f"m = {_m(c)}")
            + "); whether it also normalizes with it shows in y (the pair's other rows), not here"
        ),
        "TensorFlow's FusedBatchNormV3 returns the Bessel-corrected batch variance as its batch_variance output "
        "while normalizing with the population variance (tensorflow/core/kernels/fused_batch_norm_op.cc)",
    ),
    Knob(
        "running_variance",
        "structural",
        lambda c, b: [_flip(b.running_variance)],
        lambda mode, sem: (
            (NORM if sem.eval_statistics == "blended" else NONE)
            if mode == "eval"
            else frozenset(["running_var", "eval_y"]) | (NORM if _blended(sem) else NONE)
        ),
        _describe_running_var,
        "PyTorch documents that 'the value stored in the moving average of the variance is calculated via the "
        f"unbiased estimator' ({_DOC_TORCH_BN}); Keras and ONNX BatchNormalization-15 blend the population "
        f"(biased) variance ({_DOC_KERAS_BN}, {_DOC_ONNX_BN})",
    ),
    Knob(
        "momentum_direction",
        "structural",
        _momentum_alternatives,
        _affects_running(RUN),
        _describe_direction,
        "PyTorch's momentum weights the batch: running = (1-momentum)*running + momentum*batch "
        f"({_DOC_TORCH_BN}); Keras' and ONNX's momentum weights the old value: "
        f"moving = moving*momentum + batch*(1-momentum) ({_DOC_KERAS_BN}, {_DOC_ONNX_BN})",
    ),
    Knob(
        "running_average",
        "structural",
        lambda c, b: ["cumulative"] if c.momentum_weight is not None and b.running_average == "exponential" else [],
        _affects_running(RUN),
        lambda c, v, o: (
            (
                f"keeps a cumulative average (batch weight 1/k at step k) instead of the exponential one "
                f"with batch weight {c.momentum_weight:g}"
            )
            if v == "cumulative"
            else "keeps an exponential moving average instead of the cumulative one"
        ),
        f"PyTorch's momentum=None selects a cumulative moving average ({_DOC_TORCH_BN})",
    ),
    Knob(
        "momentum_override",
        "known_value",
        lambda c, b: [],
        _affects_running(RUN),
        _describe_momentum,
        f"momentum defaults: PyTorch 0.1 (batch weight), Keras 0.99 and ONNX 0.9 (weight of the old value) "
        f"({_DOC_TORCH_BN}, {_DOC_KERAS_BN}, {_DOC_ONNX_BN})",
    ),
    Knob(
        "eps_override",
        "known_value",
        lambda c, b: [],
        _affects_norm_and_eval,
        _describe_eps,
        f"eps defaults: PyTorch and ONNX 1e-5, Keras 1e-3, tf.nn.fused_batch_norm 1e-4 "
        f"({_DOC_TORCH_BN}, {_DOC_KERAS_BN}, {_DOC_ONNX_BN})",
    ),
    Knob(
        "eps_minimum",
        "solved_value",
        lambda c, b: [],
        _affects_norm_and_eval,
        _describe_eps_min,
        f"cuDNN requires epsilon >= CUDNN_BN_MIN_EPSILON (1e-5) ({_DOC_CUDNN}); a library may clamp instead of refusing",
    ),
    Knob(
        "eps_placement",
        "structural",
        lambda c, b: [p for p in ("outside_sqrt", "none", "inside_sqrt") if p != b.eps_placement],
        _affects_norm_and_eval,
        lambda c, v, o: {
            "outside_sqrt": "adds eps outside the square root: (x−mean)/(√var + eps)",
            "none": "adds no eps: (x−mean)/√var",
            "inside_sqrt": "adds eps inside the square root: (x−mean)/√(var + eps)",
        }[v],
        f"PyTorch, Keras and ONNX all add eps inside the square root: (x-mean)/sqrt(var+eps) ({_DOC_ONNX_BN})",
    ),
    Knob(
        "train_statistics",
        "structural",
        lambda c, b: (
            [t for t in ("running", "blended", "batch") if t != b.train_statistics] if c.mode == "train" else []
        ),
        lambda mode, sem: NORM if mode == "train" else NONE,
        lambda c, v, o: {
            "running": "normalizes a training batch with the running statistics (inference behaviour in training mode)",
            "blended": "updates the running statistics first and normalizes the training batch with the updated ones",
            "batch": "normalizes the training batch with its own statistics",
        }[v],
        "training mode normalizes with the batch statistics and then updates the running ones "
        f"(PyTorch module.train()/eval(), Keras training=True/False) ({_DOC_TORCH_BN}, {_DOC_KERAS_BN})",
    ),
    Knob(
        "eval_statistics",
        "structural",
        lambda c, b: [t for t in ("batch", "blended", "running") if t != b.eval_statistics] if c.mode == "eval" else [],
        lambda mode, sem: NORM if mode == "eval" else NONE,
        lambda c, v, o: {
            "batch": "normalizes in inference mode with the batch's own statistics instead of the running ones "
            "(left in training mode)",
            "blended": "updates the running statistics with the batch in inference mode and normalizes with "
            "the updated ones (a training-mode update where none should happen)",
            "running": "normalizes in inference mode with the running statistics",
        }[v],
        "inference normalizes with the running statistics; batch statistics in inference mean the model was "
        f"left in training mode (PyTorch module.eval(), Keras training=False) ({_DOC_TORCH_BN}, {_DOC_KERAS_BN})",
    ),
    Knob(
        "channel_axis_swapped",
        "structural",
        lambda c, b: [not b.channel_axis_swapped] if c.rank >= 3 else [],
        lambda mode, sem: ALL,
        lambda c, v, o: (
            "computes the statistics over the wrong axis ("
            + (
                "channels-first data read as channels-last"
                if c.layout == "channels_first"
                else "channels-last data read as channels-first"
            )
            + ")"
        ),
    ),
    Knob(
        "affine",
        "structural",
        lambda c, b: (
            [a for a in ("none", "beta_only", "gamma_only", "gamma_beta") if a != b.affine] if c.has_affine else []
        ),
        lambda mode, sem: frozenset(["y", "eval_y"]),
        lambda c, v, o: {
            "none": "ignores gamma and beta (no affine transform)",
            "beta_only": "ignores gamma (scale 1) but adds beta",
            "gamma_only": "multiplies by gamma but ignores beta (shift 0)",
            "gamma_beta": "applies gamma and beta",
        }[v],
    ),
    Knob(
        "initial_running",
        "structural",
        lambda c, b: ["zeros" if b.initial_running == "as_given" else "as_given"],
        lambda mode, sem: (
            (NORM if sem.eval_statistics != "batch" else NONE)
            if mode == "eval"
            else RUN | (NORM if _blended(sem) else NONE)
        ),
        lambda c, v, o: (
            "starts the running statistics at mean 0 and variance 0 instead of the given initial values"
            if v == "zeros"
            else "starts from the given initial running statistics"
        ),
        f"running statistics conventionally start at mean 0, variance 1 ({_DOC_TORCH_BN}, {_DOC_KERAS_BN})",
    ),
]

#: the catalog: knob name -> entry
KNOBS: dict[str, Knob] = {k.name: k for k in _KNOBS}

#: the precision fields of Semantics: never searched (judged by bounds), but a mutant may plant them
PRECISION_FIELDS = ("variance_algorithm", "stats_dtype", "stats_summation", "arithmetic", "compute_dtype")


def affected(knob: str, mode: str, sem: Semantics) -> frozenset[str]:
    """Outputs a change of ``knob`` can alter (a superset is fine; it only saves work)."""
    k = KNOBS.get(knob)
    return k.affects(mode, sem) if k is not None else ALL


#: :func:`differences`' answers (bounded: cleared when full)
_DIFFERENCES: dict[tuple[Semantics, Semantics], dict[str, object]] = {}


def differences(alt: Semantics, base: Semantics) -> dict[str, object]:
    """``alt.differences(base)``, memoized (the search asks it of the same pairs many times); read-only.  For
    the names of the changed knobs: a value may be another that compares equal (0.0 for -0.0)."""
    key = (alt, base)
    hit = _DIFFERENCES.get(key)
    if hit is None:
        if len(_DIFFERENCES) >= 8192:
            _DIFFERENCES.clear()
        hit = _DIFFERENCES[key] = alt.differences(base)
    return hit


def can_affect(alt: Semantics, base: Semantics, output: str, mode: str) -> bool:
    return any(output in affected(k, mode, alt) for k in differences(alt, base))


def single_alternatives(case, base: Semantics) -> list[tuple[Semantics, str]]:
    """Every alternative that differs from ``base`` in one catalog convention: (semantics, kind)."""
    alts: list[tuple[Semantics, str]] = []
    for knob in _KNOBS:
        for v in knob.alternatives(case, base):
            s = base.replace(**{knob.name: v})
            if s != base:
                alts.append((s, knob.kind))
    return alts


def describe_change(case, base: Semantics, alt: Semantics, output: str) -> str:
    """One clause per changed knob, with the numbers that follow from the case."""
    parts = []
    for name, val in alt.differences(base).items():
        k = KNOBS.get(name)
        parts.append(k.describe(case, val, output) if k is not None else f"{name}={val}")
    return "; ".join(parts)


def docs_for(base: Semantics, alt: Semantics) -> str:
    return " ".join(f"[{KNOBS[k].docs}]" for k in alt.differences(base) if k in KNOBS and KNOBS[k].docs)
