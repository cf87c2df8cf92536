"""In-process checks of the loader's defences: paths, legitimate aliases, size estimates."""

from __future__ import annotations

import os

import pytest

from normconf.cases import (
    BYTES_PER_ELEMENT,
    CaseFileError,
    check_expectation_backends,
    estimated_bytes,
    load_file,
    resolve_case_path,
)


def test_paths_cannot_escape_the_case_folder(tmp_path):
    folder = tmp_path / "suite"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.npy").write_bytes(b"")
    case_file = folder / "c.yaml"
    assert resolve_case_path(case_file, "data/x.npy") == (folder / "data" / "x.npy").resolve()
    assert resolve_case_path(case_file, "data/../data/x.npy") == (folder / "data" / "x.npy").resolve()
    for bad in ("../outside.npy", "data/../../outside.npy", "/etc/passwd", "", "a\x00b"):
        with pytest.raises(ValueError):
            resolve_case_path(case_file, bad)
    # a symbolic link inside the folder that points outside is refused too
    (tmp_path / "secret.npy").write_bytes(b"")
    os.symlink(tmp_path / "secret.npy", folder / "data" / "link.npy")
    with pytest.raises(ValueError, match="leaves the case folder"):
        resolve_case_path(case_file, "data/link.npy")


def test_legitimate_aliases_are_accepted(tmp_path):
    values = ", ".join(str(i * 0.5) for i in range(600))
    text = "defaults:\n  shape: [2, 3, 100]\ncases:\n"
    text += f"  - id: first\n    data: &d [{values}]\n"
    text += "".join(f"  - id: again{i}\n    data: *d\n" for i in range(20))
    p = tmp_path / "aliases.yaml"
    p.write_text(text)
    cases = load_file(p)
    assert len(cases) == 21 and all(len(lc.case.data) == 600 for lc in cases)


def test_merge_keys_work_and_count_as_aliases(tmp_path):
    p = tmp_path / "merge.yaml"
    p.write_text("cases:\n  - &base {id: a, shape: [2, 3], eps: 0.001}\n  - {<<: *base, id: b}\n")
    a, b = load_file(p)
    assert b.case.eps == 0.001 and b.id == "b"


def test_size_refusal_names_the_estimated_bytes(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("cases:\n  - {id: big, shape: [100, 10, 1000], steps: 2}\n")
    with pytest.raises(CaseFileError) as ei:
        load_file(p, max_elements=1_000_000)
    (e,) = ei.value.errors
    n = 100 * 10 * 1000 * 2
    assert (e.line, e.column, e.field) == (2, 22, "cases[0](big).shape")  # the "[" of the shape
    assert f"{n} elements exceeds the limit of 1000000 elements" in e.message
    assert f"estimated memory {n * BYTES_PER_ELEMENT} bytes" in e.message and "--max-elements" in e.message
    (lc,) = load_file(p, max_elements=n)  # the flag raises the limit
    assert estimated_bytes(lc.case) == n * BYTES_PER_ELEMENT


def test_expectation_backends_are_checked_against_the_registry(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text(
        "defaults:\n  shape: [2, 3]\n  expect:\n    nmpy: {outcome: pass, reason: typo in defaults}\n"
        "cases:\n  - id: a\n  - id: b\n    expect:\n      torch: {outcome: mismatch, reason: known}\n"
        "      trch: {outcome: mismatch, reason: typo here}\n"
    )
    cases = load_file(p)
    errs = check_expectation_backends(cases, ["numpy", "torch"])
    assert [(e.line, e.column) for e in errs] == [(4, 5), (10, 7)]
    assert "unknown backend 'nmpy' (did you mean 'numpy'?)" in errs[0].message and "2 cases: a, b" in errs[0].field
    assert "did you mean 'torch'?" in errs[1].message
    assert check_expectation_backends(cases, ["numpy", "torch", "nmpy", "trch"]) == []
