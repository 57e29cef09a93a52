"""The elasticity signature of a rebound curve: a change of slope where it crosses the base level.

P1 says the curves "fall fast until they cross the base level, then flatten" [P1 §5.2, Fig. 4].
Tested directly: a continuous broken stick (:func:`~.fits.segmented_fit`) with its break fixed
at the curve's base crossing n_c (linear interpolation between measured points), against one
straight line. The effect is the **flattening** E = 1 − slope_after / slope_before: the share of
the initial fall rate lost after the crossing (1 = the curve stops, 0 = one straight line,
< 0 = it falls faster after the crossing).

A smoothly decelerating curve (e.g. an exponential decay toward a level far below the base)
also flattens at n_c without anything special happening there. ``best_break`` is therefore
reported too: the breakpoint, among candidates spread over the measured range, with the smallest
residual sum of squares, and the curve's level there relative to the base. A pull toward the
pre-training distribution puts the best break near the base level; a bounded score (π⁺
saturating near 0) or a smooth deceleration puts it wherever the curvature is largest.

Pure functions over numbers; nothing here trains or reads files.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .curves import crossing
from .fits import segmented_fit

NAN = float("nan")
N_CANDIDATES = 25  # candidate breakpoints for best_break (between the 2nd and the 2nd-to-last point)


def _level_at(n: np.ndarray, s: np.ndarray, x: float) -> float:
    return float(np.interp(x, n, s)) if math.isfinite(x) else NAN


def best_break(n: Sequence[float], s: Sequence[float]) -> tuple[float, float]:
    """(x0, rss) of the segmented fit with the smallest residual sum of squares over candidate
    breakpoints strictly inside the measured range (NaN with < 4 points)."""
    n_arr, s_arr = np.asarray(n, float), np.asarray(s, float)
    if len(n_arr) < 4:
        return NAN, NAN
    lo, hi = n_arr[1], n_arr[-2]
    if not hi > lo:
        return NAN, NAN
    best = (NAN, math.inf)
    for x0 in np.linspace(lo, hi, N_CANDIDATES):
        fit = segmented_fit(n_arr, s_arr, float(x0))
        if math.isfinite(fit.rss_segmented) and fit.rss_segmented < best[1]:
            best = (float(x0), fit.rss_segmented)
    return best if math.isfinite(best[1]) else (NAN, NAN)


def flattening(n: Sequence[float], s: Sequence[float], level: float) -> dict[str, float]:
    """The elasticity signature of one falling curve ``s(n)`` (``n`` ascending from 0) whose base
    model scores ``level``: crossing, slopes before and after it (per 100 examples), flattening
    E = 1 − after/before, the F test of the broken stick against one line, and the best break.

    Every value is NaN when the curve does not cross ``level`` strictly inside the grid, when
    the fit is not identified, or (for E) when the curve does not fall before the crossing."""
    n_arr, s_arr = np.asarray(n, float), np.asarray(s, float)
    out = {"n_cross": NAN, "slope_before_per100": NAN, "slope_after_per100": NAN, "flattening": NAN,
           "f_stat": NAN, "p_value": NAN, "best_break_n": NAN, "best_break_minus_base": NAN,
           "best_break_over_cross": NAN}
    ok = np.isfinite(n_arr) & np.isfinite(s_arr)
    n_arr, s_arr = n_arr[ok], s_arr[ok]
    if len(n_arr) < 3 or not math.isfinite(level):
        return out
    nc = crossing(n_arr, s_arr, level)
    if not math.isfinite(nc) or nc >= n_arr[-1]:
        return out
    fit = segmented_fit(n_arr, s_arr, nc)
    out["n_cross"] = nc
    if not math.isfinite(fit.slope_before):
        return out
    before, after = 100 * fit.slope_before, 100 * fit.slope_after
    out.update(slope_before_per100=before, slope_after_per100=after, f_stat=fit.f_stat, p_value=fit.p_value)
    if before < 0:
        out["flattening"] = 1.0 - after / before
    x_best, _ = best_break(n_arr, s_arr)
    if math.isfinite(x_best):
        out["best_break_n"] = x_best
        out["best_break_minus_base"] = _level_at(n_arr, s_arr, x_best) - level
        out["best_break_over_cross"] = x_best / nc if nc > 0 else NAN
    return out


def flattening_table(df: pd.DataFrame, metric: str, keys: tuple[str, ...] = ("world", "seed")) -> pd.DataFrame:
    """One row per opposing curve (``keys`` + n_aligned): the segmented-fit signature of
    :func:`springback.analysis.shape.flattening` of ``metric`` against its base row's level."""
    base = df[df.stage == "base"].drop_duplicates(list(keys)).set_index(list(keys))[metric]
    rows = []
    for key, g in df[df.stage == "opposing"].sort_values("n_opposing").groupby([*keys, "n_aligned"]):
        ident = dict(zip([*keys, "n_aligned"], key))
        bkey = tuple(ident[k] for k in keys) if len(keys) > 1 else ident[keys[0]]
        level = float(base.loc[bkey]) if bkey in base.index else float("nan")
        rows.append({**ident, "metric": metric, "base_level": level,
                     **flattening(g.n_opposing.to_numpy(float), g[metric].to_numpy(float), level)})
    return pd.DataFrame(rows)
