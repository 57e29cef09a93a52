"""Curve fits for claims: a segmented (broken-stick) line with a known breakpoint.

P1's rebound curves fall fast until they cross the base level, then flatten [P1 §3.2, Fig. 4];
no slopes or tests were printed. With the breakpoint x0 fixed in advance (e.g. where the curve
crosses the base level), the fit is ordinary least squares on a continuous piecewise-linear
function, and "two slopes beat one line" is an F test between nested linear models.

Pure functions over numbers; nothing here trains or reads files.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps


@dataclasses.dataclass(frozen=True)
class SegmentedFit:
    """Least-squares continuous broken stick y = level + slope_before·min(x−x0, 0) + slope_after·max(x−x0, 0).

    Slopes are in y units per x unit; ``slope_change`` = slope_before − slope_after (< 0 when a
    falling curve flattens after x0: it fell more steeply before). ``rss_*`` are residual sums of squares in y units squared.
    ``f_stat`` / ``p_value`` test the segmented fit (3 parameters) against one straight line
    (2 parameters) with F(1, n_points − 3); NaN when n_points < 4."""

    x0: float
    level: float  # fitted y at x0
    slope_before: float
    slope_after: float
    slope_change: float
    rss_segmented: float
    rss_line: float
    n_points: int
    f_stat: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _rss(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """(coefficients, residual sum of squares) of the least-squares fit y ≈ design @ coef."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return coef, float(resid @ resid)


def segmented_fit(x: Sequence[float], y: Sequence[float], x0: float) -> SegmentedFit:
    """Fit a continuous piecewise-linear function with one known breakpoint ``x0``.

    Non-finite (x, y) pairs are dropped. The fit needs a point strictly before and one strictly
    after x0 plus a third distinct x (so three parameters are identified); otherwise every fitted
    number is NaN, as :func:`springback.analysis.slope` does for too few points.
    F = (rss_line − rss_segmented) / (rss_segmented / (n − 3)); when the residuals vanish to
    rounding, a line that already fits exactly gives F = 0 (p = 1) and an exact kink F = inf (p = 0).
    """
    pts = np.asarray([(a, b) for a, b in zip(x, y) if a is not None and b is not None
                      and math.isfinite(a) and math.isfinite(b)], dtype=float).reshape(-1, 2)
    xa, ya = pts[:, 0], pts[:, 1]  # (n,), (n,)
    n = len(xa)
    d = xa - x0
    seg = np.column_stack([np.ones(n), np.minimum(d, 0.0), np.maximum(d, 0.0)])  # (n, 3)
    nan = float("nan")
    if n < 3 or not (d < 0).any() or not (d > 0).any() or np.linalg.matrix_rank(seg) < 3:
        return SegmentedFit(x0, nan, nan, nan, nan, nan, nan, n, nan, nan)
    coef, rss_seg = _rss(seg, ya)
    _, rss_line = _rss(np.column_stack([np.ones(n), d]), ya)
    f_stat = p_value = nan
    if n >= 4:
        # Rounding floor: residuals this small relative to y's own spread are zero.
        tol = 1e-20 * max(float(((ya - ya.mean()) ** 2).sum()), float((ya**2).sum()), 1e-300)
        if rss_line <= tol:
            f_stat, p_value = 0.0, 1.0
        elif rss_seg <= tol:
            f_stat, p_value = math.inf, 0.0
        else:
            f_stat = max(rss_line - rss_seg, 0.0) / (rss_seg / (n - 3))
            p_value = float(sps.f.sf(f_stat, 1, n - 3))
    level, b1, b2 = (float(c) for c in coef)
    return SegmentedFit(x0=float(x0), level=level, slope_before=b1, slope_after=b2, slope_change=b1 - b2,
                        rss_segmented=rss_seg, rss_line=rss_line, n_points=n, f_stat=float(f_stat),
                        p_value=float(p_value))
