"""ONNX backends: one BatchNormalization model (``harness.onnx_models``) run several ways.

Backend ids are systematic: ``<engine>[-opset9][-init][-noopt]``

========================  ===============================  =====  ============  ==============
id                        engine                           opset  parameters    ORT graph opt.
========================  ===============================  =====  ============  ==============
``ort``                   ONNX Runtime, CPU provider       15     graph inputs  default (all)
``ort-init``              ONNX Runtime, CPU provider       15     initializers  default (all)
``ort-init-noopt``        ONNX Runtime, CPU provider       15     initializers  disabled
``ort-opset9``            ONNX Runtime, CPU provider       9      graph inputs  default (all)
``ort-opset9-init``       ONNX Runtime, CPU provider       9      initializers  default (all)
``onnx-reference``        ``onnx.reference.ReferenceEvaluator``  15  graph inputs  --
``onnx-reference-opset9`` ``onnx.reference.ReferenceEvaluator``  9   graph inputs  --
========================  ===============================  =====  ============  ==============

Train cases run with ``training_mode=1`` (opset 15 only: opset-9 models are
inference models, so train cases are unsupported there).  Each training step is
one run; the ``running_mean``/``running_var`` outputs are fed back as the next
step's ``input_mean``/``input_var`` (with initializers that means a new model,
and a new session, per step).  BatchNormalization-15 has no batch-statistics
outputs, so ``batch_mean``/``batch_var`` are not reported.  ``eval_after`` runs
an inference model with the final running statistics.

Sessions (and reference evaluators) are cached by the SHA-256 of the serialized
model (+ the optimization level): with graph inputs every case of one
(shape, dtypes, eps, momentum, mode) signature shares a session.  Training models
with initializers are never cached: ORT 1.32 gives a float16 training session's
second ``Run()`` other running statistics than its first (measured; see
tests/test_onnx_adapters.py), so a reused session would make results depend on
what ran before.  ORT sessions
use one intra-op and one inter-op thread (deterministic, and polite to the other
worker processes).

A dtype without a kernel is decided by trying: ORT's ``NOT_IMPLEMENTED : Could
not find an implementation`` becomes ``unsupported`` with ORT's message; any
other exception is an error.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from harness.adapters.base import Adapter, Observed, Unsupported, missing
from harness.cases import Case
from harness.inputs import Inputs
from harness.profiles import convention

_ONNX_BN = "https://onnx.ai/onnx/operators/onnx__BatchNormalization.html (version 15: current_var = ReduceVar(X))"
_ONNX_ATTR = "onnx/onnx.proto (AttributeProto: float f = 2, a 32-bit float)"
#: BatchNormalization-15 in training mode: the population variance for both uses
ONNX_TRAIN_CONVENTIONS = (
    convention("normalize_variance", "biased", "the spec normalizes with current_var = ReduceVar(X), the population variance", _ONNX_BN),
    convention("running_variance", "biased", "running_var = input_var * momentum + current_var * (1 - momentum)", _ONNX_BN),
    convention("attribute_dtype", "float32",
               "float attributes are 32-bit whatever the tensor type: a float64 model blends its running "
               "statistics with the batch weight 1 - fl32(momentum) (1 - fl32(0.9) = 0.10000002384) and "
               "normalizes with fl32(epsilon)", _ONNX_ATTR),
)
#: the reference evaluator's BatchNormalization-9 with a momentum attribute
ONNX_REFERENCE_OPSET9_CONVENTIONS = (
    convention("eval_statistics", "blended",
               "BatchNormalization_9._run with a momentum attribute blends the batch mean/var into the given "
               "statistics and normalizes with the blended ones, also in inference",
               "onnx/reference/ops/op_batch_normalization.py (BatchNormalization_9._run)"),
)

#: cached sessions per process (LRU)
MAX_CACHED = 256
_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
#: timing counters (seconds) for benchmarks/adapter_overhead.py: build (model + checker), session, compute
STATS: dict[str, float] = {"build": 0.0, "session": 0.0, "compute": 0.0, "sessions_created": 0, "cache_hits": 0}

TRANSPOSE_NOTE = "channels-last input transposed to NCHW for ONNX (BatchNormalization is channels-first only) and Y transposed back"
NO_AFFINE_NOTE = "no affine: scale = 1 and B = 0 fed to BatchNormalization (the operator has no 'no affine' option; x*1+0 is exact)"


def ort_refuses_dtype(exc: BaseException) -> bool:
    """True when ORT refused because it has no kernel for the types (not any other failure)."""
    msg = str(exc)
    return "NOT_IMPLEMENTED" in msg and "Could not find an implementation for" in msg


def _cache_get(key: tuple, make):
    import time

    if key in _CACHE:
        _CACHE.move_to_end(key)
        STATS["cache_hits"] += 1
        return _CACHE[key]
    t = time.perf_counter()
    obj = make()
    STATS["session"] += time.perf_counter() - t
    STATS["sessions_created"] += 1
    _CACHE[key] = obj
    while len(_CACHE) > MAX_CACHED:
        _CACHE.popitem(last=False)
    return obj


class _OnnxBackend(Adapter):
    worker = "onnx"
    framework = "onnxruntime"
    #: "ort" or "reference"
    engine: ClassVar[str] = "ort"
    opset: ClassVar[int] = 15
    params_as: ClassVar[str] = "inputs"
    #: ORT graph optimizations at their default level (ORT_ENABLE_ALL) or disabled
    optimize: ClassVar[bool] = True
    conventions = ONNX_TRAIN_CONVENTIONS

    def available(self) -> str | None:
        return missing("onnx", "pip install onnx") or (
            missing("onnxruntime", "pip install onnxruntime") if self.engine == "ort" else None)

    def version(self) -> str:
        import onnx

        if self.engine == "ort":
            import onnxruntime

            return f"{onnxruntime.__version__} (onnx {onnx.__version__}, opset {self.opset})"
        return f"{onnx.__version__} (opset {self.opset})"

    def unsupported(self, case: Case) -> str | None:
        from harness.onnx_models import check_expressible

        try:  # the opset's own reasons first (they say more than "mode train")
            check_expressible(case, self.opset, case.mode == "train")
        except Unsupported as e:
            return str(e)
        return super().unsupported(case)

    # --- engines -----------------------------------------------------------------
    def _session(self, model, digest: str, stateful: bool = False):
        if self.engine == "ort":
            import onnxruntime as ort

            def make():
                so = ort.SessionOptions()
                so.intra_op_num_threads = 1
                so.inter_op_num_threads = 1
                so.log_severity_level = 3
                so.graph_optimization_level = (
                    ort.GraphOptimizationLevel.ORT_ENABLE_ALL if self.optimize
                    else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
                return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

            if stateful:
                STATS["sessions_created"] += 1
                return make()
            return _cache_get(("ort", digest, self.optimize), make)
        from onnx.reference import ReferenceEvaluator

        return _cache_get(("reference", digest), lambda: ReferenceEvaluator(model))

    def _execute(self, model, feeds: dict[str, np.ndarray], stateful: bool = False) -> dict[str, np.ndarray]:
        import time

        from harness.onnx_models import model_digest

        names = [o.name for o in model.graph.output]
        try:
            sess = self._session(model, model_digest(model), stateful)
            t = time.perf_counter()
            with np.errstate(all="ignore"):
                res = sess.run(None, feeds)
            STATS["compute"] += time.perf_counter() - t
        except Exception as e:
            if self.engine == "ort" and ort_refuses_dtype(e):
                raise Unsupported(f"onnxruntime {self._ort_version()}: {e}") from None
            raise
        return dict(zip(names, res))

    @staticmethod
    def _ort_version() -> str:
        import onnxruntime

        return onnxruntime.__version__

    def _build(self, case: Case, inputs: Inputs, training: bool, step: int, rm, rv):
        import time

        from harness.onnx_models import build_model

        t = time.perf_counter()
        out = build_model(case, inputs, self.opset, self.params_as, training, step=step, running_mean=rm, running_var=rv)
        STATS["build"] += time.perf_counter() - t
        return out

    # --- the adapter ---------------------------------------------------------------
    def run(self, case: Case, inputs: Inputs) -> Observed:
        from harness.onnx_models import RUNNING_MEAN, RUNNING_VAR, Y, from_nchw

        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        notes: list[str] = []
        if case.layout == "channels_last" and case.rank > 2:
            notes.append(TRANSPOSE_NOTE)
        if not case.has_affine:
            notes.append(NO_AFFINE_NOTE)
        training = case.mode == "train"
        outputs: dict[str, list[np.ndarray]] = {"y": []}
        if training:
            outputs.update(running_mean=[], running_var=[])
        rm = rv = None
        for k in range(case.steps):
            model, feeds = self._build(case, inputs, training, k, rm, rv)
            # a training model with the running statistics as initializers gets a fresh session: ORT 1.32
            # (default optimizations, float16) returns other running statistics on a second Run() of the
            # same session, so a cached one would make the result depend on what ran before
            res = self._execute(model, feeds, stateful=training and self.params_as == "initializers")
            outputs["y"].append(from_nchw(case, res[Y]))
            if training:
                rm, rv = res[RUNNING_MEAN], res[RUNNING_VAR]
                outputs["running_mean"].append(rm)
                outputs["running_var"].append(rv)
        if training and case.eval_after:
            model, feeds = self._build(case, inputs, False, case.steps - 1, rm, rv)
            outputs["eval_y"] = [from_nchw(case, self._execute(model, feeds)[Y])]
            notes.append("eval_y: an inference model (training_mode=0) fed the final running statistics")
        if training and case.steps > 1:
            notes.append("multi-step: each step's running_mean/running_var outputs fed back as the next step's input_mean/input_var")
        return Observed(outputs, notes)


class Ort(_OnnxBackend):
    id = "ort"
    description = "ONNX Runtime CPU, opset 15, parameters as graph inputs, default graph optimizations"


class OrtInit(_OnnxBackend):
    id = "ort-init"
    params_as = "initializers"
    description = "ONNX Runtime CPU, opset 15, parameters as initializers, default graph optimizations"


class OrtInitNoopt(_OnnxBackend):
    id = "ort-init-noopt"
    params_as = "initializers"
    optimize = False
    description = "ONNX Runtime CPU, opset 15, parameters as initializers, graph optimizations disabled"


class OrtOpset9(_OnnxBackend):
    id = "ort-opset9"
    opset = 9
    modes = ("eval",)
    description = "ONNX Runtime CPU, opset 9 (inference only), parameters as graph inputs"
    conventions = ()  # inference only: the variance estimators and the momentum attribute do not apply


class OrtOpset9Init(_OnnxBackend):
    id = "ort-opset9-init"
    opset = 9
    modes = ("eval",)
    params_as = "initializers"
    description = "ONNX Runtime CPU, opset 9 (inference only), parameters as initializers (an exported inference model)"
    conventions = ()


class OnnxReference(_OnnxBackend):
    id = "onnx-reference"
    framework = "onnx"
    engine = "reference"
    description = "onnx.reference.ReferenceEvaluator, opset 15, parameters as graph inputs"


class OnnxReferenceOpset9(_OnnxBackend):
    id = "onnx-reference-opset9"
    framework = "onnx"
    engine = "reference"
    opset = 9
    modes = ("eval",)
    description = "onnx.reference.ReferenceEvaluator, opset 9 (inference only), parameters as graph inputs"
    conventions = ONNX_REFERENCE_OPSET9_CONVENTIONS


ADAPTERS = [Ort, OrtInit, OrtInitNoopt, OrtOpset9, OrtOpset9Init, OnnxReference, OnnxReferenceOpset9]
