"""LayerNorm's fuzz hook (``OpSpec.fuzz_cases``): the Hypothesis strategy ``normconf fuzz --op layer_norm`` draws.

Draws the shape (rank 1-5; now and then an empty non-normalized axis), the normalized axes (the
last one, the trailing k, or a set of other axes — non-trailing — maybe with the last one, written
with non-negative or negative indices), dtype (and float32 parameters for half-precision data), eps (the documented
defaults of :data:`~normconf.ops.layer_norm.explain.KNOWN_EPS`, or random), the variance
estimator, RMS scaling, affine on/off with scalar or per-feature gamma/beta, ``bias`` on/off,
steps and the input distribution (offsets up to 1e5 over spreads down to 1e-6: the precision
traps), within the size budget ``max_elements`` (all steps together).

Every choice shrinks towards the simplest case: rank 1, the smallest sizes, the last axis, the
first dtype, default eps, biased variance, no RMS scaling, the default affine, one step, N(0, 1)
with seed 0.  Rarely supported options (the unbiased variance, RMS scaling, empty rows) are drawn
one time in four or ten, so most examples reach most backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

from normconf.ops._strategies import FUZZ_DTYPES, draw_dtypes, draw_eps, draw_input, fit_budget, scalar_or_list


def case_dicts(
    max_elements: int = 512, dtypes: tuple[str, ...] = FUZZ_DTYPES, max_steps: int = 3
) -> SearchStrategy[dict[str, Any]]:
    """Hypothesis strategy of LayerNorm case mappings (``op: layer_norm`` and the non-default keys, no ``id``)."""
    from hypothesis import strategies as st

    from normconf.ops.layer_norm.explain import KNOWN_EPS

    def rarely(k: int) -> SearchStrategy[bool]:
        return st.sampled_from([False] * (k - 1) + [True])  # shrinks to False

    @st.composite
    def strat(draw: DrawFn) -> dict[str, Any]:
        rank = draw(st.integers(1, 5))
        dims = draw(st.lists(st.integers(1, 8), min_size=rank, max_size=rank))
        kind = draw(st.sampled_from(["last", "trailing", "other"]))
        if kind == "trailing":
            norm = list(range(rank - draw(st.integers(1, rank)), rank))
        elif kind == "other" and rank > 1:  # a set without the last axis (non-trailing), maybe plus it
            norm = sorted(draw(st.lists(st.integers(0, rank - 2), min_size=1, max_size=rank - 1, unique=True)))
            if draw(st.booleans()):
                norm.append(rank - 1)
        else:
            norm = [rank - 1]
        others = [i for i in range(rank) if i not in norm]
        empty: bool = draw(rarely(10))
        if empty and others:
            dims[others[0]] = 0  # an empty batch of rows
        dims, steps = fit_budget(dims, draw(st.integers(1, max_steps)), max_elements)
        d: dict[str, Any] = {"op": "layer_norm", "shape": dims}
        if norm != [rank - 1]:
            d["axes"] = [a - rank for a in norm] if draw(st.booleans()) else norm
        d.update(draw_dtypes(draw, dtypes))
        d.update(draw_eps(draw, tuple(e for e in KNOWN_EPS if e != 1e-5) + (0.1, 1e-2)))
        if draw(rarely(4)):
            d["normalize_variance"] = "unbiased"
        rms = draw(rarely(4))
        if rms:
            d["rms_scaling"] = True
        m = 1
        for a in norm:
            m *= dims[a]
        affine = draw(st.sampled_from(["default", "none", "values"]))
        if affine == "none":
            d["affine"] = False
        else:
            bias = not rms and not draw(rarely(4))
            if not rms and not bias:
                d["bias"] = False
            if affine == "values":
                aff = {"gamma": draw(scalar_or_list(m))}
                if bias:
                    aff["beta"] = draw(scalar_or_list(m))
                d["affine"] = aff
        if steps > 1:
            d["steps"] = steps
        d.update(draw_input(draw))
        return d

    return strat()
