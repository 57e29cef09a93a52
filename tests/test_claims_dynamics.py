"""dynamics claims on synthetic rows with a known answer: present, reversed, absent."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from springback.experiments.dynamics import DynamicsConfig, claims

WORLDS = ("sentiment", "safety")
SEEDS = (0, 1, 2, 3, 4)
KS = (1, 4, 16)
N_WINDOWS = 120  # windows per phase


def softmax_rows(kind: str) -> list[dict]:
    """Softmax-model steps: ΔS = prediction (identity), −prediction (reversed), independent (absent),
    or 0.9 correlation (related, not an identity)."""
    rows = []
    for world in WORLDS:
        for seed in SEEDS:
            rng = np.random.default_rng([seed, len(world)])
            for k in KS:
                for stage in ("align", "opposing"):
                    pred = rng.normal(0, 0.01, 200)
                    noise = rng.normal(0, 0.01, 200)
                    delta = {"identity": pred + 1e-5 * noise, "reversed": -pred + 1e-5 * noise, "absent": noise,
                             "related": 0.9 * pred + math.sqrt(1 - 0.81) * noise}[kind]
                    for i in range(200):
                        rows.append({"kind": "softmax", "world": world, "seed": seed, "narrowness": k, "n_templates": k,
                                     "stage": stage, "step": i, "predicted_delta_S": float(pred[i]),
                                     "delta_S": float(delta[i]), "score_S": 1.0 - 0.01 * i, "collision_A": 1 / k})
    return rows


def network_rows(forces: str = "present", pull: str = "present", n_half_per_doubling: float = 10.0) -> list[dict]:
    """Tiny-network windows. ``forces``: ΔS follows F_total (present), −F_total (reversed) or neither
    (absent); F_drive alone is a phase constant, so it explains only the phase means. ``pull``: in the
    opposing phase F_rebound = −0.5·tanh(S/2) and ΔS follows it (present), both reversed, or F_rebound
    has a random sign and ΔS ignores it (absent). The opposing curve loses half the alignment gain after
    n_half = 80 + n_half_per_doubling·log2(templates) examples."""
    rows = []
    for world in WORLDS:
        for seed in SEEDS:
            rng = np.random.default_rng([seed, len(world), 7])
            for k in KS:
                s0, s1 = -1.5, 2.5
                n_half = 80 + n_half_per_doubling * math.log2(k) + rng.normal(0, 0.5)
                fall = (s1 - s0) / (2 * n_half)  # per example, so S = s0 + gain/2 at n_half
                for stage in ("align", "opposing"):
                    drive = 0.3 if stage == "align" else -0.3
                    for i in range(N_WINDOWS):
                        n = 8 * i
                        s = s0 + (s1 - s0) * i / N_WINDOWS if stage == "align" else s1 - fall * n
                        if pull == "absent":
                            f_reb = float(rng.choice([-1.0, 1.0])) * abs(rng.normal(0.2, 0.05))
                        else:
                            f_reb = (-0.5 if pull == "present" else 0.5) * math.tanh(s / 2) + rng.normal(0, 0.01)
                        f_tot = drive + f_reb + rng.normal(0, 0.1)
                        noise = rng.normal(0, 0.1)
                        if stage == "opposing" and pull != "absent":
                            delta = f_reb + 0.01 * noise  # within the opposing phase ΔS moves with F_rebound
                            if pull == "reversed":
                                delta = -f_reb + 0.01 * noise
                            if forces == "reversed":
                                delta = -delta
                        else:
                            delta = {"present": f_tot + 0.05 * noise, "reversed": -f_tot + 0.05 * noise,
                                     "absent": noise}[forces]
                        if forces == "present" and stage == "opposing" and pull == "present":
                            delta = f_tot + 0.05 * noise
                        rows.append({"kind": "network", "world": world, "seed": seed, "narrowness": k, "n_templates": k,
                                     "stage": stage, "n_examples": n, "score_S": s, "f_drive": drive,
                                     "f_rebound": f_reb, "f_total": f_tot, "delta_S": delta,
                                     "collision_A": 1.0 / k})
    return rows


def run(softmax: str = "identity", **net) -> dict:
    df = pd.DataFrame(softmax_rows(softmax) + network_rows(**net))
    return {c.id: c for c in claims(df, DynamicsConfig())}


@pytest.mark.parametrize("kind, expected", [("identity", "reproduced"), ("reversed", "not_reproduced"),
                                            ("absent", "absent"), ("related", "not_reproduced")])
def test_softmax_identity(kind, expected):
    c = run(kind)["dynamics.softmax_identity"]
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high)
    assert -1 < c.ci_low <= c.ci_high < 1  # Fisher z: the interval of a correlation stays inside (−1, 1)
    assert c.delta == 0.1 and set(c.groups) == set(WORLDS)


@pytest.mark.parametrize("forces, expected", [("present", "reproduced"), ("reversed", "not_reproduced"),
                                              ("absent", "absent")])
def test_forces_predict_delta_s(forces, expected):
    c = run(forces=forces, pull="absent" if forces == "absent" else "present")["dynamics.forces_predict_delta_s"]
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high, c.details["parts"])
    assert c.details["parts"]["gain_over_drive"]["delta"] == 0.05


@pytest.mark.parametrize("pull, expected", [("present", "reproduced"), ("reversed", "not_reproduced"),
                                            ("absent", "absent")])
def test_rebound_pulls_to_zero(pull, expected):
    c = run(pull=pull, forces="absent" if pull == "absent" else "present")["dynamics.rebound_pulls_to_zero"]
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high, c.details["parts"])
    share = c.details["parts"]["pull_share"]["effect"]
    assert share == pytest.approx({"present": 1.0, "reversed": 0.0, "absent": 0.5}[pull], abs=0.06)


@pytest.mark.parametrize("per_doubling, expected", [(10.0, "reproduced"), (-10.0, "not_reproduced"), (0.0, "absent")])
def test_narrow_rebounds_faster(per_doubling, expected):
    c = run(n_half_per_doubling=per_doubling)["dynamics.narrow_rebounds_faster"]
    assert c.verdict == expected, (c.effect, c.ci_low, c.ci_high)
    assert c.effect == pytest.approx(per_doubling, abs=1.0)
