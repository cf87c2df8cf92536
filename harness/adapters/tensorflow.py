"""TensorFlow backends: three BatchNorm code paths, each its own backend id.

``keras-tf``
    ``keras.layers.BatchNormalization`` (Keras 3) on the TensorFlow backend.
    Outputs ``y``, ``running_mean``/``running_var`` (the layer's
    ``moving_mean``/``moving_variance`` after every step) and ``eval_y``.
``tf-nn``
    ``tf.nn.moments`` + ``tf.nn.batch_normalization``: the low-level path, no
    running statistics; outputs ``y``, ``batch_mean``, ``batch_var``.
``tf-fused``
    ``tf.compat.v1.nn.fused_batch_norm`` (the FusedBatchNormV3 kernel), 4-D and
    5-D only, NCHW/NHWC (NCDHW/NDHWC) ``data_format`` natively.  Outputs ``y``,
    ``running_mean``/``running_var`` (``exponential_avg_factor = w``), and
    ``batch_mean``/``batch_var`` as the op returns them with
    ``exponential_avg_factor=1.0`` (its batch variance is Bessel-corrected).

LayerNorm (``op: layer_norm``): only ``keras-tf`` implements it, with
``keras.layers.LayerNormalization`` (translation in :mod:`normconf.adapters._keras_common`),
one built layer and its traced call per (shape, dtypes, axes, eps, affine, bias,
rms_scaling), output ``y``.  TensorFlow itself has no LayerNorm op, so ``tf-nn`` and
``tf-fused`` stay BatchNorm-only (a LayerNorm case is ``unsupported`` there).

All three run in the ``tensorflow`` worker group, whose environment
(:data:`TF_ENV`) is applied before TensorFlow is imported: ``KERAS_BACKEND``,
quiet C++ logs, and one intra-op / one inter-op thread (so reductions are summed
in the same order on every machine, and TF does not fight other workers for the
cores).  TensorFlow is imported once per process, on the first run.

Each (shape, dtypes, attributes) signature gets one ``tf.function`` with a fixed
``input_signature`` (Keras: one built layer and its two traced calls), cached
per process; a case only assigns its values.  Everything runs as a traced graph,
never eagerly, so a case gives the same numbers whatever ran before it.

A dtype is decided by trying: when TensorFlow refuses a dtype (no kernel, a
type attribute outside the op's allowed list, mixed dtypes in one op) the case
is ``unsupported`` with TensorFlow's message (:func:`tf_refuses_dtype`); any
other exception is an error.
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from normconf.adapters._keras_common import (
    KERAS3_CONVENTIONS,
    KERAS3_LN_CONVENTIONS,
    keras_dtype_policy,
    keras_momentum,
)
from normconf.adapters._messages import first_lines
from normconf.adapters.base import Adapter, Observed, Unsupported, missing
from normconf.cases import Case
from normconf.inputs import Inputs, np_dtype
from normconf.profiles import convention

_TF_MOMENTS = "tensorflow/python/ops/nn_impl.py (moments: variance = reduce_mean(squared_difference(x, mean)))"
_TF_FUSED = (
    'tensorflow/core/kernels/fused_batch_norm_op.cc (FusedBatchNorm<CPUDevice>: "This adjustment is for '
    "Bessel's correction\", rest_size_adjust = m / (m - 1))"
)
#: tf.nn.moments: the population (biased) variance
TF_NN_CONVENTIONS = (
    convention(
        "normalize_variance", "biased", "tf.nn.moments returns the population variance (divides by m)", _TF_MOMENTS
    ),
)
#: FusedBatchNormV3 normalizes with the population variance, returns and blends the Bessel-corrected one
TF_FUSED_CONVENTIONS = (
    convention("normalize_variance", "biased", "the kernel normalizes with the population variance", _TF_FUSED),
    convention(
        "reported_variance", "unbiased", "the batch_variance output is the population variance times m/(m-1)", _TF_FUSED
    ),
    convention(
        "running_variance",
        "unbiased",
        "with exponential_avg_factor the running variance blends in the corrected batch variance",
        _TF_FUSED,
    ),
)

#: the worker group's environment (applied before TensorFlow/Keras are imported)
TF_ENV = {
    "KERAS_BACKEND": "tensorflow",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}
MAX_CACHED = 128
#: seconds per phase (read by benchmarks/adapter_overhead.py)
STATS: dict[str, float] = {
    "import": 0.0,
    "build": 0.0,
    "trace": 0.0,
    "compute": 0.0,
    "convert": 0.0,
    "traced_functions": 0,
    "cache_hits": 0,
}

_tf_module = None

#: messages TensorFlow gives when it has no kernel / does not allow a dtype
_DTYPE_REFUSAL = re.compile(
    r"not in (the )?list of allowed values"  # op-def type attribute (T, U) outside the allowed list
    r"|was expected to be a \w+ tensor but is a \w+ tensor"  # mixed dtypes in one op
    r"|No registered '\w+' OpKernel"  # no kernel for this dtype on this device
    r"|No OpKernel was registered to support Op"  # idem (graph execution)
    r"|Could not find device for node"  # idem (eager placement)
    r"|Tensor conversion requested dtype \w+ for Tensor with dtype \w+"
    r"|has type \w+ that does not match type \w+ of argument"  # op inputs sharing a type attribute
)


def raise_if_refused_dtype(case: Case, e: Exception) -> None:
    """Raise :class:`Unsupported` with TensorFlow's own message when ``e`` is a dtype refusal."""
    if tf_refuses_dtype(e):
        raise Unsupported(
            f"tensorflow {tf().__version__} refused the dtypes (x {case.dtype}, "
            f"parameters {case.params_dtype}): {type(e).__name__}: {first_lines(e)}"
        ) from None


def tf_refuses_dtype(exc: BaseException) -> bool:
    """True when ``exc`` is TensorFlow refusing a dtype, not any other failure."""
    return bool(_DTYPE_REFUSAL.search(str(exc)))


def tf():
    """TensorFlow, imported once per process with :data:`TF_ENV` applied first."""
    global _tf_module
    if _tf_module is None:
        for k, v in TF_ENV.items():
            os.environ.setdefault(k, v)
        t = time.perf_counter()
        import tensorflow

        _tf_module = tensorflow
        STATS["import"] += time.perf_counter() - t
    return _tf_module


def data_format(case: Case) -> str:
    """FusedBatchNorm ``data_format`` for the case's layout and rank (4-D/5-D)."""
    spatial = {4: "HW", 5: "DHW"}[case.rank]
    return f"NC{spatial}" if case.layout == "channels_first" else f"N{spatial}C"


#: trace with the batch and spatial sizes left open (only rank and C fixed): one trace serves every
#: shape of a (rank, C, layout) family.  The kernels are the same; tests check bit-identical results.
RELAXED_SHAPES = True


def traced_shape(case: Case) -> tuple:
    """The shape a function is traced for: ``case.array_shape``, with N and spatial sizes ``None``
    when :data:`RELAXED_SHAPES` (the channel size stays fixed)."""
    if not RELAXED_SHAPES:
        return tuple(case.array_shape)
    s: list[int | None] = [None] * case.rank
    s[case.channel_axis % case.rank] = case.channels
    return tuple(s)


class _Cache:
    """Small LRU of traced functions / built layers."""

    def __init__(self) -> None:
        self._d: "OrderedDict[tuple, Any]" = OrderedDict()

    def get(self, key: tuple, make):
        if key in self._d:
            self._d.move_to_end(key)
            STATS["cache_hits"] += 1
            return self._d[key], False
        t = time.perf_counter()
        obj = make()
        STATS["build"] += time.perf_counter() - t
        self._d[key] = obj
        while len(self._d) > MAX_CACHED:
            self._d.popitem(last=False)
        return obj, True


def _call(fn, args, first: bool):
    """Run a traced function; the first call of a new function counts as tracing."""
    t = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t
    if first:
        STATS["trace"] += dt
        STATS["traced_functions"] += 1
    else:
        STATS["compute"] += dt
    return out


def _to_numpy(t) -> np.ndarray:
    s = time.perf_counter()
    a = t.numpy()
    STATS["convert"] += time.perf_counter() - s
    return a


class _TFAdapter(Adapter):
    framework = "tensorflow"
    worker = "tensorflow"
    cpu_estimate = (4.4, 15.0)
    worker_env = dict(TF_ENV)

    def available(self) -> str | None:
        return missing("tensorflow", "pip install tensorflow")

    def version(self) -> str:
        return tf().__version__

    def run(self, case: Case, inputs: Inputs) -> Observed:
        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        tf()
        try:
            return self._run(case, inputs)
        except Unsupported:
            raise
        except Exception as e:
            raise_if_refused_dtype(case, e)
            raise

    def _run(self, case: Case, inputs: Inputs) -> Observed:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
class KerasTF(_TFAdapter):
    """``keras.layers.BatchNormalization`` on the TensorFlow backend."""

    id = "keras-tf"
    framework = "keras"
    description = (
        "keras.layers.BatchNormalization / LayerNormalization (Keras 3, TensorFlow backend), traced with tf.function"
    )
    #: float64 stays float64 on the TensorFlow backend (BIT64_TO_BIT32_DTYPE keeps it): no precision entry
    conventions = (*KERAS3_CONVENTIONS, *KERAS3_LN_CONVENTIONS)
    ops = ("batch_norm", "layer_norm")
    _cache = _Cache()

    def available(self) -> str | None:
        # Keras 3 is a separate distribution (tensorflow 2.16+ depends on it, but it can be missing)
        return super().available() or missing("keras", "pip install keras")

    def version(self) -> str:
        tf()
        import keras

        return f"{keras.__version__} (tensorflow {tf().__version__})"

    def unsupported(self, case: Case) -> str | None:
        # shared with the other Keras backends
        from normconf.adapters._keras_common import keras_ln_unsupported, keras_unsupported

        reason = super().unsupported(case)
        if reason:
            return reason
        if getattr(case, "op", "batch_norm") == "layer_norm":
            return keras_ln_unsupported(case)
        return keras_unsupported(case)

    def _layer(self, case: Case):
        t = tf()
        momentum = keras_momentum(case) if case.mode == "train" else 0.99  # unused in inference
        key = (
            traced_shape(case),
            case.dtype,
            case.params_dtype,
            case.channel_axis,
            momentum,
            case.eps,
            case.has_affine,
        )

        def make():
            import keras

            if keras.backend.backend() != "tensorflow":
                raise RuntimeError(
                    f"keras in this process runs on the {keras.backend.backend()!r} backend "
                    "(KERAS_BACKEND is read once, at the first import of keras); keras-tf "
                    "needs its own worker process with KERAS_BACKEND=tensorflow"
                )
            layer = keras.layers.BatchNormalization(
                axis=case.channel_axis,
                momentum=momentum,
                epsilon=case.eps,
                center=case.has_affine,
                scale=case.has_affine,
                dtype=keras_dtype_policy(case),
            )
            layer.build(traced_shape(case))
            spec = [t.TensorSpec(traced_shape(case), t.as_dtype(np_dtype(case.dtype)))]
            train = t.function(lambda x: layer(x, training=True), input_signature=spec)
            infer = t.function(lambda x: layer(x, training=False), input_signature=spec)
            return {"layer": layer, "train": train, "infer": infer, "traced": set()}

        return self._cache.get(key, make)[0]

    def _run(self, case: Case, inputs: Inputs) -> Observed:
        t = tf()
        entry = self._layer(case)
        layer = entry["layer"]
        if case.has_affine:
            layer.gamma.assign(inputs.gamma)
            layer.beta.assign(inputs.beta)
        layer.moving_mean.assign(inputs.running_mean)
        layer.moving_variance.assign(inputs.running_var)
        notes = [f"dtype policy {keras_dtype_policy(case)}"] if case.dtype != case.params_dtype else []
        train = case.mode == "train"
        fn_name = "train" if train else "infer"
        out: dict[str, list[np.ndarray]] = {"y": []}
        if train:
            out.update(running_mean=[], running_var=[])
        for x in inputs.x:
            first = fn_name not in entry["traced"]
            y = _call(entry[fn_name], (t.constant(x),), first)
            entry["traced"].add(fn_name)
            out["y"].append(_to_numpy(y))
            if train:
                out["running_mean"].append(_to_numpy(layer.moving_mean.value))
                out["running_var"].append(_to_numpy(layer.moving_variance.value))
        if train and case.eval_after:
            first = "infer" not in entry["traced"]
            y = _call(entry["infer"], (t.constant(inputs.x[-1]),), first)
            entry["traced"].add("infer")
            out["eval_y"] = [_to_numpy(y)]
        return Observed(out, notes)

    # --- LayerNorm ---------------------------------------------------------------------------
    def run_layer_norm(self, case, inputs) -> Observed:
        """``keras.layers.LayerNormalization``, its call traced with ``tf.function``; output ``y``."""
        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        tf()
        try:
            return self._run_layer_norm(case, inputs)
        except Unsupported:
            raise
        except Exception as e:
            raise_if_refused_dtype(case, e)
            raise

    def _ln_layer(self, case):
        t = tf()
        key = (
            "layer_norm",
            tuple(case.shape),
            case.dtype,
            case.params_dtype,
            case.norm_axes,
            case.eps,
            case.has_affine,
            case.has_bias,
            case.rms_scaling,
        )

        def make():
            import keras

            from normconf.adapters._keras_common import make_layer_norm

            if keras.backend.backend() != "tensorflow":
                raise RuntimeError(
                    f"keras in this process runs on the {keras.backend.backend()!r} backend "
                    "(KERAS_BACKEND is read once, at the first import of keras); keras-tf "
                    "needs its own worker process with KERAS_BACKEND=tensorflow"
                )
            layer, warned = make_layer_norm(keras, case, inputs=_NoParams)
            spec = [t.TensorSpec(tuple(case.shape), t.as_dtype(np_dtype(case.dtype)))]
            return {
                "layer": layer,
                "warned": warned,
                "fn": t.function(lambda x: layer(x), input_signature=spec),
                "traced": False,
            }

        return self._cache.get(key, make)[0]

    def _run_layer_norm(self, case, inputs) -> Observed:
        from normconf.adapters._keras_common import assign_layer_norm, layer_norm_notes

        t = tf()
        entry = self._ln_layer(case)
        layer = entry["layer"]
        assign_layer_norm(layer, inputs)
        ys = []
        for x in inputs.x:
            y = _call(entry["fn"], (t.constant(x),), not entry["traced"])
            entry["traced"] = True
            ys.append(_to_numpy(y))
        return Observed({"y": ys}, layer_norm_notes(case, layer, entry["warned"]))


class _NoParams:
    """Inputs without gamma/beta: a cached layer is built once, its parameters assigned per case."""

    gamma = beta = None


# ---------------------------------------------------------------------------------------------
class TFNN(_TFAdapter):
    """``tf.nn.moments`` + ``tf.nn.batch_normalization``."""

    id = "tf-nn"
    description = "tf.nn.moments + tf.nn.batch_normalization (no running statistics), traced with tf.function"
    conventions = TF_NN_CONVENTIONS
    _cache = _Cache()

    def _fn(self, case: Case):
        t = tf()
        train = case.mode == "train"
        key = (traced_shape(case), case.dtype, case.params_dtype, case.channel_axis, case.eps, train, case.has_affine)

        def make():
            rank, ch = case.rank, case.channel_axis % case.rank
            axes = [a for a in range(rank) if a != ch]
            bshape = [1] * rank
            bshape[ch] = case.channels
            x_spec = t.TensorSpec(traced_shape(case), t.as_dtype(np_dtype(case.dtype)))
            p_spec = t.TensorSpec([case.channels], t.as_dtype(np_dtype(case.params_dtype)))

            @t.function(input_signature=[x_spec, p_spec, p_spec, p_spec, p_spec], autograph=False)
            def fn(x, gamma, beta, running_mean, running_var):
                if train:
                    mean, var = t.nn.moments(x, axes=axes, keepdims=True)
                else:
                    mean, var = t.reshape(running_mean, bshape), t.reshape(running_var, bshape)
                scale = t.reshape(gamma, bshape) if case.has_affine else None
                offset = t.reshape(beta, bshape) if case.has_affine else None
                y = t.nn.batch_normalization(x, mean, var, offset, scale, variance_epsilon=case.eps)
                return y, t.reshape(mean, [-1]), t.reshape(var, [-1])

            return {"fn": fn, "traced": False}

        return self._cache.get(key, make)[0]

    def _run(self, case: Case, inputs: Inputs) -> Observed:
        t = tf()
        entry = self._fn(case)
        pdt = np_dtype(case.params_dtype)
        C = case.channels
        gamma = inputs.gamma if inputs.gamma is not None else np.ones(C, pdt)  # unused without affine
        beta = inputs.beta if inputs.beta is not None else np.zeros(C, pdt)
        params = [t.constant(a) for a in (gamma, beta, inputs.running_mean, inputs.running_var)]
        train = case.mode == "train"
        out: dict[str, list[np.ndarray]] = {"y": []}
        if train:
            out.update(batch_mean=[], batch_var=[])
        for x in inputs.x:
            y, m, v = _call(entry["fn"], (t.constant(x), *params), not entry["traced"])
            entry["traced"] = True
            out["y"].append(_to_numpy(y))
            if train:
                out["batch_mean"].append(_to_numpy(m))
                out["batch_var"].append(_to_numpy(v))
        notes = []
        if train:
            notes.append(
                "tf.nn has no running statistics: running_mean/running_var"
                + ("/eval_y" if case.eval_after else "")
                + " are not produced"
            )
        return Observed(out, notes)


# ---------------------------------------------------------------------------------------------
class TFFused(_TFAdapter):
    """``tf.compat.v1.nn.fused_batch_norm`` (FusedBatchNormV3)."""

    id = "tf-fused"
    description = "tf.compat.v1.nn.fused_batch_norm (FusedBatchNormV3), NCHW/NHWC, traced with tf.function"
    conventions = TF_FUSED_CONVENTIONS
    #: FusedBatchNormV3 refuses other ranks ("input must be 4 or 5-dimensional"); tests check it
    ranks = (4, 5)
    _cache = _Cache()

    def unsupported(self, case: Case) -> str | None:
        reason = super().unsupported(case)
        if reason:
            return reason
        if case.mode == "train" and case.momentum == "cumulative":
            return (
                "cumulative average (w = 1/k) is not expressible: fused_batch_norm's exponential_avg_factor "
                "is an exponential moving-average weight"
            )
        return None

    def _fn(self, case: Case, kind: str):
        """kind: "infer" (is_training=False), "train" (exponential_avg_factor=w) or "batch" (factor 1.0)."""
        t = tf()
        w = float(case.momentum_weight) if kind == "train" else None
        fmt = data_format(case)
        key = (traced_shape(case), case.dtype, case.params_dtype, fmt, case.eps, kind, w)

        def make():
            fused = t.compat.v1.nn.fused_batch_norm
            x_spec = t.TensorSpec(traced_shape(case), t.as_dtype(np_dtype(case.dtype)))
            p_spec = t.TensorSpec([case.channels], t.as_dtype(np_dtype(case.params_dtype)))

            @t.function(input_signature=[x_spec, p_spec, p_spec, p_spec, p_spec], autograph=False)
            def fn(x, scale, offset, mean, variance):
                if kind == "infer":
                    return fused(
                        x,
                        scale,
                        offset,
                        mean=mean,
                        variance=variance,
                        epsilon=case.eps,
                        data_format=fmt,
                        is_training=False,
                    )
                if kind == "batch" or w == 1.0:  # the op's contract: factor 1.0 takes no running statistics
                    return fused(x, scale, offset, epsilon=case.eps, data_format=fmt, is_training=True)
                return fused(
                    x,
                    scale,
                    offset,
                    mean=mean,
                    variance=variance,
                    epsilon=case.eps,
                    data_format=fmt,
                    is_training=True,
                    exponential_avg_factor=w,
                )

            return {"fn": fn, "traced": False}

        return self._cache.get(key, make)[0]

    def _call_kind(self, case: Case, kind: str, args):
        entry = self._fn(case, kind)
        res = _call(entry["fn"], args, not entry["traced"])
        entry["traced"] = True
        return res

    def _run(self, case: Case, inputs: Inputs) -> Observed:
        t = tf()
        pdt = np_dtype(case.params_dtype)
        C = case.channels
        notes = []
        if case.has_affine:
            gamma, beta = inputs.gamma, inputs.beta
        else:
            gamma, beta = np.ones(C, pdt), np.zeros(C, pdt)
            notes.append("no affine: scale = 1, offset = 0 passed (fused_batch_norm requires them; x*1+0 is exact)")
        sc, off = t.constant(gamma), t.constant(beta)
        rm, rv = t.constant(inputs.running_mean), t.constant(inputs.running_var)
        if case.mode == "eval":
            ys = [_to_numpy(self._call_kind(case, "infer", (t.constant(x), sc, off, rm, rv))[0]) for x in inputs.x]
            return Observed({"y": ys}, notes)
        out: dict[str, list[np.ndarray]] = {n: [] for n in ("y", "running_mean", "running_var")}
        batch: dict[str, list[np.ndarray]] | None = {"batch_mean": [], "batch_var": []}
        for x in inputs.x:
            xt = t.constant(x)
            y, rm, rv = self._call_kind(case, "train", (xt, sc, off, rm, rv))
            out["y"].append(_to_numpy(y))
            out["running_mean"].append(_to_numpy(rm))
            out["running_var"].append(_to_numpy(rv))
            if batch is not None:
                try:
                    _, bm, bv = self._call_kind(case, "batch", (xt, sc, off, rm, rv))
                except Exception as e:
                    if not tf_refuses_dtype(e):
                        raise
                    notes.append(
                        f"batch_mean/batch_var not produced: the exponential_avg_factor=1.0 call was "
                        f"refused: {type(e).__name__}: {first_lines(e, 1)}"
                    )
                    batch = None
                    continue
                batch["batch_mean"].append(_to_numpy(bm))
                batch["batch_var"].append(_to_numpy(bv))
        if batch is not None:
            out.update(batch)
            notes.append(
                "batch_mean/batch_var: the op's outputs with exponential_avg_factor=1.0 "
                "(FusedBatchNormV3's batch_variance is what the op returns, as is)"
            )
        if case.eval_after:
            y = self._call_kind(case, "infer", (t.constant(inputs.x[-1]), sc, off, rm, rv))[0]
            out["eval_y"] = [_to_numpy(y)]
        return Observed(out, notes)


ADAPTERS = [KerasTF, TFNN, TFFused]
