"""scaling claims on synthetic rebound curves with a known answer: present, reversed, absent.

Curves fall at a rate `a` (log-odds per 100 examples) to their base level, then at `b`; each test
sets how a and b change with model size or pre-training budget."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from springback.experiments.scaling import ScalingConfig, claims

SIZES = {"nano": 2e4, "micro": 2e5, "mini": 2e6}  # one decade apart
BUDGETS = (384, 3744, 11200)
SEEDS = (0, 1, 2, 3)
GRID = list(range(0, 1601, 5))  # fine: the crossing is interpolated between grid points
BASE = -2.0


def frame(rates) -> pd.DataFrame:
    """``rates(size, budget) -> (a, b)`` per 100 examples; cross grid: every size at the largest budget,
    every budget on micro."""
    points = [(s, BUDGETS[-1]) for s in SIZES] + [("micro", b) for b in BUDGETS[:-1]]
    rows = []
    for seed in SEEDS:
        for size, budget in points:
            common = {"world": "sentiment", "seed": seed, "model": size, "budget": str(budget), "budget_n": float(budget),
                      "budget_unit": "examples", "n_params": SIZES[size]}
            rows.append({**common, "stage": "base", "n_aligned": 0, "n_opposing": 0, "score_S": BASE, "pi_pos": 0.1,
                         "coverage": budget / BUDGETS[-1]})
            for n_pos in (250, 1000):
                a, b = rates(size, budget)
                j = 1 + 0.01 * np.random.default_rng([seed, n_pos, budget, len(size)]).standard_normal()
                a, b = a * j / 100, b * j / 100
                s0 = BASE + 4.0 * (1 + (n_pos == 1000))
                nc = (s0 - BASE) / a
                for n in GRID:
                    s = s0 - a * n if n <= nc else BASE - b * (n - nc)
                    rows.append({**common, "stage": "opposing", "n_aligned": n_pos, "n_opposing": n, "score_S": s,
                                 "pi_pos": 1 / (1 + math.exp(-s)), "kl_ref_to_base": abs(s - BASE) / 10})
    return pd.DataFrame(rows)


def by_id(df):
    return {c.id: c for c in claims(df, ScalingConfig(data_size="micro"))}


def per_decade(x: float, x0: float) -> float:
    return math.log10(x / x0)


@pytest.mark.parametrize("trend, expected", [(0.5, "reproduced"), (-0.5, "not_reproduced"), (0.0, "absent")])
def test_size_claims(trend, expected):
    # initial rate 2 + trend per decade of parameters; late rate 0.5 − trend/4 per decade (slower late fall = +)
    out = by_id(frame(lambda s, b: (2 + trend * per_decade(SIZES[s], 2e4), 0.5 - trend / 4 * per_decade(SIZES[s], 2e4))))
    c1, c2 = out["scaling.size_faster_initial_fall"], out["scaling.size_slower_late_fall"]
    assert (c1.verdict, c2.verdict) == (expected, expected), (c1.effect, c1.ci_low, c1.ci_high, c2.effect)
    assert c1.effect == pytest.approx(trend, abs=0.05) and c2.effect == pytest.approx(trend / 4, abs=0.02)
    assert c1.delta == 0.1 and set(c1.groups) == {"sentiment"}


@pytest.mark.parametrize("trend, expected", [(0.5, "reproduced"), (-0.5, "not_reproduced"), (0.0, "absent")])
def test_data_claims(trend, expected):
    out = by_id(frame(lambda s, b: (2 + trend * per_decade(b, 384), 0.5 - trend / 4 * per_decade(b, 384))))
    c3, c4 = out["scaling.data_faster_initial_fall"], out["scaling.data_slower_late_fall"]
    assert (c3.verdict, c4.verdict) == (expected, expected), (c3.effect, c3.ci_low, c3.ci_high, c4.effect)
    assert c3.effect == pytest.approx(trend, abs=0.05)
    assert [r["budget_n"] for r in c3.details["base_by_budget"]] == list(map(float, BUDGETS))


@pytest.mark.parametrize("e_small, e_large, expected", [(0.1, 0.8, "reproduced"), (0.8, 0.8, "not_reproduced"),
                                                        (0.0, 0.0, "absent")])
def test_small_budget_barely_elastic(e_small, e_large, expected):
    # flattening E = 1 − b/a: the smallest budget has E = e_small, every other point e_large
    out = by_id(frame(lambda s, b: (2.0, 2.0 * (1 - (e_small if b == BUDGETS[0] else e_large)))))
    c = out["scaling.small_budget_barely_elastic"]
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high, c.details["parts"])
    assert c.effect == pytest.approx(0.5 * e_large - e_small, abs=0.05)
    assert c.details["parts"]["largest_budget_elastic"]["effect"] == pytest.approx(e_large, abs=0.05)
