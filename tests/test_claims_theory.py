"""theory claims on synthetic sweep rows with a known answer: present, reversed, absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from springback.experiments.theory import TheoryConfig, claims

KS = (10.0, 100.0, 1000.0, 10000.0)
LS = (0.1, 0.2, 0.3, 0.4, 0.5)
SEEDS = (0, 1, 2, 3)


def sweep(sign_scale: float = 1.0, ratio_exp: float = 1.0, hooke_exp: float = 1.0, noise: float = 0.005) -> pd.DataFrame:
    """Sweep rows: derivatives = sign_scale × the closed forms (dγ_a/dl = 1/k, dγ_p/dl = −1/k²), the
    derivative ratio = k^ratio_exp and |Δγ_a|/|Δγ_p| = k^hooke_exp, each seed jittered by ``noise``."""
    rows = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for k in KS:
            for l in LS:
                j = float(np.exp(rng.normal(0, noise)))
                ca, cp = 1 / k, -1 / k**2
                da, dp = sign_scale * ca * j, sign_scale * cp * j
                dga = 1e-3 * l
                dgp = -dga / k**hooke_exp * j
                rows.append({"kind": "sweep", "seed": seed, "k": k, "l": l, "dgamma_a_dl": da, "dgamma_p_dl": dp,
                             "closed_dgamma_a_dl": ca, "closed_dgamma_p_dl": cp, "opposite_signs": da > 0 > dp,
                             "ratio": k**ratio_exp * j, "delta_norm_gamma_a": dga, "delta_norm_gamma_p": dgp,
                             "hooke_ratio": k * abs(dgp) / abs(dga)})
    return pd.DataFrame(rows)


def verdicts(df: pd.DataFrame) -> dict[str, str]:
    return {c.id: c.verdict for c in claims(df, TheoryConfig())}


def test_opposite_signs_three_ways():
    assert verdicts(sweep(1.0))["theory.opposite_signs"] == "reproduced"
    assert verdicts(sweep(-1.0))["theory.opposite_signs"] == "not_reproduced"
    assert verdicts(sweep(0.01))["theory.opposite_signs"] == "absent"  # a hundredth of the closed form, δ = 0.1


@pytest.mark.parametrize("exp, expected", [(1.0, "reproduced"), (-1.0, "not_reproduced"), (0.0, "absent"),
                                           (0.5, "not_reproduced")])  # 0.5: grows, but not linearly in k
def test_ratio_linear_in_k(exp, expected):
    out = {c.id: c for c in claims(sweep(ratio_exp=exp), TheoryConfig())}
    c = out["theory.ratio_linear_in_k"]
    assert c.verdict == expected
    assert c.effect == pytest.approx(exp, abs=0.01)
    assert c.delta == 0.1


@pytest.mark.parametrize("exp, expected", [(1.0, "reproduced"), (-1.0, "not_reproduced"), (0.0, "absent"),
                                           (2.0, "not_reproduced")])
def test_hooke_exponent(exp, expected):
    c = {c.id: c for c in claims(sweep(hooke_exp=exp), TheoryConfig())}["theory.hooke_invariant"]
    assert c.verdict == expected
    assert c.effect == pytest.approx(exp, abs=0.01)
    # the products' ratio k·|Δγ_p|/|Δγ_a| = k^(1 − exp): inside [0.5, 2] only under the law
    assert c.details["worst_product_ratio_verdict"] == ("reproduced" if exp == 1.0 else "not_reproduced")


def test_every_claim_has_a_delta():
    assert all(c.delta is not None for c in claims(sweep(), TheoryConfig()))
