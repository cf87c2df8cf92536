"""Case → a one-node ONNX ``BatchNormalization`` model (built with ``onnx.helper``, checked with ``onnx.checker``).

Shared by every backend that consumes ONNX (``ort*``, ``onnx-reference*``, and
OpenCV's DNN importer).  The model is what an exporter would write for the case:

* ``X`` has the case's *logical* shape (N, C, *spatial): ONNX BatchNormalization
  is channels-first only, so callers hand it ``to_nchw(case, x)`` and turn ``Y``
  back with ``from_nchw(case, y)`` (and say so in their notes).
* ``scale``/``B``/``input_mean``/``input_var`` (the names of the ONNX spec) are
  graph **inputs** (``params_as="inputs"``; values go into the feed dict) or
  **initializers** stored in the model (``params_as="initializers"``).
* ``epsilon`` = ``case.eps``; ``momentum`` = ``1 - w`` (ONNX' direction: running =
  momentum·running + (1−momentum)·batch) -- the case's ``running_weight`` is
  used as given when the case states it that way, so no rounding is added.
* opset ≥ 14 with ``training=True``: ``training_mode=1`` and outputs
  ``Y, running_mean, running_var``; otherwise one output ``Y`` (inference).
  Training at opset < 14 (BatchNormalization-9's five-output form) is not built.
* a case without affine gets ``scale = 1``, ``B = 0``: the operator has no
  "no affine" option, and ``x·1 + 0`` is exact in IEEE arithmetic.
* type constraints are read from the operator schema of the opset (not from a
  table here): a dtype the schema does not allow raises :class:`Unsupported`.

The IR version is the smallest one that supports the opset (what an exporter of
that opset produced); the model is checked with ``onnx.checker.check_model(...,
full_check=True)`` (type and shape inference included).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from harness.adapters.base import Unsupported
from harness.cases import Case
from harness.inputs import Inputs

__all__ = [
    "X", "SCALE", "BIAS", "MEAN", "VAR", "Y", "RUNNING_MEAN", "RUNNING_VAR", "PARAM_NAMES",
    "TRAINING_MIN_OPSET", "build_model", "model_digest", "onnx_momentum", "to_nchw", "from_nchw",
    "elem_type", "check_expressible",
]

X, SCALE, BIAS, MEAN, VAR = "X", "scale", "B", "input_mean", "input_var"
Y, RUNNING_MEAN, RUNNING_VAR = "Y", "running_mean", "running_var"
PARAM_NAMES = (SCALE, BIAS, MEAN, VAR)
#: ``training_mode`` exists from BatchNormalization-14 on
TRAINING_MIN_OPSET = 14

ParamsAs = Literal["inputs", "initializers"]


def elem_type(dtype_name: str) -> int:
    """``TensorProto`` element type of a normconf dtype name."""
    from onnx import TensorProto

    return {
        "float16": TensorProto.FLOAT16,
        "bfloat16": TensorProto.BFLOAT16,
        "float32": TensorProto.FLOAT,
        "float64": TensorProto.DOUBLE,
    }[dtype_name]


def onnx_momentum(case: Case) -> float:
    """ONNX ``momentum`` (weight of the *old* running value) = 1 - w.

    Uses the case's ``running_weight`` unchanged when given that way.  A
    cumulative average has no ONNX spelling (``momentum`` is one fixed attribute).
    """
    if case.momentum == "cumulative":
        raise Unsupported("ONNX BatchNormalization has one fixed 'momentum' attribute; a cumulative average (w = 1/k) cannot be expressed")
    if case.momentum.running_weight is not None:
        return float(case.momentum.running_weight)
    return 1.0 - float(case.momentum.batch_weight)


def to_nchw(case: Case, x: np.ndarray) -> np.ndarray:
    """An ``x`` in the case's layout → logical (N, C, *spatial) order (contiguous)."""
    if case.layout == "channels_last" and x.ndim > 2:
        return np.ascontiguousarray(np.moveaxis(x, -1, 1))
    return x


def from_nchw(case: Case, y: np.ndarray) -> np.ndarray:
    """A ``Y`` in (N, C, *spatial) order → the case's layout."""
    if case.layout == "channels_last" and y.ndim > 2:
        return np.ascontiguousarray(np.moveaxis(y, 1, -1))
    return y


def _type_str(dtype_name: str) -> str:
    return {"float16": "tensor(float16)", "bfloat16": "tensor(bfloat16)",
            "float32": "tensor(float)", "float64": "tensor(double)"}[dtype_name]


def check_expressible(case: Case, opset: int, training: bool) -> None:
    """Raise :class:`Unsupported` when the opset's BatchNormalization cannot express the case.

    Type constraints come from ``onnx.defs.get_schema("BatchNormalization", opset)``.
    """
    from onnx import defs

    if training and opset < TRAINING_MIN_OPSET:
        raise Unsupported(
            f"opset {opset} models are built for inference only (training_mode exists from "
            f"BatchNormalization-{TRAINING_MIN_OPSET})")
    if training:
        onnx_momentum(case)  # raises for a cumulative average
    schema = defs.get_schema("BatchNormalization", opset)
    allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}
    by_input = {f.name: f.type_str for f in schema.inputs}
    # a type parameter shared by X and the parameters must be one dtype
    wanted = {"X": case.dtype, "scale": case.params_dtype, "B": case.params_dtype,
              "mean": case.params_dtype, "var": case.params_dtype}
    seen: dict[str, str] = {}
    for name, dt in wanted.items():
        tp = by_input.get(name, by_input.get("input_" + name))
        if tp is None:
            continue
        if _type_str(dt) not in allowed.get(tp, set()):
            raise Unsupported(
                f"BatchNormalization-{schema.since_version} (opset {opset}) does not allow {dt} for "
                f"{name} (type constraint {tp}: {', '.join(sorted(allowed.get(tp, ())))})")
        if tp in seen and seen[tp] != dt:
            raise Unsupported(
                f"BatchNormalization-{schema.since_version} (opset {opset}) uses one type {tp} for X "
                f"and its parameters; the case has x {case.dtype} and parameters {case.params_dtype}")
        seen[tp] = dt


def _params(case: Case, inputs: Inputs, running_mean, running_var) -> dict[str, np.ndarray]:
    from harness.inputs import np_dtype

    pdt = np_dtype(case.params_dtype)
    C = case.channels
    gamma = inputs.gamma if inputs.gamma is not None else np.ones(C, pdt)
    beta = inputs.beta if inputs.beta is not None else np.zeros(C, pdt)
    rm = inputs.running_mean if running_mean is None else np.asarray(running_mean)
    rv = inputs.running_var if running_var is None else np.asarray(running_var)
    return {SCALE: gamma, BIAS: beta, MEAN: rm, VAR: rv}


def build_model(
    case: Case,
    inputs: Inputs,
    opset: int = 15,
    params_as: ParamsAs = "inputs",
    training: bool | None = None,
    *,
    step: int = 0,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
):
    """(checked ``onnx.ModelProto``, feed dict) for one step of ``case``.

    ``training`` defaults to ``case.mode == "train"``.  The feed dict holds ``X``
    (``inputs.x[step]`` in (N, C, *spatial) order) and, with
    ``params_as="inputs"``, the four parameters.  ``running_mean``/``running_var``
    replace the initial running statistics (multi-step training feeds the
    previous step's outputs back; with initializers that means a new model).

    Raises :class:`Unsupported` when the opset cannot express the case.
    """
    import onnx
    from onnx import helper, numpy_helper

    if training is None:
        training = case.mode == "train"
    if params_as not in ("inputs", "initializers"):
        raise ValueError(f"params_as must be 'inputs' or 'initializers' (got {params_as!r})")
    check_expressible(case, opset, training)

    x_t = elem_type(case.dtype)
    p_t = elem_type(case.params_dtype)
    logical = list(case.shape)
    C = case.channels
    params = _params(case, inputs, running_mean, running_var)

    attrs: dict[str, object] = {"epsilon": float(case.eps)}
    outputs = [helper.make_tensor_value_info(Y, x_t, logical)]
    if training:
        attrs["momentum"] = onnx_momentum(case)
        attrs["training_mode"] = 1
        outputs += [helper.make_tensor_value_info(RUNNING_MEAN, p_t, [C]),
                    helper.make_tensor_value_info(RUNNING_VAR, p_t, [C])]
    node = helper.make_node("BatchNormalization", [X, SCALE, BIAS, MEAN, VAR],
                            [o.name for o in outputs], name="bn", **attrs)

    graph_inputs = [helper.make_tensor_value_info(X, x_t, logical)]
    initializers = []
    feeds: dict[str, np.ndarray] = {X: to_nchw(case, inputs.x[step])}
    for name in PARAM_NAMES:
        if params_as == "inputs":
            graph_inputs.append(helper.make_tensor_value_info(name, p_t, [C]))
            feeds[name] = params[name]
        else:
            initializers.append(numpy_helper.from_array(np.asarray(params[name]), name=name))
    graph = helper.make_graph([node], "batch_norm", graph_inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="normconf",
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]),
    )
    onnx.checker.check_model(model, full_check=True)
    return model, feeds


def model_digest(model) -> str:
    """SHA-256 of the serialized model (a cache key: same bytes, same session)."""
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()
