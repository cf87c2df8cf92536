"""Hypothesis strategy helpers every op's fuzz hook (``OpSpec.fuzz_cases``) shares.

Conventions: a strategy draws a case *mapping* with only the non-default keys and no ``id``
(``normconf fuzz`` adds ``id`` and ``op``-independent checks); every choice shrinks towards the
simplest case (the first option, the smallest size, the default value).  Drawn numbers are rounded
to 3 significant digits (:func:`r3`): readable YAML that round-trips exactly.  The ``draw_*``
helpers take a composite strategy's ``draw`` and return the keys they drew as a mapping to merge
into the case (``{}`` for a default, which the case omits).  Hypothesis is imported inside the
functions (the op registry imports nothing heavy).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

#: the dtypes a fuzz hook draws from (``--dtype`` restricts them)
FUZZ_DTYPES = ("float32", "float64", "float16", "bfloat16")
#: the half-precision dtypes, which may get float32 parameters
HALF_DTYPES = ("float16", "bfloat16")


def r3(x: float) -> float:
    """3 significant digits: readable YAML, and a value that round-trips exactly."""
    return float(f"{x:.3g}")


def floats3(low: float, high: float) -> SearchStrategy[float]:
    """Strategy of a float in ``[low, high]``, rounded by :func:`r3`."""
    from hypothesis import strategies as st

    return st.floats(low, high).map(r3)


def fit_budget(dims: list[int], steps: int, max_elements: int) -> tuple[list[int], int]:
    """(dims, steps) within ``prod(dims) * steps <= max_elements``: halves the largest dimension (then
    the steps) until they fit; a dimension of 0 stays 0."""
    dims = list(dims)
    while math.prod(dims) * steps > max_elements:
        i = max(range(len(dims)), key=lambda j: dims[j])
        if dims[i] <= 1:
            steps = max(1, steps // 2)
            continue
        dims[i] = (dims[i] + 1) // 2
    return dims, steps


def draw_dtypes(draw: DrawFn, dtypes: tuple[str, ...]) -> dict[str, str]:
    """``dtype`` (omitted for float32) and, for a half-precision dtype, maybe ``param_dtype: float32``."""
    from hypothesis import strategies as st

    d: dict[str, str] = {}
    dtype = draw(st.sampled_from(dtypes))
    if dtype != "float32":
        d["dtype"] = dtype
    if dtype in HALF_DTYPES and draw(st.booleans()):
        d["param_dtype"] = "float32"
    return d


def eps_values(documented: tuple[float, ...], low: float = 1e-8, high: float = 0.1) -> SearchStrategy[float | None]:
    """Strategy of eps: ``None`` (the op's default) first, then a documented value, then a random one."""
    from hypothesis import strategies as st

    return st.one_of(st.none(), st.sampled_from(list(documented)), floats3(low, high))


def draw_eps(draw: DrawFn, documented: tuple[float, ...]) -> dict[str, float]:
    """``{"eps": value}`` drawn from ``eps_values(documented)``; ``{}`` when it drew ``None`` (the op's default)."""
    eps = draw(eps_values(documented))
    return {} if eps is None else {"eps": eps}


def scalar_or_list(n: int, low: float = -4.0, high: float = 4.0) -> SearchStrategy[float | list[float]]:
    """Strategy of a parameter value: one number, or a list of ``n`` (one per group or feature)."""
    from hypothesis import strategies as st

    one = floats3(low, high)
    return st.one_of(one, st.lists(one, min_size=n, max_size=n))


def input_generators() -> SearchStrategy[dict[str, Any] | None]:
    """Strategy of the ``input:`` mapping (``None``: the default N(0, 1), seed 0).

    normal (offsets from 0 to 1e5 and scales from 1e-6 to 1e3: large offsets relative to the spread
    stress one-pass variances and low precision), uniform, or constant (variance 0); a seed.
    """
    from hypothesis import strategies as st

    @st.composite
    def strat(draw: DrawFn) -> dict[str, Any] | None:
        dist = draw(st.sampled_from(["normal", "uniform", "constant"]))
        gen: dict[str, Any] = {}
        if dist == "normal":
            mean = draw(st.one_of(st.just(0.0), st.sampled_from([1.0, -2.5, 10.0, 1e3, -1e3, 1e5]), floats3(-100, 100)))
            std = draw(st.one_of(st.just(1.0), st.sampled_from([0.1, 10.0, 1e-3, 1e3, 1e-6]), floats3(1e-3, 1e3)))
            if mean != 0.0:
                gen["mean"] = mean
            if std != 1.0:
                gen["std"] = std
        elif dist == "uniform":
            low = draw(floats3(-10, 10))
            width = draw(floats3(1e-3, 20))
            gen.update(dist="uniform", low=low, high=r3(low + width))
        else:
            gen.update(dist="constant", value=draw(floats3(-100, 100)))
        s = draw(st.integers(0, 2**16 - 1))
        if s:
            gen["seed"] = s
        return gen or None

    return strat()


def draw_input(draw: DrawFn) -> dict[str, Any]:
    """``{"input": mapping}`` drawn from :func:`input_generators`; ``{}`` when it drew the default (``None``)."""
    gen = draw(input_generators())
    return {"input": gen} if gen else {}
