"""Derivatives of compression rates in l = |D_t| / |D_a| (P1 §4's theorem, measured; SPEC §4)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import slope


def with_l(df: pd.DataFrame) -> pd.DataFrame:
    """Opposing-stage rows with ``l`` = n_opposing / n_aligned (the theorem's perturbation size)."""
    opp = df[df.stage == "opposing"].copy()
    opp["l"] = opp.n_opposing / opp.n_aligned
    return opp


def derivative_table(df: pd.DataFrame, p_col: str = "gamma_p") -> pd.DataFrame:
    """One row per (world, seed, n_aligned): dγ/dl on D_p, D_a, D_t (least-squares slopes over the l grid),
    the ratio −(dγ_a/dl)/(dγ_p/dl), the changes Δγ over the whole grid and the Hooke ratio
    |D_p|·|Δγ_p| / (|D_a|·|Δγ_a|). ``p_col`` picks which D_p rate plays γ_p."""
    rows = []
    for (world, seed, n_a), g in with_l(df).groupby(["world", "seed", "n_aligned"]):
        g = g.sort_values("l")
        d = {"p": slope(g.l, g[p_col]), "a": slope(g.l, g.gamma_a), "t": slope(g.l, g.gamma_t)}
        ratio = -d["a"] / d["p"] if d["p"] != 0 and math.isfinite(d["p"]) else float("nan")
        first, last = g.iloc[0], g.iloc[-1]
        delta_a, delta_p = float(last.gamma_a - first.gamma_a), float(last[p_col] - first[p_col])
        n_p = float(first.n_pretrain)
        rows.append({
            "world": world, "seed": int(seed), "n_aligned": int(n_a), "k": float(first.k), "n_pretrain": n_p,
            "dgamma_p_dl": d["p"], "dgamma_a_dl": d["a"], "dgamma_t_dl": d["t"], "ratio": ratio,
            # per opposing example: comparable across k (dγ/dn_t = dγ/dl / n_a)
            "dgamma_a_per_1000": 1000 * d["a"] / n_a, "dgamma_p_per_1000": 1000 * d["p"] / n_a,
            "l_max": float(last.l), "delta_gamma_a": delta_a, "delta_gamma_p": delta_p,
            "hooke_ratio": (n_p * abs(delta_p)) / (n_a * abs(delta_a)) if delta_a != 0 else float("nan"),
        })
    return pd.DataFrame(rows)


def sign_values(tab: pd.DataFrame) -> tuple[list[float], list[float], list[float]]:
    """Per seed: mean dγ_a/dn_t, mean −dγ_p/dn_t (per 1000 opposing examples, over k) and the weaker of the two."""
    seeds = sorted(tab.seed.unique()) if len(tab) else []
    a_eff = [float(tab[tab.seed == s].dgamma_a_per_1000.mean()) for s in seeds]
    p_eff = [float(-tab[tab.seed == s].dgamma_p_per_1000.mean()) for s in seeds]
    return a_eff, p_eff, [min(a, p) for a, p in zip(a_eff, p_eff)]


def slope_values(tab: pd.DataFrame) -> list[float]:
    """Per seed: log-log slope of the ratio against k over the cells where it is positive (NaN if < 2 such cells)."""
    out = []
    for s in sorted(tab.seed.unique()) if len(tab) else []:
        slopes = []
        for _, g in tab[tab.seed == s].groupby("world"):
            ok = g[np.isfinite(g.ratio) & (g.ratio > 0)]
            slopes.append(slope(np.log10(ok.k), np.log10(ok.ratio)))
        finite = [x for x in slopes if math.isfinite(x)]
        out.append(float(np.mean(finite)) if finite else float("nan"))
    return out


def share_opposite_signs(tab: pd.DataFrame) -> float:
    """Share of cells with dγ_a/dl > 0 > dγ_p/dl."""
    return float(((tab.dgamma_a_dl > 0) & (tab.dgamma_p_dl < 0)).mean()) if len(tab) else float("nan")
