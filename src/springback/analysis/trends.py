"""Trends of per-curve measures against an axis (model size, pre-training budget), over seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import slope, t_interval


def trend_slopes(cells: pd.DataFrame, measure: str, x: str, log10: bool = True) -> dict[int, float]:
    """Per seed: least-squares slope of ``measure`` against log10(``x``) (or ``x``), after
    averaging the measure over everything else (n⁺, worlds) at each x. NaN cells are left out."""
    out: dict[int, float] = {}
    for seed, g in cells.groupby("seed"):
        means = g.groupby(x)[measure].mean()  # mean skips NaN
        xs = [math.log10(v) if log10 and v > 0 else (float("nan") if log10 else v) for v in means.index]
        out[int(seed)] = slope(xs, list(means.values))
    return out


def summary_by(cells: pd.DataFrame, by: str, measures: list[str], extra: tuple[str, ...] = ()) -> list[dict]:
    """Mean and 95% interval over seeds of every measure at each value of ``by`` (plus the max
    of each ``extra`` column, e.g. the axis value)."""
    out = []
    for key, g in cells.groupby(by):
        per_seed = g.groupby("seed")[measures].mean()
        entry = {by: key, **{c: float(g[c].max()) for c in extra}}
        for m in per_seed.columns:
            mean, lo, hi = t_interval(list(per_seed[m].values))
            entry[m] = [mean, lo, hi]
        out.append(entry)
    return out


def ratio_of_means(num: list[float], den: list[float]) -> float:
    """mean(num) / mean(den) over finite values; NaN when either is undefined or den is 0."""
    a = [v for v in num if math.isfinite(v)]
    b = [v for v in den if math.isfinite(v)]
    if not a or not b or np.mean(b) == 0:
        return float("nan")
    return float(np.mean(a) / np.mean(b))
