"""LayerNorm parts of the ONNX backends: their convention profiles (with evidence) and the helpers the
LayerNorm runs need (ORT's optimized-graph note, bfloat16 through an I/O binding)."""

from __future__ import annotations

from typing import Any

import numpy as np

from normconf.profiles import convention

#: ONNX float attributes are 32-bit (also BatchNorm's evidence)
_ONNX_ATTR = "onnx/onnx.proto (AttributeProto: float f = 2, a 32-bit float)"

_ONNX_LN = (
    "https://onnx.ai/onnx/operators/onnx__LayerNormalization.html (version 17); onnx/defs/nn/defs.cc "
    "(LayerNormalization-17: Var = ReduceMean(Mul(D, D)); stash_type: 'Type of Mean and InvStdDev', "
    "U in {float, bfloat16})"
)
_ORT_LN_SRC = (
    "onnxruntime/core/providers/cpu/nn/layer_norm_impl.h (SrcDispatcher: the ONNX op runs "
    'ComputeImpl<T, float>) and layer_norm_impl.cc (LayerNormImpl: GetAttr<float>("epsilon"); '
    "ComputeJob: mean_data[i] = gsl::narrow_cast<float>(mean), 'ONNX spec doesn't support double for U')"
)
_LN_BIASED = convention(
    "normalize_variance",
    "biased",
    "LayerNormalization-17 divides the sum of squared deviations by m (Var = ReduceMean(D·D)); it "
    "has no unbiased option",
    _ONNX_LN,
    op="layer_norm",
)
_LN_EPS_F32 = "epsilon is a float attribute, held as a 32-bit float whatever the tensor type: a float64 model normalizes with fl32(eps)"
#: LayerNormalization-17 on ORT's CPU provider
ORT_LN_CONVENTIONS = (
    _LN_BIASED,
    convention(
        "attribute_dtype",
        "float32",
        _LN_EPS_F32 + " (ORT reads it with GetAttr<float> into a float epsilon_)",
        f"{_ONNX_ATTR}; {_ORT_LN_SRC}",
        op="layer_norm",
    ),
    convention(
        "working_precision",
        "float32",
        "stash_type=1 makes Mean and InvStdDev of type U = float; for a float64 input ORT computes them in "
        "double and narrows them to float32 (y stays double)",
        f"{_ONNX_LN}; {_ORT_LN_SRC}",
        op="layer_norm",
        applies_to=("float64",),
        outputs=("mean", "inv_std"),
    ),
)
#: LayerNormalization-17 in onnx.reference (it computes in X's dtype and returns Mean/InvStdDev in it: no
#: working-precision entry)
ONNX_REFERENCE_LN_CONVENTIONS = (
    _LN_BIASED,
    convention(
        "attribute_dtype",
        "float32",
        _LN_EPS_F32 + " (the evaluator adds the attribute's value)",
        f"{_ONNX_ATTR}; onnx/reference/ops/op_layer_normalization.py (_layer_normalization: "
        "variance_eps = variance + epsilon)",
        op="layer_norm",
    ),
)
#: the decomposed graph: a biased variance by construction (eps is a tensor constant there, not an attribute)
DECOMPOSED_LN_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "the graph torch.onnx exported for F.layer_norm before opset 17 takes the variance as "
        "ReduceMean(Pow(x - mean, 2)), a mean over m; rebuilt by build_layer_norm_decomposed",
        "torch/onnx/symbolic_opset9.py (layer_norm / native_layer_norm: variance = "
        "g.op('ReduceMean', pow(g, numerator, two_cst), axes_i=axes)); harness/onnx_models.py "
        "(build_layer_norm_decomposed)",
        op="layer_norm",
    ),
)

#: cached sessions per process (LRU)


def _optimized_note(optimized: tuple[str, ...], built: list[str]) -> str:
    """What ORT made of the decomposed LayerNorm graph (read from its optimized model)."""
    graph = " -> ".join(optimized)
    if list(optimized) == built:
        return f"ORT ran the decomposed graph as built ({len(built)} nodes)"
    if "LayerNormalization" in optimized:
        return f"ORT fused the decomposed graph into LayerNormalization (LayerNormFusion): optimized graph {graph}"
    fused = [op for op in ("SimplifiedLayerNormalization",) if op in optimized]
    return (
        f"ORT rewrote the decomposed graph{' (' + ', '.join(fused) + ' over x - mean)' if fused else ''}: "
        f"optimized graph {graph}"
    )


def _is_bfloat16(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.name == "bfloat16"


def _ort_run_bfloat16(sess, model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``sess`` on feeds holding ``ml_dtypes.bfloat16`` arrays, which ORT's ``run`` cannot convert
    ("Numpy_type 256 can't be converted to MLDataType"): every bfloat16 array goes in as an ``OrtValue``
    of ONNX type BFLOAT16 over its bits, and every bfloat16 output is bound to a preallocated buffer
    that is read back as ``ml_dtypes.bfloat16``; other outputs come back as NumPy arrays."""
    import ml_dtypes
    import onnxruntime as ort
    from onnx import TensorProto

    io = sess.io_binding()
    keep = []
    for name, value in feeds.items():
        if _is_bfloat16(value):
            ov = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                np.ascontiguousarray(value).view(np.uint16), onnx_element_type=TensorProto.BFLOAT16
            )
            keep.append(ov)
            io.bind_ortvalue_input(name, ov)
        else:
            io.bind_cpu_input(name, np.ascontiguousarray(value))
    buffers: dict[str, np.ndarray] = {}
    for out in model.graph.output:
        tt = out.type.tensor_type
        if tt.elem_type == TensorProto.BFLOAT16:
            shape = tuple(int(d.dim_value) for d in tt.shape.dim)
            buf = np.zeros(shape, np.uint16)
            ov = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(buf, onnx_element_type=TensorProto.BFLOAT16)
            keep.append(ov)
            io.bind_ortvalue_output(out.name, ov)
            buffers[out.name] = buf
        else:
            io.bind_output(out.name, "cpu")
    sess.run_with_iobinding(io)
    got = io.get_outputs()
    res = []
    for out, ov in zip(model.graph.output, got):
        if out.name in buffers:
            buf = buffers[out.name]
            if ov.data_ptr() != buf.ctypes.data:  # ORT wrote elsewhere: the buffer is not its output
                raise RuntimeError(f"onnxruntime did not write the bound bfloat16 output {out.name}")
            res.append(buf.view(ml_dtypes.bfloat16).copy())
        else:
            res.append(ov.numpy())
    return res
