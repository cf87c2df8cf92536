"""Keras 2 (the ``tf_keras`` package): ``tf-keras-fused`` and ``tf-keras-unfused``.

``tf_keras.layers.BatchNormalization`` with ``fused=True`` (the FusedBatchNormV3
kernel; 4-D/5-D only, axis 1 or last, float16/bfloat16/float32 compute only) and
``fused=False`` (``tf.nn.moments`` + ``tf.nn.batch_normalization`` with
``assign_sub`` moving averages).  Both run in the ``tensorflow`` worker group, beside
``keras-tf``, ``tf-nn`` and ``tf-fused`` (one TensorFlow import per run, ≈ 3.6 s of CPU here):
TensorFlow's environment (:data:`normconf.adapters.tensorflow.TF_ENV`: quiet logs,
one intra-op / one inter-op thread) plus ``TF_USE_LEGACY_KERAS=1`` (so
``tf.keras`` is Keras 2 as well, as in a legacy code base).  ``tf_keras`` is
imported directly.  Sharing the process changes nothing these backends compute: the variable only
routes the ``tf.keras`` attribute (TensorFlow 2.21 reads it in ``tensorflow/__init__.py`` and
``tensorflow/python/util/lazy_loader.py`` and nowhere else; Keras 3.15.1 never reads it), and no
TensorFlow backend reads ``tf.keras``: ``keras-tf`` imports ``keras`` (Keras 3) itself, ``tf-nn`` and
``tf-fused`` call ``tf.nn`` / ``tf.compat.v1.nn``.  Keras 3 and tf_keras are separate packages, neither
imports the other, and each keeps its own global state (dtype policy, floatx, registered objects);
the library's rows are the same in one process as in two.

Translation (case → Keras 2):

==========================  =================================================================
case field                  ``tf_keras.layers.BatchNormalization`` argument
==========================  =================================================================
``momentum``                ``momentum = 1 - w`` (``moving = momentum*moving +
                            (1-momentum)*batch``; a ``running_weight`` is used as given).
                            fused: FusedBatchNormV3's ``exponential_avg_factor = 1 -
                            momentum``; unfused: ``moving -= (moving - batch)*(1 - momentum)``.
                            ``cumulative`` → unsupported
``eps``                     ``epsilon``
layout / ``channel_axis``   ``axis`` = 1 or -1 (fused: NCHW/NCDHW or NHWC/NDHWC)
``affine``                  ``center = scale = has_affine``; gamma/beta assigned
``running_mean``/``_var``   ``moving_mean``/``moving_variance`` assigned after ``build``
``mode``                    ``layer(x, training=True|False)`` (eager)
``dtype``/``param_dtype``   the layer's dtype policy (as in Keras 3: one dtype, or
                            ``mixed_float16``/``mixed_bfloat16``).  Keras 2 stores a
                            float16/bfloat16 layer's variables in float32 whatever
                            ``param_dtype`` says (``_param_dtype``), noted per case
==========================  =================================================================

What the layer itself refuses (``fused=True`` with float64 or rank ≠ 4/5: a
``ValueError`` at construction or build) is ``unsupported`` with Keras' message,
decided by trying.  The fused layer passes the moving variance to the op and
takes its ``batch_variance`` output as the new moving variance; that output is
Bessel-corrected (``_bessels_correction_test_only = True`` in the layer skips
the correction), so the running variance follows the unbiased estimator — a
discrepancy the harness reports, not one this adapter corrects.

LayerNorm (``op: layer_norm``): ``tf_keras.layers.LayerNormalization(axis=norm_axes,
epsilon=eps, center=has_bias, scale=has_affine, dtype=<policy as for BatchNorm>)``, gamma/beta
assigned, eager, output ``y``.  The layer has no ``fused`` argument: ``build`` decides by
itself (``_fused_can_be_used``): fused — ``tf.compat.v1.nn.fused_batch_norm`` on the input
reshaped to ``[1, rows, row_size, 1]`` NCHW, then ``* gamma + beta`` — only when the sorted
axes are consecutive and end at the last dimension, ``epsilon >= 1.001e-5`` and the variables
are float32 (a float32 layer or a ``mixed_*`` policy); otherwise unfused — ``tf.nn.moments``
+ ``tf.nn.batch_normalization``.  No public attribute steers that choice, so the two ids
*split* the layer's cases by the path the layer itself takes, never forcing it:
``tf-keras-fused`` runs the cases where the layer takes the fused path, ``tf-keras-unfused``
those where it takes the unfused one, and each answers the other's cases ``unsupported``
naming the condition (:func:`tf_keras_ln_fused`, that rule as read in the source).  After
``build`` the adapter reads the choice the layer stored (``layer._fused``; read, never
written): a layer that chose otherwise than the rule says is an error (the rule here is
stale), never a silent run on the wrong path.  Every LayerNorm case thus runs on exactly one
of the two ids, through the layer exactly as a user gets it.  Keras 2 has no
``rms_scaling``: such cases are unsupported on both.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from normconf.adapters._keras_common import keras_dtype_policy, keras_ln_unsupported, keras_momentum
from normconf.adapters._messages import first_lines
from normconf.adapters.base import Adapter, Observed, Unsupported, missing
from normconf.adapters.tensorflow import _TF_FUSED, _TF_MOMENTS, TF_ENV, raise_if_refused_dtype, tf
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

_TF_KERAS_BN = (
    "tf_keras/src/layers/normalization/batch_normalization.py (_fused_batch_norm; _moments via tf.nn.moments)"
)
#: fused=True: FusedBatchNormV3 (normalizes with the population variance; the moving variance takes the
#: op's Bessel-corrected batch variance)
TF_KERAS_FUSED_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "FusedBatchNormV3 normalizes with the population variance",
        _TF_KERAS_BN + "; " + _TF_FUSED,
    ),
    convention(
        "running_variance",
        "unbiased",
        "the moving variance is updated by FusedBatchNormV3's exponential_avg_factor with its "
        "Bessel-corrected batch variance",
        _TF_KERAS_BN + "; " + _TF_FUSED,
    ),
)
#: fused=False: tf.nn.moments' population variance for both uses
TF_KERAS_UNFUSED_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "tf.nn.moments returns the population variance",
        _TF_KERAS_BN + "; " + _TF_MOMENTS,
    ),
    convention(
        "running_variance",
        "biased",
        "the moving variance is blended with the same variance",
        _TF_KERAS_BN + "; " + _TF_MOMENTS,
    ),
)

_TF_KERAS_LN = "tf_keras/src/layers/normalization/layer_normalization.py (_fused_can_be_used, call)"
#: LayerNormalization, fused path: FusedBatchNormV3 in training mode normalizes with the population variance
TF_KERAS_LN_FUSED_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "the fused path normalizes each row with FusedBatchNormV3's batch statistics, which normalize with "
        "the population variance",
        _TF_KERAS_LN + "; " + _TF_FUSED,
        op="layer_norm",
    ),
)
#: LayerNormalization, unfused path: tf.nn.moments' population variance
TF_KERAS_LN_UNFUSED_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "the unfused path normalizes with tf.nn.moments' population variance",
        _TF_KERAS_LN + "; " + _TF_MOMENTS,
        op="layer_norm",
    ),
)


def tf_keras_ln_fused(case) -> tuple[bool, list[str]]:
    """(takes the fused path, why not) for a LayerNorm case: tf_keras' ``_fused_can_be_used`` rule
    (sorted axes consecutive and ending at the last dimension; ``epsilon >= 1.001e-5``, below which
    fused_batch_norm would raise it; the layer's variable dtype float32)."""
    axis, rank, why = list(case.norm_axes), case.rank, []
    if not (axis[-1] == rank - 1 and axis[-1] - axis[0] == len(axis) - 1):
        why.append(f"axes {axis} are not consecutive ending at the last dimension (rank {rank})")
    if case.eps < 1.001e-5:
        why.append(f"epsilon {case.eps:g} < 1.001e-05 (fused_batch_norm would raise it)")
    vdt = "float32" if str(keras_dtype_policy(case)).startswith("mixed_") else keras_dtype_policy(case)
    if vdt != "float32":
        why.append(f"its variables are {vdt}, not float32")
    return not why, why


RMS_REASON = (
    "rms_scaling is not expressible: tf_keras (Keras 2) LayerNormalization has no rms_scaling "
    "(only Keras 3's layer has it)"
)

TF_KERAS_ENV = {**TF_ENV, "TF_USE_LEGACY_KERAS": "1"}
CUMULATIVE_REASON = (
    "cumulative average (w = 1/k) is not expressible: tf_keras BatchNormalization has one fixed exponential 'momentum'"
)


class _TFKeras(Adapter):
    framework = "tf_keras"
    worker = "tensorflow"  # with the other TensorFlow backends: one TensorFlow import
    cpu_estimate = (3.8, 8.0)
    worker_env = dict(TF_KERAS_ENV)
    fused: ClassVar[bool] = True
    ops = ("batch_norm", "layer_norm")

    def available(self) -> str | None:
        return missing("tensorflow", "pip install tensorflow") or missing("tf_keras", "pip install tf_keras")

    def version(self) -> str:
        t = tf()
        import tf_keras

        return f"{tf_keras.__version__} (tensorflow {t.__version__})"

    def unsupported(self, case: Case) -> str | None:
        from normconf.adapters._keras_common import keras_unsupported  # the dtype-policy refusal is Keras 3's too

        reason = super().unsupported(case)
        if reason:
            return reason
        if getattr(case, "op", "batch_norm") == "layer_norm":
            return RMS_REASON if case.rms_scaling else (keras_ln_unsupported(case) or self._path_unsupported(case))
        if case.mode == "train" and case.momentum == "cumulative":
            return CUMULATIVE_REASON  # names tf_keras, not Keras 3
        return keras_unsupported(case)

    def _layer(self, case: Case, inputs: Inputs):
        t = tf()
        import tf_keras

        momentum = keras_momentum(case) if case.mode == "train" else 0.99  # unused in inference
        try:
            layer = tf_keras.layers.BatchNormalization(
                axis=case.channel_axis,
                momentum=momentum,
                epsilon=case.eps,
                center=case.has_affine,
                scale=case.has_affine,
                fused=self.fused,
                dtype=keras_dtype_policy(case),
            )
            layer.build(t.TensorShape(case.array_shape))
        except ValueError as e:  # the layer refuses the configuration (fused: dtype, rank, axis)
            raise Unsupported(
                f"tf_keras {tf_keras.__version__} BatchNormalization(fused={self.fused}): {first_lines(e)}"
            ) from None
        if case.has_affine:
            layer.gamma.assign(inputs.gamma.astype(layer.gamma.dtype.as_numpy_dtype))
            layer.beta.assign(inputs.beta.astype(layer.beta.dtype.as_numpy_dtype))
        vdt = layer.moving_mean.dtype.as_numpy_dtype
        layer.moving_mean.assign(inputs.running_mean.astype(vdt))
        layer.moving_variance.assign(inputs.running_var.astype(vdt))
        return layer

    def run(self, case: Case, inputs: Inputs) -> Observed:
        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        t = tf()
        try:
            return self._run(t, case, inputs)
        except Unsupported:
            raise
        except Exception as e:
            raise_if_refused_dtype(case, e)
            raise

    def _run(self, t, case: Case, inputs: Inputs) -> Observed:
        layer = self._layer(case, inputs)
        notes = []
        if case.dtype != case.params_dtype:
            notes.append(f"dtype policy {keras_dtype_policy(case)}")
        vdt = str(layer.moving_mean.dtype.name)
        if vdt != case.params_dtype:
            notes.append(f"Keras 2 keeps this layer's variables in {vdt} (case parameter dtype {case.params_dtype})")
        train = case.mode == "train"
        out: dict[str, list[np.ndarray]] = {"y": []}
        if train:
            out.update(running_mean=[], running_var=[])
        for x in inputs.x:
            y = layer(t.constant(x), training=train)
            out["y"].append(y.numpy())
            if train:
                out["running_mean"].append(layer.moving_mean.numpy())
                out["running_var"].append(layer.moving_variance.numpy())
        if train and case.eval_after:
            out["eval_y"] = [layer(t.constant(inputs.x[-1]), training=False).numpy()]
        notes.append(f"fused={self.fused} (layer.fused is {layer.fused}); eager calls")
        return Observed(out, notes)

    # --- LayerNorm ---------------------------------------------------------------------------
    def run_layer_norm(self, case, inputs) -> Observed:
        """``tf_keras.layers.LayerNormalization``, eager, one call per step, on the cases where the
        built layer takes this id's path (fused or unfused); output ``y``."""
        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        t = tf()
        try:
            return self._run_layer_norm(t, case, inputs)
        except Unsupported:
            raise
        except Exception as e:
            raise_if_refused_dtype(case, e)
            raise

    def _run_layer_norm(self, t, case, inputs) -> Observed:
        import tf_keras

        from normconf.adapters._keras_common import assign_layer_norm

        layer = tf_keras.layers.LayerNormalization(
            axis=list(case.norm_axes),
            epsilon=case.eps,
            center=case.has_bias,
            scale=case.has_affine,
            dtype=keras_dtype_policy(case),
        )
        layer.build(t.TensorShape(case.shape))
        fused = getattr(layer, "_fused", None)
        if fused is not self.fused:
            raise RuntimeError(
                f"tf_keras {tf_keras.__version__} LayerNormalization chose fused={fused!r} after build, "
                f"not the {'fused' if self.fused else 'unfused'} path its _fused_can_be_used rule "
                f"predicts (normconf.adapters.tf_keras_backends.tf_keras_ln_fused is stale)"
            )
        assign_layer_norm(layer, inputs)
        ys = [layer(t.constant(x)).numpy() for x in inputs.x]
        notes = []
        if case.dtype != case.params_dtype:
            notes.append(f"dtype policy {keras_dtype_policy(case)}")
        vdt = next((str(v.dtype.name) for v in (layer.gamma, layer.beta) if v is not None), None)
        if vdt is not None and vdt != case.params_dtype:
            notes.append(f"Keras 2 keeps this layer's variables in {vdt} (case parameter dtype {case.params_dtype})")
        notes.append(
            (
                "fused path (tf_keras chose it: FusedBatchNormV3 on [1, rows, row_size, 1] NCHW, then * gamma + beta)"
                if fused
                else "unfused path (tf_keras chose it: tf.nn.moments + tf.nn.batch_normalization)"
            )
            + "; eager calls"
        )
        return Observed({"y": ys}, notes)

    def _path_unsupported(self, case) -> str | None:
        """The other id's cases: the layer takes the other path for them (no argument forces a path)."""
        fused, why = tf_keras_ln_fused(case)
        if fused == self.fused:
            return None
        if fused:
            return (
                "tf_keras LayerNormalization takes its fused path for this case (axes consecutive and ending "
                f"at the last dimension, epsilon {case.eps:g} >= 1.001e-05, float32 variables); it has no "
                "argument to force the unfused path: this case runs on tf-keras-fused"
            )
        return (
            "tf_keras LayerNormalization takes its unfused path for this case (" + "; ".join(why) + "); it has "
            "no argument to force the fused path: this case runs on tf-keras-unfused"
        )


class TFKerasFused(_TFKeras):
    id = "tf-keras-fused"
    fused = True
    description = (
        "tf_keras (Keras 2) BatchNormalization(fused=True): FusedBatchNormV3, eager; LayerNormalization "
        "on the cases where the layer takes its fused path"
    )
    conventions = (*TF_KERAS_FUSED_CONVENTIONS, *TF_KERAS_LN_FUSED_CONVENTIONS)


class TFKerasUnfused(_TFKeras):
    id = "tf-keras-unfused"
    fused = False
    description = (
        "tf_keras (Keras 2) BatchNormalization(fused=False): tf.nn.moments + batch_normalization, "
        "eager; LayerNormalization on the cases where the layer takes its unfused path"
    )
    conventions = (*TF_KERAS_UNFUSED_CONVENTIONS, *TF_KERAS_LN_UNFUSED_CONVENTIONS)


ADAPTERS = [TFKerasFused, TFKerasUnfused]
