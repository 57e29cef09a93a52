"""Paired forward / inverse comparisons (P1 Table 1: resistance, SPEC §3.1)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .stats import Claim, claim_by_group, t_interval

FORWARD, INVERSE = "forward", "inverse"


def paired(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """forward, inverse and diff = forward − inverse per (world, size, pair, seed)."""
    ft = df[df.stage == "finetune"]
    if metric not in ft.columns or ft[metric].isna().all():
        return pd.DataFrame(columns=["world", "model", "pair", "seed", FORWARD, INVERSE, "diff"])
    wide = ft.pivot_table(index=["world", "model", "pair", "seed"], columns="direction", values=metric, aggfunc="first")
    wide = wide.dropna(subset=[FORWARD, INVERSE]).reset_index()
    wide["diff"] = wide[FORWARD] - wide[INVERSE]
    return wide


def cell_table(p: pd.DataFrame) -> list[dict]:
    """The Table-1 matrix: per (world, size, pair) the mean forward and inverse values over
    seeds, and forward − inverse with its 95% t-interval over seeds."""
    out = []
    for (world, size, pair), g in p.groupby(["world", "model", "pair"], sort=True):
        mean, lo, hi = t_interval(g["diff"].tolist())
        out.append({"world": world, "model": size, "pair": pair, FORWARD: float(g[FORWARD].mean()),
                    INVERSE: float(g[INVERSE].mean()), "diff": mean, "ci_low": lo, "ci_high": hi,
                    "n_seeds": int(len(g)), "n_seeds_holding": int((g["diff"] > 0).sum()), "holds": bool(mean > 0)})
    return out


def replicate_diffs(p: pd.DataFrame) -> dict[tuple[str, int], float]:
    """{(world, seed): mean over sizes and pairs of forward − inverse} — one replicate per world and seed
    (each has its own pre-trained bases and SFT run)."""
    return {(str(w), int(s)): float(g["diff"].mean()) for (w, s), g in p.groupby(["world", "seed"], sort=True)} \
        if len(p) else {}


def paired_claim(df: pd.DataFrame, metric: str, id: str, statement: str, paper: str, unit: str,
                 delta: float | None = None, **extra: Any) -> Claim:
    """Effect = mean over (world, seed) replicates of (mean over sizes and pairs of forward − inverse),
    t-interval over replicates, each world a group (:func:`~.stats.claim_by_group`); plus the share of
    (world, size, pair) cells where the seed-mean difference is > 0."""
    p = paired(df, metric)
    groups: dict[str, list[float]] = {}
    for (w, _), v in sorted(replicate_diffs(p).items()):
        groups.setdefault(w, []).append(v)
    cells = cell_table(p) if len(p) else []
    n_hold = sum(c["holds"] for c in cells)
    return claim_by_group(
        id, statement, paper, groups, unit=unit, delta=delta, metric=metric, n_cells=len(cells), n_cells_holding=n_hold,
        fraction_cells_holding=(n_hold / len(cells)) if cells else float("nan"),
        n_cells_interval_above_zero=sum(1 for c in cells if c["ci_low"] > 0), cells=cells, **extra,
    )


def sub_claim(claim: Claim) -> dict:
    """A secondary measure's numbers, for a claim's details."""
    d = claim.details
    return {"effect": claim.effect, "ci": [claim.ci_low, claim.ci_high], "verdict": claim.verdict,
            "delta": claim.delta, "n_cells_holding": d.get("n_cells_holding"), "n_cells": d.get("n_cells")}
