"""Theory simulator: token trees, Huffman, the protocol's formulas, the closed form of SPEC §2."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from springback.theory import (
    EOS,
    TokenTree,
    canonical_code,
    closed_form_derivatives,
    closed_form_scenario,
    derivatives,
    entropy_bits,
    huffman_lengths,
    ideal_code_length,
    joint_distribution,
    kl_bits,
    kraft_sum,
    make_scenario,
    mean_length,
    pareto_masses,
    rates,
    sweep,
)
from springback.theory.huffman import is_prefix_free
from springback.theory.protocol import huffman_rate
from springback.theory.tree import random_responses


def test_tree_weights_and_pruning_keep_mass():
    tree = TokenTree.from_responses([(0,), (0, 1), (0, 1, 1), (1, 0, 0, 1)], [0.4, 0.3, 0.2, 0.1])
    w = tree.node_weights()
    assert w[()] == pytest.approx(1.0)
    assert w[(0,)] == pytest.approx(0.9)  # inner node = sum of its leaves
    assert w[(0, EOS)] == pytest.approx(0.4)
    assert tree.depth == 5
    pruned = tree.prune(2)
    # (0, EOS) stays a leaf at depth 2; (0,1,...) responses merge at node (0, 1); (1,0,...) at (1, 0)
    assert pruned == pytest.approx({(0, EOS): 0.4, (0, 1): 0.5, (1, 0): 0.1})
    assert sum(tree.prune(1).values()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        TokenTree.from_responses([(0, 2)], [1.0])  # EOS inside a response


def test_random_responses_distinct_and_branch():
    rs = random_responses(random.Random(0), 50, first_token=1, max_len=8)
    assert len(set(rs)) == 50 and all(r[0] == 1 and 1 <= len(r) <= 8 for r in rs)


@pytest.mark.parametrize("seed", range(6))
def test_huffman_kraft_and_entropy_bound(seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(int(rng.integers(2, 300)), 0.5))
    lengths = huffman_lengths(p)
    assert kraft_sum(lengths) == pytest.approx(1.0)  # complete prefix code
    h = entropy_bits(p)
    assert h - 1e-9 <= mean_length(p, lengths) < h + 1.0  # Shannon's bound
    codes = canonical_code(lengths)
    assert is_prefix_free(codes) and [len(c) for c in codes] == list(lengths)


def test_huffman_dyadic_is_exact():
    p = [0.5, 0.25, 0.125, 0.125]
    assert list(huffman_lengths(p)) == [1, 2, 3, 3]
    assert mean_length(p, huffman_lengths(p)) == pytest.approx(entropy_bits(p)) == pytest.approx(1.75)


def test_ideal_code_length_formula():
    # uniform over 4 pruned leaves: H = 2 bits per chunk; 10 tokens at d = 4 -> 3 chunks -> 6 bits
    assert ideal_code_length(10, 4, [0.25] * 4) == 6
    # H = 1.5 bits rounds up to 2 per chunk; 8 tokens at d = 4 -> 2 chunks
    assert ideal_code_length(8, 4, [0.5, 0.25, 0.25]) == 4


def test_joint_distribution_and_kl():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    q = joint_distribution([a, b], [3, 1])
    assert q == pytest.approx([0.75, 0.25])
    assert kl_bits(a, q) == pytest.approx(math.log2(4 / 3))
    assert pareto_masses(5, 1.0).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [10.0, 100.0, 1000.0, 10000.0])
@pytest.mark.parametrize("l", [0.05, 0.25, 0.5])
def test_closed_form_oracle(k, l):
    """SPEC §2: with D_a disjoint and D_t distributed as D_p, dγ_a/dl ≈ 1/k and |dγ_p/dl| ≈ 1/k²."""
    s = closed_form_scenario()
    dp, da = derivatives(s, k, l)
    cp, ca = closed_form_derivatives(k, l, s.d)
    assert dp == pytest.approx(cp, rel=1e-9) and da == pytest.approx(ca, rel=1e-9)
    unit = 1.0 / (s.d * math.log(2))  # the closed form in bits per token of a depth-d chunk
    assert da / unit == pytest.approx(1.0 / k, rel=1.0 / k + l / k + 1e-9)
    assert -dp / unit == pytest.approx(1.0 / k**2, rel=2.0 / k + 2 * l / k + 1e-9)
    assert da / -dp == pytest.approx(k + l, rel=1e-9)


def test_derivatives_match_finite_differences():
    s = make_scenario(3, t_rank_noise=0.01)
    for k, l in [(10.0, 0.1), (1000.0, 0.4)]:
        dp, da = derivatives(s, k, l)
        h = 1e-5
        up, down = rates(s, k, l + h), rates(s, k, l - h)
        assert dp == pytest.approx((up["gamma_p"] - down["gamma_p"]) / (2 * h), rel=1e-4)
        assert da == pytest.approx((up["norm_gamma_a"] - down["norm_gamma_a"]) / (2 * h), rel=1e-4)


def test_any_pretraining_like_perturbation_at_l0():
    """At l = 0, dγ_p/dl = −1/(k(k+1)) · 1/(d ln 2) for any D_t on D_p's support."""
    s = make_scenario(1, t_rank_noise=0.05)
    for k in (10.0, 1000.0):
        dp, _ = derivatives(s, k, 0.0)
        assert dp == pytest.approx(-1.0 / (k * (k + 1) * s.d * math.log(2)), rel=1e-9)


def test_sweep_rows_and_huffman_rate_near_ideal():
    s = make_scenario(0)
    rows = sweep(s, [10.0, 1000.0], [0.1, 0.5])
    assert len(rows) == 4
    for r in rows:
        assert r["opposite_signs"]
        assert r["gamma_a"] >= r["norm_gamma_a"] >= 0
        # the real Huffman code is within 1/d bit per token of the cross-entropy rate on the model's own data
        assert r["huffman_gamma_p"] < r["gamma_p"] + 1.5 / s.d
    q = joint_distribution([s.p_p, s.p_a, s.p_t], [10.0, 1.0, 0.5])
    assert abs(huffman_rate(q, q, s.d) - entropy_bits(q) / s.d) < 1.0 / s.d


def test_sign_breaks_when_perturbation_is_far_from_pretraining():
    """The stated assumption matters: a perturbation with l·χ² > 1 flips the sign of dγ_p/dl."""
    s = make_scenario(2, t_rank_noise=0.05)
    assert s.chi2_t_p > 2.0
    dp, _ = derivatives(s, 10000.0, 0.5)
    assert dp > 0


@pytest.mark.slow
def test_theory_experiment_tiny(tmp_path):
    import springback

    sets = ["seeds=[0,1,2]", "l_values=[0.1,0.3,0.5]", "robustness_rank_noise=[0.0,0.05]",
            "n_pretrain_responses=120", "n_align_responses=20"]
    run_dir = springback.run("theory", sets=sets, out=tmp_path, progress=False)
    claims = {c["id"]: c for c in springback.load_result(run_dir)["claims"]}
    assert set(claims) == {"theory.opposite_signs", "theory.ratio_linear_in_k", "theory.hooke_invariant"}
    assert claims["theory.ratio_linear_in_k"]["effect"] == pytest.approx(1.0, abs=0.05)
    assert claims["theory.opposite_signs"]["verdict"] == "reproduced"
    df = springback.load_results(run_dir)
    assert len(df[df.kind == "sweep"]) == 3 * 4 * 3
    assert len(df[df.kind == "robustness"]) == 3 * 2
    for name in ("theory_ratio_vs_k.png", "theory_hooke.png", "theory_sign_robustness.png"):
        assert (run_dir / "figures" / name).exists()
