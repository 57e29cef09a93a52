"""compression claims on synthetic rates with a known answer: present, reversed, absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from springback.experiments.compression import CompressionConfig, claims, opposing_points

WORLDS = ("sentiment", "safety")
SEEDS = (0, 1, 2, 3)
N_PRETRAIN = 28000
N_ALIGN = (2800, 280, 28)  # k = 10, 100, 1000
L_VALUES = [0.0, 0.125, 0.25, 0.375, 0.5]


def frame(rate_a, rate_p) -> pd.DataFrame:
    """γ_a = 0.05 + rate_a(k)·n_t and γ_p = 0.1 + rate_p(k)·n_t (per opposing example), jittered per seed."""
    rows = []
    for world in WORLDS:
        for seed in SEEDS:
            j = 1 + 0.02 * np.random.default_rng([seed, len(world)]).standard_normal()
            for n_a in N_ALIGN:
                k = N_PRETRAIN / n_a
                for n_t in opposing_points(n_a, L_VALUES):
                    rows.append({"stage": "opposing", "world": world, "seed": seed, "n_aligned": n_a, "n_opposing": n_t,
                                 "k": k, "n_pretrain": N_PRETRAIN, "gamma_a": 0.05 + j * rate_a(k) * n_t,
                                 "gamma_p": 0.1 + j * rate_p(k) * n_t, "gamma_t": 0.2 - 1e-6 * n_t})
    return pd.DataFrame(rows)


def by_id(df):
    return {c.id: c for c in claims(df, CompressionConfig())}


@pytest.mark.parametrize("sign, expected", [(1.0, "reproduced"), (-1.0, "not_reproduced"), (0.0, "absent")])
def test_opposite_signs(sign, expected):
    # present: γ_a rises 0.02 and γ_p falls 0.01 per 1000 examples; reversed: γ_p rises; absent: both ~0
    a = (lambda k: 2e-5) if sign else (lambda k: 1e-9)
    p = (lambda k: -sign * 1e-5) if sign else (lambda k: -1e-9)
    c = by_id(frame(a, p))["compression.opposite_signs"]
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high)
    assert c.effect == pytest.approx(min(0.02, sign * 0.01) if sign else 1e-6, rel=0.1)
    assert c.delta == 1e-4 and set(c.groups) == set(WORLDS)


@pytest.mark.parametrize("exp, expected", [(1.0, "reproduced"), (-1.0, "not_reproduced"), (0.0, "absent")])
def test_ratio_grows_with_k(exp, expected):
    # ratio = −(dγ_a/dl)/(dγ_p/dl) = k^exp
    c = by_id(frame(lambda k: 1e-5, lambda k: -1e-5 / k**exp))["compression.ratio_grows_with_k"]
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high)
    assert c.effect == pytest.approx(exp, abs=0.02)
    assert c.details["linear_in_k_verdict"] == ("reproduced" if exp == 1.0 else "not_reproduced")
