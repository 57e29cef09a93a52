"""Statistics for claims: intervals over seeds, trend slopes, verdicts.

Pure functions over numbers and DataFrames; nothing here trains or reads files.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not_reproduced", "inconclusive"


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t interval for the mean; NaN bounds with < 2 finite values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    sem = float(x.std(ddof=1) / math.sqrt(len(x)))
    if sem == 0.0:
        return mean, mean, mean
    half = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1)) * sem
    return mean, mean - half, mean + half


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) percentile bootstrap of the mean; deterministic given ``seed``."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(x.mean()), float(lo), float(hi)


def slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of y on x (NaN if fewer than two distinct finite x)."""
    pts = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    if len({a for a, _ in pts}) < 2:
        return float("nan")
    xa = np.array([a for a, _ in pts])
    ya = np.array([b for _, b in pts])
    xc = xa - xa.mean()
    return float((xc * (ya - ya.mean())).sum() / (xc**2).sum())


def verdict(ci_low: float, ci_high: float, null: float = 0.0) -> str:
    """``reproduced`` if the whole interval lies above ``null`` (the paper's direction),
    ``not_reproduced`` if it lies wholly below, ``inconclusive`` otherwise or if undefined."""
    if ci_low is None or ci_high is None or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return INCONCLUSIVE
    if ci_low > null:
        return REPRODUCED
    if ci_high < null:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """A claim with several parts: reproduced only if all are; not reproduced if any part is."""
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE


@dataclasses.dataclass
class Claim:
    """One checked claim, as written to ``result.json`` and the report."""

    id: str
    statement: str  # what we test, in our words
    paper: str  # what the paper says, with its section / table / figure
    effect: float
    ci_low: float
    ci_high: float
    n_seeds: int
    verdict: str
    unit: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def claim_from_seed_values(
    id: str, statement: str, paper: str, per_seed: Sequence[float], unit: str = "", null: float = 0.0, **details: Any
) -> Claim:
    """A claim whose effect is the mean of one value per seed, with a t-interval over seeds."""
    finite = [v for v in per_seed if v is not None and math.isfinite(v)]
    mean, lo, hi = t_interval(finite)
    return Claim(
        id=id,
        statement=statement,
        paper=paper,
        effect=mean,
        ci_low=lo,
        ci_high=hi,
        n_seeds=len(finite),
        verdict=verdict(lo, hi, null),
        unit=unit,
        details={"per_seed": list(per_seed), **details},
    )
