"""Per-stage localization over one pair's rows: which stage diverges first."""

from __future__ import annotations

from typing import Any, Sequence

#: dataflow order of the stages a backend may expose
STAGES = ("batch_mean", "batch_var", "inv_std", "x_hat", "y", "running_mean", "running_var", "eval_y")


def localize(case, rows: Sequence[Any]) -> str:
    """Which stage diverges first; appended to the pair's non-pass rows' ``explanation_text``.

    Works on the rows' outcomes only (one per output and step), so it needs no
    arrays; a pair with fewer than two stages gets nothing.  Returns the text.
    """
    per = [r for r in rows if getattr(r, "output", "") in STAGES and getattr(r, "step", None)]
    stages = {r.output for r in per}
    if len(stages) < 2:
        return ""
    bad = [r for r in per if r.outcome in ("mismatch", "explained")]
    if not bad:
        return ""
    first_step = min(r.step for r in bad)
    at = {r.output: r.outcome for r in per if r.step == first_step}
    order = [s for s in STAGES if s in at]
    first = next(s for s in order if at[s] != "pass")
    agree = [s for s in order[: order.index(first)] if at[s] == "pass"]
    later = [s for s in order[order.index(first) + 1 :] if at[s] != "pass"]
    text = f"first diverging stage: {first} (step {first_step})"
    if agree:
        text += f"; agree before it: {', '.join(agree)}"
    if later:
        text += f"; also differ: {', '.join(later)}"
    for r in bad:
        r.explanation_text = f"{r.explanation_text} [{text}]" if r.explanation_text else f"[{text}]"
    return text
