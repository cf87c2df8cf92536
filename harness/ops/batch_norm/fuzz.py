"""BatchNorm's fuzz hook (``OpSpec.fuzz_cases``): the Hypothesis strategy ``normconf fuzz`` draws.

Draws shape (rank 2-5, N may be 0), layout, dtype (and float32 parameters for half-precision
data), mode, eps, momentum (both written forms, cumulative), variance estimators, affine
parameters, initial running statistics, steps/``eval_after`` and the input distribution, within
the size budget ``max_elements`` (all steps together).  Every choice shrinks towards the simplest
case: rank 2, the smallest sizes, channels-first, the first dtype, the first mode, default
eps/momentum/estimators/affine, one step, the default input N(0, 1) with seed 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy

from normconf.ops._strategies import FUZZ_DTYPES, draw_dtypes, draw_eps, draw_input, fit_budget, floats3, r3

#: eps values worth hitting exactly (ONNX/torch 1e-5 is the default, left out when drawn)
EPS_VALUES = (1e-3, 1e-4, 1e-8, 0.1, 1e-2, 1e-6)
#: momentum forms worth hitting exactly
MOMENTA = (
    {"batch_weight": 0.1},
    {"running_weight": 0.99},
    "cumulative",
    {"batch_weight": 0},
    {"batch_weight": 1},
    {"running_weight": 0.5},
)


def case_dicts(
    max_elements: int = 512,
    dtypes: tuple[str, ...] = FUZZ_DTYPES,
    modes: tuple[str, ...] = ("train", "eval"),
    max_steps: int = 4,
) -> SearchStrategy[dict[str, Any]]:
    """Hypothesis strategy of BatchNorm case mappings (only non-default keys, no ``id``)."""
    from hypothesis import strategies as st

    @st.composite
    def strat(draw: DrawFn) -> dict[str, Any]:
        n = draw(st.integers(0, 8))
        c = draw(st.integers(1, 8))
        spatial = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
        mode = draw(st.sampled_from(modes))
        dims, steps = fit_budget([n, c, *spatial], draw(st.integers(1, max_steps)), max_elements)
        d: dict[str, Any] = {"shape": dims}
        C = dims[1]
        if len(dims) > 2 and draw(st.booleans()):
            d["layout"] = "channels_last"
        d.update(draw_dtypes(draw, dtypes))
        if mode != "train":
            d["mode"] = mode
        d.update(draw_eps(draw, EPS_VALUES))
        if mode == "train":
            mom = draw(
                st.one_of(
                    st.none(),
                    st.sampled_from(list(MOMENTA)),
                    st.floats(0, 1).map(lambda w: {"batch_weight": r3(w)}),
                    st.floats(0, 1).map(lambda p: {"running_weight": r3(p)}),
                )
            )
            if mom is not None:
                d["momentum"] = mom
            for key in ("normalize_variance", "running_variance"):
                if draw(st.sampled_from(["biased", "unbiased"])) != "biased":
                    d[key] = "unbiased"
        one = floats3(-4, 4)
        affine = draw(
            st.one_of(
                st.none(),
                st.just(False),
                st.fixed_dictionaries({"gamma": one, "beta": one}),
                st.fixed_dictionaries(
                    {"gamma": st.lists(one, min_size=C, max_size=C), "beta": st.lists(one, min_size=C, max_size=C)}
                ),
            )
        )
        if affine is not None:
            d["affine"] = affine
        rm = draw(st.one_of(st.none(), floats3(-10, 10)))
        if rm is not None:
            d["running_mean"] = rm
        rv = draw(st.one_of(st.none(), st.sampled_from([0.0, 1e-4, 100.0]), floats3(0, 10)))
        if rv is not None:
            d["running_var"] = rv
        if steps > 1:
            d["steps"] = steps
        if mode == "train" and draw(st.booleans()):
            d["eval_after"] = True
        d.update(draw_input(draw))
        return d

    return strat()
