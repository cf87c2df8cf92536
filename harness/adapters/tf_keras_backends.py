"""Keras 2 (the ``tf_keras`` package): ``tf-keras-fused`` and ``tf-keras-unfused``.

``tf_keras.layers.BatchNormalization`` with ``fused=True`` (the FusedBatchNormV3
kernel; 4-D/5-D only, axis 1 or last, float16/bfloat16/float32 compute only) and
``fused=False`` (``tf.nn.moments`` + ``tf.nn.batch_normalization`` with
``assign_sub`` moving averages).  Both run in the ``tf-keras`` worker group:
TensorFlow's environment (:data:`harness.adapters.tensorflow.TF_ENV`: quiet logs,
one intra-op / one inter-op thread) plus ``TF_USE_LEGACY_KERAS=1`` (so
``tf.keras`` is Keras 2 as well, as in a legacy code base).  ``tf_keras`` is
imported directly, so Keras 3 is never loaded into this process.

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
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness.adapters.base import Adapter, Observed, Unsupported, missing
from harness.adapters._keras_common import keras_dtype_policy, keras_momentum
from harness.adapters.tensorflow import _TF_FUSED, _TF_MOMENTS, TF_ENV, raise_if_refused_dtype, tf
from harness.cases import Case
from harness.inputs import Inputs
from harness.profiles import convention

_TF_KERAS_BN = "tf_keras/src/layers/normalization/batch_normalization.py (_fused_batch_norm; _moments via tf.nn.moments)"
#: fused=True: FusedBatchNormV3 (normalizes with the population variance; the moving variance takes the
#: op's Bessel-corrected batch variance)
TF_KERAS_FUSED_CONVENTIONS = (
    convention("normalize_variance", "biased", "FusedBatchNormV3 normalizes with the population variance",
               _TF_KERAS_BN + "; " + _TF_FUSED),
    convention("running_variance", "unbiased",
               "the moving variance is updated by FusedBatchNormV3's exponential_avg_factor with its "
               "Bessel-corrected batch variance", _TF_KERAS_BN + "; " + _TF_FUSED),
)
#: fused=False: tf.nn.moments' population variance for both uses
TF_KERAS_UNFUSED_CONVENTIONS = (
    convention("normalize_variance", "biased", "tf.nn.moments returns the population variance", _TF_KERAS_BN + "; " + _TF_MOMENTS),
    convention("running_variance", "biased", "the moving variance is blended with the same variance",
               _TF_KERAS_BN + "; " + _TF_MOMENTS),
)

TF_KERAS_ENV = {**TF_ENV, "TF_USE_LEGACY_KERAS": "1"}
CUMULATIVE_REASON = ("cumulative average (w = 1/k) is not expressible: tf_keras BatchNormalization has one fixed "
                     "exponential 'momentum'")


def _first_lines(msg: str, n: int = 3) -> str:
    lines = [ln for ln in str(msg).strip().splitlines() if ln.strip()]
    return " ".join(lines[:n])[:600]


class _TFKeras(Adapter):
    framework = "tf_keras"
    worker = "tf-keras"
    worker_env = dict(TF_KERAS_ENV)
    fused: ClassVar[bool] = True

    def available(self) -> str | None:
        return missing("tensorflow", "pip install tensorflow") or missing("tf_keras", "pip install tf_keras")

    def version(self) -> str:
        t = tf()
        import tf_keras

        return f"{tf_keras.__version__} (tensorflow {t.__version__})"

    def unsupported(self, case: Case) -> str | None:
        from harness.adapters._keras_common import keras_unsupported  # the dtype-policy refusal is Keras 3's too

        reason = super().unsupported(case)
        if reason:
            return reason
        if case.mode == "train" and case.momentum == "cumulative":
            return CUMULATIVE_REASON  # names tf_keras, not Keras 3
        return keras_unsupported(case)

    def _layer(self, case: Case, inputs: Inputs):
        t = tf()
        import tf_keras

        momentum = keras_momentum(case) if case.mode == "train" else 0.99  # unused in inference
        try:
            layer = tf_keras.layers.BatchNormalization(
                axis=case.channel_axis, momentum=momentum, epsilon=case.eps, center=case.has_affine,
                scale=case.has_affine, fused=self.fused, dtype=keras_dtype_policy(case))
            layer.build(t.TensorShape(case.array_shape))
        except ValueError as e:  # the layer refuses the configuration (fused: dtype, rank, axis)
            raise Unsupported(f"tf_keras {tf_keras.__version__} BatchNormalization(fused={self.fused}): "
                              f"{_first_lines(e)}") from None
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


class TFKerasFused(_TFKeras):
    id = "tf-keras-fused"
    fused = True
    description = "tf_keras (Keras 2) BatchNormalization(fused=True): FusedBatchNormV3, eager"
    conventions = TF_KERAS_FUSED_CONVENTIONS


class TFKerasUnfused(_TFKeras):
    id = "tf-keras-unfused"
    fused = False
    description = "tf_keras (Keras 2) BatchNormalization(fused=False): tf.nn.moments + batch_normalization, eager"
    conventions = TF_KERAS_UNFUSED_CONVENTIONS


ADAPTERS = [TFKerasFused, TFKerasUnfused]
