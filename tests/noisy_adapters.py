"""Every built-in backend once more, with ±2 ULP of noise on each output (``noisy-<id>``).

For the noise-stability test (tests/test_portability.py): a verdict that changes when a backend's
output moves by two units in the last place of its dtype is not reproducible on another machine.
Each element of a float32/float64 output moves by −2, −1, +1 or +2 ULP (seeded per case and output, so
runs are repeatable); float16/bfloat16 outputs are left alone (see ``_dtype_name``), and so is an output
returned in a dtype coarser than the case asks for it (a float32 ``mean`` of a float64 case, a declared working
precision): 2 ULP of float32 exceed a float64 tolerance by themselves.
Loaded with ``--adapter tests.noisy_adapters:ADAPTERS``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from normconf.adapters import _builtin
from normconf.adapters.base import Observed
from normconf.compare import ulp


def _dtype_name(a: np.ndarray) -> str | None:
    """float32/float64 outputs only: ±2 ULP of float16 (2·2⁻¹⁰) or bfloat16 (2·2⁻⁷) exceeds those dtypes'
    default relative tolerance (1e-3, 1.6e-2) by itself, so no verdict could survive it there."""
    name = str(a.dtype)
    return name if name in ("float32", "float64") else None


def perturb(a: np.ndarray, seed: str) -> np.ndarray:
    """``a`` moved by ±1 or ±2 units in the last place of its own dtype, element by element."""
    a = np.asarray(a)
    dt = _dtype_name(a)
    if dt is None or a.size == 0:
        return a
    rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "little"))
    k = rng.choice(np.array([-2.0, -1.0, 1.0, 2.0]), size=a.shape)
    v = a.astype(np.float64)
    with np.errstate(all="ignore"):
        moved = np.where(np.isfinite(v), v + k * ulp(v, dt), v)
    return moved.astype(a.dtype)


def _noisy(cls):
    class Noisy(cls):
        id = f"noisy-{cls.id}"
        description = f"{cls.id} with ±2 ULP of noise on every output"

        def run_case(self, case, inputs):
            from normconf.inputs import np_dtype
            from normconf.ops import spec_for

            obs = super().run_case(case, inputs)
            spec = spec_for(case)

            def noise(n, k, a):
                coarser = np.dtype(a.dtype).itemsize < np_dtype(spec.output_dtype(case, n)).itemsize
                return a if coarser else perturb(a, f"{case.id}/{n}/{k}")

            return Observed(
                {n: [noise(n, k, a) for k, a in enumerate(steps)] for n, steps in obs.outputs.items()},
                list(obs.notes),
            )

    Noisy.__name__ = Noisy.__qualname__ = f"Noisy_{cls.__name__}"
    return Noisy


#: the BatchNorm backends (the portability subset is BatchNorm; a LayerNorm-only backend would test nothing)
ADAPTERS = [_noisy(c) for c in _builtin() if c.id != "numpy" and "batch_norm" in c.ops]
