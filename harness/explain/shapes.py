"""The shape of an unexplained error: NaN/Inf positions, scales, offsets, permutations, a few elements."""

from __future__ import annotations

import numpy as np

from normconf.explain.arrays import as_f64 as _as_f64
from normconf.explain.arrays import channel_view as _channel_view
from normconf.explain.arrays import close as _close
from normconf.references.batchnorm import PER_CHANNEL_OUTPUTS as _PER_CHANNEL


def error_shape(case, output: str, obs: np.ndarray, exp: np.ndarray, tol) -> str:
    """What the error looks like: NaN/Inf positions, uniform/per-channel scale or offset,
    permuted channels, a few elements, or spread over the array."""
    e = np.asarray(exp, np.float64)
    o = _as_f64(obs, e.shape)
    if o is None:
        return f"shape {tuple(np.shape(obs))} instead of {e.shape}"
    parts: list[str] = []
    with np.errstate(all="ignore"):
        bad_nan = np.isnan(o) != np.isnan(e)
        bad_inf = (np.isinf(o) | np.isinf(e)) & ~(np.isnan(o) | np.isnan(e)) & (o != e)
        nonfin = bad_nan | bad_inf
        if nonfin.any():
            idx = [list(map(int, i)) for i in np.argwhere(nonfin)[:5]]
            kinds = []
            if bad_nan.any():
                kinds.append(
                    f"{int(bad_nan.sum())} NaN where finite values were expected"
                    if np.isnan(o).sum() > np.isnan(e).sum()
                    else f"NaN positions differ at {int(bad_nan.sum())} elements"
                )
            if bad_inf.any():
                kinds.append(f"Inf/sign differs at {int(bad_inf.sum())} elements")
            parts.append("; ".join(kinds) + f" (first at {idx})")
        fin = np.isfinite(o) & np.isfinite(e)
        bad = fin & (np.abs(o - e) > tol.atol + tol.rtol * np.abs(e))
        n_bad, total = int(bad.sum()), int(e.size)
        if n_bad == 0:
            return "; ".join(parts) if parts else "no finite element is out of tolerance"
        of, ef = o[fin], e[fin]
        if fin.all():
            # uniform scale (includes a sign flip)
            den = float((ef * ef).sum())
            if den > 0:
                k = float((of * ef).sum() / den)
                if _close(of, k * ef, tol):
                    if abs(k + 1) < 1e-3:
                        parts.append("the sign is flipped (observed = −expected)")
                    elif abs(k) < 1e-3:
                        parts.append(f"the output is (nearly) all zeros (max |observed| {float(np.abs(of).max()):.3g})")
                    else:
                        parts.append(f"a uniform scale: observed ≈ {_factor(k)} × expected")
                    return "; ".join(parts)
            d = float(np.mean(of - ef))
            if _close(of, ef + d, tol):
                parts.append(f"a uniform offset: observed ≈ expected {'+' if d >= 0 else '−'} {abs(d):.6g}")
                return "; ".join(parts)
            if output not in _PER_CHANNEL and e.ndim >= 2:
                ax = case.channel_axis
                oc, ec = _channel_view(o, ax), _channel_view(e, ax)
                den_c = (ec * ec).sum(axis=1)
                k_c = np.where(den_c > 0, (oc * ec).sum(axis=1) / np.where(den_c > 0, den_c, 1), 1.0)
                if _close(oc, ec * k_c[:, None], tol):
                    parts.append(f"a per-channel scale: factors {_short(k_c)}")
                    return "; ".join(parts)
                d_c = (oc - ec).mean(axis=1)
                if _close(oc, ec + d_c[:, None], tol):
                    parts.append(f"a per-channel offset: {_short(d_c)}")
                    return "; ".join(parts)
                # per-channel scale and offset: least squares o ≈ a_c·e + b_c in each channel
                n_c = oc.shape[1]
                if n_c >= 3:
                    me, mo = ec.mean(axis=1), oc.mean(axis=1)
                    de = ec - me[:, None]
                    var_e = (de * de).sum(axis=1)
                    a_c = np.where(
                        var_e > 0, (de * (oc - mo[:, None])).sum(axis=1) / np.where(var_e > 0, var_e, 1), 1.0
                    )
                    b_c = mo - a_c * me
                    if _close(oc, ec * a_c[:, None] + b_c[:, None], tol):
                        parts.append(
                            f"a per-channel scale and offset: observed ≈ a·expected + b with a = {_short(a_c)}, "
                            f"b = {_short(b_c)}"
                        )
                        return "; ".join(parts)
                perm = _channel_permutation(oc, ec, tol)
                if perm is not None:
                    moved = [(i, j) for i, j in enumerate(perm) if i != j]
                    parts.append(
                        "permuted channels: observed channel ← expected channel "
                        + ", ".join(f"{i}←{j}" for i, j in moved[:8])
                        + (" …" if len(moved) > 8 else "")
                    )
                    return "; ".join(parts)
            elif output in _PER_CHANNEL and e.ndim == 1 and e.size > 1:
                perm = _channel_permutation(o[:, None], e[:, None], tol)
                if perm is not None:
                    moved = [(i, j) for i, j in enumerate(perm) if i != j]
                    parts.append("permuted channels: " + ", ".join(f"{i}←{j}" for i, j in moved[:8]))
                    return "; ".join(parts)
        if n_bad <= max(3, total // 1000):
            idx = np.argwhere(bad)[:5]
            items = ", ".join(f"{list(map(int, i))}: {o[tuple(i)]:.6g} vs {e[tuple(i)]:.6g}" for i in idx)
            parts.append(f"only {n_bad} of {total} elements are off ({items})")
        else:
            err = np.abs(of - ef)
            rel = float(np.sqrt(np.mean((of - ef) ** 2)) / max(float(np.sqrt(np.mean(ef * ef))), 1e-300))
            parts.append(
                f"spread over {n_bad} of {total} elements ({100 * n_bad / total:.3g}%), no uniform or "
                f"per-channel pattern; max abs error {float(err.max()):.3g}, relative RMS error {rel:.3g}"
            )
    return "; ".join(parts)


def _factor(k: float) -> str:
    """A scale factor, with its distance from 1 when it would print as 1."""
    if k != 1 and abs(k - 1) < 1e-4:
        return f"(1 {'+' if k > 1 else '−'} {abs(k - 1):.3g})"
    return f"{k:.6g}"


def _short(v: np.ndarray, n: int = 4) -> str:
    s = ", ".join(f"{x:.6g}" for x in v[:n])
    return f"[{s}{', …' if v.size > n else ''}]"


def _channel_permutation(oc: np.ndarray, ec: np.ndarray, tol) -> list[int] | None:
    C = oc.shape[0]
    if C < 2 or C > 4096:
        return None
    perm: list[int] = []
    used: set[int] = set()
    for i in range(C):
        found = None
        for j in range(C):
            if j not in used and _close(oc[i], ec[j], tol):
                found = j
                break
        if found is None:
            return None
        perm.append(found)
        used.add(found)
    return None if perm == list(range(C)) else perm
