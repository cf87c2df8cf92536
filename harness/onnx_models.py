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

LayerNorm (``op: layer_norm``) has two model forms:

* :func:`build_layer_norm_model`: one ``LayerNormalization`` node (opset 17, the operator's
  first version): ``axis`` = the first normalized axis, counted from the end (``-k`` for k
  normalized axes, as ``torch.onnx`` writes it), so only trailing axes are expressible;
  ``epsilon`` = ``case.eps`` (a float32 attribute); ``stash_type`` = 1 (the default: statistics
  of type float); outputs ``Y``, ``Mean``, ``InvStdDev``.  ``Scale`` is a required input: a
  case without affine gets ``Scale = 1`` (``x·1`` is exact); ``B`` is optional and left out
  when the case has no beta.
* :func:`build_layer_norm_decomposed`: the graph exporters wrote before LayerNormalization
  existed (``torch.onnx``'s ``layer_norm`` symbolic in ``symbolic_opset9.py``, used for
  opsets 9-16): ``ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div → Mul(Scale)
  → Add(B)``, built at **opset 9** (ReduceMean-1 with its ``axes`` attribute; that form is valid
  up to opset 17, ReduceMean-18 takes the axes as an input).  The constants 2 and eps are
  initializers in the data dtype (eps is a tensor here, not a float32 attribute: a float16
  model holds fl16(eps)); ``Mul``/``Add`` are left out without gamma/beta, as the exporter did.
  Only ``Y`` is an output.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import lru_cache
from typing import Literal

import numpy as np

from normconf.adapters.base import Unsupported
from normconf.cases import Case
from normconf.inputs import Inputs

__all__ = [
    "X",
    "SCALE",
    "BIAS",
    "MEAN",
    "VAR",
    "Y",
    "RUNNING_MEAN",
    "RUNNING_VAR",
    "PARAM_NAMES",
    "TRAINING_MIN_OPSET",
    "build_model",
    "model_digest",
    "onnx_momentum",
    "to_nchw",
    "from_nchw",
    "elem_type",
    "check_expressible",
    "LN_OPSET",
    "LN_DECOMPOSED_OPSET",
    "LN_SCALE",
    "LN_BIAS",
    "LN_MEAN",
    "LN_INV_STD",
    "LN_DECOMPOSED_OPS",
    "check_layer_norm_expressible",
    "build_layer_norm_model",
    "build_layer_norm_decomposed",
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


CUMULATIVE_REASON = (
    "ONNX BatchNormalization has one fixed 'momentum' attribute; a cumulative average (w = 1/k) cannot be expressed"
)


def onnx_momentum(case: Case) -> float:
    """ONNX ``momentum`` (weight of the *old* running value) = 1 - w.

    Uses the case's ``running_weight`` unchanged when given that way.  A
    cumulative average has no ONNX spelling (``momentum`` is one fixed attribute).
    """
    if case.momentum == "cumulative":
        raise Unsupported(CUMULATIVE_REASON)
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
    return {
        "float16": "tensor(float16)",
        "bfloat16": "tensor(bfloat16)",
        "float32": "tensor(float)",
        "float64": "tensor(double)",
    }[dtype_name]


def check_expressible(case: Case, opset: int, training: bool) -> None:
    """Raise :class:`Unsupported` when the opset's BatchNormalization cannot express the case.

    Type constraints come from ``onnx.defs.get_schema("BatchNormalization", opset)``; the verdict
    depends only on the dtypes, the opset, training and a cumulative average, and is memoized on them.
    """
    reason = _expressible(case.dtype, case.params_dtype, opset, training, case.momentum == "cumulative")
    if reason is not None:
        raise Unsupported(reason)


@lru_cache(maxsize=256)
def _expressible(dtype: str, params_dtype: str, opset: int, training: bool, cumulative: bool) -> str | None:
    """Why the opset cannot express a case of these dtypes (None: it can)."""
    try:
        _check_expressible(dtype, params_dtype, opset, training, cumulative)
    except Unsupported as e:
        return str(e)
    return None


def _check_expressible(dtype: str, params_dtype: str, opset: int, training: bool, cumulative: bool) -> None:
    from onnx import defs

    if training and opset < TRAINING_MIN_OPSET:
        raise Unsupported(
            f"opset {opset} models are built for inference only (training_mode exists from "
            f"BatchNormalization-{TRAINING_MIN_OPSET})"
        )
    if training and cumulative:
        raise Unsupported(CUMULATIVE_REASON)
    schema = defs.get_schema("BatchNormalization", opset)
    allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}
    by_input = {f.name: f.type_str for f in schema.inputs}
    # a type parameter shared by X and the parameters must be one dtype
    wanted = {"X": dtype, "scale": params_dtype, "B": params_dtype, "mean": params_dtype, "var": params_dtype}
    seen: dict[str, str] = {}
    for name, dt in wanted.items():
        tp = by_input.get(name, by_input.get("input_" + name))
        if tp is None:
            continue
        if _type_str(dt) not in allowed.get(tp, set()):
            raise Unsupported(
                f"BatchNormalization-{schema.since_version} (opset {opset}) does not allow {dt} for "
                f"{name} (type constraint {tp}: {', '.join(sorted(allowed.get(tp, ())))})"
            )
        if tp in seen and seen[tp] != dt:
            raise Unsupported(
                f"BatchNormalization-{schema.since_version} (opset {opset}) uses one type {tp} for X "
                f"and its parameters; the case has x {dtype} and parameters {params_dtype}"
            )
        seen[tp] = dt


def _params(case: Case, inputs: Inputs, running_mean, running_var) -> dict[str, np.ndarray]:
    from normconf.inputs import np_dtype

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

    Raises :class:`Unsupported` when the opset cannot express the case.  A parameters-as-inputs model
    is built and checked once per signature (dtypes, shape, eps, momentum, opset) and shared.
    """
    if training is None:
        training = case.mode == "train"
    if params_as not in ("inputs", "initializers"):
        raise ValueError(f"params_as must be 'inputs' or 'initializers' (got {params_as!r})")
    check_expressible(case, opset, training)
    params = _params(case, inputs, running_mean, running_var)
    feeds: dict[str, np.ndarray] = {X: to_nchw(case, inputs.x[step])}
    momentum = onnx_momentum(case) if training else None
    key = (case.dtype, case.params_dtype, tuple(case.shape), case.channels, float(case.eps), momentum, opset)
    if params_as == "inputs":  # the model holds no values: one per signature, checked once
        feeds.update((name, params[name]) for name in PARAM_NAMES)
        # floats keyed by their exact bits (float.hex): 0.0 and -0.0 are equal as keys but not as attributes
        hexed = (*key[:4], key[4].hex(), None if momentum is None else momentum.hex(), opset)
        return _signature_model(*hexed), feeds
    return _make_model(*key, {name: np.asarray(params[name]) for name in PARAM_NAMES}), feeds


@lru_cache(maxsize=64)
def _signature_model(dtype, params_dtype, shape, C, eps_hex: str, momentum_hex: str | None, opset: int):
    """The checked parameters-as-inputs model of a signature (shared: callers never modify a model)."""
    momentum = None if momentum_hex is None else float.fromhex(momentum_hex)
    model = _make_model(dtype, params_dtype, shape, C, float.fromhex(eps_hex), momentum, opset, None)
    _DIGESTS[id(model)] = (model, hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest())
    while len(_DIGESTS) > 64:
        _DIGESTS.popitem(last=False)
    return model


#: id(model) -> (model, digest) of recently memoized models (the entry holds the model, so the id stays
#: its own; an entry dropped only means the digest is computed again)
_DIGESTS: OrderedDict[int, tuple[object, str]] = OrderedDict()


def _make_model(
    dtype: str,
    params_dtype: str,
    shape: tuple[int, ...],
    C: int,
    eps: float,
    momentum: float | None,
    opset: int,
    initializer_values: dict[str, np.ndarray] | None,
):
    """The checked one-node model; ``momentum`` None: inference; ``initializer_values``: the parameters
    stored in the model (None: they are graph inputs)."""
    import onnx
    from onnx import helper, numpy_helper

    training = momentum is not None
    x_t = elem_type(dtype)
    p_t = elem_type(params_dtype)
    logical = list(shape)

    attrs: dict[str, object] = {"epsilon": eps}
    outputs = [helper.make_tensor_value_info(Y, x_t, logical)]
    if training:
        attrs["momentum"] = momentum
        attrs["training_mode"] = 1
        outputs += [
            helper.make_tensor_value_info(RUNNING_MEAN, p_t, [C]),
            helper.make_tensor_value_info(RUNNING_VAR, p_t, [C]),
        ]
    node = helper.make_node(
        "BatchNormalization", [X, SCALE, BIAS, MEAN, VAR], [o.name for o in outputs], name="bn", **attrs
    )

    graph_inputs = [helper.make_tensor_value_info(X, x_t, logical)]
    initializers = []
    for name in PARAM_NAMES:
        if initializer_values is None:
            graph_inputs.append(helper.make_tensor_value_info(name, p_t, [C]))
        else:
            initializers.append(numpy_helper.from_array(initializer_values[name], name=name))
    graph = helper.make_graph([node], "batch_norm", graph_inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="normconf",
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]),
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def model_digest(model) -> str:
    """SHA-256 of the serialized model (a cache key: same bytes, same session); memoized for the
    models :func:`build_model` shares."""
    known = _DIGESTS.get(id(model))
    if known is not None and known[0] is model:
        return known[1]
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


# --- LayerNorm (op: layer_norm) ------------------------------------------------------------------
#: LayerNormalization exists from opset 17 on
LN_OPSET = 17
#: the decomposed graph's opset: torch.onnx's symbolic_opset9 layer_norm (ReduceMean with an axes attribute)
LN_DECOMPOSED_OPSET = 9
LN_SCALE, LN_BIAS, LN_MEAN, LN_INV_STD = "Scale", "B", "Mean", "InvStdDev"
#: the ops of the decomposed graph, in graph order (without gamma/beta the last two are left out)
LN_DECOMPOSED_OPS = ("ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add")

LNForm = Literal["native", "decomposed"]


def _allowed(op: str, opset: int) -> tuple[int, dict[str, set[str]]]:
    from onnx import defs

    schema = defs.get_schema(op, opset)
    return schema.since_version, {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}


def check_layer_norm_expressible(case, form: LNForm = "native") -> None:
    """Raise :class:`Unsupported` when the ONNX model of ``form`` cannot express the LayerNorm ``case``.

    Type constraints are read from the operator schemas of the model's opset.
    """
    what = (
        f"LayerNormalization-{LN_OPSET}"
        if form == "native"
        else f"the decomposed LayerNorm graph (opset {LN_DECOMPOSED_OPSET}, torch.onnx symbolic_opset9)"
    )
    if case.rms_scaling:
        raise Unsupported(
            f"{what} always centers and divides by the variance: RMS scaling (rms_scaling) is not "
            "expressible (ONNX's RMS form is another operator, RMSNormalization-23, not built here)"
        )
    if not case.trailing:
        if form == "native":
            raise Unsupported(
                f"{what} normalizes the axes [axis, rank): axes {list(case.norm_axes)} of a rank-{case.rank} input "
                "are not the trailing ones"
            )
        raise Unsupported(
            f"{what} normalizes the trailing axes only (torch.onnx exported F.layer_norm, whose normalized_shape "
            f"is the last dimensions): axes {list(case.norm_axes)} of a rank-{case.rank} input are not trailing"
        )
    if case.has_affine and case.params_dtype != case.dtype:
        raise Unsupported(
            f"{what} uses one type T for X, Scale and B; the case has x {case.dtype} and parameters {case.params_dtype}"
        )
    if form == "native":
        version, allowed = _allowed("LayerNormalization", LN_OPSET)
        if _type_str(case.dtype) not in allowed["T"]:
            raise Unsupported(
                f"LayerNormalization-{version} does not allow {case.dtype} (T: {', '.join(sorted(allowed['T']))})"
            )
        return
    for op in dict.fromkeys(LN_DECOMPOSED_OPS):
        version, allowed = _allowed(op, LN_DECOMPOSED_OPSET)
        if _type_str(case.dtype) not in allowed["T"]:
            raise Unsupported(
                f"{op}-{version} (opset {LN_DECOMPOSED_OPSET}, in the decomposed LayerNorm graph) "
                f"does not allow {case.dtype} (T: {', '.join(sorted(allowed['T']))})"
            )


def _ln_params(case, inputs) -> tuple[np.ndarray, np.ndarray | None]:
    """(Scale, B or None) shaped like the normalized dimensions: gamma/beta in the parameter dtype, or
    without affine Scale = 1 in the data dtype (the one type T the operator allows)."""
    from normconf.inputs import np_dtype

    scale = inputs.gamma if inputs.gamma is not None else np.ones(case.normalized_shape, np_dtype(case.dtype))
    return np.asarray(scale), (np.asarray(inputs.beta) if case.has_bias and inputs.beta is not None else None)


def _ln_model(nodes, graph_inputs, outputs, initializers, opset: int, name: str):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, graph_inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="normconf",
        ir_version=helper.find_min_ir_version_for([helper.make_opsetid("", opset)]),
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _ln_param_io(case, params: dict[str, np.ndarray], params_as: str, x: np.ndarray):
    from onnx import helper, numpy_helper

    t = elem_type(case.dtype)
    graph_inputs = [helper.make_tensor_value_info(X, t, list(case.shape))]
    feeds: dict[str, np.ndarray] = {X: x}
    initializers = []
    for pname, value in params.items():
        if params_as == "inputs":
            graph_inputs.append(helper.make_tensor_value_info(pname, elem_type(value.dtype.name), list(value.shape)))
            feeds[pname] = value
        else:
            initializers.append(numpy_helper.from_array(value, name=pname))
    return graph_inputs, initializers, feeds


def build_layer_norm_model(case, inputs, params_as: ParamsAs = "inputs", *, step: int = 0):
    """(checked one-node LayerNormalization-17 ``ModelProto``, feed dict) for one step of a LayerNorm case.

    Outputs ``Y`` (the data dtype), ``Mean`` and ``InvStdDev`` (float: ``stash_type`` 1), the
    latter two shaped ``case.group_shape``.  Raises :class:`Unsupported` when the case is not
    expressible (:func:`check_layer_norm_expressible`).
    """
    from onnx import TensorProto, helper

    if params_as not in ("inputs", "initializers"):
        raise ValueError(f"params_as must be 'inputs' or 'initializers' (got {params_as!r})")
    check_layer_norm_expressible(case, "native")
    scale, bias = _ln_params(case, inputs)
    params = {LN_SCALE: scale, **({LN_BIAS: bias} if bias is not None else {})}
    graph_inputs, initializers, feeds = _ln_param_io(case, params, params_as, inputs.x[step])
    outputs = [
        helper.make_tensor_value_info(Y, elem_type(case.dtype), list(case.shape)),
        helper.make_tensor_value_info(LN_MEAN, TensorProto.FLOAT, list(case.group_shape)),
        helper.make_tensor_value_info(LN_INV_STD, TensorProto.FLOAT, list(case.group_shape)),
    ]
    node = helper.make_node(
        "LayerNormalization",
        [X, *params],
        [o.name for o in outputs],
        name="ln",
        axis=-len(case.norm_axes),
        epsilon=float(case.eps),
        stash_type=1,
    )
    return _ln_model([node], graph_inputs, outputs, initializers, LN_OPSET, "layer_norm"), feeds


def build_layer_norm_decomposed(case, inputs, params_as: ParamsAs = "inputs", *, step: int = 0):
    """(checked decomposed-LayerNorm ``ModelProto`` at opset 9, feed dict) for one step: the graph
    ``torch.onnx`` exported for ``F.layer_norm`` before opset 17 (see the module docstring); one
    output ``Y``.  Raises :class:`Unsupported` when the case is not expressible.
    """
    from onnx import helper, numpy_helper

    from normconf.inputs import np_dtype

    if params_as not in ("inputs", "initializers"):
        raise ValueError(f"params_as must be 'inputs' or 'initializers' (got {params_as!r})")
    check_layer_norm_expressible(case, "decomposed")
    dt = np_dtype(case.dtype)
    scale, bias = _ln_params(case, inputs) if case.has_affine else (None, None)
    params = {**({LN_SCALE: scale} if scale is not None else {}), **({LN_BIAS: bias} if bias is not None else {})}
    graph_inputs, initializers, feeds = _ln_param_io(case, params, params_as, inputs.x[step])
    # the exporter's constants (folded to initializers by torch.onnx's constant folding), in the data dtype
    initializers += [
        numpy_helper.from_array(np.array(2.0, dt), name="two"),
        numpy_helper.from_array(np.array(case.eps, dt), name="eps"),
    ]
    axes = [-i for i in range(len(case.norm_axes), 0, -1)]
    normalized = "normalized" if case.has_affine else Y
    nodes = [
        helper.make_node("ReduceMean", [X], ["mean"], axes=axes, keepdims=1),
        helper.make_node("Sub", [X, "mean"], ["numerator"]),
        helper.make_node("Pow", ["numerator", "two"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["variance"], axes=axes, keepdims=1),
        helper.make_node("Add", ["variance", "eps"], ["variance_eps"]),
        helper.make_node("Sqrt", ["variance_eps"], ["denominator"]),
        helper.make_node("Div", ["numerator", "denominator"], [normalized]),
    ]
    if scale is not None:
        nodes.append(helper.make_node("Mul", [normalized, LN_SCALE], ["scaled" if bias is not None else Y]))
    if bias is not None:
        nodes.append(helper.make_node("Add", ["scaled", LN_BIAS], [Y]))
    outputs = [helper.make_tensor_value_info(Y, elem_type(case.dtype), list(case.shape))]
    model = _ln_model(nodes, graph_inputs, outputs, initializers, LN_DECOMPOSED_OPSET, "layer_norm_decomposed")
    return model, feeds
