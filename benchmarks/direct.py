"""The frameworks called directly on the same arrays, without normconf (the baselines).

Each ``direct_<backend>(case, inputs)`` returns a zero-argument callable that
computes the case's training/eval outputs with the framework alone, in this
process, from the NumPy inputs and back to NumPy.  What the adapter also caches
across calls (an ONNX Runtime session, a loaded native library) is prepared
once outside the callable, as a user's program would; what the adapter builds
per case (a torch module) is built inside it.  Thread counts match the workers'
(ORT: one intra-op thread; torch: ``worker_threads()``, the count every worker
process gets, ``$NORMCONF_WORKER_THREADS``, default 1).
"""

from __future__ import annotations

import os
from typing import Callable


def direct_numpy(case, inputs) -> Callable[[], object]:
    """The numpy backend's framework is the float64 reference itself (plus the rounding to the dtype)."""
    from normconf.inputs import np_dtype
    from normconf.oracle import reference_outputs

    dt = np_dtype(case.dtype)

    def call():
        ref = reference_outputs(case, inputs)
        return ref["y"][0].astype(dt)

    return call


def worker_threads() -> int:
    """The thread count the runner gives every worker (``normconf.runner.thread_env``), 1 if unknown."""
    try:
        from normconf.worker_env import thread_env

        return int(thread_env()["OMP_NUM_THREADS"])
    except (ImportError, KeyError, ValueError):
        return int(os.environ.get("NORMCONF_WORKER_THREADS", "1") or 1)


def direct_torch(case, inputs) -> Callable[[], object]:
    import torch

    torch.set_num_threads(worker_threads())  # this process's torch: the direct calls only

    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[
        case.rank
    ]
    xs = [torch.from_numpy(x) for x in inputs.x]

    def call():
        bn = cls(case.channels, eps=case.eps, momentum=case.momentum_weight, affine=case.has_affine)
        with torch.no_grad():
            if case.has_affine:
                bn.weight.copy_(torch.from_numpy(inputs.gamma))
                bn.bias.copy_(torch.from_numpy(inputs.beta))
            bn.running_mean.copy_(torch.from_numpy(inputs.running_mean))
            bn.running_var.copy_(torch.from_numpy(inputs.running_var))
            bn.train(case.mode == "train")
            ys = [bn(x).numpy() for x in xs]
        return ys, bn.running_mean.numpy(), bn.running_var.numpy()

    return call


def direct_ort(case, inputs) -> Callable[[], object]:
    """One ONNX Runtime session (built once, as the adapter caches it), ``run`` per call."""
    import onnxruntime as ort

    from normconf.onnx_models import build_model

    training = case.mode == "train"
    model, feeds = build_model(case, inputs, 15, "inputs", training, step=0, running_mean=None, running_var=None)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def call():
        return sess.run(None, feeds)

    return call


def direct_cpp(case, inputs) -> Callable[[], object]:
    """The bundled C++ library's ``normconf_bn_forward`` through ctypes (one call per step)."""
    from normconf.native import EVAL, TRAIN, bundled_library, call_forward, load

    lib = load(str(bundled_library("cpp")))
    dt = inputs.x[0].dtype

    def call():
        rm, rv = inputs.running_mean.astype(dt), inputs.running_var.astype(dt)
        return [
            call_forward(
                lib,
                x,
                mode=TRAIN if case.mode == "train" else EVAL,
                eps=case.eps,
                momentum=case.momentum_weight,
                step=k + 1,
                gamma=inputs.gamma,
                beta=inputs.beta,
                running_mean=rm,
                running_var=rv,
            ).y
            for k, x in enumerate(inputs.x)
        ]

    return call


DIRECT = {"numpy": direct_numpy, "torch": direct_torch, "ort": direct_ort, "cpp": direct_cpp}


def available(backend: str) -> str | None:
    """``None`` when the direct baseline can run here, else why not."""
    import importlib.util

    if backend == "torch" and importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    if backend == "ort" and (
        importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None
    ):
        return "onnxruntime/onnx is not installed"
    if backend == "cpp":
        from normconf.native import bundled_library

        if not bundled_library("cpp").exists():
            return "the bundled C++ library is not built"
    return None
