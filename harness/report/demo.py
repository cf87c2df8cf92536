"""Synthetic results at full-suite scale, for the report's size and speed budget.

``python -m normconf.report.demo OUT_DIR [--cases 400] [--backends 20]`` writes
results.csv, results.json and index.html for made-up results shaped like a full
run (every output of every step, explanations, tolerance reasons, errors,
per-mismatch plot data).  Nothing here is a real measurement: it only exercises
the report (tests/test_browser_report.py opens it in Chromium and times it).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import pandas as pd

from normconf.report.plots import plot_data, plot_key
from normconf.results import COLUMNS, Row, to_frame

DTYPES = ["float32", "float64", "float16", "bfloat16"]
TRAIN_OUTPUTS = ["y", "batch_mean", "batch_var", "running_mean", "running_var"]
EXPLANATIONS = [
    (
        "running_var=unbiased",
        "running_var matches the reference with the unbiased (Bessel-corrected, m-1 = {m}) batch "
        "variance in the running update: max |err| {e:.3g} -> {f:.3g} under that convention.",
    ),
    (
        "normalize_variance=unbiased",
        "y matches the reference normalized with the unbiased variance (divide by m-1 = {m}); "
        "the case asks for the biased one. max |err| {e:.3g} -> {f:.3g}.",
    ),
    (
        "momentum=swapped",
        "running statistics match with the momentum convention swapped (batch weight {w:g} instead of "
        "{w2:g}): max |err| {e:.3g} -> {f:.3g}.",
    ),
    (
        "eps_outside_sqrt",
        "y matches with eps added outside the square root (x - mean) / (sqrt(var) + eps): "
        "max |err| {e:.3g} -> {f:.3g}.",
    ),
]


def synthetic(n_cases: int = 400, n_backends: int = 20, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(results DataFrame, meta with environment and plot_data) of a made-up full run."""
    rng = np.random.default_rng(seed)
    backends = [f"backend-{i:02d}" + ("-scratch" if i % 7 == 3 else "") for i in range(n_backends)]
    rows: list[Row] = []
    plots: dict[str, Any] = {}
    for ci in range(n_cases):
        dtype = DTYPES[ci % 4]
        mode = "eval" if ci % 5 == 4 else "train"
        steps = 1 + (ci % 3 == 0) * 2
        c = int(rng.choice([1, 3, 4, 16, 64]))
        n, hw = int(rng.integers(1, 9)), int(rng.choice([1, 4, 16]))
        cid = f"{['seed', 'shapes', 'dtypes', 'momentum', 'eps', 'layout', 'edge'][ci % 7]}_{dtype}_{mode}_{ci:04d}"
        outs = ["y"] if mode == "eval" else TRAIN_OUTPUTS
        base = dict(
            case=cid,
            file=f"cases/suite_{ci % 7}.yaml",
            line=10 + 9 * (ci // 7),
            dtype=dtype,
            param_dtype=dtype,
            mode=mode,
            shape=f"{n}x{c}x{hw}x{hw}",
            layout="channels_first",
            steps=steps,
            eps=1e-5,
            momentum="batch_weight=0.1",
            normalize_variance="biased",
            running_variance="biased",
            seed=str(ci),
        )
        for bi, b in enumerate(backends):
            kind = (ci * 31 + bi * 17) % 100
            common = dict(
                base, backend=b, backend_version=f"{1 + bi % 3}.{bi}.0", seconds=float(rng.uniform(0.001, 0.2))
            )
            if dtype == "bfloat16" and bi % 4 == 1 or kind < 4:
                rows.append(
                    Row(
                        **common,
                        output="",
                        step=None,
                        outcome="unsupported",
                        as_expected=True,
                        message=f"{b} cannot express {dtype} in {mode} mode",
                    )
                )
                continue
            if kind == 99:
                rows.append(
                    Row(
                        **common,
                        output="",
                        step=None,
                        outcome="error",
                        as_expected=False,
                        message="RuntimeError: backend crashed (SIGSEGV); worker stderr: free(): invalid pointer",
                    )
                )
                continue
            for k in range(1, steps + 1):
                for o in outs:
                    atol, rtol = (1e-5, 1.3e-6) if dtype != "float64" else (1e-7, 1e-7)
                    bad = (bi % 5 == 2 and o in ("running_var", "y")) or (kind >= 94 and o == "batch_var")
                    err = float(10 ** rng.uniform(-3, 0)) if bad else float(10 ** rng.uniform(-9, -6))
                    outcome, expl, text = "pass", "", ""
                    if bad:
                        if kind < 90:
                            lab, tmpl = EXPLANATIONS[(bi + ci) % len(EXPLANATIONS)]
                            outcome, expl = "explained", lab
                            text = tmpl.format(m=n * hw * hw - 1, e=err, f=err * 1e-6, w=0.1, w2=0.9)
                        else:
                            outcome = "mismatch"
                    msg = f"{int(err * 1000) + 1} of {n * c * hw * hw} elements differ beyond tolerance" if bad else ""
                    rows.append(
                        Row(
                            **common,
                            output=o,
                            step=k,
                            outcome=outcome,
                            max_abs_err=err,
                            max_rel_err=err * 3.1,
                            max_ulp=err / 1.2e-7,
                            mismatched=int(bad) * 7,
                            mismatched_frac=0.07 * bad,
                            worst_index="[0, 1, 0, 0]" if bad else "",
                            atol=atol,
                            rtol=rtol,
                            tolerance_reason="float16 accumulates in float32 here" if dtype == "float16" else "",
                            explanation=expl,
                            explanation_text=text,
                            message=msg,
                            as_expected=outcome != "mismatch",
                        )
                    )
                    if bad:
                        shape = (
                            (min(n, 2), c, min(hw, 4), min(hw, 4)) if o == "y" else (c,)
                        )  # small: only the summary ships
                        e = rng.normal(size=shape)
                        obs = e + rng.normal(scale=err, size=shape)
                        plots[plot_key(cid, b, o, k)] = plot_data(obs, e, 1)
    df = to_frame([])  # the real dtypes, built from plain dicts (dataclasses.asdict is slow at this scale)
    df = pd.concat([df, pd.DataFrame([vars(r) for r in rows], columns=COLUMNS)], ignore_index=True)
    df["step"] = df["step"].astype("Int64")
    df["mismatched"] = df["mismatched"].astype("Int64")
    df["as_expected"] = df["as_expected"].astype("boolean")
    meta = {
        "environment": {
            "python": "3.11.7",
            "platform": "synthetic",
            "cpu": "synthetic",
            "device": "cpu",
            "backend_versions": {b: f"{1 + i % 3}.{i}.0" for i, b in enumerate(backends)},
        },
        "backends": backends,
        "cases": n_cases,
        "partial": False,
        "plot_data": plots,
        "command": "python -m normconf.report.demo",
    }
    return df, meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m normconf.report.demo", description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--cases", type=int, default=400)
    ap.add_argument("--backends", type=int, default=20)
    a = ap.parse_args(argv)
    from normconf.report import write_reports

    df, meta = synthetic(a.cases, a.backends)
    for p in write_reports(df, meta, a.out):
        print(f"{p}  {p.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
