"""PyTorch backends: ``torch`` (nn.BatchNorm1d/2d/3d, nn.LayerNorm), ``torch-functional``
(F.layer_norm) and ``torch-scratch`` (D2L from scratch, BatchNorm only).

Translation (case → PyTorch):

* momentum: PyTorch's ``momentum`` *is* the batch weight ``w``
  (``running = (1 - momentum) * running + momentum * batch``); ``cumulative`` → ``momentum=None``.
* eps → ``eps``; mode → ``module.train()`` / ``module.eval()``.
* affine → ``affine=True`` with ``weight``/``bias`` copied from gamma/beta, or ``affine=False``.
* initial running statistics → ``running_mean``/``running_var`` buffers.
* layout: the modules take channels-first tensors.  A channels-last case is permuted to
  (N, C, *spatial) — for rank 4/5 with ``memory_format=torch.channels_last(_3d)``, so the
  channels-last kernel runs on the same memory order — and the output permuted back (noted).
* dtype: input in the case dtype, module parameters and buffers in the parameter dtype.
  A missing kernel (e.g. a half-precision CPU kernel) is reported as ``unsupported``
  with PyTorch's own message, decided by trying.

PyTorch itself normalizes with the biased batch variance and updates ``running_var``
with the *unbiased* one; a case asking for another convention shows that as a
discrepancy (that is the point).  ``torch-scratch`` is the *Dive into Deep Learning*
from-scratch algorithm in tensor ops: biased variance for normalizing and for the
moving averages, statistics over every axis but the channel axis.

LayerNorm (case → PyTorch): ``torch`` runs ``torch.nn.LayerNorm(normalized_shape, eps,
elementwise_affine=has_affine, bias=has_bias, dtype=<parameter dtype>)`` with ``weight``/``bias``
copied from gamma/beta; ``torch-functional`` calls ``torch.nn.functional.layer_norm(x,
normalized_shape, weight, bias, eps)`` with the same tensors.  ``normalized_shape`` names the
*last* dimensions, so only trailing normalized axes are expressible; RMS scaling is another
module (``torch.nn.RMSNorm``), not LayerNorm — both are ``unsupported``.  ``torch`` also reports
``mean``/``inv_std``: the mean and rstd that ``aten::native_layer_norm`` (the kernel the module
reaches on CPU) returned in the module's own call (its autograd node, ``NativeLayerNormBackward0``,
holds them); BatchNorm's ``batch_mean``/``inv_std`` likewise from ``aten::native_batch_norm``'s
node (``NativeBatchNormBackward0``), so each output comes from one kernel call.  PyTorch normalizes with the biased
variance (its documentation), so a case asking for the unbiased one shows a discrepancy.
"""

from __future__ import annotations

import numpy as np

from normconf.adapters.base import Adapter, Observed, Unsupported, missing, module_version
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

_TORCH_BN_DOCS = "https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html"
#: torch.nn.BatchNorm*d's conventions (its documentation, section "Shape"/notes on the variance)
TORCH_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "in training the variance is computed with the biased estimator, torch.var(input, correction=0)",
        _TORCH_BN_DOCS,
    ),
    convention(
        "running_variance",
        "unbiased",
        "the value stored in the moving average of the variance is computed with the unbiased estimator, "
        "torch.var(input, correction=1)",
        _TORCH_BN_DOCS,
    ),
)
_TORCH_LN_DOCS = "https://docs.pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html"
#: torch.nn.LayerNorm / F.layer_norm ("See LayerNorm for details"): the biased variance
TORCH_LN_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "the variance is calculated via the biased estimator, equivalent to torch.var(input, correction=0)",
        _TORCH_LN_DOCS + " (and torch/nn/modules/normalization.py, LayerNorm docstring)",
        op="layer_norm",
    ),
)
_D2L = "https://d2l.ai/chapter_convolutional-modern/batch-norm.html (batch_norm; ported in harness/adapters/torch_backends.py)"
#: Dive into Deep Learning's from-scratch batch_norm: ``var = ((X - mean) ** 2).mean(...)`` for both uses
SCRATCH_CONVENTIONS = (
    convention("normalize_variance", "biased", "var = ((X - mean) ** 2).mean(...): divides by m", _D2L),
    convention("running_variance", "biased", "moving_var is blended with the same biased var", _D2L),
)

_HINT = "pip install torch==2.13.0 (make install does it)"


def _torch_dtype(name: str):
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}[
        name
    ]


def _to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype_name: str):
    import torch

    if dtype_name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def _no_kernel(e: Exception) -> bool:
    s = str(e)
    return "not implemented for" in s or "expected scalar type" in s.lower() or "mixed dtype" in s.lower()


class _TorchBase(Adapter):
    framework = "torch"
    worker = "torch"
    cpu_estimate = (1.45, 4.5)

    def available(self) -> str | None:
        return missing("torch", _HINT)

    def version(self) -> str:
        return module_version("torch")


def layer_norm_unsupported(case) -> str | None:
    """What torch's LayerNorm (module and functional) cannot express, or None."""
    if case.rms_scaling:
        return (
            "torch LayerNorm always centers and divides by the standard deviation; RMS scaling is "
            "torch.nn.RMSNorm, another module"
        )
    if not case.trailing:
        return (
            f"torch LayerNorm normalizes the last len(normalized_shape) dimensions only; axes "
            f"{list(case.norm_axes)} of a rank-{case.rank} input are not the trailing ones"
        )
    return None


def _layer_norm_params(case, inputs):
    """(weight, bias) tensors in the parameter dtype, or None where the case has none."""
    weight = _from_numpy(inputs.gamma, case.params_dtype) if case.has_affine else None
    bias = _from_numpy(inputs.beta, case.params_dtype) if case.has_bias else None
    return weight, bias


def _torch_call(fn, *args):
    try:
        return fn(*args)
    except (RuntimeError, TypeError) as e:
        if _no_kernel(e):
            raise Unsupported(f"torch: {e}") from None
        raise


class TorchModule(_TorchBase):
    id = "torch"
    description = "torch.nn.BatchNorm1d/2d/3d and torch.nn.LayerNorm modules"
    conventions = TORCH_CONVENTIONS + TORCH_LN_CONVENTIONS
    ops = ("batch_norm", "layer_norm")

    def unsupported(self, case) -> str | None:
        reason = super().unsupported(case)
        if reason or getattr(case, "op", "batch_norm") != "layer_norm":
            return reason
        return layer_norm_unsupported(case)

    def run_layer_norm(self, case, inputs) -> Observed:
        import torch

        reason = layer_norm_unsupported(case)
        if reason:
            raise Unsupported(reason)
        shape = tuple(int(d) for d in case.normalized_shape)
        ln = torch.nn.LayerNorm(
            shape,
            eps=case.eps,
            elementwise_affine=case.has_affine,
            bias=case.has_bias,
            dtype=_torch_dtype(case.params_dtype),
        )
        weight, bias = _layer_norm_params(case, inputs)
        with torch.no_grad():
            if weight is not None:
                ln.weight.copy_(weight)
            if bias is not None:
                ln.bias.copy_(bias)
        out: dict[str, list[np.ndarray]] = {"y": [], "mean": [], "inv_std": []}
        for x_np in inputs.x:
            x = _from_numpy(x_np, case.dtype).requires_grad_(True)
            with torch.enable_grad():
                y = _torch_call(ln, x)
            # the module's kernel call recorded by autograd (NativeLayerNormBackward0): its results
            # (y, mean, rstd), the statistics with the normalized dimensions kept as 1
            mean, rstd = getattr(y.grad_fn, "_saved_result1", None), getattr(y.grad_fn, "_saved_result2", None)
            out["y"].append(_to_numpy(y))
            if isinstance(mean, torch.Tensor) and isinstance(rstd, torch.Tensor):
                out["mean"].append(_to_numpy(mean))
                out["inv_std"].append(_to_numpy(rstd))
        if len(out["mean"]) != len(out["y"]):
            out.pop("mean")
            out.pop("inv_std")
        notes = [
            f"torch.nn.LayerNorm(normalized_shape={list(shape)}, eps={case.eps:g}, "
            f"elementwise_affine={case.has_affine}, bias={case.has_bias}, dtype={case.params_dtype})",
            "mean/inv_std: mean and rstd of aten::native_layer_norm (the kernel the module calls) in the same "
            "call, from its autograd node",
        ]
        return Observed(out, notes)

    def run(self, case: Case, inputs: Inputs) -> Observed:
        import torch

        notes: list[str] = []
        rank = case.rank
        cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[rank]
        pdt = _torch_dtype(case.params_dtype)
        bn = cls(
            case.channels,
            eps=case.eps,
            momentum=case.momentum_weight,
            affine=case.has_affine,
            track_running_stats=True,
            dtype=pdt,
        )
        with torch.no_grad():
            bn.running_mean.copy_(_from_numpy(inputs.running_mean, case.params_dtype))
            bn.running_var.copy_(_from_numpy(inputs.running_var, case.params_dtype))
            if case.has_affine:
                bn.weight.copy_(_from_numpy(inputs.gamma, case.params_dtype))
                bn.bias.copy_(_from_numpy(inputs.beta, case.params_dtype))
        fmt = None
        if case.layout == "channels_last":
            if rank == 4:
                fmt = torch.channels_last
            elif rank == 5:
                fmt = torch.channels_last_3d
            notes.append(
                "channels-last input permuted to (N, C, *spatial)"
                + (
                    f" with memory_format={str(fmt).replace('torch.', '')}"
                    if fmt
                    else " (no channels-last memory format for this rank)"
                )
                + "; output permuted back"
            )
        out: dict[str, list[np.ndarray]] = {}

        def put(k: str, v) -> None:
            """v as NumPy; a fresh result is shared, a running buffer (updated in place next step) copied."""
            out.setdefault(k, []).append(_to_numpy(v))

        def module_input(x_np: np.ndarray, track: bool = False):
            """The step's batch as the module takes it: (N, C, *spatial), channels-last memory kept;
            ``track``: the batch requires grad, so the call records its autograd node."""
            x = _from_numpy(x_np, case.dtype)
            if track:
                x.requires_grad_(True)
            if case.layout == "channels_last":
                x = x.movedim(-1, 1)
                if fmt is not None:
                    x = x.contiguous(memory_format=fmt)
            return x

        def forward(x_np: np.ndarray, track: bool = False):
            """(y in the case's layout, the call's autograd node or None)."""
            x = module_input(x_np, track)
            try:
                y = bn(x)
            except (RuntimeError, TypeError) as e:
                if _no_kernel(e):
                    raise Unsupported(f"torch: {e}") from None
                raise
            node = y.grad_fn
            y = y.detach()
            return (y.movedim(1, -1).contiguous() if case.layout == "channels_last" else y), node

        def stage_outputs(node) -> bool:
            """batch_mean and inv_std of this step: save_mean/save_invstd that aten::native_batch_norm
            (the kernel nn.BatchNorm calls on CPU) returned in the module's own call, as its autograd
            node (NativeBatchNormBackward0: result1, result2) holds them; False where it holds none."""
            mean, invstd = getattr(node, "_saved_result1", None), getattr(node, "_saved_result2", None)
            if not (isinstance(mean, torch.Tensor) and isinstance(invstd, torch.Tensor)):
                return False
            if mean.shape != (case.channels,) or invstd.shape != (case.channels,):
                return False
            put("batch_mean", mean.detach())
            put("inv_std", invstd.detach())
            return True

        if case.mode == "train":
            bn.train()
            staged = True
            for x_np in inputs.x:
                with torch.enable_grad():
                    y, node = forward(x_np, track=True)
                staged = stage_outputs(node) and staged
                del node
                put("y", y)
                with torch.no_grad():
                    put("running_mean", bn.running_mean.clone())
                    put("running_var", bn.running_var.clone())
            if not staged:
                out.pop("batch_mean", None)
                out.pop("inv_std", None)
            else:
                notes.append(
                    "batch_mean/inv_std: save_mean/save_invstd of aten::native_batch_norm (the module's "
                    "kernel) in the same call, from its autograd node"
                )
            if case.eval_after:
                bn.eval()
                with torch.no_grad():
                    put("eval_y", forward(inputs.x[-1])[0])
        else:
            bn.eval()
            with torch.no_grad():
                for x_np in inputs.x:
                    put("y", forward(x_np)[0])
        return Observed(out, notes)


class TorchScratch(_TorchBase):
    id = "torch-scratch"
    description = (
        "Dive into Deep Learning from-scratch BatchNorm in torch tensor ops (the seed article's PyTorch version)"
    )
    conventions = SCRATCH_CONVENTIONS

    def run(self, case: Case, inputs: Inputs) -> Observed:
        import torch

        if case.momentum_weight is None:
            raise Unsupported("the D2L algorithm has only an exponential moving average (no cumulative average)")
        momentum = case.momentum_weight  # D2L: moving = (1 - momentum) * moving + momentum * batch
        ax = case.channel_axis % case.rank
        dims = tuple(d for d in range(case.rank) if d != ax)
        shape = [1] * case.rank
        shape[ax] = case.channels

        def vec(a):
            return _from_numpy(a, case.params_dtype).reshape(shape)

        gamma = vec(inputs.gamma) if case.has_affine else None
        beta = vec(inputs.beta) if case.has_affine else None
        moving_mean, moving_var = vec(inputs.running_mean), vec(inputs.running_var)

        def batch_norm(X, training: bool):
            nonlocal moving_mean, moving_var
            if not training:
                X_hat = (X - moving_mean) / torch.sqrt(moving_var + case.eps)
                mean = var = None
            else:
                mean = X.mean(dim=dims, keepdim=True)
                var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
                X_hat = (X - mean) / torch.sqrt(var + case.eps)
                moving_mean = (1.0 - momentum) * moving_mean + momentum * mean
                moving_var = (1.0 - momentum) * moving_var + momentum * var
            Y = X_hat if gamma is None else gamma * X_hat + beta
            return Y, mean, var

        out: dict[str, list[np.ndarray]] = {}

        def put(k: str, v) -> None:
            out.setdefault(k, []).append(_to_numpy(v))

        try:
            with torch.no_grad():
                for x_np in inputs.x:
                    Y, mean, var = batch_norm(_from_numpy(x_np, case.dtype), case.mode == "train")
                    put("y", Y)
                    if case.mode == "train":
                        put("batch_mean", mean.reshape(-1))
                        put("batch_var", var.reshape(-1))
                        put("running_mean", moving_mean.reshape(-1))
                        put("running_var", moving_var.reshape(-1))
                if case.mode == "train" and case.eval_after:
                    put("eval_y", batch_norm(_from_numpy(inputs.x[-1], case.dtype), False)[0])
        except RuntimeError as e:
            if _no_kernel(e):
                raise Unsupported(f"torch: {e}") from None
            raise
        return Observed(out)


class TorchFunctional(_TorchBase):
    id = "torch-functional"
    description = "torch.nn.functional.layer_norm (LayerNorm only)"
    conventions = TORCH_LN_CONVENTIONS
    ops = ("layer_norm",)

    def unsupported(self, case) -> str | None:
        return super().unsupported(case) or layer_norm_unsupported(case)

    def run_layer_norm(self, case, inputs) -> Observed:
        import torch
        import torch.nn.functional as F

        reason = layer_norm_unsupported(case)
        if reason:
            raise Unsupported(reason)
        shape = [int(d) for d in case.normalized_shape]
        weight, bias = _layer_norm_params(case, inputs)
        ys = []
        with torch.no_grad():
            for x_np in inputs.x:
                ys.append(
                    _to_numpy(_torch_call(F.layer_norm, _from_numpy(x_np, case.dtype), shape, weight, bias, case.eps))
                )
        return Observed(
            {"y": ys},
            [
                f"F.layer_norm(x, {shape}, weight={'gamma' if weight is not None else None}, "
                f"bias={'beta' if bias is not None else None}, eps={case.eps:g}); "
                f"weight/bias in {case.params_dtype}"
            ],
        )


ADAPTERS = [TorchModule, TorchFunctional, TorchScratch]
