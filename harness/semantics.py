"""The BatchNorm conventions as one explicit value object (the "knobs").

Every convention a BatchNorm implementation can choose is a field here.  The
reference (``normconf.references.batchnorm``) takes a :class:`Semantics` and follows it
literally; the explanation engine reruns the reference with one or two fields
changed to find the convention a backend actually follows.

Conventions, stated once:

* **momentum** is carried everywhere inside normconf as the *batch weight* ``w``:
  ``running_new = (1 - w) * running_old + w * batch_statistic`` (PyTorch's
  ``momentum``; Keras/ONNX ``momentum`` is ``1 - w``).  ``None`` means a
  cumulative moving average: at step ``k`` (1-based), ``w = 1 / k``.
* **biased** variance divides the sum of squared deviations by ``m`` (the number
  of elements per channel, N x spatial); **unbiased** divides by ``m - 1``.
* **eps placement** ``inside_sqrt`` normalizes with ``(x - mean) / sqrt(var + eps)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar, cast

Estimator = Literal["biased", "unbiased"]
_S = TypeVar("_S")

#: dtype names used across normconf (NumPy spelling; bfloat16 comes from ml_dtypes)
DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class Semantics:
    """One complete choice of BatchNorm conventions.

    The defaults are ONNX BatchNormalization-15's: biased variance everywhere,
    eps inside the square root, batch statistics in training, two-pass variance
    computed in float64 (the oracle), affine applied after normalization.
    """

    #: estimator of the variance used to normalize ``x`` in training
    normalize_variance: Estimator = "biased"
    #: estimator of the batch variance a backend *reports* (its ``batch_var`` output): the one it
    #: normalized with, or another one (TF's FusedBatchNormV3 reports the Bessel-corrected variance)
    reported_variance: Literal["as_normalized", "biased", "unbiased"] = "as_normalized"
    #: estimator of the batch variance blended into ``running_var``
    running_variance: Estimator = "biased"
    #: ``as_given``: running = (1-w)*old + w*batch; ``reversed``: w and 1-w swapped
    momentum_direction: Literal["as_given", "reversed"] = "as_given"
    #: ``exponential`` uses the case's momentum; ``cumulative`` uses w = 1/k
    running_average: Literal["exponential", "cumulative"] = "exponential"
    #: replaces the case's batch weight when not None (explainer: "another momentum")
    momentum_override: float | None = None
    #: where eps enters: sqrt(var + eps), sqrt(var) + eps, or not at all
    eps_placement: Literal["inside_sqrt", "outside_sqrt", "none"] = "inside_sqrt"
    #: replaces the case's eps when not None (explainer: "another eps")
    eps_override: float | None = None
    #: eps is raised to at least this value when not None: ``max(eps, eps_minimum)`` (e.g. cuDNN's
    #: CUDNN_BN_MIN_EPSILON); equal to ``eps_override`` whenever the case's eps is below it
    eps_minimum: float | None = None
    #: statistics used to normalize in train mode: batch, running (eval confusion),
    #: or running statistics updated before normalizing ("blended")
    train_statistics: Literal["batch", "running", "blended"] = "batch"
    #: statistics used to normalize in eval mode: the given running statistics, the
    #: batch's own (the model left in training mode; no running update is reported), or the
    #: running statistics updated with the batch first ("blended": an update that should not happen)
    eval_statistics: Literal["running", "batch", "blended"] = "running"
    #: variance algorithm: two-pass mean((x-mean)^2); one-pass E[x^2]-E[x]^2
    #: (``one_pass`` unclamped, ``one_pass_clamped`` clamped at 0)
    variance_algorithm: Literal["two_pass", "one_pass", "one_pass_clamped"] = "two_pass"
    #: precision of the statistics (sums, mean, variance): float64, float32, or the input dtype
    stats_dtype: Literal["float64", "float32", "input"] = "float64"
    #: order of the sums: NumPy's ``pairwise`` summation, or ``sequential`` (a plain loop over
    #: N, then the spatial positions, accumulating in ``stats_dtype``, as naive C/C++ code does)
    stats_summation: Literal["pairwise", "sequential"] = "pairwise"
    #: ``unfolded``: gamma*(x-mean)/sqrt(var+eps)+beta;
    #: ``folded``: x*a + b with a = gamma/sqrt(var+eps), b = beta - mean*a (two roundings);
    #: ``folded_fma``: the same with one fused multiply-add, fma(x, a, b) (one rounding)
    arithmetic: Literal["unfolded", "folded", "folded_fma"] = "unfolded"
    #: precision of the normalization arithmetic: float64 or the input dtype
    compute_dtype: Literal["float64", "float32", "input"] = "float64"
    #: True: the data is read with the other layout (channels-first as channels-last)
    channel_axis_swapped: bool = False
    #: which parts of the affine transform are applied: both, gamma only (beta ignored),
    #: beta only (gamma ignored), or none (identity affine)
    affine: Literal["gamma_beta", "gamma_only", "beta_only", "none"] = "gamma_beta"
    #: ``as_given``: the case's initial running stats; ``zeros``: mean 0 and var 0
    initial_running: Literal["as_given", "zeros"] = "as_given"

    def eps_used(self, eps: float) -> float:
        """The eps these conventions normalize with, given the case's ``eps``."""
        e = float(self.eps_override if self.eps_override is not None else eps)
        return max(e, float(self.eps_minimum)) if self.eps_minimum is not None else e

    def batch_weight(self, momentum: float | None, step: int) -> float:
        """The batch weight w of the running update at 1-based ``step``, given the case's ``momentum``
        (a batch weight; ``None``: cumulative average)."""
        if self.running_average == "cumulative" or (momentum is None and self.momentum_override is None):
            return 1.0 / step
        # one of the two is set here (the test above returned otherwise)
        w = float(cast(float, self.momentum_override if self.momentum_override is not None else momentum))
        return 1.0 - w if self.momentum_direction == "reversed" else w

    def __hash__(self) -> int:
        """The hash of every field's value, as the generated one, computed once per object (judging keys its
        caches by semantics: thousands of lookups per pair).  Not pickled (:meth:`__getstate__`): a str's
        hash differs between processes."""
        try:
            return self.__dict__["_hash"]  # type: ignore[no-any-return]
        except KeyError:
            h = hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)))
            object.__setattr__(self, "_hash", h)
            return h

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def replace(self, **changes: Any) -> "Semantics":
        """A copy with ``changes`` applied (fields are validated by name).  Memoized: judging asks for
        the same few variants of a case's semantics for every pair (equal results either way: the
        class is frozen)."""
        try:
            return _replaced(self, _memo_key(changes))
        except TypeError:  # an unhashable value: validated (and refused) by dataclasses.replace
            return dataclasses.replace(self, **changes)

    def differences(self, other: "Semantics") -> dict[str, object]:
        """Fields whose value in ``self`` differs from ``other``: {name: self's value}."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }

    def label(self, base: "Semantics | None" = None) -> str:
        """Machine-readable ``knob=value[,knob=value]`` relative to ``base`` (default: ONNX)."""
        return _label(self, base or Semantics())


def interned(cls: type[_S], **fields: Any) -> _S:
    """``cls(**fields)``, one shared object per distinct class and field values (a case's ``semantics``:
    a few values asked for thousands of times in a run).  A shared object keeps its cached hash, and the
    memoized lookups keyed by it (:meth:`Semantics.replace`, the explanation caches) find it by identity
    instead of comparing every field; the classes are frozen, so sharing is safe."""
    return cast(_S, _interned(cast(Any, cls), _memo_key(fields)))


def _memo_key(fields: dict[str, Any]) -> tuple[tuple[str, str, Any], ...]:
    """``fields`` as a memo key: (name, type name, value), sorted by name (1 and True are different keys)."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in fields.items()))


@lru_cache(maxsize=256)
def _interned(cls: type, fields: tuple[tuple[str, str, Any], ...]) -> Any:
    return cls(**{k: v for k, _t, v in fields})


@lru_cache(maxsize=1024)
def _replaced(sem: Semantics, changes: tuple[tuple[str, str, Any], ...]) -> Semantics:
    """``sem`` with ``changes`` ((field, type name, value): 1 and True are different keys) applied."""
    return dataclasses.replace(sem, **{k: v for k, _t, v in changes})


@lru_cache(maxsize=1024)
def _label(sem: Semantics, base: Semantics) -> str:
    return ",".join(f"{k}={_fmt(v)}" for k, v in sem.differences(base).items())


def _fmt(v: object) -> str:
    if isinstance(v, float):
        s = f"{v:g}"
        return s if float(s) == v else repr(v)  # never print two different values the same way
    return str(v).lower() if isinstance(v, bool) else str(v)
