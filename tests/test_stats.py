"""Claim statistics: verdicts in every direction, seeds needed, degenerate spread, Fisher z,
per-group results, and the segmented fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from springback.analysis import (
    ABSENT,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    claim_by_group,
    claim_from_seed_values,
    combine_verdicts,
    correlation_claim,
    fisher_mean,
    seeds_needed,
    segmented_fit,
    t_interval,
    verdict,
    with_groups,
)
from springback.errors import SpringbackError

# Student t quantile with 2 degrees of freedom in closed form: F⁻¹(p) = (2p − 1) / sqrt(2p(1 − p)).
T975_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # ≈ 4.3027


def _claim(values, **kw):
    return claim_from_seed_values("c", "s", "p", values, **kw)


def _values_with(mean: float, sd: float, n: int) -> list[float]:
    """n values whose sample mean and sample sd (ddof=1) are exactly ``mean`` and ``sd``."""
    z = np.arange(n, dtype=float)
    z = (z - z.mean()) / z.std(ddof=1)
    return list(mean + sd * z)


# ----------------------------------------------------------------------------- intervals


def test_t_interval_matches_hand_computation():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1
    half = T975_DF2 / math.sqrt(3)
    assert mean == pytest.approx(2.0)
    assert (lo, hi) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-9)


def test_t_interval_with_no_spread_claims_no_interval():
    mean, lo, hi = t_interval([0.4, 0.4, 0.4])
    assert mean == pytest.approx(0.4) and math.isnan(lo) and math.isnan(hi)
    mean, lo, hi = t_interval([0.4, 0.4, 0.4], sd_floor=0.1)
    assert (lo, hi) == pytest.approx((0.4 - T975_DF2 * 0.1 / math.sqrt(3), 0.4 + T975_DF2 * 0.1 / math.sqrt(3)))


# ----------------------------------------------------------------------------- verdicts


def test_effect_present_is_reproduced():
    c = _claim([1.0, 1.1, 0.9], delta=0.2)  # mean 1, sd 0.1
    half = T975_DF2 * 0.1 / math.sqrt(3)
    assert (c.effect, c.ci_low, c.ci_high) == pytest.approx((1.0, 1.0 - half, 1.0 + half))
    assert c.verdict == REPRODUCED and c.seeds_needed is None and c.delta == 0.2
    assert c.details["degenerate_spread"] is False and "below_delta" not in c.details


def test_effect_reversed_is_not_reproduced():
    c = _claim([-1.0, -1.1, -0.9], delta=0.2)
    assert c.verdict == NOT_REPRODUCED and c.seeds_needed is None


def test_tight_around_null_inside_band_is_absent():
    c = _claim([0.03, -0.03, 0.0], delta=0.2)  # interval 0 ± 0.0745
    assert c.ci_high == pytest.approx(T975_DF2 * 0.03 / math.sqrt(3))
    assert c.verdict == ABSENT and c.seeds_needed is None
    # Without a stated band the same numbers can never be absent.
    assert _claim([0.01, -0.01, 0.0]).verdict == INCONCLUSIVE
    # Around a non-zero null the band moves with it.
    assert _claim([0.51, 0.49, 0.5], null=0.5, delta=0.05).verdict == ABSENT


def test_tost_uses_the_printed_95_interval():
    # 95% half-width 0.0248 pokes out of ±0.02 while the 90% one (t = 2.92: 0.0169) fits inside:
    # the verdict follows the interval the report prints, so this is not absent.
    c = _claim([0.01, -0.01, 0.0], delta=0.02, resolution=1e-4)
    assert c.ci_high > 0.02 and c.verdict == INCONCLUSIVE


def test_decided_but_smaller_than_delta_is_flagged():
    c = _claim([0.05, 0.051, 0.049], delta=0.2)
    assert c.verdict == REPRODUCED and c.details["below_delta"] is True


def test_verdict_function_directions():
    assert verdict(0.1, 0.3) == REPRODUCED
    assert verdict(-0.3, -0.1) == NOT_REPRODUCED
    assert verdict(-0.1, 0.1, delta=0.2) == ABSENT
    assert verdict(-0.1, 0.2, delta=0.2) == INCONCLUSIVE  # touching the band edge is not inside
    assert verdict(-0.1, 0.1) == INCONCLUSIVE
    assert verdict(float("nan"), 0.1, delta=1.0) == INCONCLUSIVE


def test_bad_delta_or_resolution_is_a_user_error():
    with pytest.raises(SpringbackError):
        _claim([1.0, 2.0], delta=-0.1)
    with pytest.raises(SpringbackError):
        _claim([1.0, 2.0], delta=0.1, resolution=0.0)


# ----------------------------------------------------------------------------- seeds needed


def _brute_force_seeds(mean: float, sd: float, **kw) -> int:
    """Smallest n whose claim, built from n values with this exact mean and sd, is decided."""
    for n in range(2, 400):
        if _claim(_values_with(mean, sd, n), **kw).verdict != INCONCLUSIVE:
            return n
    raise AssertionError("not decided below 400 seeds")


@pytest.mark.parametrize(
    "mean, sd, kw",
    [
        (0.3, 1.0, {"delta": 0.1}),  # decided by excluding the null
        (-0.3, 1.0, {}),  # no band: only the null can decide it (as not reproduced)
        (0.02, 0.3, {"delta": 0.5}),  # decided by fitting inside the band (fewer seeds than excluding 0)
        (0.2, 0.25, {"delta": 0.3}),  # both routes possible: the one that needs fewer seeds
        (0.5, 0.02, {"null": 0.5, "delta": 0.01}),  # around a non-zero null
        (0.75, 0.5, {}),  # 5 seeds; 4 if the t quantile used n rather than n − 1 degrees of freedom
        (0.0, 0.5, {"delta": 0.75}),  # the same boundary case through the band
    ],
)
def test_inconclusive_claim_reports_seeds_matching_brute_force(mean, sd, kw):
    c = _claim(_values_with(mean, sd, 3), **kw)
    assert c.verdict == INCONCLUSIVE
    assert isinstance(c.seeds_needed, int) and c.seeds_needed > 3
    assert c.seeds_needed == _brute_force_seeds(mean, sd, **kw)


def test_seeds_needed_is_capped():
    c = _claim([-1.0, 0.0, 1.0])  # mean exactly at the null, no band: never decided
    assert c.verdict == INCONCLUSIVE and c.seeds_needed == ">1000"
    assert _claim([1.0]).seeds_needed is None  # one seed: no spread to extrapolate from


# ----------------------------------------------------------------------------- degenerate spread


def test_identical_seeds_without_band_are_not_certain():
    c = _claim([0.5, 0.5, 0.5])
    assert math.isnan(c.ci_low) and math.isnan(c.ci_high)
    assert c.verdict == INCONCLUSIVE and c.details["degenerate_spread"] is True


def test_identical_seeds_use_the_resolution_as_spread():
    c = _claim([0.5, 0.5, 0.5], delta=0.2)  # default resolution δ/10 = 0.02
    half = T975_DF2 * 0.02 / math.sqrt(3)
    assert c.details["resolution"] == pytest.approx(0.02) and c.details["degenerate_spread"] is True
    assert (c.ci_low, c.ci_high) == pytest.approx((0.5 - half, 0.5 + half))
    assert c.ci_high > c.ci_low and c.verdict == REPRODUCED
    assert _claim([0.0, 0.0, 0.0], delta=0.2).verdict == ABSENT
    # A coarse measurement: identical seeds at 0.1 cannot decide anything with 3 seeds.
    coarse = _claim([0.1, 0.1, 0.1], delta=0.2, resolution=0.3)
    assert coarse.ci_low == pytest.approx(0.1 - T975_DF2 * 0.3 / math.sqrt(3))
    assert coarse.verdict == INCONCLUSIVE and isinstance(coarse.seeds_needed, int)


def test_spread_below_resolution_is_floored_and_flagged():
    tight = _claim([0.5, 0.501, 0.499], resolution=0.01)  # sd 0.001 < 0.01
    assert tight.details["degenerate_spread"] is True
    assert tight.ci_high - tight.effect == pytest.approx(T975_DF2 * 0.01 / math.sqrt(3))
    wide = _claim([0.5, 0.6, 0.4], resolution=0.01)  # sd 0.1: the floor is not used
    assert wide.details["degenerate_spread"] is False
    assert wide.ci_high - wide.effect == pytest.approx(T975_DF2 * 0.1 / math.sqrt(3))


# ----------------------------------------------------------------------------- Fisher z


def test_fisher_mean_matches_hand_computation():
    assert fisher_mean([0.2, 0.6]) == pytest.approx(math.tanh((math.atanh(0.2) + math.atanh(0.6)) / 2))
    assert fisher_mean([0.5, -0.5]) == pytest.approx(0.0, abs=1e-15)
    assert fisher_mean([1.0, float("nan")]) == pytest.approx(0.999)  # clipped, NaN skipped
    assert math.isnan(fisher_mean([]))


def test_correlation_claim_in_z_space_matches_hand_computation():
    rs = [0.9, 0.95, 0.99]
    z = [math.atanh(r) for r in rs]
    mz = sum(z) / 3
    sd = math.sqrt(sum((v - mz) ** 2 for v in z) / 2)
    half = T975_DF2 * sd / math.sqrt(3)
    c = correlation_claim("r", "s", "p", rs, delta=0.1)
    assert (c.effect, c.ci_low, c.ci_high) == pytest.approx((math.tanh(mz), math.tanh(mz - half), math.tanh(mz + half)))
    assert c.verdict == REPRODUCED and c.unit == "Pearson r" and c.details["scale"] == "fisher_z"


def test_correlation_interval_never_leaves_minus_one_one():
    rs = [0.95, 0.99, 1.0]
    assert _claim(rs).ci_high > 1.0  # a linear interval over r leaves the range
    c = correlation_claim("r", "s", "p", rs, delta=0.1)
    assert -1.0 <= c.ci_low <= c.effect <= c.ci_high <= 1.0 and c.details["n_clipped"] == 1
    for rs in ([-1.0, -0.2, 0.99], [1.0, 1.0, 1.0], [-0.999999, -1.0, -0.98], [0.1, -0.9]):
        c = correlation_claim("r", "s", "p", rs, delta=0.1)
        assert -1.0 <= c.ci_low <= c.ci_high <= 1.0, rs
    with pytest.raises(ValueError):
        correlation_claim("r", "s", "p", [0.2, 1.5])


def test_correlation_claim_absent_and_seeds_needed_in_z():
    assert correlation_claim("r", "s", "p", [0.01, -0.02, 0.0], delta=0.1).verdict == ABSENT
    # Brute force in z: n values of z with the observed z mean and sd, mapped back to r.
    zs = np.arctanh([0.3, -0.2, 0.25])
    c = correlation_claim("r", "s", "p", np.tanh(zs).tolist(), delta=0.05)
    assert c.verdict == INCONCLUSIVE
    for n in range(2, 400):
        rs = np.tanh(_values_with(float(zs.mean()), float(zs.std(ddof=1)), n)).tolist()
        if correlation_claim("r", "s", "p", rs, delta=0.05).verdict != INCONCLUSIVE:
            break
    assert c.seeds_needed == n


# ----------------------------------------------------------------------------- groups


def test_groups_decided_in_opposite_directions_decide_the_claim_against_it():
    per_group = {"sentiment": [1.0, 1.1, 0.9, 1.0, 1.05, 0.95], "safety": [-0.1, -0.12, -0.08]}
    pooled = _claim(per_group["sentiment"] + per_group["safety"], delta=0.05)
    assert pooled.verdict == REPRODUCED  # pooling alone would hide the reversed world
    c = claim_by_group("c", "s", "p", per_group, delta=0.05)
    assert c.effect == pytest.approx(pooled.effect) and c.n_seeds == 9
    assert c.groups["sentiment"]["verdict"] == REPRODUCED and c.groups["safety"]["verdict"] == NOT_REPRODUCED
    # every world decided, one against the claim: decided as a conjunction over worlds, no seeds to add
    assert c.details["groups_disagree"] is True and c.details["pooled_verdict"] == REPRODUCED
    assert c.details["decided_by_groups"] is True
    assert c.verdict == NOT_REPRODUCED and c.seeds_needed is None
    assert c.groups["safety"]["n_seeds"] == 3 and c.groups["safety"]["delta"] == 0.05
    assert c.groups["safety"]["effect"] == pytest.approx(-0.1)
    assert set(c.groups["safety"]) >= {"effect", "ci_low", "ci_high", "n_seeds", "verdict", "delta"}


def test_a_world_shown_negligible_decides_a_claim_that_holds_in_another():
    # reproduced in one world, absent (and below the null) in the other: not reproduced as a whole
    c = claim_by_group("c", "s", "p", {"a": [0.9, 0.88, 0.92, 0.87], "b": [-0.01, -0.012, -0.009, -0.011]}, delta=0.1)
    assert [c.groups[g]["verdict"] for g in ("a", "b")] == [REPRODUCED, ABSENT]
    assert c.verdict == NOT_REPRODUCED and c.details["decided_by_groups"] is True and c.seeds_needed is None


def test_disagreeing_groups_with_an_undecided_one_say_the_seeds_that_group_needs():
    per_group = {"a": [1.0, 1.1, 0.9, 1.0, 1.05, 0.95], "b": [-0.3, 0.2, -0.5]}  # b leans negative, undecided
    c = claim_by_group("c", "s", "p", per_group, delta=0.05)
    assert c.details["pooled_verdict"] == REPRODUCED and c.verdict == INCONCLUSIVE
    assert c.groups["b"]["verdict"] == INCONCLUSIVE
    # in seeds of group b itself (one replicate per seed there), not divided by the number of groups
    assert c.seeds_needed == c.groups["b"]["seeds_needed"] == seeds_needed(-0.2, float(np.std([-0.3, 0.2, -0.5], ddof=1)),
                                                                             null=0.0, band=(-0.05, 0.05))
    assert isinstance(c.seeds_needed, int) and c.seeds_needed > 3


def test_groups_agreeing_in_sign_keep_the_pooled_verdict():
    per_group = {"a": [1.0, 1.1, 0.9], "b": [0.2, -0.1, 0.5]}  # b positive but undecided on its own
    c = claim_by_group("c", "s", "p", per_group, delta=0.05)
    assert c.groups["b"]["verdict"] == INCONCLUSIVE and c.details["groups_disagree"] is False
    assert c.verdict == _claim(per_group["a"] + per_group["b"], delta=0.05).verdict == REPRODUCED


def test_groups_all_absent_keep_absent_despite_signs():
    c = claim_by_group("c", "s", "p", {"a": [0.01, 0.012, 0.011], "b": [-0.01, -0.012, -0.011]}, delta=0.2)
    assert c.details["groups_disagree"] is True and c.verdict == ABSENT
    assert {g["verdict"] for g in c.groups.values()} == {ABSENT}


def test_with_groups_keeps_the_claim_scale():
    base = correlation_claim("r", "s", "p", [0.9, 0.95, 0.97, 0.5, 0.6, 0.99], delta=0.1)
    c = with_groups(base, {"w1": [0.9, 0.95, 0.97], "w2": [0.5, 0.6, 0.99]})
    assert c.groups["w1"]["effect"] == pytest.approx(fisher_mean([0.9, 0.95, 0.97]))
    assert all(-1 <= g["ci_low"] <= g["ci_high"] <= 1 for g in c.groups.values())
    assert base.groups == {}  # the input claim is not modified


# ----------------------------------------------------------------------------- combining, serialising


def test_combine_verdicts_with_absent():
    assert combine_verdicts([ABSENT, ABSENT]) == ABSENT
    assert combine_verdicts([REPRODUCED, REPRODUCED]) == REPRODUCED
    assert combine_verdicts([REPRODUCED, ABSENT]) == NOT_REPRODUCED  # a required part is negligible
    assert combine_verdicts([INCONCLUSIVE, ABSENT]) == NOT_REPRODUCED
    assert combine_verdicts([ABSENT, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert combine_verdicts([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine_verdicts([]) == INCONCLUSIVE


def test_to_dict_keeps_old_keys_and_adds_new_ones():
    d = _claim([-1.0, 0.0, 1.0], unit="nats", extra=1).to_dict()
    assert set(d) == {"id", "statement", "paper", "effect", "ci_low", "ci_high", "n_seeds", "verdict", "unit",
                      "details", "delta", "seeds_needed", "groups"}
    assert d["groups"] == {} and d["delta"] is None and d["seeds_needed"] == ">1000" and d["details"]["extra"] == 1
    json.dumps(claim_by_group("c", "s", "p", {"a": [1.0, 2.0], "b": [3.0, 4.0]}, delta=1.0).to_dict())


# ----------------------------------------------------------------------------- segmented fit


def test_segmented_fit_recovers_known_slopes_exactly():
    x = np.arange(0.0, 11.0)
    x0 = 4.0
    y = 3.0 + np.where(x < x0, -2.0 * (x - x0), -0.25 * (x - x0))
    fit = segmented_fit(x, y, x0)
    assert (fit.level, fit.slope_before, fit.slope_after) == pytest.approx((3.0, -2.0, -0.25))
    assert fit.slope_change == pytest.approx(-1.75) and fit.rss_segmented == pytest.approx(0.0, abs=1e-20)
    line = np.polyfit(x, y, 1)
    assert fit.rss_line == pytest.approx(float(((np.polyval(line, x) - y) ** 2).sum()))
    assert fit.f_stat == math.inf and fit.p_value == 0.0 and fit.n_points == 11


def test_segmented_f_equals_t_squared_of_the_hinge_term():
    # Same model written as y = a + b·x + c·max(x − x0, 0): F for one extra term is its t².
    rng = np.random.default_rng(1)
    x = np.linspace(0, 10, 12)
    y = 1.0 - 0.8 * x + 0.5 * np.maximum(x - 5.0, 0) + rng.normal(0, 0.3, len(x))
    fit = segmented_fit(x, y, 5.0)
    X = np.column_stack([np.ones_like(x), x, np.maximum(x - 5.0, 0)])
    coef = np.linalg.solve(X.T @ X, X.T @ y)
    sigma2 = float(((y - X @ coef) ** 2).sum()) / (len(x) - 3)
    t_c = coef[2] / math.sqrt(sigma2 * np.linalg.inv(X.T @ X)[2, 2])
    assert fit.f_stat == pytest.approx(t_c**2) and fit.slope_change == pytest.approx(-coef[2])


def test_segmented_f_test_rejects_a_kink_but_not_a_line():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 2000, 15)
    kink = 0.9 + np.where(x < 800, -5e-4 * (x - 800), -5e-5 * (x - 800)) + rng.normal(0, 0.02, len(x))
    fit = segmented_fit(x, kink, 800)
    assert fit.p_value < 1e-3 and fit.slope_change == pytest.approx(-4.5e-4, abs=1e-4)  # falls, then flattens
    # On straight lines with noise the test is calibrated: it rejects about 5% at the 5% level.
    lines = 0.9 - 2e-4 * x + rng.normal(0, 0.02, (400, len(x)))
    rejected = np.mean([segmented_fit(x, y, 800).p_value < 0.05 for y in lines])
    assert 0.02 < rejected < 0.09
    exact_line = segmented_fit(x, 0.9 - 2e-4 * x, 800)
    assert (exact_line.f_stat, exact_line.p_value) == (0.0, 1.0)


def test_segmented_fit_needs_points_on_both_sides():
    fit = segmented_fit([1.0, 2.0, 3.0, float("nan")], [1.0, 2.0, 3.0, 4.0], 5.0)
    assert math.isnan(fit.slope_before) and math.isnan(fit.p_value) and fit.n_points == 3
    three = segmented_fit([0.0, 1.0, 2.0], [0.0, 1.0, 0.0], 1.0)  # identified, but no F test
    assert three.slope_before == pytest.approx(1.0) and three.slope_after == pytest.approx(-1.0)
    assert math.isnan(three.f_stat)
