"""Deterministic inputs for a case: the same bits on every machine and run.

Random values come from ``numpy.random.Generator(PCG64(seed))`` drawn in float64
and then rounded to the case dtype (bfloat16 through ``ml_dtypes``).  ``x`` is
generated in logical (N, C, *spatial) order and then laid out as the case asks
(channels-last: (N, *spatial, C)).  Explicit ``data`` is read in logical
row-major order too.  Per-channel parameters are rounded to the parameter dtype.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from normconf.cases import Affine, Case, Generator


def np_dtype(name: str) -> np.dtype:
    """NumPy dtype for a normconf dtype name (bfloat16 from ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@dataclass(frozen=True)
class Inputs:
    """Every array a backend needs, already rounded to the case's dtypes.

    ``x`` holds one array per step, in the case's layout; the parameters are
    per-channel vectors of length C in the parameter dtype.  ``gamma``/``beta``
    are ``None`` when the case has no affine transform.
    """

    x: tuple[np.ndarray, ...]
    gamma: np.ndarray | None
    beta: np.ndarray | None
    running_mean: np.ndarray
    running_var: np.ndarray

    def digest(self) -> str:
        """SHA-256 over every array's dtype, shape and bytes (pins determinism)."""
        h = hashlib.sha256()
        for a in (*self.x, self.gamma, self.beta, self.running_mean, self.running_var):
            if a is None:
                h.update(b"none")
                continue
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


def _float(v, what: str) -> float:
    """``float(v)``; a number beyond float64 range is a ``ValueError`` naming the field.

    :func:`normconf.cases.load_file` refuses such numbers with their position; this guards cases
    built in code (``Case.model_validate``), which skip the file-level checks.
    """
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"{what}: {v!r:.40} is beyond float64 range") from None


def _float64_array(values, what: str) -> np.ndarray:
    try:
        return np.asarray(values, np.float64)
    except OverflowError:
        raise ValueError(f"{what}: a value is beyond float64 range") from None


#: elements per chunk of a drawn input (:func:`_draw_into`): its float64 temporaries stay small
DRAW_CHUNK = 1 << 17


def _stream(gen: Generator, what: str = "input"):
    """``take(k)``: ``gen``'s next ``k`` float64 values from one bit generator.  NumPy's ``Generator``
    fills an array one value after the other from the bit generator's stream, so the values do not
    depend on how the draw is split (tested against one whole-array draw)."""
    rng = np.random.Generator(np.random.PCG64(gen.seed))
    if gen.dist == "normal":
        std, mean = _float(gen.std, f"{what}.std"), _float(gen.mean, f"{what}.mean")
        return lambda k: rng.standard_normal(k) * std + mean
    if gen.dist == "uniform":
        low, high = _float(gen.low, f"{what}.low"), _float(gen.high, f"{what}.high")
        if not (low <= high and np.isfinite(high - low)):
            raise ValueError(f"{what}: uniform range [{low!r}, {high!r}] is empty or beyond float64 range")
        return lambda k: rng.uniform(low, high, k)
    value = _float(gen.value, f"{what}.value")
    return lambda k: np.full(k, value)


def _draw_chunks(gen: Generator, n: int, what: str = "input", chunk: int = DRAW_CHUNK):
    """``gen``'s ``n`` float64 values, in order, ``chunk`` at a time (:func:`_stream`)."""
    take = _stream(gen, what)
    for s in range(0, max(n, 1), max(1, chunk)):
        yield take(min(chunk, n - s))


def _draw(gen: Generator, n: int, what: str = "input") -> np.ndarray:
    """``gen``'s ``n`` values as one float64 array (small draws: the per-channel parameters)."""
    return np.concatenate(list(_draw_chunks(gen, n, what)))


def _draw_into(gen: Generator, n: int, dtype: np.dtype) -> np.ndarray:
    """``gen``'s ``n`` values rounded to ``dtype``, a chunk at a time: the same numbers as
    ``_draw(gen, n).astype(dtype)`` without a float64 array of all of them (a float32 input's peak while
    it is drawn: 1× its bytes plus a chunk, was 3×, and the float64 block freed behind it fragmented the
    heap that the outputs are then allocated from)."""
    out = np.empty(n, dtype)
    s = 0
    with np.errstate(over="ignore"):
        for part in _draw_chunks(gen, n):
            out[s : s + part.size] = part.astype(dtype)
            s += part.size
    return out


def _draw_channels_last(gen: Generator, steps: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """(steps, N, *spatial, C): the values of ``_draw_into(gen, steps·N·C·…)`` in logical (N, C, *spatial)
    order of each step, written straight into the channels-last array a block of that order at a time
    (:func:`normconf.blocks.blocks_of`), so the input is never held twice (a drawn logical array and
    its transposed copy: 2× while it is made)."""
    from normconf.blocks import blocks_of

    out = np.empty((steps * shape[0], *shape[2:], shape[1]), dtype)
    logical = np.moveaxis(out, -1, 1)  # a view, (steps·N, C, *spatial)
    take = _stream(gen)
    with np.errstate(over="ignore"):
        for index, _ch in blocks_of(logical.shape, 1, DRAW_CHUNK):
            block = logical[index]
            block[...] = take(block.size).reshape(block.shape).astype(dtype)
    return out.reshape((steps, shape[0], *shape[2:], shape[1]))


def _per_channel(spec, C: int, dtype: np.dtype, what: str) -> np.ndarray:
    if isinstance(spec, Generator):
        v = _draw(spec, C, what)
    elif isinstance(spec, list):
        v = _float64_array(spec, what)
    else:
        v = np.full(C, _float(spec, what))
    with np.errstate(over="ignore"):  # refused when loading (normconf.cases); kept as inf here
        return v.astype(dtype)


def to_layout(x_logical: np.ndarray, layout: str) -> np.ndarray:
    """(N, C, *spatial) → the case's layout (a contiguous copy for channels-last)."""
    if layout == "channels_last":
        return np.ascontiguousarray(np.moveaxis(x_logical, 1, -1))
    return x_logical


def generate(case):
    """The inputs of any op's case (its spec's generator), bit-identical on every run and machine."""
    from normconf.ops import spec_for

    return spec_for(case).generate(case)


def draw_x(case, layout: str = "channels_first") -> tuple[np.ndarray, ...]:
    """``x`` of every step, rounded to the case dtype (from ``data`` or the ``input`` generator), the
    values in logical row-major order of ``case.shape``: one array per step, in ``layout``
    (:func:`to_layout`; a generated channels-last input is drawn in place, never copied)."""
    dt = np_dtype(case.dtype)
    shape = tuple(case.shape)
    per_step = int(np.prod(shape))
    if layout == "channels_last" and case.data is None and len(shape) >= 2:
        xs = _draw_channels_last(case.input or Generator(), case.steps, shape, dt)
        return tuple(xs[k] for k in range(case.steps))
    if case.data is not None:
        if case.data and isinstance(case.data[0], list):
            flat = _float64_array([v for lst in case.data for v in lst], "data")
        else:
            flat = _float64_array(case.data, "data")
        if flat.size == per_step and case.steps > 1:
            flat = np.tile(flat, case.steps)
        with np.errstate(over="ignore"):
            drawn = flat.astype(dt)
    else:
        drawn = _draw_into(case.input or Generator(), per_step * case.steps, dt)
    xs = drawn.reshape((case.steps, *shape))
    return tuple(to_layout(xs[k], layout) for k in range(case.steps))


def parameter(spec, n: int, dtype: str, what: str) -> np.ndarray:
    """A parameter of ``n`` values (a number, a list or a generator) rounded to ``dtype``."""
    return _per_channel(spec, n, np_dtype(dtype), what)


def batch_norm_inputs(case: Case) -> Inputs:
    """A BatchNorm case's inputs, bit-identical on every run and machine."""
    pdt = np_dtype(case.params_dtype)
    x = draw_x(case, case.layout)
    C = case.channels
    if case.has_affine:
        aff = case.affine if isinstance(case.affine, Affine) else Affine()
        gamma, beta = _per_channel(aff.gamma, C, pdt, "affine.gamma"), _per_channel(aff.beta, C, pdt, "affine.beta")
    else:
        gamma = beta = None
    return Inputs(
        x=x,
        gamma=gamma,
        beta=beta,
        running_mean=_per_channel(case.running_mean, C, pdt, "running_mean"),
        running_var=_per_channel(case.running_var, C, pdt, "running_var"),
    )
