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
``keras-tf`` (:mod:`normconf.adapters.tensorflow`) too, so the Keras backends
cannot drift apart (the leading underscore keeps this module out of the backend
registry).  :func:`run_keras_layer` is the backend-agnostic
loop (eager calls, results through ``keras.ops.convert_to_numpy``); ``keras-tf``
traces its calls with ``tf.function`` instead but could use :func:`make_layer`
and :func:`keras_unsupported` unchanged.

Keras itself upcasts float16/bfloat16 inputs to float32 for the statistics and
normalization (``compute_dtype = result_type(x.dtype, "float32")``) and casts
``y`` back to the policy's compute dtype; that is Keras' behaviour, reported as is.

LayerNorm (``op: layer_norm``) goes to ``keras.layers.LayerNormalization``, translated here
too (:func:`make_layer_norm`, :func:`run_keras_layer_norm`):

=========================  ==============================================================
case field                 Keras 3 argument
=========================  ==============================================================
``axes``                   ``axis = list(case.norm_axes)`` (any set of axes; gamma/beta
                           span exactly those dimensions)
``eps``                    ``epsilon``
``affine`` / ``bias``      ``scale = has_affine``, ``center = has_bias``; gamma/beta
                           assigned after ``build``
``rms_scaling``            ``rms_scaling`` (deprecated by Keras, which warns: it divides by
                           the variance; declared as ``scale_statistic: variance``).  Keras
                           creates gamma (ones) under ``rms_scaling`` even with
                           ``scale=False``: ``x·1`` is exact
``dtype``/``param_dtype``  the same dtype policy as BatchNorm (:func:`keras_dtype_policy`)
``steps``                  one call of the same layer per step (LayerNorm has no state)
=========================  ==============================================================

Outputs: ``y`` only (the layer exposes no row statistics).  The layer runs
``keras.ops.layer_normalization``: on the torch backend with consecutive axes that is
``torch.nn.functional.layer_norm`` with ``normalized_shape`` = those dimensions, which
normalizes the *trailing* dimensions whether or not the axes are trailing — a Keras bug
this adapter reports as is (a mismatch, or torch's error), never works around.

Importing this module imports no framework.
"""

from __future__ import annotations

import numpy as np

from normconf.adapters.base import Observed, Unsupported
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

__all__ = [
    "keras_momentum",
    "keras_dtype_policy",
    "keras_unsupported",
    "make_layer",
    "run_keras_layer",
    "CUMULATIVE_REASON",
    "KERAS3_LN_CONVENTIONS",
    "keras_ln_unsupported",
    "make_layer_norm",
    "layer_norm_notes",
    "run_keras_layer_norm",
]

_KERAS3_MOMENTS = "keras/src/backend/{tensorflow,torch,jax,numpy}/nn.py (moments) and keras/src/layers/normalization/batch_normalization.py (call)"

#: keras.layers.BatchNormalization (every Keras 3 backend): ops.moments' biased variance for both uses
KERAS3_CONVENTIONS = (
    convention(
        "normalize_variance", "biased", "ops.moments returns the population variance (divides by m)", _KERAS3_MOMENTS
    ),
    convention(
        "running_variance", "biased", "moving_variance is blended with the same ops.moments variance", _KERAS3_MOMENTS
    ),
)


def keras_momentum(case: Case) -> float:
    """Keras ``momentum`` (weight of the *old* moving value) = 1 - w; a case's running_weight is used as given."""
    if case.momentum == "cumulative":
        raise Unsupported(
            "cumulative average (w = 1/k) is not expressible: keras.layers.BatchNormalization has "
            "one fixed exponential 'momentum'"
        )
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


CUMULATIVE_REASON = (
    "cumulative average (w = 1/k) is not expressible: keras.layers.BatchNormalization has one "
    "fixed exponential 'momentum'"
)


def keras_unsupported(case: Case) -> str | None:
    """Why Keras 3's BatchNormalization cannot express ``case`` (None when it can)."""
    if case.mode == "train" and case.momentum == "cumulative":
        return CUMULATIVE_REASON
    if keras_dtype_policy(case) is None:
        return (
            f"no Keras dtype policy computes in {case.dtype} with {case.params_dtype} variables "
            f"(policies: one dtype for both, or mixed_float16/mixed_bfloat16 with float32 variables)"
        )
    return None


def make_layer(keras, case: Case, inputs: Inputs):
    """A built ``keras.layers.BatchNormalization`` holding the case's parameters and initial statistics."""
    momentum = keras_momentum(case) if case.mode == "train" else 0.99  # unused in inference
    layer = keras.layers.BatchNormalization(
        axis=case.channel_axis,
        momentum=momentum,
        epsilon=case.eps,
        center=case.has_affine,
        scale=case.has_affine,
        dtype=keras_dtype_policy(case),
    )
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


# --- LayerNorm (op: layer_norm) -------------------------------------------------------------------
_KERAS3_LN = (
    "keras/src/ops/nn.py (_layer_normalization) and keras/src/layers/normalization/"
    "layer_normalization.py (LayerNormalization.__init__/call)"
)
#: keras.layers.LayerNormalization (every Keras 3 backend)
KERAS3_LN_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "ops.layer_normalization divides by the population variance: ops.moments (tf.nn.moments, "
        "jnp.var, E[x²]-E[x]² on torch/numpy), torch's F.layer_norm (biased) on the torch backend, and "
        "backend.numpy.var (ddof 0 / correction=0) under rms_scaling",
        _KERAS3_LN + "; keras/src/backend/{tensorflow,torch,jax,numpy}/nn.py (moments); "
        "keras/src/backend/torch/numpy.py (var: correction=0)",
        op="layer_norm",
    ),
    convention(
        "scale_statistic",
        "variance",
        "rms_scaling=True scales x by rsqrt(var(x) + epsilon), the variance, not the mean of x² "
        "(_layer_normalization: variance = backend.numpy.var(x, axis, keepdims=True); outputs = "
        "x * rsqrt(variance + epsilon)); the layer's deprecation warning says so: 'This argument "
        "incorrectly scales the input by the variance, not the root mean square'",
        _KERAS3_LN,
        op="layer_norm",
    ),
)


def keras_ln_unsupported(case) -> str | None:
    """Why Keras' LayerNormalization (3 or 2) cannot express a LayerNorm ``case`` (None when it can)."""
    if keras_dtype_policy(case) is None:
        return (
            f"no Keras dtype policy computes in {case.dtype} with {case.params_dtype} variables "
            f"(policies: one dtype for both, or mixed_float16/mixed_bfloat16 with float32 variables)"
        )
    return None


def make_layer_norm(keras, case, inputs, shape=None):
    """A built ``keras.layers.LayerNormalization`` for ``case`` holding its gamma/beta, and the
    warnings its constructor gave (text)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer = keras.layers.LayerNormalization(
            axis=list(case.norm_axes),
            epsilon=case.eps,
            center=case.has_bias,
            scale=case.has_affine,
            rms_scaling=case.rms_scaling,
            dtype=keras_dtype_policy(case),
        )
    layer.build(tuple(case.shape) if shape is None else shape)
    assign_layer_norm(layer, inputs)
    return layer, [str(w.message) for w in caught]


def assign_layer_norm(layer, inputs) -> None:
    """Put the case's gamma/beta into a built LayerNormalization (Keras 3 or 2)."""
    for name in ("gamma", "beta"):
        var, value = getattr(layer, name, None), getattr(inputs, name)
        if var is not None and value is not None:
            var.assign(value.astype(_np_dtype_of(var)))


def _np_dtype_of(var):
    """The NumPy dtype of a Keras (3 or 2) variable (bfloat16: ml_dtypes')."""
    from normconf.inputs import np_dtype

    dt = var.dtype
    name = getattr(dt, "name", None) or str(dt)
    return np_dtype(name.replace("torch.", ""))


def layer_norm_notes(case, layer, warned: list[str]) -> list[str]:
    """Notes every Keras LayerNorm run carries: the policy, the variables' dtype, rms_scaling's warning."""
    notes = []
    if case.dtype != case.params_dtype:
        notes.append(f"dtype policy {keras_dtype_policy(case)}")
    if case.rms_scaling:
        notes.append("rms_scaling=True" + ("; Keras warned: " + warned[0] if warned else ""))
        if not case.has_affine:
            notes.append("Keras creates gamma under rms_scaling even with scale=False; left at its initial ones")
    return notes


def run_keras_layer_norm(keras, case, inputs, to_tensor=None):
    """Run a LayerNorm ``case`` through a fresh ``LayerNormalization``, eagerly, once per step; ``y`` only."""
    reason = keras_ln_unsupported(case)
    if reason:
        raise Unsupported(reason)
    conv = to_tensor or keras.ops.convert_to_tensor
    layer, warned = make_layer_norm(keras, case, inputs)
    np_out = keras.ops.convert_to_numpy
    ys = [np_out(layer(conv(x))) for x in inputs.x]
    notes = layer_norm_notes(case, layer, warned)
    if keras.backend.backend() == "torch" and not case.rms_scaling:
        ax = list(case.norm_axes)
        if all(b - a == 1 for a, b in zip(ax, ax[1:])):  # ops.nn's is_continuous_axis
            notes.append(
                f"consecutive axes {ax}: Keras calls torch.nn.functional.layer_norm(normalized_shape="
                f"{list(case.normalized_shape)}), which normalizes the trailing dimensions"
            )
        else:
            notes.append(f"non-consecutive axes {ax}: Keras' ops.moments path (E[x²] - E[x]²)")
    return Observed({"y": ys}, notes)
