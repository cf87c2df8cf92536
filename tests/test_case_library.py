"""The case library covers every theme of the issue, and every case is well-formed.

Checks the library as data (coverage of parameters and traps, comments, reasons), and runs the
NumPy reference backend on every case: it must pass all of them (an expected value that cannot be
represented in the case dtype, or a case the reference cannot run, would show up here).
"""

import math
from pathlib import Path

import pytest

from normconf.cases import Momentum, load_file, load_paths

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "cases"
#: the theme files of the library (other files in cases/ belong to other parts of the project)
THEMES = [
    "shapes",
    "layouts",
    "dtypes",
    "eps",
    "momentum",
    "variance",
    "train_eval",
    "multistep",
    "affine",
    "trap_single_element",
    "trap_constant_channel",
    "trap_large_offset",
    "trap_magnitude",
    "trap_nonfinite",
    "trap_empty_batch",
]


@pytest.fixture(scope="module")
def library():
    return {t: load_file(CASES / f"{t}.yaml") for t in THEMES}


@pytest.fixture(scope="module")
def cases(library):
    return [lc.case for lcs in library.values() for lc in lcs]


def test_every_theme_file_says_what_it_probes(library):
    for t in THEMES:
        first = (CASES / f"{t}.yaml").read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, f"{t}.yaml must start with a comment saying what it probes"
        assert library[t], t


def test_ids_unique_across_the_whole_folder():
    load_paths([CASES])  # raises on duplicate ids or invalid files


def test_shapes(cases):
    assert {c.rank for c in cases} >= {2, 3, 4, 5}
    assert any(c.shape[0] == 1 and math.prod(c.shape[2:]) > 1 for c in cases)  # N = 1 with spatial extent
    assert any(c.rank > 2 and math.prod(c.shape[2:]) == 1 for c in cases)  # spatial size 1
    assert any(c.channels == 1 for c in cases)
    assert any(c.channels >= 256 for c in cases)
    assert any(all(d % 2 == 1 for d in c.shape) and c.rank >= 4 for c in cases)  # odd sizes


def test_layouts_and_dtypes(cases):
    assert {c.layout for c in cases} == {"channels_first", "channels_last"}
    assert {c.rank for c in cases if c.layout == "channels_last"} >= {3, 4, 5}
    assert {c.dtype for c in cases} == {"float16", "bfloat16", "float32", "float64"}
    assert any(c.dtype in ("float16", "bfloat16") and c.params_dtype == "float32" for c in cases)


def test_eps_range(cases):
    eps = {c.eps for c in cases}
    assert min(eps) <= 1e-8 and max(eps) >= 0.1
    assert {1e-8, 1e-5, 1e-3, 0.1} <= eps


def test_momentum_values_in_both_forms(cases):
    weights = {round(c.momentum_weight, 12) for c in cases if c.momentum_weight is not None}
    assert {0.0, 0.01, 0.1, 0.5, 1.0} <= weights
    assert any(c.momentum == "cumulative" for c in cases)
    bw = {
        round(c.momentum.weight, 12)
        for c in cases
        if isinstance(c.momentum, Momentum) and c.momentum.batch_weight is not None
    }
    rw = {
        round(c.momentum.weight, 12)
        for c in cases
        if isinstance(c.momentum, Momentum) and c.momentum.running_weight is not None
    }
    assert {0.0, 0.01, 0.1, 0.5, 1.0} <= bw and {0.0, 0.01, 0.1, 0.5, 1.0} <= rw


def test_variance_estimators_each_way(cases):
    combos = {(c.normalize_variance, c.running_variance) for c in cases if c.mode == "train"}
    assert combos == {(a, b) for a in ("biased", "unbiased") for b in ("biased", "unbiased")}


def test_train_eval_and_multistep(cases):
    assert {c.mode for c in cases} == {"train", "eval"}
    assert any(c.mode == "train" and c.steps >= 5 and c.eval_after for c in cases)
    assert any(c.mode == "eval" and c.steps > 1 for c in cases)


def test_traps(library):
    def ids(t):
        return {lc.id for lc in library[t]}

    m1 = [lc.case for lc in library["trap_single_element"]]
    assert all(c.mode == "train" and math.prod(c.shape) // c.channels == 1 for c in m1)
    assert any(c.running_variance == "unbiased" for c in m1)
    const = [lc.case for lc in library["trap_constant_channel"]]
    assert any(c.input is not None and c.input.dist == "constant" for c in const)
    offsets = {
        (c.dtype, abs(float(c.input.mean)) / float(c.input.std))
        for lc in library["trap_large_offset"]
        for c in [lc.case]
        if c.input is not None
    }
    assert {r for _, r in offsets} >= {1e3, 1e5}
    mags = {lc.id: lc.case for lc in library["trap_magnitude"]}
    from normconf.inputs import generate

    def max_square(c):
        return max(float((x.astype("float64") ** 2).max()) for x in generate(c).x)

    assert any(c.dtype == "float16" and max_square(c) > 65504 for c in mags.values())  # x^2 overflows fp16
    assert any(c.dtype == "float32" and max_square(c) > 3.4e38 for c in mags.values())  # x^2 overflows fp32
    assert any(c.dtype == "float16" and float(c.input.std) < 6.1e-5 for c in mags.values())  # fp16 subnormals
    data = [v for lc in library["trap_nonfinite"] for v in lc.case.data]
    assert any(math.isnan(v) for v in data) and math.inf in data and -math.inf in data
    assert all(lc.case.shape[0] == 0 for lc in library["trap_empty_batch"])
    assert {"train", "eval"} == {lc.case.mode for lc in library["trap_empty_batch"]}
    assert "affine_negative_gamma" in ids("affine") and "affine_zero_gamma" in ids("affine")


def test_traps_without_single_answer_say_which_they_expect():
    for t in ("trap_single_element", "trap_empty_batch"):
        head = (CASES / f"{t}.yaml").read_text().split("defaults:")[0].lower()
        head = " ".join(line.lstrip("# ") for line in head.splitlines())
        assert "no single right answer" in head and "expect" in head, t


def test_every_expectation_and_tolerance_has_a_reason(cases):
    for c in cases:
        for b, e in c.expect.items():
            assert len(e.reason) > 20, (c.id, b)
            if e.because is not None:
                assert e.outcome == "explained", (c.id, b)
        if c.tolerance is not None:
            assert len(c.tolerance.reason) > 20, c.id


def test_heavy_cases_are_tagged_slow(cases):
    for c in cases:
        if c.n_elements > 200_000:
            assert "slow" in c.tags, c.id


def test_reference_backend_passes_every_case(library):
    """The NumPy reference through the adapter path passes the whole library (slow cases and found cases included)."""
    from normconf.results import pair_outcome
    from normconf.runner import Runner

    with Runner(timeout=300) as r:
        bad = []
        found = load_paths([CASES / "found"]) if (CASES / "found").is_dir() else []
        for lcs in [*library.values(), found]:
            for lc in lcs:
                rows = r.run_pair(lc, "numpy")
                if pair_outcome(rows) != "pass":
                    bad.append((lc.id, [(x.output, x.outcome, x.message[:120]) for x in rows if x.outcome != "pass"]))
    assert not bad, bad
