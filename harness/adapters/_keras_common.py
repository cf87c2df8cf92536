"""Case → ``keras.layers.BatchNormalization`` (Keras 3), shared by every Keras backend.

The translation (one place; backend-independent):

=========================  ==============================================================
case field                 Keras 3 argument
=========================  ==============================================================
``momentum``               ``momentum = 1 - w`` (weight of the *old* moving value:
                           ``moving = momentum*moving + (1-momentum)*batch``); a case
                           stated as ``running_weight`` is used as given.  ``cumulative``
                           → unsupported (one fixed exponential momentum)
``eps``                    ``epsilon``
layout / ``channel_axis``  ``axis`` = 1 (channels-first) or -1 (channels-last); the
                           input is handed over in the case's layout, never transposed
``affine``                 ``center = scale = has_affine``; ``gamma``/``beta`` assigned
``running_mean``/``_var``  ``moving_mean``/``moving_variance`` assigned after ``build``
``mode``                   ``layer(x, training=True|False)``
``dtype``/``param_dtype``  the layer's dtype policy: one dtype for both, or
                           ``mixed_float16``/``mixed_bfloat16`` (float32 variables);
                           other combinations → unsupported
=========================  ==============================================================

``keras_momentum`` and ``keras_dtype_policy`` are defined here and used by
``keras-tf`` (:mod:`harness.adapters.tensorflow`) too, so the Keras backends
cannot drift apart (the leading underscore keeps this module out of the backend
registry).  :func:`run_keras_layer` is the backend-agnostic
loop (eager calls, results through ``keras.ops.convert_to_numpy``); ``keras-tf``
traces its calls with ``tf.function`` instead but could use :func:`make_layer`
and :func:`keras_unsupported` unchanged.

Keras itself upcasts float16/bfloat16 inputs to float32 for the statistics and
normalization (``compute_dtype = result_type(x.dtype, "float32")``) and casts
``y`` back to the policy's compute dtype; that is Keras' behaviour, reported as is.

Importing this module imports no framework.
"""

from __future__ import annotations

import numpy as np

from harness.adapters.base import Observed, Unsupported
from harness.cases import Case
from harness.inputs import Inputs
from harness.profiles import convention

__all__ = ["keras_momentum", "keras_dtype_policy", "keras_unsupported", "make_layer", "run_keras_layer",
           "CUMULATIVE_REASON"]

_KERAS3_MOMENTS = "keras/src/backend/{tensorflow,torch,jax,numpy}/nn.py (moments) and keras/src/layers/normalization/batch_normalization.py (call)"

#: keras.layers.BatchNormalization (every Keras 3 backend): ops.moments' biased variance for both uses
KERAS3_CONVENTIONS = (
    convention("normalize_variance", "biased", "ops.moments returns the population variance (divides by m)",
               _KERAS3_MOMENTS),
    convention("running_variance", "biased", "moving_variance is blended with the same ops.moments variance",
               _KERAS3_MOMENTS),
)


def keras_momentum(case: Case) -> float:
    """Keras ``momentum`` (weight of the *old* moving value) = 1 - w; a case's running_weight is used as given."""
    if case.momentum == "cumulative":
        raise Unsupported("cumulative average (w = 1/k) is not expressible: keras.layers.BatchNormalization has "
                          "one fixed exponential 'momentum'")
    if case.momentum.running_weight is not None:
        return float(case.momentum.running_weight)
    return 1.0 - float(case.momentum.batch_weight)



def keras_dtype_policy(case: Case) -> str | None:
    """Keras dtype policy for (x dtype, parameter dtype), or None when Keras has none."""
    if case.dtype == case.params_dtype:
        return case.dtype
    if case.params_dtype == "float32" and case.dtype in ("float16", "bfloat16"):
        return f"mixed_{case.dtype}"
    return None



CUMULATIVE_REASON = ("cumulative average (w = 1/k) is not expressible: keras.layers.BatchNormalization has one "
                     "fixed exponential 'momentum'")


def keras_unsupported(case: Case) -> str | None:
    """Why Keras 3's BatchNormalization cannot express ``case`` (None when it can)."""
    if case.mode == "train" and case.momentum == "cumulative":
        return CUMULATIVE_REASON
    if keras_dtype_policy(case) is None:
        return (f"no Keras dtype policy computes in {case.dtype} with {case.params_dtype} variables "
                f"(policies: one dtype for both, or mixed_float16/mixed_bfloat16 with float32 variables)")
    return None


def make_layer(keras, case: Case, inputs: Inputs):
    """A built ``keras.layers.BatchNormalization`` holding the case's parameters and initial statistics."""
    momentum = keras_momentum(case) if case.mode == "train" else 0.99  # unused in inference
    layer = keras.layers.BatchNormalization(
        axis=case.channel_axis, momentum=momentum, epsilon=case.eps,
        center=case.has_affine, scale=case.has_affine, dtype=keras_dtype_policy(case))
    layer.build(case.array_shape)
    if case.has_affine:
        layer.gamma.assign(inputs.gamma)
        layer.beta.assign(inputs.beta)
    layer.moving_mean.assign(inputs.running_mean)
    layer.moving_variance.assign(inputs.running_var)
    return layer


def run_keras_layer(keras, case: Case, inputs: Inputs, to_tensor=None) -> Observed:
    """Run ``case`` through a fresh layer, eagerly, on whatever backend ``keras`` was imported with.

    ``to_tensor`` turns a NumPy input into the backend's tensor (default
    ``keras.ops.convert_to_tensor``).  Outputs: ``y``, ``running_mean``/``running_var``
    (the layer's ``moving_mean``/``moving_variance`` after every training step) and
    ``eval_y``; Keras exposes no batch statistics.
    """
    reason = keras_unsupported(case)
    if reason:
        raise Unsupported(reason)
    conv = to_tensor or keras.ops.convert_to_tensor
    layer = make_layer(keras, case, inputs)
    np_out = keras.ops.convert_to_numpy
    notes = [f"dtype policy {keras_dtype_policy(case)}"] if case.dtype != case.params_dtype else []
    train = case.mode == "train"
    out: dict[str, list[np.ndarray]] = {"y": []}
    if train:
        out.update(running_mean=[], running_var=[])
    for x in inputs.x:
        y = layer(conv(x), training=train)
        out["y"].append(np_out(y))
        if train:
            out["running_mean"].append(np_out(layer.moving_mean.value))
            out["running_var"].append(np_out(layer.moving_variance.value))
    if train and case.eval_after:
        out["eval_y"] = [np_out(layer(conv(inputs.x[-1]), training=False))]
    return Observed(out, notes)
