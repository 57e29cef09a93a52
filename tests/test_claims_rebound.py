"""rebound claims on synthetic curves with a known answer: present, reversed, absent.

Each test builds hand-made rebound curves (two worlds × four seeds, four n⁺) whose one property —
the change of slope at the base crossing, the early fall's dependence on n⁺, or the examples to
return below ε — is set exactly, and checks the claim's verdict.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from springback.analysis.shape import flattening
from springback.experiments.rebound import ReboundConfig, claims

WORLDS = ("sentiment", "safety")
SEEDS = (0, 1, 2)
N_POS = (500, 1000, 2000)
GRID = list(range(0, 1601, 25))
BASE = -1.5


def frame(curve, kl=None) -> pd.DataFrame:
    """Rows of a rebound run: ``curve(world, seed, n_pos, n) -> S`` and optionally ``kl(...) -> KL``."""
    rows = []
    for world in WORLDS:
        for seed in SEEDS:
            rows.append({"stage": "base", "world": world, "seed": seed, "n_aligned": 0, "n_opposing": 0,
                         "score_S": BASE, "pi_pos": 1 / (1 + math.exp(-BASE))})
            for n_pos in N_POS:
                for n in GRID:
                    s = curve(world, seed, n_pos, n)
                    row = {"stage": "opposing", "world": world, "seed": seed, "n_aligned": n_pos, "n_opposing": n,
                           "score_S": s, "pi_pos": 1 / (1 + math.exp(-s))}
                    if kl is not None:
                        row["kl_ref_to_base"] = kl(world, seed, n_pos, n)
                    rows.append(row)
    return pd.DataFrame(rows)


def jitter(world: str, seed: int, n_pos: int) -> float:
    """A small, fixed, replicate-specific factor so seeds differ (the interval is real)."""
    return 1.0 + 0.02 * np.random.default_rng([seed, len(world), n_pos]).standard_normal()


def kinked(after_over_before: float):
    """S falls at 1 log-odds / 100 examples to the base level, then at ``after_over_before`` of that."""
    def curve(world, seed, n_pos, n):
        a = 0.01 * jitter(world, seed, n_pos)
        s0 = BASE + 4.0
        nc = (s0 - BASE) / a
        return s0 - a * n if n <= nc else BASE - after_over_before * a * (n - nc)
    return curve


def by_id(df: pd.DataFrame, **cfg) -> dict:
    return {c.id: c for c in claims(df, ReboundConfig(**cfg))}


def test_flattening_of_a_hand_made_kink():
    n = np.array([0, 100, 200, 300, 400, 600, 800.0])
    s = np.array([3.0, 2.0, 1.0, 0.0, -0.25, -0.75, -1.25])  # −1 per 100 to the level 0 at 300, then −0.25 per 100
    f = flattening(n, s, 0.0)
    assert f["n_cross"] == pytest.approx(300.0)
    assert f["slope_before_per100"] == pytest.approx(-1.0)
    assert f["slope_after_per100"] == pytest.approx(-0.25)
    assert f["flattening"] == pytest.approx(0.75)
    assert f["best_break_n"] == pytest.approx(300.0, abs=15)  # the kink is where the best break is
    assert math.isnan(flattening(n, s, 5.0)["flattening"])  # starts below the level: no crossing


@pytest.mark.parametrize("ratio, expected", [(0.2, "reproduced"), (3.0, "not_reproduced"), (1.0, "absent")])
def test_fast_then_slow(ratio, expected):
    c = by_id(frame(kinked(ratio)))["rebound.fast_then_slow"]
    assert c.verdict == expected
    assert c.effect == pytest.approx(1 - ratio, abs=0.1)  # the crossing is interpolated on a 25-example grid
    assert c.delta == 0.2 and set(c.groups) == set(WORLDS) and c.n_seeds == len(WORLDS) * len(SEEDS)
    assert c.details["pi_pos"]["verdict"] in ("reproduced", "not_reproduced", "absent", "inconclusive")


def test_fast_then_slow_in_pi_pos_is_a_saturation_artefact_of_a_straight_line_in_S():
    c = by_id(frame(kinked(1.0)))["rebound.fast_then_slow"]
    assert c.verdict == "absent"  # S: one straight line through the base level
    assert c.details["pi_pos"]["verdict"] == "reproduced"  # π⁺ = σ(S) flattens near 0 anyway


def early_fall(slope_per_doubling: float, start_per_doubling: float):
    """S starts at 2 + start·log2(n⁺/500) and loses 1 + slope·log2(n⁺/500) over the first 100 examples."""
    def curve(world, seed, n_pos, n):
        d = math.log2(n_pos / 500)
        j = jitter(world, seed, n_pos)
        start = 2 + start_per_doubling * d + 0.01 * (j - 1)
        fall100 = (1 + slope_per_doubling * d) * j
        return start - fall100 * n / 100
    return curve


@pytest.mark.parametrize("fall, start, expected", [(0.5, 1.0, "reproduced"), (-0.5, 1.0, "not_reproduced"),
                                                   (0.0, 0.0, "absent"), (0.5, -1.0, "not_reproduced")])
def test_more_alignment_falls_faster(fall, start, expected):
    c = by_id(frame(early_fall(fall, start)))["rebound.more_alignment_falls_faster"]
    assert c.verdict == expected
    assert c.effect == pytest.approx(fall, abs=0.05)
    assert c.details["parts"]["start_level"]["effect"] == pytest.approx(start, abs=0.05)


def kl_return(per_doubling: float):
    """KL(model‖base) falls linearly from 2 nats to 0.01 at n_ret = 800 − per_doubling·log2(n⁺/500), then rises."""
    def kl(world, seed, n_pos, n):
        n_ret = (800 - per_doubling * math.log2(n_pos / 500)) * jitter(world, seed, n_pos) ** 0.1
        return 0.01 + 2.0 * abs(1 - n / n_ret)
    return kl


@pytest.mark.parametrize("per_doubling, expected", [(100.0, "reproduced"), (-100.0, "not_reproduced"),
                                                    (0.0, "absent")])
def test_kl_return(per_doubling, expected):
    df = frame(kinked(0.5), kl_return(per_doubling))
    c = by_id(df, kl_epsilon=0.1)["rebound.kl_return"]
    assert c.verdict == expected
    # examples to KL < 0.1 = n_ret·(1 − 0.09/2): the slope carries the same factor
    assert c.effect == pytest.approx(per_doubling * (1 - 0.09 / 2), abs=3.0)
    assert c.details["n_cells_reaching_eps"] == len(WORLDS) * len(SEEDS) * len(N_POS)
    assert set(c.details["epsilon_ladder_exact"]) >= {"0.03", "0.1", "0.3", "1"}
