"""Elasticity along the model-size and pre-training-data axes (P1 §5.3; the scaling experiment).

One row per rebound curve with its axes (parameters, budget) and the per-curve measures of
:mod:`.curves`; the reference size / budget of each axis; per-replicate trend slopes; the
segmented-fit flattening per curve; and what the base checkpoints still learn along the budget axis.
"""

from __future__ import annotations

import pandas as pd

from .curves import curve_table
from .shape import flattening
from .stats import t_interval
from .trends import trend_slopes

# Per-curve elasticity measures in the trend tables and figure: column -> (label, unit).
MEASURES: dict[str, tuple[str, str]] = {
    "initial_fall_per_100": ("initial fall rate (until the base level)", "log-odds / 100 opposing examples"),
    "late_fall_per_100": ("late fall rate (after the base level)", "log-odds / 100 opposing examples"),
    "n_base": ("opposing examples to cross the base level", "examples"),
    "n_kl_below_eps": ("opposing examples to KL(model‖base) < ε", "examples"),
    "area_above_base": ("area between aligned curve and base level", "log-odds × 100 examples"),
}


def cell_table(df: pd.DataFrame, kl_epsilon: float, kl_metric: str = "kl_ref_to_base") -> pd.DataFrame:
    """One row per curve (world, seed, model, budget, n⁺) with its axes and elasticity measures."""
    keys = ["world", "seed", "model", "budget"]
    tab = curve_table(df, keys + ["n_aligned"], keys, "score_S", kl_metric=kl_metric, kl_epsilon=kl_epsilon)
    base = df[df.stage == "base"].drop_duplicates(keys).set_index(keys)
    axes = base.loc[[tuple(r) for r in tab[keys].itertuples(index=False)], ["n_params", "budget_n"]].reset_index(drop=True)
    tab = pd.concat([tab.reset_index(drop=True), axes.astype(float)], axis=1)
    tab["rebound_per100"] = tab.initial_fall_per_100 - tab.late_fall_per_100
    return tab


def axis_references(cells: pd.DataFrame, data_size: str = "") -> tuple[str | None, str | None]:
    """(reference budget of the size axis: the budget most sizes share, largest first; reference size of
    the data axis: ``data_size`` when present, else the size with most budgets, largest first)."""
    if cells.empty:
        return None, None
    per_budget = cells.groupby("budget").agg(n=("model", "nunique"), bn=("budget_n", "max"))
    ref_budget = per_budget.assign(bn=per_budget.bn.fillna(-1)).sort_values(["n", "bn"]).index[-1]
    per_size = cells.groupby("model").agg(n=("budget", "nunique"), p=("n_params", "max"))
    ref_size = data_size if data_size in per_size.index else per_size.sort_values(["n", "p"]).index[-1]
    return ref_budget, ref_size


def replicate_trends(table: pd.DataFrame, measure: str, x: str, sign: float) -> dict[tuple[str, int], float]:
    """{(world, seed): sign × slope of ``measure`` (averaged over n⁺ at each x) against log10 ``x``}."""
    out = {}
    groups = table.groupby("world") if "world" in table.columns else [("all", table)]
    for world, g in groups:
        for seed, v in trend_slopes(g, measure, x).items():
            out[(str(world), int(seed))] = sign * v
    return out


def flattening_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve (world, seed, model, budget, n⁺): the segmented-fit flattening E of S at its base crossing."""
    keys = ["world", "seed", "model", "budget"]
    base = df[df.stage == "base"].drop_duplicates(keys).set_index(keys)
    rows = []
    for key, g in df[df.stage == "opposing"].sort_values("n_opposing").groupby(keys + ["n_aligned"]):
        level = float(base.loc[key[:4], "score_S"]) if key[:4] in base.index else float("nan")
        f = flattening(g.n_opposing.to_numpy(float), g.score_S.to_numpy(float), level)
        budget_n = pd.to_numeric(g.budget_n, errors="coerce").iloc[0]  # null (unknown) for real checkpoints
        rows.append({**dict(zip(keys + ["n_aligned"], key)), "budget_n": float(budget_n), **f})
    return pd.DataFrame(rows)


def learning_left(df: pd.DataFrame, ref_size: str | None) -> list[dict]:
    """Per budget of the data axis: the base checkpoint's S, π⁺ and coverage (mass on the world's
    responses A ∪ N), mean over seeds — how much the checkpoints still differ (docs/scaling.md)."""
    base = df[(df.stage == "base") & (df["model"] == ref_size)] if ref_size is not None else df.iloc[0:0]
    out = []
    for b, g in base.groupby("budget_n"):
        out.append({"budget_n": float(b), "score_S": float(g.score_S.mean()), "pi_pos": float(g.pi_pos.mean()),
                    "coverage": float(g.coverage.mean()) if "coverage" in g else float("nan"), "n_seeds": int(len(g))})
    return out


def other_trends(sub: pd.DataFrame, x: str, measures: dict) -> dict:
    """Every measure's trend against log10 ``x`` (slope per decade, 95% interval over seeds), for a
    claim's details."""
    out = {}
    for m in measures:
        s = trend_slopes(sub, m, x)
        mean, lo, hi = t_interval(list(s.values()))
        out[m] = {"slope_per_decade": mean, "ci": [lo, hi], "per_seed": list(s.values())}
    return out


def budget_flattening(df: pd.DataFrame, ref_size: str | None) -> tuple[pd.DataFrame, float | None, float | None,
                                                                         dict, dict]:
    """The flattening E (share of the initial fall rate lost at the base crossing; median over n⁺) of the
    data axis's smallest and largest budgets, per (world, seed): (per-curve table, smallest budget,
    largest budget, {(world, seed): E smallest}, {(world, seed): E largest})."""
    flat = flattening_cells(df[df["model"] == ref_size]) if ref_size is not None else pd.DataFrame()
    flat = flat[flat.budget_n.notna()] if len(flat) else flat
    budgets_n = sorted(flat.budget_n.unique()) if len(flat) else []
    small, large = (budgets_n[0], budgets_n[-1]) if len(budgets_n) >= 2 else (None, None)
    e_small, e_large = {}, {}
    for (world, seed), g in (flat.groupby(["world", "seed"]) if len(flat) else []):
        key = (str(world), int(seed))
        e_small[key] = float(g[g.budget_n == small].flattening.median()) if small is not None else float("nan")
        e_large[key] = float(g[g.budget_n == large].flattening.median()) if large is not None else float("nan")
    return flat, small, large, e_small, e_large
