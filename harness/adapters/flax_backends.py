"""Flax backends: ``flax`` (``flax.linen.BatchNorm``) and ``flax-nnx`` (``flax.nnx.BatchNorm``).

Both run in the ``jax`` worker group (``JAX_PLATFORMS=cpu``, ``JAX_ENABLE_X64=1``:
without x64 JAX silently computes a float64 case in float32; the modules create
their own statistics with explicit float32 dtypes, so float32 cases are unaffected).

Translation (case → Flax), read from the installed ``flax/linen/normalization.py``
and ``flax/nnx/nn/normalization.py``:

==========================  =================================================================
case field                  Flax argument
==========================  =================================================================
``momentum``                ``momentum = 1 - w``: Flax' ``momentum`` is the decay of the
                            running average (``ra = momentum*ra + (1-momentum)*batch``); a
                            case stated as ``running_weight`` is used as given.
                            ``cumulative`` → unsupported (one fixed decay)
``eps``                     ``epsilon`` (inside the square root: ``rsqrt(var + epsilon)``)
layout / ``channel_axis``   ``axis`` = 1 or -1 (the feature axis; every other axis is reduced)
``affine``                  ``use_scale = use_bias = has_affine``; ``scale``/``bias`` params
                            set from gamma/beta
``running_mean``/``_var``   linen: the ``batch_stats`` collection ``{'mean', 'var'}`` passed to
                            ``apply`` (updated with ``mutable=['batch_stats']``); nnx: the
                            ``mean``/``var`` ``BatchStat`` variables; in the parameter dtype
``mode``                    ``use_running_average = (mode == 'eval')``
``dtype``                   ``dtype`` (the result/computation dtype)
``param_dtype``             ``param_dtype``
==========================  =================================================================

Everything else keeps Flax's defaults, which are part of what is tested:
``use_fast_variance=True`` (one-pass ``E[x²] − E[x]²`` clamped at 0) and, in
linen, ``force_float32_reductions=True`` (statistics in at least float32).
Each step is one ``jax.jit``-compiled call (``nnx.jit`` for nnx), the way a
training step runs in practice.  Outputs: ``y``, ``running_mean``/``running_var``
(the updated statistics) and ``eval_y``; batch statistics are not exposed.

LayerNorm (``flax.linen.LayerNorm`` / ``flax.nnx.LayerNorm``): ``epsilon`` = eps;
``reduction_axes`` = ``feature_axes`` = the case's normalized axes (both must be given: the
statistics are taken over ``reduction_axes``, and ``scale``/``bias`` span ``feature_axes``, whose
default ``-1`` would make them per-last-axis — any set of axes is expressible this way);
``use_scale`` = has_affine, ``use_bias`` = has_bias, ``param_dtype`` = the parameter dtype and
``dtype`` = the case dtype, as for BatchNorm (Flax' ``dtype=None`` would promote a float16 input
with float32 parameters to a float32 result).  ``scale``/``bias`` are set from gamma/beta (linen:
the ``params`` collection, shaped like the normalized dimensions; nnx: the ``Param`` variables,
flat over ``num_features`` = the row size and reshaped by Flax onto the feature axes).
``use_fast_variance`` stays at Flax' default (True: one-pass, clamped at 0), and linen's
``force_float32_reductions`` too — the precision that gives is judged, not corrected.  RMS
scaling is ``RMSNorm``, another module: ``unsupported``.  Output: ``y`` only (the modules
return no statistics).
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np

from normconf.adapters.base import Adapter, Observed, Unsupported, missing
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

_FLAX_STATS = "flax/linen/normalization.py (_compute_stats: var = mean(x^2) - mean(x)^2, clamped at 0)"
#: linen and nnx share ``_compute_stats``: the population variance for normalizing and for the running update
FLAX_CONVENTIONS = (
    convention(
        "normalize_variance", "biased", "_compute_stats returns the population variance (divides by m)", _FLAX_STATS
    ),
    convention("running_variance", "biased", "ra_var is blended with the same variance", _FLAX_STATS),
)
_FLAX_LN_STATS = (
    "flax/linen/normalization.py (_compute_stats: mu, mu2 = mean(x), mean(|x|^2); "
    "var = maximum(0, mu2 - |mu|^2); LayerNorm.__call__) and flax/nnx/nn/normalization.py "
    "(_compute_stats, the same; LayerNorm.__call__)"
)
#: linen and nnx LayerNorm normalize with the population variance of ``_compute_stats``
FLAX_LN_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "LayerNorm normalizes with the variance of _compute_stats, mean(x^2) - mean(x)^2 over the reduction "
        "axes: the population variance (divides by m)",
        _FLAX_LN_STATS,
        op="layer_norm",
    ),
)
#: nnx.BatchNorm creates its running statistics in float32 whatever ``param_dtype`` says
NNX_FLOAT32_STATISTICS = convention(
    "working_precision",
    "float32",
    "nnx.BatchNorm creates its mean/var BatchStat variables as jnp.float32 arrays (not param_dtype), so the "
    "running statistics of a float64 case are held and updated in float32",
    "flax/nnx/nn/normalization.py (BatchNorm.__init__: nnx.BatchStat(jnp.zeros(feature_shape, jnp.float32)))",
    applies_to=("float64",),
    outputs=("running_mean", "running_var", "eval_y"),
)
#: the same variables in inference: y is normalized with the given running statistics held in float32
NNX_FLOAT32_STATISTICS_EVAL = convention(
    "working_precision",
    "float32",
    "in inference nnx.BatchNorm normalizes with its mean/var BatchStat variables, float32 arrays, so a float64 "
    "case's given running statistics are rounded to float32 before they normalize y",
    "flax/nnx/nn/normalization.py (BatchNorm.__init__: nnx.BatchStat(jnp.zeros(feature_shape, jnp.float32)); "
    "BatchNorm.__call__: mean, var = promote_dtype(self.mean[...], self.var[...]), used as they are with "
    "use_running_average; the adapter assigns the given statistics with bn.mean[...] = ..., which keeps float32)",
    applies_to=("float64",),
    outputs=("y",),
    modes=("eval",),
)

JAX_ENV = {"JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"}

CUMULATIVE_REASON = (
    "cumulative average (w = 1/k) is not expressible: Flax BatchNorm's 'momentum' is one fixed exponential decay"
)


def flax_momentum(case: Case) -> float:
    """Flax ``momentum`` (decay: weight of the old running value) = 1 - w; ``running_weight`` used as given."""
    if case.momentum == "cumulative":
        raise Unsupported(CUMULATIVE_REASON)
    if case.momentum.running_weight is not None:
        return float(case.momentum.running_weight)
    return 1.0 - float(case.momentum.batch_weight)


def _batchnorm_kwargs(case: Case) -> dict:
    """The case → BatchNorm arguments shared by flax.linen and flax.nnx (see the module's table)."""
    return dict(
        axis=case.channel_axis,
        momentum=flax_momentum(case) if case.mode == "train" else 0.99,  # unused in inference
        epsilon=case.eps,
        dtype=_jnp_dtype(case.dtype),
        param_dtype=_jnp_dtype(case.params_dtype),
        use_bias=case.has_affine,
        use_scale=case.has_affine,
    )


#: jitted step functions per module configuration (by the exact bits of its numbers, so eps -0.0 and 0.0
#: are two), shared by the cases of a run: jax.jit's own cache then compiles once per input signature, as a
#: training loop does, instead of tracing and lowering anew for every case.  The most recent
#: :data:`MAX_CACHED` configurations (a fuzz session draws a new one per example)
_LINEN_STEPS: OrderedDict[tuple, tuple] = OrderedDict()
MAX_CACHED = 128


def _config_key(kwargs: dict) -> tuple:
    return tuple((k, v.hex() if isinstance(v, float) else v) for k, v in sorted(kwargs.items()))


def _linen_steps(kwargs: dict) -> tuple:
    """(train_step, infer) for ``nn.BatchNorm(**kwargs)``, each one ``jax.jit``-compiled ``module.apply``."""
    key = _config_key(kwargs)
    if key not in _LINEN_STEPS:
        import flax.linen as nn
        import jax

        module = nn.BatchNorm(use_running_average=None, **kwargs)

        @jax.jit
        def train_step(variables, x):
            return module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])

        @jax.jit
        def infer(variables, x):
            return module.apply(variables, x, use_running_average=True)

        _LINEN_STEPS[key] = (train_step, infer)
        while len(_LINEN_STEPS) > MAX_CACHED:
            _LINEN_STEPS.popitem(last=False)
    _LINEN_STEPS.move_to_end(key)
    return _LINEN_STEPS[key]


@functools.cache
def _nnx_step():
    """One ``nnx.jit`` step for every case: nnx.jit's cache is keyed by the module's graph definition
    (its static attributes: epsilon, momentum, axis, dtypes, ...) and the input signature."""
    from flax import nnx

    @nnx.jit(static_argnums=2)
    def step(bn, x, use_running_average):
        return bn(x, use_running_average=use_running_average)

    return step


def _jnp_dtype(name: str):
    import jax.numpy as jnp

    return {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32, "float64": jnp.float64}[name]


def _dev(a):
    """The array on the device as it is (``jax.device_put``: no eager conversion program per shape, which
    ``jnp.asarray`` compiles and runs; same dtype and values)."""
    import jax

    return jax.device_put(np.asarray(a))


def _np(a) -> np.ndarray:
    return np.asarray(a)  # bfloat16 arrays come back as ml_dtypes.bfloat16


def _check_x64(case: Case) -> None:
    import jax

    if case.dtype == "float64" or case.params_dtype == "float64":
        if not jax.config.jax_enable_x64:
            raise Unsupported("JAX runs without x64 (JAX_ENABLE_X64 unset): float64 would silently be float32")


RMS_REASON = (
    "Flax LayerNorm always centers and divides by the standard deviation; RMS scaling is RMSNorm, another module"
)


def _layer_norm_kwargs(case) -> dict:
    """The case → LayerNorm arguments shared by flax.linen and flax.nnx (see the module's docstring)."""
    axes = tuple(int(a) for a in case.norm_axes)
    return dict(
        epsilon=case.eps,
        dtype=_jnp_dtype(case.dtype),
        param_dtype=_jnp_dtype(case.params_dtype),
        use_bias=case.has_bias,
        use_scale=case.has_affine,
        reduction_axes=axes,
        feature_axes=axes,
    )


def _layer_norm_note(case, api: str) -> str:
    axes = list(case.norm_axes)
    return (
        f"{api}(epsilon={case.eps:g}, reduction_axes=feature_axes={axes}, use_scale={case.has_affine}, "
        f"use_bias={case.has_bias}, param_dtype={case.params_dtype}, dtype={case.dtype} (the case dtype, as "
        f"for BatchNorm)); use_fast_variance at Flax' default (True)"
    )


class _FlaxBase(Adapter):
    framework = "flax"
    worker = "jax"
    cpu_estimate = (1.2, 20.0)
    conventions = FLAX_CONVENTIONS + FLAX_LN_CONVENTIONS
    worker_env = dict(JAX_ENV)
    ops = ("batch_norm", "layer_norm")

    def available(self) -> str | None:
        return missing("jax", "pip install jax") or missing("flax", "pip install flax")

    def version(self) -> str:
        import flax
        import jax

        return f"{flax.__version__} (jax {jax.__version__})"

    def unsupported(self, case: Case) -> str | None:
        reason = super().unsupported(case)
        if reason:
            return reason
        if getattr(case, "op", "batch_norm") == "layer_norm":
            return RMS_REASON if case.rms_scaling else None
        if case.mode == "train" and case.momentum == "cumulative":
            return CUMULATIVE_REASON
        return None

    def run(self, case: Case, inputs: Inputs) -> Observed:
        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        _check_x64(case)
        return self._run(case, inputs)

    def _run(self, case: Case, inputs: Inputs) -> Observed:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_layer_norm(self, case) -> None:
        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        _check_x64(case)


class FlaxLinen(_FlaxBase):
    id = "flax"
    description = "flax.linen.BatchNorm (jax.jit, CPU), batch_stats collection"

    def _run(self, case: Case, inputs: Inputs) -> Observed:
        train = case.mode == "train"
        train_step, infer = _linen_steps(_batchnorm_kwargs(case))
        variables = {"batch_stats": {"mean": _dev(inputs.running_mean), "var": _dev(inputs.running_var)}}
        if case.has_affine:
            variables["params"] = {"scale": _dev(inputs.gamma), "bias": _dev(inputs.beta)}
        out: dict[str, list[np.ndarray]] = {"y": []}
        if train:
            out.update(running_mean=[], running_var=[])
        for x in inputs.x:
            if train:
                y, mutated = train_step(variables, _dev(x))
                variables = {**variables, "batch_stats": mutated["batch_stats"]}
                out["running_mean"].append(_np(variables["batch_stats"]["mean"]))
                out["running_var"].append(_np(variables["batch_stats"]["var"]))
            else:
                y = infer(variables, _dev(x))
            out["y"].append(_np(y))
        if train and case.eval_after:
            out["eval_y"] = [_np(infer(variables, _dev(inputs.x[-1])))]
        return Observed(
            out,
            [
                "batch_stats and params set from the case (parameter dtype); use_fast_variance and "
                "force_float32_reductions at Flax' defaults (True)"
            ],
        )

    def run_layer_norm(self, case, inputs) -> Observed:
        import flax.linen as nn
        import jax

        self._check_layer_norm(case)
        module = nn.LayerNorm(**_layer_norm_kwargs(case))
        params = {}
        if case.has_affine:
            params["scale"] = _dev(inputs.gamma)  # shaped like the feature axes' dimensions
        if case.has_bias:
            params["bias"] = _dev(inputs.beta)
        variables = {"params": params}

        @jax.jit
        def apply(variables, x):
            return module.apply(variables, x)

        ys = [_np(apply(variables, _dev(x))) for x in inputs.x]
        return Observed(
            {"y": ys},
            [
                _layer_norm_note(case, "flax.linen.LayerNorm")
                + " and force_float32_reductions at its default (True); params set from the case"
            ],
        )


class FlaxNNX(_FlaxBase):
    id = "flax-nnx"
    description = "flax.nnx.BatchNorm (nnx.jit, CPU), BatchStat variables"
    conventions = (*FLAX_CONVENTIONS, NNX_FLOAT32_STATISTICS, NNX_FLOAT32_STATISTICS_EVAL, *FLAX_LN_CONVENTIONS)

    def available(self) -> str | None:
        reason = super().available()
        if reason:
            return reason
        try:
            from flax import nnx
        except Exception as e:  # an old flax without nnx
            return f"flax.nnx cannot be imported: {type(e).__name__}: {e}"
        if not hasattr(nnx, "BatchNorm"):
            return "this flax has no flax.nnx.BatchNorm"
        return None

    def _run(self, case: Case, inputs: Inputs) -> Observed:
        from flax import nnx

        train = case.mode == "train"
        bn = nnx.BatchNorm(
            case.channels,
            use_running_average=not train,
            **_batchnorm_kwargs(case),
            rngs=nnx.Rngs(0),
        )
        bn.mean[...] = _dev(inputs.running_mean)
        bn.var[...] = _dev(inputs.running_var)
        if case.has_affine:
            bn.scale[...] = _dev(inputs.gamma)
            bn.bias[...] = _dev(inputs.beta)

        step = _nnx_step()
        out: dict[str, list[np.ndarray]] = {"y": []}
        if train:
            out.update(running_mean=[], running_var=[])
        for x in inputs.x:
            out["y"].append(_np(step(bn, _dev(x), not train)))
            if train:
                out["running_mean"].append(_np(bn.mean[...]))
                out["running_var"].append(_np(bn.var[...]))
        if train and case.eval_after:
            out["eval_y"] = [_np(step(bn, _dev(inputs.x[-1]), True))]
        return Observed(
            out,
            [
                "BatchStat mean/var and params set from the case (parameter dtype); "
                "use_fast_variance at Flax' default (True)"
            ],
        )

    def run_layer_norm(self, case, inputs) -> Observed:
        from flax import nnx

        self._check_layer_norm(case)
        ln = nnx.LayerNorm(case.row_size, **_layer_norm_kwargs(case), rngs=nnx.Rngs(0))
        # nnx keeps scale/bias flat (num_features,) and reshapes them onto the feature axes (row-major)
        if case.has_affine:
            ln.scale[...] = _dev(inputs.gamma).reshape(-1)
        if case.has_bias:
            ln.bias[...] = _dev(inputs.beta).reshape(-1)

        @nnx.jit
        def step(ln, x):
            return ln(x)

        ys = [_np(step(ln, _dev(x))) for x in inputs.x]
        notes = [
            _layer_norm_note(case, "flax.nnx.LayerNorm")
            + f"; num_features={case.row_size} (flat scale/bias set from the case)"
        ]
        if case.has_affine and case.params_dtype != case.dtype:
            notes.append(
                f"nnx.LayerNorm casts x, scale and bias to dtype={case.dtype} (promote_dtype) before "
                f"computing: the {case.params_dtype} gamma/beta are used rounded to {case.dtype}"
            )
        return Observed({"y": ys}, notes)


ADAPTERS = [FlaxLinen, FlaxNNX]
