"""The LayerNorm case library (cases/layer_norm*.yaml) covers the op's parameters and traps, and the
NumPy reference backend passes every case through the runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from normconf.cases import load_paths

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "cases").glob("layer_norm*.yaml"))


@pytest.fixture(scope="module")
def loaded():
    return load_paths(FILES)


def test_at_least_thirty_cases_and_every_file_says_what_it_probes(loaded):
    assert len(loaded) >= 30
    assert all(lc.case.op == "layer_norm" for lc in loaded)
    for f in FILES:
        first = f.read_text().splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, f.name


def test_coverage(loaded):
    cs = [lc.case for lc in loaded]
    assert {c.rank for c in cs} >= {1, 2, 3, 4, 5}
    assert any(len(c.norm_axes) > 1 and c.trailing for c in cs)
    assert any(not c.trailing for c in cs) and any(len(c.norm_axes) > 1 and not c.trailing for c in cs)
    assert {c.dtype for c in cs} == {"float16", "bfloat16", "float32", "float64"}
    assert any(c.params_dtype != c.dtype for c in cs)
    assert {c.eps for c in cs} >= {1e-5, 1e-3, 1e-12, 0.1}
    assert any(not c.has_affine for c in cs) and any(c.has_affine and not c.has_bias and not c.rms_scaling for c in cs)
    assert any(c.rms_scaling for c in cs) and any(c.normalize_variance == "unbiased" for c in cs)
    assert any(c.row_size == 1 for c in cs) and any(c.shape[0] == 0 for c in cs) and any(c.steps > 1 for c in cs)
    ids = {c.id for c in cs}
    assert {"ln_offset_1e4_float32", "ln_constant_rows", "ln_nonfinite", "ln_large_values_float16"} <= ids


def test_numpy_passes_every_layer_norm_case(runner, loaded):
    for lc in loaded:
        rows = runner.run_pair(lc, "numpy")
        assert {r.outcome for r in rows} == {"pass"}, (lc.id, [(r.output, r.outcome, r.message) for r in rows])
        assert all(r.as_expected for r in rows)
