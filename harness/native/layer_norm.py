"""LayerNorm through the C ABI v2 (``NORMCONF_OP_LAYER_NORM`` in ``native/include/normconf.h``).

Conventions of the call (what :func:`call_layer_norm` passes and expects back):

* ``x`` as is, C-contiguous, any rank 1..8 (no layout, no transposition); ``axes_mask`` has bit
  ``i`` set for every normalized axis ``i`` (any set, not only trailing axes).
* ``gamma``/``beta``: the normalized shape (the dims at the normalized axes, in order), in the
  parameter dtype, or NULL (no scale / no shift).
* ``y``: x's shape and dtype.  ``mean``/``inv_std`` (optional outputs, asked for every call):
  x's shape with the normalized axes set to 1 (keepdims), in the parameter dtype; an output the
  library did not mark in ``written`` is left out.
* float16/bfloat16 travel as their raw uint16 storage (the arrays' own bytes).

One call per step (each step is an independent input).  A v1 library (normconf_bn.h) has no
LayerNorm; neither does a v2 library whose ``normconf_supports`` says no: both are
:class:`~normconf.native.NativeUnsupported`.  RMS scaling is not LayerNorm in the ABI (it will be
``NORMCONF_OP_RMS_NORM``), so an ``rms_scaling`` case is unsupported too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normconf.native.abi import ABI_V2, DTYPE_CODES, MAX_RANK, WROTE_INV_STD, WROTE_MEAN, new_call_v2, ptr


@dataclass
class LayerNormResult:
    y: np.ndarray
    mean: np.ndarray | None
    inv_std: np.ndarray | None


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def call_layer_norm(
    lib,
    x: np.ndarray,
    *,
    norm_axes: tuple[int, ...],
    eps: float,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    param_dtype: np.dtype | str,
) -> LayerNormResult:
    """One LayerNorm call on ``x`` over ``norm_axes`` (non-negative, distinct).

    Raises :class:`~normconf.native.NativeUnsupported` (EUNSUPPORTED, or what the library or the
    ABI cannot carry), :class:`~normconf.native.NativeCallError` (other codes) or ``ValueError``
    (arrays that do not fit the call).
    """
    from normconf.native import NativeUnsupported

    pdt = _np_dtype(param_dtype) if isinstance(param_dtype, str) else np.dtype(param_dtype)
    if lib.abi != ABI_V2 or not lib.supports("layer_norm"):
        raise NativeUnsupported(
            f"the library ({lib.abi_label}) does not implement layer_norm (it reports {', '.join(lib.ops) or 'no op'})"
        )
    for what, dt in (("dtype", x.dtype), ("param dtype", pdt)):
        if dt.name not in DTYPE_CODES:
            raise NativeUnsupported(f"the C ABI carries {', '.join(DTYPE_CODES)}, not {what} {dt.name}")
    if not 1 <= x.ndim <= MAX_RANK:
        raise NativeUnsupported(f"the C ABI carries ranks 1..{MAX_RANK}, not {x.ndim}")
    axes = tuple(int(a) for a in norm_axes)
    if not axes or len(set(axes)) != len(axes) or any(not 0 <= a < x.ndim for a in axes):
        raise ValueError(f"norm_axes {norm_axes} must be distinct axes of a rank-{x.ndim} array")
    x = np.ascontiguousarray(x)
    pshape = tuple(x.shape[a] for a in sorted(axes))
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None and (a.dtype != pdt or a.shape != pshape or not a.flags.c_contiguous):
            raise ValueError(f"{name} must be a contiguous {pshape} {pdt.name} array")
    stats_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    y = np.empty_like(x)
    mean = np.zeros(stats_shape, pdt)
    inv_std = np.zeros(stats_shape, pdt)
    call = new_call_v2("layer_norm", x, pdt)
    call.axes_mask = sum(1 << a for a in axes)
    call.eps = float(eps)
    call.gamma, call.beta = ptr(gamma), ptr(beta)
    call.y, call.mean, call.inv_std = ptr(y), ptr(mean), ptr(inv_std)
    lib.check(lib.forward(call), "layer_norm")
    w = call.written
    return LayerNormResult(y, mean if w & WROTE_MEAN else None, inv_std if w & WROTE_INV_STD else None)


def run_case(lib, case, inputs, *, label: str) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """Drive ``lib`` through a LayerNorm ``case``: ``({"y"|"mean"|"inv_std": [array per step]}, notes)``.

    ``case``: ``shape``, ``norm_axes``, ``eps``, ``dtype``, ``params_dtype``, ``rms_scaling``;
    ``inputs``: ``x`` (one array per step), ``gamma``/``beta`` (normalized shape, or None).
    ``mean``/``inv_std`` are returned only when the library wrote them at every step.
    """
    from normconf.native import NativeUnsupported

    if getattr(case, "rms_scaling", False):
        raise NativeUnsupported(
            "the C ABI's layer_norm always centers and divides by the standard deviation; "
            "RMS scaling (rms_norm, op 5) is reserved, not implemented"
        )
    pdt = _np_dtype(case.params_dtype)
    dt = _np_dtype(case.dtype)

    def param(a):
        return None if a is None else np.ascontiguousarray(a, dtype=pdt)

    gamma, beta = param(inputs.gamma), param(inputs.beta)
    ys, means, inv_stds = [], [], []
    for x in inputs.x:
        r = call_layer_norm(
            lib,
            np.ascontiguousarray(x, dtype=dt),
            norm_axes=tuple(case.norm_axes),
            eps=case.eps,
            gamma=gamma,
            beta=beta,
            param_dtype=pdt,
        )
        ys.append(r.y)
        means.append(r.mean)
        inv_stds.append(r.inv_std)
    out: dict[str, list[np.ndarray]] = {"y": ys}
    notes: list[str] = []
    for name, got in (("mean", means), ("inv_std", inv_stds)):
        if all(a is not None for a in got):
            out[name] = got
        else:
            notes.append(f"{label}: the library did not write {name} (written bits); left out")
    return out, notes
