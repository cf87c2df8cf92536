"""ONNX backends: one BatchNormalization model (``normconf.onnx_models``) run several ways.

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

LayerNorm (``op: layer_norm``, :meth:`_OnnxBackend.run_layer_norm`) uses two model forms
(``normconf.onnx_models``), one run per step (LayerNorm has no state):

=========================  =========================================================  =========================
id                         model                                                      outputs
=========================  =========================================================  =========================
``ort``                    LayerNormalization-17, Scale/B graph inputs                 y, mean, inv_std
``ort-init``               LayerNormalization-17, Scale/B initializers                 y, mean, inv_std
``ort-init-noopt``         LayerNormalization-17, initializers, optimizations off      y, mean, inv_std
``ort-opset9``             decomposed graph (opset 9), Scale/B graph inputs            y
``ort-opset9-init``        decomposed graph (opset 9), Scale/B initializers            y
``onnx-reference``         LayerNormalization-17 in the reference evaluator            y, mean, inv_std
``onnx-reference-opset9``  decomposed graph (opset 9) in the reference evaluator       y
=========================  =========================================================  =========================

The decomposed graph is what ``torch.onnx`` exported for ``F.layer_norm`` before opset 17
(ReduceMean → Sub → Pow → ReduceMean → Add → Sqrt → Div → Mul → Add).  The ``ort-opset9*``
sessions keep ORT's default optimizations (what users get): ORT's LayerNormFusion (a level-1
transformer, on from ORT_ENABLE_BASIC) may replace the graph by one LayerNormalization node.
Whether it does depends on the case, so what ORT made of the graph is read back from the
optimized model (``SessionOptions.optimized_model_filepath``, once per session) and said in the
notes.  Measured with ORT 1.32: float32 with one normalized axis, gamma and beta → one
LayerNormalization; float32 without beta, or float16 → ReduceMean, Sub and a
SimplifiedLayerNormalization over x − mean (float16 with Casts to float around it); several
normalized axes, float64, or no affine → the graph as built.  Only trailing normalized axes are expressible (ONNX's
``axis`` is the first of ``[axis, rank)``; the exporter normalized torch's trailing
``normalized_shape``); ``rms_scaling`` is not.  bfloat16 data is fed to ORT through
``OrtValue``s of ONNX type bfloat16 and an I/O binding (NumPy's ``ml_dtypes.bfloat16`` has no
ORT type number).
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from normconf.adapters._onnx_layer_norm import (  # noqa: F401 (LayerNorm profiles and helpers)
    _LN_BIASED,
    _LN_EPS_F32,
    _ONNX_ATTR,
    _ONNX_LN,
    _ORT_LN_SRC,
    DECOMPOSED_LN_CONVENTIONS,
    ONNX_REFERENCE_LN_CONVENTIONS,
    ORT_LN_CONVENTIONS,
    _is_bfloat16,
    _optimized_note,
    _ort_run_bfloat16,
)
from normconf.adapters.base import Adapter, Observed, Unsupported, missing
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

_ONNX_BN = "https://onnx.ai/onnx/operators/onnx__BatchNormalization.html (version 15: current_var = ReduceVar(X))"
#: BatchNormalization-15 in training mode: the population variance for both uses
ONNX_TRAIN_CONVENTIONS = (
    convention(
        "normalize_variance",
        "biased",
        "the spec normalizes with current_var = ReduceVar(X), the population variance",
        _ONNX_BN,
    ),
    convention(
        "running_variance", "biased", "running_var = input_var * momentum + current_var * (1 - momentum)", _ONNX_BN
    ),
    convention(
        "attribute_dtype",
        "float32",
        "float attributes are 32-bit whatever the tensor type: a float64 model blends its running "
        "statistics with the batch weight 1 - fl32(momentum) (1 - fl32(0.9) = 0.10000002384) and "
        "normalizes with fl32(epsilon)",
        _ONNX_ATTR,
    ),
)
#: BatchNormalization-9 in inference: only its epsilon attribute is a convention
ONNX_OPSET9_CONVENTIONS = (
    convention(
        "attribute_dtype",
        "float32",
        "epsilon is a float attribute, 32-bit whatever the tensor type: a float64 model normalizes with "
        "fl32(epsilon) (fl32(1e-5) = 9.99999974738e-06)",
        _ONNX_ATTR,
    ),
)
#: the reference evaluator's BatchNormalization-9 with a momentum attribute
ONNX_REFERENCE_OPSET9_CONVENTIONS = ONNX_OPSET9_CONVENTIONS + (
    convention(
        "eval_statistics",
        "blended",
        "BatchNormalization_9._run with a momentum attribute blends the batch mean/var into the given "
        "statistics and normalizes with the blended ones, also in inference",
        "onnx/reference/ops/op_batch_normalization.py (BatchNormalization_9._run)",
    ),
)

# --- LayerNorm conventions ---------------------------------------------------------------------
MAX_CACHED = 256
_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
#: timing counters (seconds) for benchmarks/adapter_overhead.py: build (model + checker), session, compute
STATS: dict[str, float] = {"build": 0.0, "session": 0.0, "compute": 0.0, "sessions_created": 0, "cache_hits": 0}

TRANSPOSE_NOTE = (
    "channels-last input transposed to NCHW for ONNX (BatchNormalization is channels-first only) and Y transposed back"
)
NO_AFFINE_NOTE = (
    "no affine: scale = 1 and B = 0 fed to BatchNormalization (the operator has no 'no affine' option; x*1+0 is exact)"
)


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
    cpu_estimate = (0.6, 2.0)
    framework = "onnxruntime"
    #: "ort" or "reference"
    engine: ClassVar[str] = "ort"
    opset: ClassVar[int] = 15
    params_as: ClassVar[str] = "inputs"
    #: ORT graph optimizations at their default level (ORT_ENABLE_ALL) or disabled
    optimize: ClassVar[bool] = True
    conventions = ONNX_TRAIN_CONVENTIONS + ORT_LN_CONVENTIONS
    ops = ("batch_norm", "layer_norm")
    #: the LayerNorm model: one LayerNormalization-17 node ("native") or the pre-opset-17 export ("decomposed")
    ln_form: ClassVar[str] = "native"

    def available(self) -> str | None:
        return missing("onnx", "pip install onnx") or (
            missing("onnxruntime", "pip install onnxruntime") if self.engine == "ort" else None
        )

    def version(self) -> str:
        import onnx

        if self.engine == "ort":
            import onnxruntime

            return f"{onnxruntime.__version__} (onnx {onnx.__version__}, opset {self.opset})"
        return f"{onnx.__version__} (opset {self.opset})"

    def unsupported(self, case: Case) -> str | None:
        from normconf.onnx_models import check_expressible, check_layer_norm_expressible

        if getattr(case, "op", "batch_norm") != "batch_norm":
            reason = super().unsupported(case)
            if reason or case.op != "layer_norm":
                return reason
            try:
                check_layer_norm_expressible(case, self.ln_form)
            except Unsupported as e:
                return str(e)
            return None
        try:  # the opset's own reasons first (they say more than "mode train")
            check_expressible(case, self.opset, case.mode == "train")
        except Unsupported as e:
            return str(e)
        return super().unsupported(case)

    # --- engines -----------------------------------------------------------------
    def _session_options(self):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if self.optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        return so

    def _session(self, model, digest: str, stateful: bool = False):
        if self.engine == "ort":
            import onnxruntime as ort

            def make():
                return ort.InferenceSession(
                    model.SerializeToString(), self._session_options(), providers=["CPUExecutionProvider"]
                )

            if stateful:
                STATS["sessions_created"] += 1
                return make()
            return _cache_get(("ort", digest, self.optimize), make)
        from onnx.reference import ReferenceEvaluator

        return _cache_get(("reference", digest), lambda: ReferenceEvaluator(model))

    def _execute(self, model, feeds: dict[str, np.ndarray], stateful: bool = False) -> dict[str, np.ndarray]:
        import time

        from normconf.onnx_models import model_digest

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

        from normconf.onnx_models import build_model

        t = time.perf_counter()
        out = build_model(
            case, inputs, self.opset, self.params_as, training, step=step, running_mean=rm, running_var=rv
        )
        STATS["build"] += time.perf_counter() - t
        return out

    # --- the adapter ---------------------------------------------------------------
    def run(self, case: Case, inputs: Inputs) -> Observed:
        from normconf.onnx_models import RUNNING_MEAN, RUNNING_VAR, Y, from_nchw

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
            notes.append(
                "multi-step: each step's running_mean/running_var outputs fed back as the next step's input_mean/input_var"
            )
        return Observed(outputs, notes)

    # --- LayerNorm ---------------------------------------------------------------------
    def _ln_session(self, model, digest: str):
        """The cached session (or evaluator) of a LayerNorm model, and the op types of ORT's optimized
        graph (decomposed graphs on ORT; otherwise ``None``)."""
        if self.engine != "ort":
            return self._session(model, digest), None
        import onnx
        import onnxruntime as ort

        def make():
            so = self._session_options()
            if self.ln_form != "decomposed":
                return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]), None
            with tempfile.TemporaryDirectory(prefix="normconf-ort-") as d:
                # the optimized graph is written next to nothing else and read back: what ORT made of the model
                so.optimized_model_filepath = os.path.join(d, "optimized.onnx")
                sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
                ops = tuple(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
            return sess, ops

        return _cache_get(("ort-ln", digest, self.optimize), make)

    def _run_ln_model(self, model, feeds: dict[str, np.ndarray]):
        """({output name: array}, ORT's optimized op types or None) for one LayerNorm model."""
        import time

        from normconf.onnx_models import model_digest

        names = [o.name for o in model.graph.output]
        try:
            sess, ops = self._ln_session(model, model_digest(model))
            t = time.perf_counter()
            with np.errstate(all="ignore"):
                if self.engine == "ort" and any(_is_bfloat16(v) for v in feeds.values()):
                    res = _ort_run_bfloat16(sess, model, feeds)
                else:
                    res = sess.run(None, feeds)
            STATS["compute"] += time.perf_counter() - t
        except Exception as e:
            if self.engine == "ort" and ort_refuses_dtype(e):
                raise Unsupported(f"onnxruntime {self._ort_version()}: {e}") from None
            raise
        return dict(zip(names, res)), ops

    def _ln_notes(self, case) -> list[str]:
        from normconf.inputs import np_dtype
        from normconf.onnx_models import LN_DECOMPOSED_OPSET, LN_OPSET

        where = "graph inputs" if self.params_as == "inputs" else "initializers"
        k = len(case.norm_axes)
        if self.ln_form == "native":
            notes = [
                f"ONNX LayerNormalization-{LN_OPSET} (axis={-k}, epsilon={case.eps:g} as a float32 attribute, "
                f"stash_type=1), Scale/B as {where}"
            ]
            if not case.has_affine:
                notes.append(
                    "no affine: Scale = 1 (a required input of LayerNormalization-17; x*1 is exact), B left out"
                )
            elif not case.has_bias:
                notes.append("bias: false: the optional input B left out")
        else:
            dt = np_dtype(case.dtype)
            notes = [
                f"decomposed LayerNorm graph at opset {LN_DECOMPOSED_OPSET} (what torch.onnx exported before "
                f"opset 17: ReduceMean(axes={list(range(-k, 0))}) -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> "
                f"Sqrt -> Div -> Mul(Scale) -> Add(B)), Scale/B as {where}; y only (the graph has no Mean/"
                "InvStdDev outputs)"
            ]
            if float(dt.type(case.eps)) != case.eps:
                notes.append(
                    f"eps is a {case.dtype} tensor constant in this graph: {float(dt.type(case.eps))!r} "
                    f"(the case's {case.eps!r} rounded)"
                )
            if not case.has_affine:
                notes.append("no affine: the Mul and Add nodes left out (as torch.onnx did without weight/bias)")
            elif not case.has_bias:
                notes.append("bias: false: the last Add node left out (as torch.onnx did without bias)")
        if self.engine == "ort":
            notes.append(
                "ORT CPU provider, graph optimizations "
                + (
                    "at their default level (ORT_ENABLE_ALL, what users get)"
                    if self.optimize
                    else "disabled (ORT_DISABLE_ALL)"
                )
            )
        return notes

    def run_layer_norm(self, case, inputs) -> Observed:
        import time

        from normconf.onnx_models import LN_INV_STD, LN_MEAN, Y, build_layer_norm_decomposed, build_layer_norm_model

        reason = self.unsupported(case)
        if reason:
            raise Unsupported(reason)
        build = build_layer_norm_model if self.ln_form == "native" else build_layer_norm_decomposed
        notes = self._ln_notes(case)
        outputs: dict[str, list[np.ndarray]] = {"y": []}
        if self.ln_form == "native":
            outputs.update(mean=[], inv_std=[])
        optimized = None
        for k in range(case.steps):
            t = time.perf_counter()
            model, feeds = build(case, inputs, self.params_as, step=k)
            STATS["build"] += time.perf_counter() - t
            res, optimized = self._run_ln_model(model, feeds)
            outputs["y"].append(res[Y])
            if self.ln_form == "native":
                outputs["mean"].append(res[LN_MEAN])
                outputs["inv_std"].append(res[LN_INV_STD])
        if self.ln_form == "native" and outputs["mean"]:
            got = outputs["mean"][0].dtype
            if str(got) != case.params_dtype:
                notes.append(
                    f"Mean/InvStdDev returned as {got} for a {case.dtype} case (stash_type=1: type U = float"
                    + (", as the model declares" if self.engine == "ort" else "")
                    + ")"
                )
        if optimized is not None and self.ln_form == "decomposed":
            notes.append(_optimized_note(optimized, [n.op_type for n in model.graph.node]))
        if outputs["y"] and str(outputs["y"][0].dtype) != case.dtype:
            notes.append(f"y returned as {outputs['y'][0].dtype} for a {case.dtype} case")
        return Observed(outputs, notes)


class Ort(_OnnxBackend):
    id = "ort"
    description = (
        "ONNX Runtime CPU, opset 15 (LayerNorm: LayerNormalization-17), parameters as graph inputs, "
        "default graph optimizations"
    )


class OrtInit(_OnnxBackend):
    id = "ort-init"
    params_as = "initializers"
    description = (
        "ONNX Runtime CPU, opset 15 (LayerNorm: LayerNormalization-17), parameters as initializers, "
        "default graph optimizations"
    )


class OrtInitNoopt(_OnnxBackend):
    id = "ort-init-noopt"
    params_as = "initializers"
    optimize = False
    description = (
        "ONNX Runtime CPU, opset 15 (LayerNorm: LayerNormalization-17), parameters as initializers, "
        "graph optimizations disabled"
    )


class OrtOpset9(_OnnxBackend):
    id = "ort-opset9"
    opset = 9
    modes = ("eval",)
    ln_form = "decomposed"
    description = (
        "ONNX Runtime CPU, opset 9 (inference only), parameters as graph inputs; LayerNorm: the decomposed "
        "pre-opset-17 graph at opset 9, default graph optimizations"
    )
    # BatchNorm: inference only, the variance estimators and the momentum attribute do not apply
    conventions = ONNX_OPSET9_CONVENTIONS + DECOMPOSED_LN_CONVENTIONS


class OrtOpset9Init(_OnnxBackend):
    id = "ort-opset9-init"
    opset = 9
    modes = ("eval",)
    params_as = "initializers"
    ln_form = "decomposed"
    description = (
        "ONNX Runtime CPU, opset 9 (inference only), parameters as initializers (an exported inference "
        "model); LayerNorm: the decomposed pre-opset-17 graph at opset 9"
    )
    conventions = ONNX_OPSET9_CONVENTIONS + DECOMPOSED_LN_CONVENTIONS


class OnnxReference(_OnnxBackend):
    id = "onnx-reference"
    framework = "onnx"
    engine = "reference"
    description = (
        "onnx.reference.ReferenceEvaluator, opset 15, parameters as graph inputs; LayerNorm: LayerNormalization-17"
    )
    conventions = ONNX_TRAIN_CONVENTIONS + ONNX_REFERENCE_LN_CONVENTIONS


class OnnxReferenceOpset9(_OnnxBackend):
    id = "onnx-reference-opset9"
    framework = "onnx"
    engine = "reference"
    opset = 9
    modes = ("eval",)
    ln_form = "decomposed"
    description = (
        "onnx.reference.ReferenceEvaluator, opset 9 (inference only), parameters as graph inputs; "
        "LayerNorm: the decomposed pre-opset-17 graph at opset 9"
    )
    conventions = ONNX_REFERENCE_OPSET9_CONVENTIONS + DECOMPOSED_LN_CONVENTIONS


ADAPTERS = [Ort, OrtInit, OrtInitNoopt, OrtOpset9, OrtOpset9Init, OnnxReference, OnnxReferenceOpset9]
