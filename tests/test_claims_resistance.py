"""resistance claims on synthetic forward / inverse rows with a known answer: present, reversed, absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from springback.experiments.resistance import ResistanceConfig, claims

WORLDS = ("sentiment", "safety", "truthful")
SEEDS = (0, 1, 2, 3)
PAIRS = ("1-2", "1-3", "2-3")


def frame(loss_gap: float, excess_gap: float, kl_gap: float) -> pd.DataFrame:
    """forward − inverse = the given gaps (mean loss, excess loss, KL change), jittered per run."""
    rows = []
    for world in WORLDS:
        for size in ("nano", "micro"):
            for seed in SEEDS:
                rng = np.random.default_rng([seed, len(world), len(size)])
                for pair in PAIRS:
                    j = rng.normal(0, 1, 3)
                    base = {"mean_loss": 0.5, "excess_mean_loss": 0.1, "kl_change": 0.3, "final_loss": 0.4,
                            "end_loss": 0.35, "excess_final_loss": 0.05, "kl_before": 1.0, "kl_after": 0.7,
                            "generator_loss": 0.4}
                    for direction, sign in (("forward", 0.5), ("inverse", -0.5)):
                        row = dict(base)
                        row["mean_loss"] += sign * (loss_gap + 2e-4 * j[0])
                        row["excess_mean_loss"] += sign * (excess_gap + 2e-4 * j[1])
                        row["kl_change"] += sign * (kl_gap + 1e-3 * j[2])
                        rows.append({"stage": "finetune", "world": world, "model": size, "seed": seed, "pair": pair,
                                     "direction": direction, **row})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("gaps, expected", [((0.05, 0.05, 0.2), "reproduced"), ((-0.05, -0.05, -0.2), "not_reproduced"),
                                            ((0.0, 0.0, 0.0), "absent")])
def test_three_claims_three_ways(gaps, expected):
    out = {c.id: c for c in claims(frame(*gaps), ResistanceConfig())}
    for cid, gap in zip(("resistance.inverse_lower_loss", "resistance.inverse_lower_excess_loss",
                         "resistance.inverse_smaller_kl_change"), gaps):
        c = out[cid]
        assert c.verdict == expected, (cid, c.effect, c.ci_low, c.ci_high)
        assert c.effect == pytest.approx(gap, abs=1e-3)
        assert set(c.groups) == set(WORLDS) and c.n_seeds == len(WORLDS) * len(SEEDS)
    assert out["resistance.inverse_lower_loss"].delta == 0.005
    assert out["resistance.inverse_smaller_kl_change"].delta == 0.02
