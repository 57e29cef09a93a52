"""Statistics of the dynamics experiment's force measurements (SPEC §5, our formulation of P2).

Per (world, seed) replicate: how well η(F_drive + F_rebound) matches the exact ΔS of the softmax
model; per network run, correlations of the forces at a window's start with the measured ΔS over
it; how often F_rebound points toward S = 0; how the examples to lose half the gain scale with
the number of aligned templates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .correlation import pearson, slope_through_origin
from .curves import half_gain_examples
from .stats import fisher_mean, slope

Replicates = dict[tuple[str, int], float]


def signed_r2(r: float) -> float:
    """r·|r|: the share of variance a correlation explains, with its sign."""
    return r * abs(r) if math.isfinite(r) else float("nan")


def softmax_identity(sm: pd.DataFrame) -> tuple[Replicates, Replicates]:
    """Per (world, seed) of the softmax-model rows: (Pearson r of predicted against exact ΔS,
    median relative error of the prediction)."""
    r, err = {}, {}
    for (world, seed), g in sm.groupby(["world", "seed"]):
        r[(str(world), int(seed))] = pearson(g.predicted_delta_S, g.delta_S)
        rel = (g.delta_S - g.predicted_delta_S).abs() / g.delta_S.abs().clip(lower=1e-12)
        err[(str(world), int(seed))] = float(rel.median()) if len(rel) else float("nan")
    return r, err


def window_correlations(net: pd.DataFrame) -> pd.DataFrame:
    """One row per network run (world, seed, narrowness): Pearson r of F_total and of F_drive alone
    with the measured ΔS over all windows, sign agreement, and per stage r_total, r_rebound and the
    fitted η_eff (least squares through the origin)."""
    win = net[np.isfinite(net.delta_S.astype(float))] if len(net) else net
    cells = []
    for (world, seed, k), g in win.groupby(["world", "seed", "narrowness"]):
        cell = {"world": world, "seed": int(seed), "narrowness": int(k), "n_windows": int(len(g)),
                "r_total": pearson(g.f_total, g.delta_S), "r_drive_only": pearson(g.f_drive, g.delta_S),
                "sign_agreement": float((np.sign(g.f_total) == np.sign(g.delta_S)).mean())}
        for phase, h in g.groupby("stage"):
            cell[f"r_total_{phase}"] = pearson(h.f_total, h.delta_S)
            cell[f"r_rebound_{phase}"] = pearson(h.f_rebound, h.delta_S)
            cell[f"eta_eff_{phase}"] = slope_through_origin(h.f_total, h.delta_S)
        cells.append(cell)
    return pd.DataFrame(cells)


def per_replicate(cells: pd.DataFrame, column: str) -> Replicates:
    """{(world, seed): Fisher mean over the replicate's runs of ``column``} (empty when absent)."""
    if column not in cells.columns:
        return {}
    return {(str(w), int(s)): fisher_mean(g[column].tolist()) for (w, s), g in cells.groupby(["world", "seed"])}


def pull_shares(net: pd.DataFrame) -> tuple[Replicates, int]:
    """Per (world, seed): the share of opposing checkpoints where sign(F_rebound) = −sign(S); and the
    fewest checkpoints a replicate has (the share's resolution is 1 / that)."""
    opp = net[net.stage == "opposing"] if len(net) else net
    pull, n_points = {}, []
    for (world, s), g in (opp.groupby(["world", "seed"]) if len(opp) else []):
        g = g[g.score_S.abs() > 1e-9]
        pull[(str(world), int(s))] = float((np.sign(g.f_rebound) == -np.sign(g.score_S)).mean()) if len(g) else float("nan")
        n_points.append(len(g))
    return pull, min(n_points, default=1)


def narrowness_slopes(tab: pd.DataFrame) -> tuple[Replicates, Replicates]:
    """Per (world, seed) of a :func:`~.curves.half_gain_table`: (slope of the examples to lose half
    the gain against log2 templates, Pearson r of rebound speed with C_A after alignment)."""
    slopes, speed = {}, {}
    for (world, s), g in (tab.groupby(["world", "seed"]) if len(tab) else []):
        slopes[(str(world), int(s))] = slope(np.log2(g.n_templates.to_numpy(float)), g.n_half.to_numpy(float))
        speed[(str(world), int(s))] = pearson(g.collision_A_aligned, g.rebound_speed_per100)
    return slopes, speed


def softmax_half_gain(sm: pd.DataFrame) -> list[dict]:
    """Per softmax run: C_A after alignment and the steps to lose half the gain (the prediction the
    networks are set against)."""
    out = []
    for (world, seed, k), g in sm.groupby(["world", "seed", "narrowness"]):
        al, op = g[g.stage == "align"], g[g.stage == "opposing"]
        out.append({"world": world, "seed": int(seed), "narrowness": int(k), "C_A_aligned": float(op.collision_A.iloc[0]),
                    "n_half_steps": half_gain_examples(op.step.to_numpy(float), op.score_S.to_numpy(float),
                                                       float(al.score_S.iloc[0]))})
    return out
