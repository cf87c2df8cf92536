"""Backend convention profiles: expectations derived from declared conventions, and the profiles under test.

A planted wrong entry fails the run naming the entry; a user's C library that follows PyTorch's
conventions runs the whole case library clean with ``--conventions torch`` and, without it, shows the
difference once per pair; every built-in entry has its evidence and is documented.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from normconf.adapters import all_adapters
from normconf.cases import load_file, load_paths
from normconf.cli import main
from normconf.profiles import Convention, op_knobs, parse_conventions, profile_of
from normconf.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

CASE = """\
cases:
  - id: train_biased
    shape: [4, 3, 5]
    input: {seed: 3}
  - id: eval_only
    shape: [4, 3, 5]
    mode: eval
    running_var: 2.0
"""


def _case_file(tmp_path: Path) -> Path:
    p = tmp_path / "cases.yaml"
    p.write_text(CASE)
    return p


def test_a_wrong_profile_entry_fails_the_pair_naming_it(tmp_path):
    lc = load_file(_case_file(tmp_path))
    with Runner(("tests.profile_adapters:WrongProfile",), timeout=60) as r:
        rows = r.run_pair(lc[0], "numpy-wrong-profile")
        assert {x.outcome for x in rows} == {"pass"}  # the reference follows the case...
        assert rows[0].as_expected is False  # ...which is not what its profile declares
        msg = " ".join(x.message for x in rows)
        assert "profile entry numpy-wrong-profile.running_variance=unbiased not shown" in msg
        assert "running_var agrees with the case's running_variance=biased" in msg
        # the entry cannot show in an eval case (no running update): no claim, no failure
        rows = r.run_pair(lc[1], "numpy-wrong-profile")
        assert rows[0].as_expected is True and rows[0].expected_because == ""


def test_a_wrong_profile_entry_fails_the_cli_run(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(_case_file(tmp_path)),
            "--adapter",
            "tests.profile_adapters:WrongProfile",
            "-b",
            "numpy-wrong-profile",
            "--out",
            str(out),
            "--timeout",
            "60",
        ]
    )
    text = capsys.readouterr().out
    assert code == 1
    assert "train_biased [numpy-wrong-profile]" in text and "running_variance=unbiased not shown" in text
    assert "eval_only" not in text


def test_conventions_given_on_the_command_line_are_judged_too(tmp_path, capsys):
    """--conventions knob=value on a user adapter: the same check, and a bad spec is a usage error."""
    base = [
        "run",
        str(_case_file(tmp_path)),
        "--adapter",
        "tests.plugin_adapters:EchoReference",
        "-b",
        "plugin-echo",
        "--out",
        str(tmp_path / "o"),
        "--timeout",
        "60",
    ]
    assert main(base) == 0
    capsys.readouterr()
    # EchoReference returns the case's y: a declared unbiased normalization is not shown
    assert main(base + ["--conventions", "normalize_variance=unbiased"]) == 1
    assert "plugin-echo (--conventions).normalize_variance=unbiased not shown" in capsys.readouterr().out
    for bad, says in [
        ("running_variance=sometimes", "'sometimes' is not one of biased, unbiased"),
        ("colour=blue", "unknown profile knob 'colour'"),
        ("nosuchbackend", "not a backend id"),
        ("numpy", "declares no conventions"),
    ]:
        assert main(base + ["--conventions", bad]) == 2
        assert says in capsys.readouterr().err, bad
    # --conventions without a user backend says so
    assert (
        main(["run", str(_case_file(tmp_path)), "-b", "numpy", "--out", str(tmp_path / "p"), "--conventions", "torch"])
        == 2
    )
    assert "--native and --adapter" in capsys.readouterr().err


TORCH_LIKE = (
    "/* the user's kernel follows PyTorch: the running variance takes the unbiased batch variance */\n",
    "put(a->running_var, f64, c, (1 - w) * get(a->running_var, f64, c) + w * var);",
    "put(a->running_var, f64, c, (1 - w) * get(a->running_var, f64, c) "
    "+ w * (var * (double)(N * S) / (double)(N * S - 1)));",
)


@pytest.fixture(scope="module")
def torch_like_lib(tmp_path_factory) -> Path:
    if CC is None:
        pytest.skip("no C compiler (cc)")
    src = (ROOT / "native" / "examples" / "mybn.c").read_text()
    assert TORCH_LIKE[1] in src
    d = tmp_path_factory.mktemp("torchlike")
    (d / "torchlike.c").write_text(TORCH_LIKE[0] + src.replace(TORCH_LIKE[1], TORCH_LIKE[2]))
    lib = d / "libtorchlike.so"
    subprocess.run(
        [
            CC,
            "-O2",
            "-shared",
            "-fPIC",
            "-I",
            str(ROOT / "native" / "include"),
            str(d / "torchlike.c"),
            "-o",
            str(lib),
            "-lm",
        ],
        check=True,
    )
    return lib


def _run_library(lib: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "normconf.cli",
            "run",
            str(ROOT / "cases"),
            "--native",
            str(lib),
            "--backend",
            "native:torchlike",
            "--out",
            str(out),
            "-j",
            "2",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )


def test_a_torch_like_c_library_with_conventions_torch_is_clean(torch_like_lib, tmp_path):
    r = _run_library(torch_like_lib, tmp_path / "with", "--conventions", "torch")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "not as expected" not in r.stdout
    with open(tmp_path / "with" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # the derived expectation is the profile's change from the case, recorded on the rows
    assert any(row["expected_because"] == "running_variance=unbiased" and row["as_expected"] == "True" for row in rows)


def test_without_conventions_the_difference_is_reported_once_per_pair(torch_like_lib, tmp_path):
    r = _run_library(torch_like_lib, tmp_path / "without")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("  ") and "[native:torchlike]" in ln]
    m = re.search(r"(\d+) result\(s\) not as expected", r.stdout)
    assert m and lines
    pairs = [ln.split(" [", 1)[0].strip() for ln in lines]
    assert len(pairs) == len(set(pairs))  # once per pair
    with open(tmp_path / "without" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    bad = {(row["case"]) for row in rows if row["as_expected"] == "False"}
    assert len(bad) == int(m.group(1))
    # on the cases that normalize with the biased variance (as the library does) the one difference is the
    # running-variance convention, named as such; cases asking for unbiased normalization also show that
    expl: dict[str, set[str]] = {}
    for row in rows:
        if row["as_expected"] == "False" and row["outcome"] == "explained":
            expl.setdefault(row["normalize_variance"], set()).update(row["explanation"].split(";"))
    assert expl["biased"] == {"running_variance=unbiased"}
    assert expl.get("unbiased", set()) <= {
        "running_variance=unbiased",
        "normalize_variance=biased",
        "reported_variance=biased",
    }
    assert sum("explained running_var: running_variance=unbiased" in ln for ln in lines) >= len(lines) // 2


def test_every_builtin_profile_entry_has_evidence_and_is_documented():
    docs = (ROOT / "docs" / "profiles.md").read_text()
    adapters = all_adapters()
    n = 0
    for bid, cls in adapters.items():
        for e in profile_of(cls).entries:
            n += 1
            assert e.reason.strip() and e.evidence.strip(), (bid, e)
            assert e.knob in op_knobs(e.op), (bid, e)
            assert f"`{e.knob}={e.value}`" in docs, (bid, e.label)
        if profile_of(cls).entries:
            assert f"`{bid}`" in docs, bid
    assert n >= 20


def test_profile_entries_are_validated():
    with pytest.raises(ValueError, match="unknown profile knob"):
        Convention("eps_override", "1", "r", "e")
    with pytest.raises(ValueError, match="not one of"):
        Convention("running_variance", "both", "r", "e")
    with pytest.raises(ValueError, match="needs a reason and its evidence"):
        Convention("running_variance", "biased", " ", "e")
    p = parse_conventions("running_variance=unbiased, normalize_variance=biased", all_adapters())
    assert [e.label for e in p.entries if e.op == "batch_norm"] == [
        "running_variance=unbiased",
        "normalize_variance=biased",
    ]
    # a knob LayerNorm has too applies to both ops; one BatchNorm has alone only to BatchNorm
    assert [e.label for e in p.entries if e.op == "layer_norm"] == ["normalize_variance=biased"]
    assert parse_conventions("torch", all_adapters()).entries == profile_of(all_adapters()["torch"]).entries


def test_every_builtin_profile_entry_is_exercised_by_the_case_library():
    """Each entry must be visible in at least one library case its backend accepts: there the library
    items (pytest cases/) check that the backend shows it (a profile entry nothing exercises is untested)."""
    from normconf.compare import Tolerance, compare
    from normconf.inputs import generate
    from normconf.ops import spec_for
    from normconf.oracle import expected_outputs, reference_outputs, round_to_output_dtypes
    from normconf.results import output_dtype, tolerance_for

    library = [lc.case for lc in load_paths([ROOT / "cases"]) if lc.case.n_elements <= 1 << 16]
    refs: dict = {}
    missing = []
    for bid, cls in sorted(all_adapters().items()):
        prof = profile_of(cls)
        adapter = cls()
        for e in prof.entries:
            seen = False
            for case in library:
                if adapter.unsupported(case):
                    continue
                if e.knob == "working_precision":
                    seen = case.dtype in e.applies_to
                else:
                    fields = {f: v for f, v in prof.overrides(case).items() if prof.entry_for(case, f) is e}
                    for field, value in fields.items():
                        outs = spec_for(case).affected(field, case, case.semantics) & set(case.output_names())
                        if not outs:
                            continue
                        if case.id not in refs:
                            inputs = generate(case)
                            refs[case.id] = (inputs, expected_outputs(case, inputs))
                        inputs, exp = refs[case.id]
                        alt = round_to_output_dtypes(
                            case, reference_outputs(case, inputs, case.semantics.replace(**{field: value}))
                        )
                        for name in outs:
                            t = tolerance_for(case, name)
                            wide = Tolerance(2 * t.rtol, 2 * t.atol, "visibility")
                            if any(
                                not compare(a, b, wide, output_dtype(case, name)).close
                                for a, b in zip(alt[name], exp[name])
                            ):
                                seen = True
                                break
                        if seen:
                            break
                if seen:
                    break
            if not seen:
                missing.append(f"{bid}.{e.label}")
    assert not missing, f"profile entries no library case exercises: {missing}"


def test_describe_groups_the_entries_by_op():
    """`normconf backends` lists a profile per op (a knob declared for BatchNorm and LayerNorm is not listed
    twice as one list)."""
    from normconf.adapters import get_adapter

    text = profile_of(type(get_adapter("cpp"))).describe()
    assert (
        text == "batch_norm: normalize_variance=biased, running_variance=biased; layer_norm: normalize_variance=biased"
    )
    assert profile_of(type(get_adapter("numpy"))).describe() == "the case's conventions"


def test_describe_names_the_scope_of_a_precision_entry():
    """flax-nnx declares float32 precision twice, for different outputs and modes: `normconf backends` tells
    the two apart instead of printing one label twice."""
    from normconf.adapters import get_adapter

    text = profile_of(type(get_adapter("flax-nnx"))).describe()
    assert (
        "working_precision=float32 (float64 cases; running_mean, running_var, eval_y), "
        "working_precision=float32 (float64 cases; y; eval)"
    ) in text
    assert "normalize_variance=biased, running_variance=biased" in text
