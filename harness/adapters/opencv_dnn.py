"""``opencv-dnn``: OpenCV's DNN module running the eval-mode ONNX BatchNormalization model.

The model is the one every ONNX backend uses (:func:`normconf.onnx_models.build_model`,
opset 15, inference form: ``training_mode`` absent) with the parameters and the
running statistics stored as **initializers** — what an exported inference model
looks like, and what ``cv2.dnn.readNetFromONNX`` needs: OpenCV's importer folds
BatchNormalization into a per-channel ``x*a + b`` at load time, reading
``scale``/``B``/``input_mean``/``input_var`` from the graph (graph inputs for them
would be unknown at load time).  A fresh network is read per case.

Translation (case → OpenCV, through the ONNX model):

==========================  =================================================================
case field                  OpenCV / ONNX
==========================  =================================================================
``eps``                     BatchNormalization ``epsilon``
``running_mean``/``_var``   ``input_mean``/``input_var`` initializers (folded at load time)
``affine``                  ``scale``/``B`` initializers (1 and 0 without affine: exact)
layout                      ONNX is channels-first: a channels-last ``x`` is transposed to
                            (N, C, *spatial) and ``y`` transposed back (noted)
``dtype``                   the model's element type; what OpenCV refuses (float64
                            parameters, bfloat16 blobs from Python) is ``unsupported``
                            with OpenCV's message, decided by trying
``mode``                    eval only: the DNN module is an inference engine
==========================  =================================================================

The network uses the default engine (``ENGINE_AUTO``: the new DNN engine of OpenCV 5,
falling back to the classic one), the OpenCV backend and the CPU target, with one
thread (``cv2.setNumThreads(1)``: deterministic and polite to other workers).  The classic
engine (``ENGINE_CLASSIC``) gave identical results on every case tried (float16/float32, ranks 2-5,
empty batch), so it is not a separate backend.

LayerNorm (``op: layer_norm``, :meth:`OpenCVDNN.run_layer_norm`): the one-node
LayerNormalization-17 model (:func:`normconf.onnx_models.build_layer_norm_model`: ``axis`` = the
first normalized axis, ``epsilon``, ``stash_type`` 1, Scale/B as initializers; Scale = 1 without
affine, B left out without beta) with its three outputs ``Y``, ``Mean``, ``InvStdDev``; OpenCV 5.0
imports it as one ``LayerNormalization2`` layer and exposes all three (the new engine's
``forward`` must be asked for every output by name; ``Y`` is bit-identical to a one-output
model's).  Only trailing normalized axes and float32 are expressible: OpenCV's LayerNorm kernels
compute in float32 (``modules/dnn/src/layers/cpu_kernels/fast_norm.cpp``; a float64 model fails
``input.type() == CV_32F`` in ``fastNormMeanInvStdDev``); ``rms_scaling`` is not expressible.
"""

from __future__ import annotations

import re

import numpy as np

from normconf.adapters._messages import first_lines
from normconf.adapters.base import Adapter, Observed, Unsupported, missing
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

_CV_FAST_NORM = (
    "modules/dnn/src/layers/cpu_kernels/fast_norm.cpp (fastNorm, fastNormMeanInvStdDev: "
    "var = max(0, mean_square * inv_norm_size - m * m), inv_norm_size = 1 / norm_size)"
)
#: LayerNorm: OpenCV's kernels divide by m (BatchNorm: no profile, it follows the case)
OPENCV_LN_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "the LayerNorm kernels take the variance as E[x²] - E[x]² over the m normalized elements (divided "
        "by m), as LayerNormalization-17 defines it; there is no unbiased option",
        _CV_FAST_NORM,
        op="layer_norm",
    ),
)

#: OpenCV messages that mean "this element type is not supported"
_DTYPE_REFUSAL = re.compile(
    r"data type = \w+ is not supported|CV_32F|CV_16F|CV_64F|Unsupported type|unsupported.*type", re.I
)


def cv_refuses_dtype(exc: BaseException) -> bool:
    """True when ``exc`` is OpenCV refusing an element type, not any other failure."""
    return bool(_DTYPE_REFUSAL.search(str(exc)))


class OpenCVDNN(Adapter):
    id = "opencv-dnn"
    framework = "opencv-python-headless"
    worker = "opencv"
    cpu_estimate = (0.5, 0.5)
    worker_env = {"OMP_NUM_THREADS": "1"}
    modes = ("eval",)
    ops = ("batch_norm", "layer_norm")
    op_dtypes = {"layer_norm": ("float32",)}
    conventions = OPENCV_LN_CONVENTIONS
    description = (
        "cv2.dnn.readNetFromONNX on the eval-mode ONNX model (statistics folded at load time), CPU; "
        "LayerNorm: the LayerNormalization-17 model (float32)"
    )

    def available(self) -> str | None:
        return missing("cv2", "pip install opencv-python-headless") or missing("onnx", "pip install onnx")

    def version(self) -> str:
        import cv2
        import onnx

        return f"{cv2.__version__} (onnx {onnx.__version__}, opset 15)"

    def unsupported(self, case) -> str | None:
        reason = super().unsupported(case)
        if getattr(case, "op", "batch_norm") != "layer_norm":
            return reason
        if reason:
            if case.dtype not in self.op_dtypes["layer_norm"]:
                reason += (
                    " for LayerNorm: OpenCV's LayerNorm kernels compute in float32 "
                    "(modules/dnn/src/layers/cpu_kernels/fast_norm.cpp: fastNorm reads input.ptr<const float>(), "
                    "fastNormMeanInvStdDev asserts input.type() == CV_32F)"
                )
            return reason
        from normconf.onnx_models import check_layer_norm_expressible

        try:
            check_layer_norm_expressible(case, "native")
        except Unsupported as e:
            return str(e)
        return None

    def run_layer_norm(self, case, inputs) -> Observed:
        import cv2

        from normconf.onnx_models import LN_INV_STD, LN_MEAN, Y, build_layer_norm_model

        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        cv2.setNumThreads(1)
        k = len(case.norm_axes)
        notes = [
            f"ONNX LayerNormalization-17 (axis={-k}, epsilon={case.eps:g} as a float32 attribute, stash_type=1) "
            "with Scale/B as initializers, read by cv2.dnn.readNetFromONNX (default engine); outputs Y, Mean, "
            "InvStdDev"
        ]
        if not case.has_affine:
            notes.append("no affine: Scale = 1 (a required input of LayerNormalization-17; x*1 is exact), B left out")
        elif not case.has_bias:
            notes.append("bias: false: the optional input B left out")
        model, _ = build_layer_norm_model(case, inputs, "initializers")
        names = [Y, LN_MEAN, LN_INV_STD]
        buf = np.frombuffer(model.SerializeToString(), np.uint8)
        outputs: dict[str, list[np.ndarray]] = {"y": [], "mean": [], "inv_std": []}
        try:
            net = cv2.dnn.readNetFromONNX(buf)
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            for step in range(case.steps):
                net.setInput(np.ascontiguousarray(inputs.x[step]))
                res = net.forward(names)
                if res is None or len(res) != len(names) or any(r is None for r in res):
                    # seen with an empty batch (no rows): no outputs at all, not empty tensors
                    raise RuntimeError(
                        f"cv2.dnn Net.forward({names}) returned no output for input shape "
                        f"{tuple(inputs.x[step].shape)}: {res!r}"[:400]
                    )
                for key, r in zip(("y", "mean", "inv_std"), res):
                    outputs[key].append(np.array(r, copy=True))
        except cv2.error as e:
            if cv_refuses_dtype(e):
                raise Unsupported(
                    f"opencv {cv2.__version__} (x {case.dtype}, parameters {case.params_dtype}): {first_lines(e, strip=True)}"
                ) from None
            raise
        ys = outputs["y"]
        if ys and str(ys[0].dtype) != case.dtype:
            notes.append(f"OpenCV returned y as {ys[0].dtype} for a {case.dtype} model")
        return Observed(outputs, notes)

    def run(self, case: Case, inputs: Inputs) -> Observed:
        import cv2

        from normconf.onnx_models import build_model, from_nchw, to_nchw

        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        cv2.setNumThreads(1)
        notes = [
            "eval-mode ONNX model (opset 15) with parameters as initializers, read by cv2.dnn.readNetFromONNX "
            "(default engine)"
        ]
        if case.layout == "channels_last" and case.rank > 2:
            notes.append("channels-last input transposed to NCHW for ONNX and y transposed back")
        if not case.has_affine:
            notes.append("no affine: scale = 1 and B = 0 in the model (x*1+0 is exact)")
        model, _ = build_model(case, inputs, opset=15, params_as="initializers", training=False)
        buf = np.frombuffer(model.SerializeToString(), np.uint8)
        ys = []
        try:
            net = cv2.dnn.readNetFromONNX(buf)
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            for k in range(case.steps):
                net.setInput(np.ascontiguousarray(to_nchw(case, inputs.x[k])))
                y = net.forward()
                if y is None:  # seen with an empty batch (N = 0): no output at all, not an empty tensor
                    raise RuntimeError(
                        f"cv2.dnn Net.forward() returned None (no output) for input shape {tuple(inputs.x[k].shape)}"
                    )
                ys.append(from_nchw(case, np.array(y, copy=True)))
        except cv2.error as e:
            if cv_refuses_dtype(e):
                raise Unsupported(
                    f"opencv {cv2.__version__} (x {case.dtype}, parameters {case.params_dtype}): {first_lines(e, strip=True)}"
                ) from None
            raise
        if ys and str(ys[0].dtype) != case.dtype:
            notes.append(f"OpenCV returned y as {ys[0].dtype} for a {case.dtype} model")
        return Observed({"y": ys}, notes)


ADAPTERS = [OpenCVDNN]
