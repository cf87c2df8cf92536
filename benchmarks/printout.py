"""The tables the benchmark prints: one per section (its title starts with the section's name and
its caption gives the load average before → after), then the targets table."""

from __future__ import annotations


def _f(v, fmt: str = ".2f", suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:{fmt}}{suffix}"


def _table(title: str, cols: list[str], res: dict, section: str):
    from rich.table import Table

    la = res.get("loadavg", {}).get(section, {})
    cap = f"load average {la.get('before')} → {la.get('after')}" if la else None
    tb = Table(title=title, caption=cap)
    for c in cols:
        tb.add_column(c, justify="right")
    return tb


def _overhead(res: dict):
    tb = _table(
        "overhead: Runner.run_pair vs the framework called directly (warm median ms; CPU = harness + worker)",
        "backend case load direct normconf ratio +ms adapter/rest cold CPU:direct normconf ratio +ms adapter/rest".split(),
        res,
        "overhead",
    )
    for r in res["overhead"]:
        if "skipped" in r:
            tb.add_row(r["backend"], r.get("size", ""), r.get("load", ""), "skipped: " + r["skipped"][:60])
            continue
        b = r["breakdown_warm_ms"]
        tb.add_row(
            r["backend"],
            r["size"],
            r["load"] + (f" ({r['busy_process_cores']} cores)" if "busy_process_cores" in r else ""),
            f"{r['direct_ms']:.2f}",
            f"{r['normconf_warm_ms']:.2f}",
            f"{r['ratio_warm']:.2f}x",
            f"{r['overhead_warm_ms']:.2f}",
            f"{b['adapter']:.2f}/{b['rest']:.2f}",
            f"{r['normconf_cold_ms']:.1f}",
            f"{r['direct_cpu_ms']:.2f}",
            _f(r["normconf_warm_cpu_ms"]),
            _f(r["ratio_warm_cpu"], ".2f", "x"),
            _f(r["overhead_warm_cpu_ms"]),
            f"{_f(r['breakdown_warm_cpu_ms']['adapter'])}/{_f(r['breakdown_warm_cpu_ms']['rest'])}",
        )
    return tb


def _reference(res: dict):
    r = res["reference"]
    tb = _table(
        f"reference: reference_outputs ({', '.join(r['reference_outputs'])}; +x_hat: every output) vs "
        f"np.copy, {r['shape']} float32 (median ms)",
        "reference +x_hat copy ratio astype-f64 CPU:reference +x_hat copy ratio".split(),
        res,
        "reference",
    )
    tb.add_row(
        f"{r['reference_ms']:.2f}",
        f"{r['reference_all_ms']:.2f}",
        f"{r['copy_ms']:.2f}",
        f"{r['ratio']}x",
        f"{r['astype_f64_ms']:.2f}",
        f"{r['reference_cpu_ms']:.2f}",
        f"{r['reference_all_cpu_ms']:.2f}",
        f"{r['copy_cpu_ms']:.2f}",
        _f(r["ratio_cpu"], "", "x"),
    )
    return tb


def _suite(res: dict):
    s = res["suite"]
    tb = _table(
        f"suite: normconf run ({s['pairs']} pairs) serial vs -j 2 (s; CPU = process tree)",
        "run wall CPU harness workers".split(),
        res,
        "suite",
    )
    for name, label in (("serial", "serial"), ("j2", "-j 2")):
        tb.add_row(
            label,
            f"{s[f'{name}_wall_s']:.2f}",
            f"{s[f'{name}_cpu_s']:.2f}",
            f"{s[f'{name}_harness_cpu_s']:.2f}",
            f"{s[f'{name}_workers_cpu_s']:.2f}",
        )
    tb.add_row("speedup", f"{s['speedup']}x", f"bound {s['speedup_cpu_bound']}x", "", "")
    tb.add_row("results", s["detail"][:60], "", "", "")
    return tb


def _floor(res: dict):
    f = res["floor"]
    tb = _table(
        "floor: the suite's backends without normconf, each worker group's adapters over the cases in one bare "
        f"process (CPU s; median of {f['rounds']} round(s))",
        "group backends runs imports framework-runs floor suite-j2 in-run-backends normconf-share".split(),
        res,
        "floor",
    )
    for r in f["groups"]:
        if "error" in r:
            tb.add_row(r["group"], ",".join(r["backends"]), "failed: " + r["error"][-60:])
            continue
        tb.add_row(
            r["group"],
            ",".join(r["backends"]),
            str(r["runs"]),
            f"{r['imports_cpu_s']:.2f}",
            f"{r['runs_cpu_s']:.2f}",
            f"{r['floor_cpu_s']:.2f}",
            _f(r.get("suite_j2_worker_cpu_s")),
            _f(r.get("suite_j2_backend_cpu_s")),
            _f(r.get("normconf_share_cpu_s"), "+.2f"),
        )
    if "suite_j2_cpu_s" in f:
        tb.add_row(
            "all",
            f"harness process {f['suite_j2_harness_cpu_s']:.2f} s in the suite",
            "",
            "",
            "",
            f"{f['floor_cpu_s']:.2f}",
            f"{f['suite_j2_cpu_s']:.2f}",
            _f(f.get("suite_j2_backend_cpu_s")),
            f"{f['normconf_share_cpu_s']:+.2f} ({f['normconf_ms_per_pair']:.2f} ms/pair)",
        )
        if f.get("normconf_share_in_run_cpu_s") is not None:
            tb.add_row(
                "all, in-run",
                "the suite's CPU less its backends' calls",
                *[""] * 6,
                f"{f['normconf_share_in_run_cpu_s']:+.2f} ({f['normconf_ms_per_pair_in_run']:.2f} ms/pair)",
            )
    else:
        tb.add_row("all", "(no suite section in this run)", "", "", "", f"{f['floor_cpu_s']:.2f}", "", "", "")
    return tb


def _fuzz(res: dict):
    f = res["fuzz"]
    tb = _table(
        "fuzz: normconf.fuzz.fuzz throughput", "backends jobs examples shrink s ex/s runs/s".split(), res, "fuzz"
    )
    if "skipped" in f:
        tb.add_row("skipped: " + f["skipped"], "", "", "", "", "", "")
    else:
        runs = [(",".join(f["backends"]), f)] + ([("  warm (same workers)", f["warm"])] if f.get("warm") else [])
        for label, r in runs:
            tb.add_row(
                label,
                str(f["jobs"]),
                *(str(r[k]) for k in ("examples", "shrink_runs", "seconds", "examples_per_s", "backend_runs_per_s")),
            )
    return tb


def _memory(res: dict):
    tb = _table(
        "memory: peak of one large case, × input bytes",
        "backend shape case outcomes explained harness:traced harness:RSS+ worker:RSS+ s".split(),
        res,
        "memory",
    )
    for m in res["memory"]:
        if "error" in m:
            tb.add_row(m["backend"], "", str(m["explain"]), "probe failed: " + m["error"][-80:])
            continue
        tb.add_row(
            m["backend"],
            "×".join(map(str, m["shape"])),
            "normalize_variance=" + ("unbiased" if m["explain"] else "biased"),
            ",".join(m["outcomes"]),
            str(len(m["explanations"])) + " explanations",
            f"{m['harness_traced_peak_x']}",
            _f(m["harness_rss_growth_x"], ""),
            _f(m["worker_rss_growth_x"], ""),
            f"{m['seconds']}",
        )
    return tb


def _scaling(res: dict) -> list:
    sc = res["scaling"]
    out = []
    p = sc.get("pairs")
    if p:
        tb = _table(
            "scaling (a): Runner.run_pair vs input elements (float32 train; warm median; peak over cold + warm runs)",
            "backend elements shape cold-s warm-s CPU-s wall-ns/el CPU-ns/el harness-RSS+x worker-peak-MB worker-x worker-RSS+x".split(),
            res,
            "scaling",
        )
        for q in p["points"]:
            tb.add_row(
                q["backend"],
                f"{q['elements']:.0e}",
                "×".join(map(str, q["shape"])),
                f"{q['cold_wall_s']:.3f}",
                f"{q['warm_wall_s']:.4f}",
                _f(q["warm_cpu_s"], ".4f"),
                f"{q['wall_ns_per_element']:.2f}",
                _f(q["cpu_ns_per_element"]),
                _f(q["harness_rss_growth_x"], ""),
                _f(q["worker_peak_rss_mb"], ""),
                _f(q["worker_peak_rss_x"], ""),
                _f(q["worker_rss_growth_x"], ""),
            )
        for s in p["skipped"]:
            tb.add_row(s["backend"], f"{s.get('elements', 0):.0e}", "skipped: " + s["reason"][:90])
        out.append(tb)
        tb = _table(
            "scaling (a) fit: cost = fixed + marginal × elements (least squares on per-element cost)",
            "backend metric fixed-ms marginal-ns/el fit-err slope max/min(1e6..1e8) max/min(all) linear".split(),
            res,
            "scaling",
        )
        for backend, fits in p["linearity"].items():
            for metric, f in fits.items():
                if f.get("fit", 1) is None:
                    tb.add_row(backend, metric, "too few sizes")
                    continue
                tb.add_row(
                    backend,
                    metric,
                    f"{f['fixed_ms']:.2f}",
                    f"{f['marginal_ns_per_element']:.2f}",
                    f"{f['max_fit_error']:.0%}",
                    f"{f['loglog_slope']:.2f}",
                    _f(f["ratio_in_range"], "", "x"),
                    f"{f['ratio_all']}x",
                    {True: "yes", False: "NO", None: "n/a"}[f["linear"]],
                )
        out.append(tb)
    fr = sc.get("fractions")
    if fr:
        tb = _table(
            "scaling (b): the suite at 25/50/100 % of its cases, -j 2",
            "percent cases pairs wall-s CPU-s wall-ms/pair CPU-ms/pair reused".split(),
            res,
            "scaling",
        )
        for r in fr:
            tb.add_row(
                f"{r['percent']} %",
                str(r["cases"]),
                str(r["pairs"]),
                f"{r['wall_s']:.2f}",
                f"{r['cpu_s']:.2f}",
                f"{r['wall_per_pair_ms']:.2f}",
                f"{r['cpu_per_pair_ms']:.2f}",
                "the -j 2 run of (c)" if r["reused_suite_run"] else "",
            )
        f = sc.get("fractions_fit")
        if f:
            tb.add_row(
                "fit",
                "",
                "",
                "",
                f"{f['fixed_s']:.2f} +",
                "",
                f"{f['marginal_ms']:.2f}/pair",
                f"worst point {f['max_error']:.1%} off",
            )
        out.append(tb)
    j = sc.get("jobs")
    if j:
        tb = _table(
            f"scaling (c): the suite with -j 1 vs -j 2 (measured by {j['measured_by']})",
            "jobs wall-s CPU-s harness-CPU-s workers-CPU-s speedup CPU-bound".split(),
            res,
            "scaling",
        )
        tb.add_row(
            "1",
            *(f"{j[k]:.2f}" for k in ("serial_wall_s", "serial_cpu_s", "serial_harness_cpu_s", "serial_workers_cpu_s")),
            "",
            "",
        )
        tb.add_row(
            "2",
            *(f"{j[k]:.2f}" for k in ("j2_wall_s", "j2_cpu_s", "j2_harness_cpu_s", "j2_workers_cpu_s")),
            f"{j['speedup']}x",
            f"{j['speedup_cpu_bound']}x",
        )
        out.append(tb)
    return out


def _targets(res: dict):
    from rich.table import Table

    tb = Table(title="targets (issue 18)")
    for c in ("target", "value", "met"):
        tb.add_column(c)
    for t in res.get("targets", []):
        tb.add_row(t["target"], str(t["value"]), {True: "yes", False: "NO", None: "n/a"}[t["met"]])
    return tb


def print_tables(res: dict) -> None:
    from rich.console import Console

    con = Console(width=160)
    for key, fn in (
        ("overhead", _overhead),
        ("reference", _reference),
        ("suite", _suite),
        ("floor", _floor),
        ("fuzz", _fuzz),
        ("memory", _memory),
    ):
        if res.get(key):
            con.print(fn(res))
    if res.get("scaling"):
        for tb in _scaling(res):
            con.print(tb)
    con.print(_targets(res))
