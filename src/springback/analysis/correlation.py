"""Correlations and fits through the origin (dynamics: force against measured ΔS); Fisher-z means
of correlations are :func:`springback.analysis.stats.fisher_mean`."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson r over pairs where both are finite; NaN with < 3 pairs or a constant side."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    if len(xa) < 3 or xa.std() == 0 or ya.std() == 0:
        return float("nan")
    return float(np.corrcoef(xa, ya)[0, 1])


def slope_through_origin(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares b in y ≈ b·x (the effective step size η_eff when x = F and y = ΔS)."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(xa) & np.isfinite(ya)
    den = float((xa[ok] ** 2).sum())
    return float((xa[ok] * ya[ok]).sum() / den) if den > 0 else float("nan")
