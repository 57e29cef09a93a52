"""priming claim on synthetic re-alignment curves with a known answer: present, reversed, absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from springback.experiments.priming import PrimingConfig, claims

WORLDS = ("sentiment", "safety")
SEEDS = (0, 1, 2, 3)
POINTS = (0, 32, 64, 128, 256)


def frame(gap: float, score_kind: str = "exact_S") -> pd.DataFrame:
    """Both arms start at S₀ and rise 1 log-odds / 100 examples; the primed arm is ``gap`` ahead
    (× n/256, so the mean gap over the range is gap/2), with a small seed-specific jitter."""
    rows = []
    for world in WORLDS:
        for seed in SEEDS:
            s0 = -1.5
            jit = 0.01 * np.random.default_rng([seed, len(world)]).standard_normal()
            rows.append({"world": world, "seed": seed, "stage": "stop", "status": "bracket", "S0": s0, "S1": 2.0,
                         "n_examples": 400.0, "gap": 0.001, "within_tolerance": True, "n_bisect": 3,
                         "score_kind": score_kind})
            for n in POINTS:
                control = s0 + n / 100
                for arm, score in (("control", control), ("primed", control + (gap + jit) * n / 256)):
                    rows.append({"world": world, "seed": seed, "stage": "realign", "arm": arm, "n_examples": float(n),
                                 "score": score, "score_kind": score_kind})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("gap, expected", [(1.0, "reproduced"), (-1.0, "not_reproduced"), (0.0, "absent")])
def test_primed_realigns_faster(gap, expected):
    (c,) = claims(frame(gap), PrimingConfig())
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high)
    assert c.effect == pytest.approx(gap / 2, abs=0.02)  # trapezoids are exact on a straight line
    assert c.delta == 0.2 and set(c.groups) == set(WORLDS) and c.n_seeds == 8
    assert c.details["gap_at_last_point"]["effect"] == pytest.approx(gap, abs=0.02)


def test_sampled_score_uses_its_own_band():
    (c,) = claims(frame(0.0, "sampled_rate"), PrimingConfig())
    assert c.delta == 0.05 and c.unit.startswith("aligned rate")


def test_worlds_of_opposite_sign_are_reported_not_pooled():
    df = frame(1.0)
    neg = frame(-1.0)
    df = pd.concat([df[df.world == "sentiment"], neg[neg.world == "safety"]])
    (c,) = claims(df, PrimingConfig())
    assert c.groups["sentiment"]["verdict"] == "reproduced" and c.groups["safety"]["verdict"] == "not_reproduced"
    # both worlds decided, one reversed: the claim (priming in every world) is decided against
    assert c.verdict == "not_reproduced" and c.details["groups_disagree"] is True
    assert c.details["decided_by_groups"] is True and c.seeds_needed is None
