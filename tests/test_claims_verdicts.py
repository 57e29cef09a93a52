"""The verdict helpers every claim uses: parts, target bands, groups near the null."""

from __future__ import annotations


from springback.analysis import claim_by_group, claim_from_seed_values, correlation_claim
from springback.analysis.verdicts import band_verdict, per_group, with_parts, with_target


def claim(values, delta=0.1, **kw):
    return claim_from_seed_values("c", "", "", values, delta=delta, **kw)


def test_parts_all_must_hold():
    yes, no, flat = claim([1.0, 1.1, 0.9]), claim([-1.0, -1.1, -0.9]), claim([0.01, -0.01, 0.0])
    assert with_parts(yes, {"p": yes}).verdict == "reproduced"
    assert with_parts(yes, {"p": no}).verdict == "not_reproduced"
    assert with_parts(flat, {"p": flat}).verdict == "absent"
    assert with_parts(yes, {"p": flat}).verdict == "not_reproduced"  # a required part shown negligible
    c = with_parts(yes, {"p": claim([1.0, -0.5, 0.8])})
    assert c.verdict == "inconclusive" and isinstance(c.seeds_needed, int) and c.seeds_needed > 3
    assert c.details["parts"]["p"]["verdict"] == "inconclusive" and c.details["own_verdict"] == "reproduced"


def test_target_band_after_the_sign():
    assert with_target(claim([1.0, 1.01, 0.99]), (0.9, 1.1)).verdict == "reproduced"
    assert with_target(claim([0.5, 0.51, 0.49]), (0.9, 1.1)).verdict == "not_reproduced"  # grows, not linearly
    assert with_target(claim([0.0, 0.01, -0.01]), (0.9, 1.1)).verdict == "absent"  # no sign: the band is moot
    assert with_target(claim([-1.0, -1.01, -0.99]), (0.9, 1.1)).verdict == "not_reproduced"
    across = with_target(claim([0.8, 1.0, 1.2]), (0.9, 1.1))
    assert across.verdict == "inconclusive" and across.details["sign_verdict"] == "reproduced"
    assert across.seeds_needed is not None


def test_target_of_a_correlation_is_read_in_fisher_z():
    c = with_target(correlation_claim("r", "", "", [0.995, 0.996, 0.997], delta=0.1), (0.99, 1.0))
    assert c.verdict == "reproduced"
    c = with_target(correlation_claim("r", "", "", [0.9, 0.91, 0.92], delta=0.1), (0.99, 1.0))
    assert c.verdict == "not_reproduced"


def test_band_verdict_edges():
    assert band_verdict(0.9, 1.1, (0.9, 1.1)) == "reproduced"
    assert band_verdict(1.2, 1.3, (0.9, 1.1)) == "not_reproduced"
    assert band_verdict(float("nan"), 1.0, (0.9, 1.1)) == "inconclusive"


def test_absent_groups_of_either_sign_keep_a_pooled_absent_but_an_effect_in_one_group_does_not():
    near = {"a": [0.01, 0.02, 0.015, 0.012], "b": [-0.01, -0.02, -0.015, -0.012]}
    c = claim_by_group("c", "", "", near, delta=0.1)
    assert c.details["groups_disagree"] is True and c.verdict == "absent"
    opposite = {"a": [0.05, 0.06, 0.055, 0.052], "b": [-0.05, -0.06, -0.055, -0.052]}
    c = claim_by_group("c", "", "", opposite, delta=0.1)
    assert {g["verdict"] for g in c.groups.values()} == {"reproduced", "not_reproduced"}
    # pooled, the two cancel into a narrow interval around 0; the groups show it is no absence,
    # and one world decided against the claim decides it (every world is decided: no seeds to add)
    assert c.verdict == "not_reproduced" and c.details["pooled_verdict"] == "absent" and c.seeds_needed is None


def test_per_group_orders_by_seed():
    assert per_group({("w", 2): 2.0, ("w", 0): 0.0, ("v", 1): 1.0}) == {"v": [1.0], "w": [0.0, 2.0]}


def test_seeds_needed_of_a_pooled_claim_is_counted_in_seeds():
    one = claim_from_seed_values("c", "", "", [0.3, -0.1, 0.4, 0.05], delta=0.01)
    two = claim_by_group("c", "", "", {"a": [0.3, 0.4], "b": [-0.1, 0.05]}, delta=0.01)
    assert one.verdict == two.verdict == "inconclusive"
    assert two.details["replicates_needed"] == one.seeds_needed  # same pooled values, same replicates
    assert two.seeds_needed == -(-one.seeds_needed // 2) and two.details["replicates_per_seed"] == 2
