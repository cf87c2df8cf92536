"""What the report shows about a case — description, parameters, input summary — computed when the
run has the case in hand (``normconf run`` stores it in ``meta["case_info"]``), so nothing after the
comparison re-reads a case file or regenerates inputs."""

from __future__ import annotations

from typing import Any

#: cases above this many input elements get no input statistics (a summary must stay cheap)
SUMMARY_MAX_ELEMENTS = 2_000_000


def case_info(case: Any) -> dict[str, Any]:
    """{description, params, inputs} of one validated case (any op)."""
    return {"description": case.description.strip(), "params": _case_params(case), "inputs": _input_summary(case)}


def _stats(a: Any) -> str:
    import numpy as np

    x = np.asarray(a).astype(np.float64).ravel()
    fin = x[np.isfinite(x)]
    parts = [f"{x.size} values"]
    if fin.size:
        parts.append(f"min {fin.min():.6g}, max {fin.max():.6g}, mean {fin.mean():.6g}, std {fin.std():.6g}")
    if fin.size != x.size:
        parts.append(f"{x.size - fin.size} non-finite")
    return "; ".join(parts)


def _case_params(case: Any) -> dict[str, str]:
    """The case panel: the op's parameters (its spec's ``report_params``), then what every op shares."""
    from normconf.ops import spec_for

    p: dict[str, str] = {"op": case.op}
    p.update(spec_for(case).report_params(case))
    if case.tolerance is not None:
        t = case.tolerance
        p["tolerance override"] = (
            f"rtol {t.rtol:g}, atol {t.atol:g}"
            + (f" on {', '.join(t.outputs)}" if t.outputs else "")
            + f" — {t.reason}"
        )
    if case.tags:
        p["tags"] = ", ".join(case.tags)
    return p


def _input_summary(case: Any) -> dict[str, str]:
    from normconf.case_model import describe_value

    out: dict[str, str] = {}
    if case.data is not None:
        out["x source"] = "explicit data in the case file"
    elif case.input is not None:
        out["x source"] = describe_value(case.input)
    else:
        out["x source"] = "default generator"
    if case.n_elements > SUMMARY_MAX_ELEMENTS:
        out["x"] = f"{case.n_elements} values (too large to summarize here)"
        return out
    try:
        from normconf.ops import spec_for

        inp = spec_for(case).generate(case)
        for k, x in enumerate(inp.x, start=1):
            name = "x" if len(inp.x) == 1 else f"x step {k}"
            out[name] = _stats(x)
            if k >= 3 and len(inp.x) > 3:
                out["x later steps"] = f"{len(inp.x) - 3} more"
                break
        for name in ("gamma", "beta"):
            if getattr(inp, name, None) is not None:
                out[name] = _stats(getattr(inp, name))
    except Exception as e:  # noqa: BLE001 - a summary is a convenience, never a reason to fail the report
        out["x"] = f"not summarized ({type(e).__name__}: {e})"
    return out
