"""Measures of a rebound curve: a score s(n) falling as opposing examples n are added.

One implementation serves rebound, scaling, elasticity and compare (P1 §5.2, Fig. 4 and
Table 3). Crossings are linearly interpolated between measured points; a crossing outside
the grid is NaN — reported, never extrapolated.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .stats import slope

NAN = float("nan")

# The per-curve measures: name -> (unit, meaning).
MEASURES: dict[str, tuple[str, str]] = {
    "score_aligned": ("score", "score of the aligned model (n = 0)"),
    "score_base": ("score", "score of the base model (the level the curve returns to)"),
    "score_final": ("score", "score after the largest amount of opposing data"),
    "n_half": ("opposing examples", "examples to lose half the alignment gain"),
    "n_base": ("opposing examples", "examples to fall to the base model's score"),
    "initial_fall_per_100": ("score / 100 examples", "mean fall per 100 examples before reaching the base level"),
    "late_fall_per_100": ("score / 100 examples", "mean fall per 100 examples after reaching the base level"),
    "fall_rate_ratio": ("ratio", "initial / late fall rate (defined when the late fall is > 0)"),
    "area_above_base": ("score × 100 examples", "area between the curve and the base level, above it"),
    "kl_aligned": ("nats", "KL(aligned ‖ base) at n = 0"),
    "n_kl_below_eps": ("opposing examples", "examples to bring KL(model ‖ base) below ε (P1 Table 3); 0 if it starts below"),
}


def crossing(n: Sequence[float], s: Sequence[float], level: float) -> float:
    """First n where the decreasing curve s(n) reaches ``level`` (linear interpolation).

    NaN if it starts at or below the level or never reaches it."""
    n, s = np.asarray(n, float), np.asarray(s, float)
    if len(s) == 0 or not s[0] > level:
        return NAN
    for i in range(1, len(s)):
        if s[i] <= level:
            frac = (s[i - 1] - level) / (s[i - 1] - s[i])
            return float(n[i - 1] + frac * (n[i] - n[i - 1]))
    return NAN


def examples_to_reach(n: Sequence[float], s: Sequence[float], level: float) -> float:
    """Examples until s(n) is below ``level``: 0 when it starts there, else :func:`crossing`."""
    s = np.asarray(s, float)
    if len(s) and s[0] < level:
        return 0.0
    return crossing(n, s, level)


def fall_rates(n: Sequence[float], s: Sequence[float], level: float) -> tuple[float, float, float]:
    """(initial rate, late rate, crossing n): mean fall per example before and after the curve
    crosses ``level``. Rates are NaN when the crossing is not inside the grid."""
    n, s = np.asarray(n, float), np.asarray(s, float)
    nc = crossing(n, s, level)
    if not math.isfinite(nc) or nc >= n[-1]:
        return NAN, NAN, nc
    initial = (s[0] - level) / (nc - n[0])
    late = (level - s[-1]) / (n[-1] - nc)
    return float(initial), float(late), nc


def area_above(n: Sequence[float], s: Sequence[float], level: float) -> float:
    """∫ max(s(n) − level, 0) dn over the grid, piecewise linear (exact at crossings)."""
    n, s = np.asarray(n, float), np.asarray(s, float)
    total = 0.0
    for i in range(1, len(n)):
        a, b = s[i - 1] - level, s[i] - level
        w = n[i] - n[i - 1]
        if a >= 0 and b >= 0:
            total += 0.5 * (a + b) * w
        elif a > 0 > b or b > 0 > a:
            pos, neg = (a, b) if a > 0 else (b, a)
            total += 0.5 * pos * w * pos / (pos - neg)
    return float(total)


def area_between(n: Sequence[float], upper: Sequence[float], lower: Sequence[float]) -> float:
    """Trapezoid area of (upper − lower) over n, divided by the n range: a mean gap."""
    n_arr = np.asarray(n, float)
    gap = np.asarray(upper, float) - np.asarray(lower, float)
    if len(n_arr) < 2 or n_arr[-1] <= n_arr[0] or not np.isfinite(gap).all():
        return NAN
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(n_arr)) / (n_arr[-1] - n_arr[0]))


def half_gain_examples(n: Sequence[float], s: Sequence[float], s0: float) -> float:
    """Examples until s has lost half of its gain over ``s0`` (s[0] is the start); NaN without gain."""
    s = np.asarray(s, float)
    if len(s) == 0 or not s[0] > s0:
        return NAN
    return crossing(n, s, s0 + (s[0] - s0) / 2)


def curve_measures(n: Sequence[float], s: Sequence[float], base: float, kl: Sequence[float] | None = None,
                   kl_epsilon: float = 0.01) -> dict[str, float]:
    """Every measure of :data:`MEASURES` for one curve ``s(n)`` (``n`` ascending from 0) whose
    base model scores ``base``; ``kl`` is KL(model ‖ base) at the same points, if measured."""
    n, s = np.asarray(n, float), np.asarray(s, float)
    out = {k: NAN for k in MEASURES}
    if len(s):
        out["score_aligned"], out["score_final"] = float(s[0]), float(s[-1])
    out["score_base"] = float(base)
    if math.isfinite(base) and len(s):
        out["n_half"] = half_gain_examples(n, s, base)
        out["n_base"] = crossing(n, s, base)
        init, late, _ = fall_rates(n, s, base)
        out["initial_fall_per_100"], out["late_fall_per_100"] = init * 100, late * 100
        if math.isfinite(late) and late > 0:
            out["fall_rate_ratio"] = init / late
        out["area_above_base"] = area_above(n, s, base) / 100
    if kl is not None:
        kl = np.asarray(kl, float)
        if len(kl) and np.isfinite(kl).all():
            out["kl_aligned"] = float(kl[0])
            out["n_kl_below_eps"] = examples_to_reach(n, kl, kl_epsilon)
    return out


def curve_table(df: pd.DataFrame, curve_keys: list[str], base_keys: list[str], metric: str = "score_S",
                kl_metric: str | None = "kl_ref_to_base", kl_epsilon: float = 0.1, x: str = "n_opposing") -> pd.DataFrame:
    """One row per opposing curve with its :data:`MEASURES`.

    ``curve_keys`` identify a curve among the opposing-stage rows (e.g. world, seed, n_aligned);
    ``base_keys`` (a subset) find its base row (stage "base") — the level it returns to. KL uses
    ``kl_metric`` where every point of the curve has it, else ``kl_to_base``, else none."""
    opp = df[df.stage == "opposing"].sort_values(x)
    base = df[df.stage == "base"].set_index(base_keys)[metric] if (df.stage == "base").any() else None
    rows = []
    for key, g in opp.groupby(curve_keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        ident = dict(zip(curve_keys, key))
        level = NAN
        if base is not None:
            bkey = tuple(ident[k] for k in base_keys)
            hit = base.loc[bkey if len(bkey) > 1 else bkey[0]] if (bkey if len(bkey) > 1 else bkey[0]) in base.index else NAN
            level = float(hit.iloc[0]) if isinstance(hit, pd.Series) else float(hit)
        kl = None
        for col in (kl_metric, "kl_to_base"):
            if col and col in g.columns and g[col].notna().all():
                kl = g[col].to_numpy(float)
                break
        rows.append({**ident, **curve_measures(g[x].to_numpy(float), g[metric].to_numpy(float), level, kl, kl_epsilon)})
    return pd.DataFrame(rows, columns=list(curve_keys) + list(MEASURES))


def half_gain_table(net: pd.DataFrame) -> pd.DataFrame:
    """One row per (world, seed, narrowness) of a dynamics run: S₀ (start of the align stage),
    S₁ (start of the opposing stage), C_A after alignment and the opposing examples to lose half
    the gain, with rebound speed = 100 / that."""
    out = []
    for (world, seed, k), g in net.groupby(["world", "seed", "narrowness"]):
        al = g[g.stage == "align"].sort_values("n_examples")
        op = g[g.stage == "opposing"].sort_values("n_examples")
        if al.empty or op.empty:
            continue
        s0 = float(al.score_S.iloc[0])
        n_half = half_gain_examples(op.n_examples.to_numpy(float), op.score_S.to_numpy(float), s0)
        out.append({"world": world, "seed": int(seed), "narrowness": int(k), "n_templates": int(g.n_templates.iloc[0]),
                    "S0": s0, "S1": float(op.score_S.iloc[0]), "collision_A_aligned": float(op.collision_A.iloc[0]),
                    "n_half": n_half, "rebound_speed_per100": 100.0 / n_half if n_half and math.isfinite(n_half) else NAN})
    return pd.DataFrame(out)


def realign_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (world, seed) of a priming run: how stage 2 stopped, the start gap and the
    area between the primed and control re-alignment curves (a mean gap)."""
    out = []
    for (world, seed), g in df.groupby(["world", "seed"]):
        stop = g[g.stage == "stop"]
        if stop.empty:
            continue
        st = stop.iloc[0]
        re = g[g.stage == "realign"]
        p = re[re.arm == "primed"].set_index("n_examples").score.sort_index()
        c = re[re.arm == "control"].set_index("n_examples").score.sort_index()
        common = p.index.intersection(c.index)
        area = area_between(common, p.loc[common], c.loc[common]) if len(common) > 1 else NAN
        out.append({"world": world, "seed": int(seed), "status": st.status, "S0": st.S0, "S1": st.S1,
                    "n_stop": st.n_examples, "start_gap": st.gap, "within_tolerance": bool(st.within_tolerance),
                    "n_bisect": int(st.n_bisect), "area_per_example": area,
                    "final_gap": float(p.loc[common].iloc[-1] - c.loc[common].iloc[-1]) if len(common) else NAN})
    return pd.DataFrame(out)


def replicate_medians(tab: pd.DataFrame, column: str) -> dict[tuple[str, int], float]:
    """{(world, seed): median over the n⁺ curves of ``column``} (finite values only).

    The median, not the mean: a curve that sits at the bounded score's ceiling until late
    (π⁺ ≈ 1) has an initial slope near 0 and a flattening of −80; one such curve must not
    decide a replicate (chosen after seeing one, docs/science.md)."""
    out = {}
    for (world, seed), g in tab.groupby(["world", "seed"]):
        v = g[column].to_numpy(float)
        v = v[np.isfinite(v)]
        out[(str(world), int(seed))] = float(np.median(v)) if len(v) else float("nan")
    return out


def slopes_vs_log2(tab: pd.DataFrame, column: str, sign: float = 1.0) -> dict[tuple[str, int], float]:
    """{(world, seed): sign × least-squares slope of ``column`` against log2 n⁺} over the curves where
    it is finite (NaN with fewer than two)."""
    out = {}
    for (world, seed), g in tab.groupby(["world", "seed"]):
        ok = g[np.isfinite(g[column].to_numpy(float))]
        out[(str(world), int(seed))] = sign * slope(np.log2(ok.n_aligned.to_numpy(float)), ok[column].to_numpy(float))
    return out


def kl_by_n_pos(kt: pd.DataFrame, kl_col: str, target: str) -> list[dict]:
    """Per n⁺: mean KL at the start and at its minimum along the curve, and how many curves reach ε."""
    out = []
    if target not in kt.columns:
        return out
    for n_pos, g in kt.groupby("n_aligned"):
        out.append({"n_aligned": int(n_pos), "kl_at_0": float(g[f"{kl_col}_at_0"].mean()),
                    "kl_min": float(g[f"{kl_col}_min"].mean()), "n_reaching_eps": int(np.isfinite(g[target]).sum()),
                    "n_curves": int(len(g)), "n_base": float(g.n_base.mean()) if "n_base" in g else float("nan")})
    return out


def seen_from_first_side(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of a reversed run as seen from the side its first stage aligned to (the opposing one):
    S → −S, π⁺ → 1 − π⁺ and the sampled aligned rate → 1 − rate, so that the first stage raises
    the score and the second lowers it, as in the forward protocol. KL columns are unchanged."""
    out = df.copy()
    if "score_S" in out:
        out["score_S"] = -out["score_S"]
    for col in ("pi_pos", "sampled_rate"):
        if col in out:
            out[col] = 1.0 - out[col]
    return out
