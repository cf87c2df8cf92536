"""Keras 3 on its other backends: ``keras-torch``, ``keras-jax``, ``keras-numpy``.

The same ``keras.layers.BatchNormalization`` as ``keras-tf`` (translation in
:mod:`normconf.adapters._keras_common`), run eagerly on another Keras backend.  Keras reads
``KERAS_BACKEND`` once, when it is first imported, so no two Keras backends share a
process; each runs in a worker group whose environment is set before anything is imported
(beside the framework's own backends where one exists: one import of torch or JAX):

==============  ==============  ==================================================================
id              worker group    environment
==============  ==============  ==================================================================
``keras-torch`` ``torch``       ``KERAS_BACKEND=torch``
``keras-jax``   ``jax``         ``KERAS_BACKEND=jax``, ``JAX_PLATFORMS=cpu``, ``JAX_ENABLE_X64=1``
``keras-numpy`` ``keras-numpy`` ``KERAS_BACKEND=numpy``
==============  ==============  ==================================================================

``JAX_ENABLE_X64=1``: without it JAX silently computes a float64 case in float32;
with it float64 is float64 (float32 cases are unaffected: Keras creates its
variables and casts with explicit dtypes; the Flax backends set it too).  One thread
(:func:`normconf.worker_env.thread_env`, every worker): reductions sum in the same order on every
machine.  Keras changes no global setting of torch or JAX when imported or run (Keras 3.15.1:
nothing in ``keras/src/backend/`` calls a ``torch.set_*`` function or ``jax.config.update``; its
``torch.manual_seed`` calls are Keras's random ops, which BatchNormalization does not use), so the
backends it shares a process with compute as they would alone (the library's rows are the same
either way).

The numpy backend is documented as inference-only for *training loops* (no
gradients), but the layer's forward pass with ``training=True`` computes batch
statistics and assigns the moving averages (checked by trying: the values move),
so train cases run there too.

A dtype the backend refuses (decided by trying: no kernel, an unsupported dtype)
is ``unsupported`` with the framework's message; anything else is an error.

LayerNorm (``op: layer_norm``): ``keras.layers.LayerNormalization`` (translation in
:mod:`normconf.adapters._keras_common`), eager, output ``y``.  On these three backends
``ops.layer_normalization`` computes in ``backend.result_type(x.dtype, "float32")``, float32
for a float64 case (declared: ``working_precision: float32`` for layer_norm, as for
BatchNorm).  On ``keras-torch`` consecutive axes go to ``torch.nn.functional.layer_norm``,
which normalizes the trailing dimensions: a non-trailing run of axes is normalized over the
wrong dimensions or refused by torch (a Keras bug, reported as is: a mismatch or an error).
"""

from __future__ import annotations

import os
import re
from typing import ClassVar

from normconf.adapters._keras_common import KERAS3_CONVENTIONS, KERAS3_LN_CONVENTIONS
from normconf.adapters.base import Adapter, Observed, Unsupported, missing
from normconf.cases import Case
from normconf.inputs import Inputs
from normconf.profiles import convention

#: Keras 3 promotes 64-bit dtypes to 32-bit on every backend but TensorFlow (to match JAX's default):
#: BatchNormalization.call computes in ``backend.result_type(inputs.dtype, "float32")``, which is float32
#: for a float64 input, and casts the result back
KERAS3_FLOAT64_IN_FLOAT32 = convention(
    "working_precision",
    "float32",
    "backend.result_type maps float64 to float32 (BIT64_TO_BIT32_DTYPE, 'aligned with JAX's default behavior') on "
    "the torch, JAX and NumPy backends, so BatchNormalization.call computes a float64 input in float32",
    "keras/src/backend/common/dtypes.py (BIT64_TO_BIT32_DTYPE, _lattice_result_type); "
    "keras/src/layers/normalization/batch_normalization.py (call: compute_dtype = backend.result_type(inputs.dtype, "
    "'float32'))",
    applies_to=("float64",),
)
#: the same promotion in ops.layer_normalization (LayerNormalization.call): float64 → float32 on torch/JAX/NumPy
KERAS3_LN_FLOAT64_IN_FLOAT32 = convention(
    "working_precision",
    "float32",
    "backend.result_type maps float64 to float32 (BIT64_TO_BIT32_DTYPE, 'aligned with JAX's default behavior') on "
    "the torch, JAX and NumPy backends, so ops.layer_normalization converts a float64 input to float32, computes "
    "there (moments, F.layer_norm on torch, or var under rms_scaling) and casts the result back",
    "keras/src/backend/common/dtypes.py (BIT64_TO_BIT32_DTYPE, _lattice_result_type); "
    "keras/src/ops/nn.py (_layer_normalization: compute_dtype = backend.result_type(x.dtype, 'float32'); "
    "x = backend.convert_to_tensor(x, dtype=compute_dtype))",
    op="layer_norm",
    applies_to=("float64",),
)

#: framework messages that mean "this dtype has no kernel / is not supported here"
_DTYPE_REFUSAL = re.compile(
    r"not implemented for|not supported|Unsupported dtype|unsupported dtype|does not support"
    r"|Invalid dtype|data type .* not understood|Could not find an implementation",
    re.I,
)


def refuses_dtype(exc: BaseException) -> bool:
    """True when ``exc`` says a dtype has no kernel (not any other failure)."""
    return bool(_DTYPE_REFUSAL.search(str(exc)))


class _KerasOtherBackend(Adapter):
    framework = "keras"
    #: KERAS_BACKEND value (one per process: each Keras backend has its own worker group)
    keras_backend: ClassVar[str] = ""
    #: the backend's own distribution (for ``available``/``version``)
    backend_module: ClassVar[str] = ""
    conventions = (*KERAS3_CONVENTIONS, KERAS3_FLOAT64_IN_FLOAT32, *KERAS3_LN_CONVENTIONS, KERAS3_LN_FLOAT64_IN_FLOAT32)
    ops = ("batch_norm", "layer_norm")

    def available(self) -> str | None:
        return missing("keras", "pip install keras") or missing(
            self.backend_module, f"pip install {self.backend_module}"
        )

    def _keras(self):
        if os.environ.get("KERAS_BACKEND") != self.keras_backend:
            # the runner sets it before import; anything else would silently run another backend
            raise RuntimeError(
                f"{self.id} must run in a process started with KERAS_BACKEND={self.keras_backend} "
                f"(got {os.environ.get('KERAS_BACKEND')!r}); use normconf.runner.Runner"
            )
        import keras

        if keras.backend.backend() != self.keras_backend:
            raise RuntimeError(
                f"keras was imported with backend {keras.backend.backend()!r}, not {self.keras_backend!r}"
            )
        return keras

    def version(self) -> str:
        import importlib

        keras = self._keras()
        mod = importlib.import_module(self.backend_module)
        return f"{keras.__version__} ({self.keras_backend} {getattr(mod, '__version__', '')})"

    def unsupported(self, case: Case) -> str | None:
        from normconf.adapters._keras_common import keras_ln_unsupported, keras_unsupported

        reason = super().unsupported(case)
        if reason:
            return reason
        if getattr(case, "op", "batch_norm") == "layer_norm":
            return keras_ln_unsupported(case)
        return keras_unsupported(case)

    def _to_tensor(self, keras):
        return None

    def run(self, case: Case, inputs: Inputs) -> Observed:
        from normconf.adapters._keras_common import run_keras_layer

        return self._guarded(run_keras_layer, case, inputs)

    def run_layer_norm(self, case, inputs) -> Observed:
        """``keras.layers.LayerNormalization``, eager, one call per step; output ``y``."""
        from normconf.adapters._keras_common import run_keras_layer_norm

        return self._guarded(run_keras_layer_norm, case, inputs)

    def _guarded(self, fn, case, inputs) -> Observed:
        """``fn(keras, case, inputs, to_tensor)``; a dtype refusal becomes :class:`Unsupported`."""
        keras = self._keras()
        try:
            return fn(keras, case, inputs, self._to_tensor(keras))
        except Unsupported:
            raise
        except Exception as e:
            if refuses_dtype(e):
                first = " ".join(str(e).strip().splitlines()[:3])[:600]
                raise Unsupported(
                    f"keras {keras.__version__} ({self.keras_backend}) refused x {case.dtype} / "
                    f"parameters {case.params_dtype}: {type(e).__name__}: {first}"
                ) from None
            raise


class KerasTorch(_KerasOtherBackend):
    id = "keras-torch"
    keras_backend = "torch"
    backend_module = "torch"
    worker = "torch"  # with the torch backends: one torch import
    cpu_estimate = (5.0, 2.0)
    worker_env = {"KERAS_BACKEND": "torch"}
    description = "keras.layers.BatchNormalization / LayerNormalization (Keras 3, PyTorch backend), eager"


class KerasJax(_KerasOtherBackend):
    id = "keras-jax"
    keras_backend = "jax"
    backend_module = "jax"
    worker = "jax"  # with the Flax backends: one JAX import
    cpu_estimate = (2.1, 43.0)
    worker_env = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"}
    description = "keras.layers.BatchNormalization / LayerNormalization (Keras 3, JAX backend, CPU, x64 enabled), eager"


class KerasNumpy(_KerasOtherBackend):
    id = "keras-numpy"
    keras_backend = "numpy"
    backend_module = "numpy"
    worker = "keras-numpy"
    cpu_estimate = (2.1, 3.0)
    worker_env = {"KERAS_BACKEND": "numpy"}
    description = "keras.layers.BatchNormalization / LayerNormalization (Keras 3, NumPy backend), eager"


ADAPTERS = [KerasTorch, KerasJax, KerasNumpy]
