"""``opencv-dnn``: OpenCV's DNN module running the eval-mode ONNX BatchNormalization model.

The model is the one every ONNX backend uses (:func:`harness.onnx_models.build_model`,
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
"""

from __future__ import annotations

import re

import numpy as np

from harness.adapters.base import Adapter, Observed, Unsupported, missing
from harness.cases import Case
from harness.inputs import Inputs

#: OpenCV messages that mean "this element type is not supported"
_DTYPE_REFUSAL = re.compile(r"data type = \w+ is not supported|CV_32F|CV_16F|CV_64F|Unsupported type|unsupported.*type", re.I)


def cv_refuses_dtype(exc: BaseException) -> bool:
    """True when ``exc`` is OpenCV refusing an element type, not any other failure."""
    return bool(_DTYPE_REFUSAL.search(str(exc)))


def _first_lines(msg: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in str(msg).strip().splitlines() if ln.strip()]
    return " ".join(lines[:n])[:600]


class OpenCVDNN(Adapter):
    id = "opencv-dnn"
    framework = "opencv-python-headless"
    worker = "opencv"
    worker_env = {"OMP_NUM_THREADS": "1"}
    modes = ("eval",)
    description = "cv2.dnn.readNetFromONNX on the eval-mode ONNX model (statistics folded at load time), CPU"

    def available(self) -> str | None:
        return missing("cv2", "pip install opencv-python-headless") or missing("onnx", "pip install onnx")

    def version(self) -> str:
        import cv2
        import onnx

        return f"{cv2.__version__} (onnx {onnx.__version__}, opset 15)"

    def run(self, case: Case, inputs: Inputs) -> Observed:
        import cv2

        from harness.onnx_models import build_model, from_nchw, to_nchw

        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        cv2.setNumThreads(1)
        notes = ["eval-mode ONNX model (opset 15) with parameters as initializers, read by cv2.dnn.readNetFromONNX "
                 "(default engine)"]
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
                    raise RuntimeError(f"cv2.dnn Net.forward() returned None (no output) for input shape "
                                       f"{tuple(inputs.x[k].shape)}")
                ys.append(from_nchw(case, np.array(y, copy=True)))
        except cv2.error as e:
            if cv_refuses_dtype(e):
                raise Unsupported(f"opencv {cv2.__version__} (x {case.dtype}, parameters {case.params_dtype}): "
                                  f"{_first_lines(e)}") from None
            raise
        if ys and str(ys[0].dtype) != case.dtype:
            notes.append(f"OpenCV returned y as {ys[0].dtype} for a {case.dtype} model")
        return Observed({"y": ys}, notes)


ADAPTERS = [OpenCVDNN]
