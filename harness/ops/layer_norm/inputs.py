"""Deterministic inputs of a LayerNorm case: ``x`` per step and gamma/beta over the normalized shape.

``x`` is drawn as for every op (:func:`normconf.inputs.draw_x`: PCG64 in float64, rounded to the
case dtype, logical row-major order); gamma and beta are ``normalized_shape`` arrays in the
parameter dtype (a flat list fills them in row-major order).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from normconf.case_model import Affine
from normconf.inputs import draw_x, parameter

if TYPE_CHECKING:
    from normconf.ops.layer_norm.case import LayerNormCase


@dataclass(frozen=True)
class LayerNormInputs:
    """``x``: one array per step (the case's shape and dtype); ``gamma``/``beta``: the normalized
    shape in the parameter dtype, ``None`` when not applied (no affine; ``bias: false`` or RMS
    scaling drop beta)."""

    x: tuple[np.ndarray, ...]
    gamma: np.ndarray | None
    beta: np.ndarray | None

    def digest(self) -> str:
        """SHA-256 over every array's dtype, shape and bytes (pins determinism)."""
        h = hashlib.sha256()
        for a in (*self.x, self.gamma, self.beta):
            if a is None:
                h.update(b"none")
                continue
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def generate(case: LayerNormCase) -> LayerNormInputs:
    x = draw_x(case)
    gamma: np.ndarray | None
    beta: np.ndarray | None
    gamma = beta = None
    if case.has_affine:
        aff = case.affine if isinstance(case.affine, Affine) else Affine()
        shape = case.normalized_shape
        gamma = parameter(aff.gamma, case.row_size, case.params_dtype, "affine.gamma").reshape(shape)
        if case.has_bias:
            beta = parameter(aff.beta, case.row_size, case.params_dtype, "affine.beta").reshape(shape)
    return LayerNormInputs(x=x, gamma=gamma, beta=beta)
