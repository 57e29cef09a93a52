"""Force decomposition (SPEC §5, our formulation): hand-worked values and the exact softmax identity."""

from __future__ import annotations

import math

import pytest
import torch

from springback.measure.forces import (
    SoftmaxCompletionModel,
    collision_probability,
    empirical_q,
    forces_from_logps,
    measure_forces,
    training_distribution,
    uniform_q,
)


def _hand_case():
    # π over A ∪ N = [0.4, 0.2, 0.2 | 0.1, 0.1]; logits are logs of (unnormalised) masses.
    probs = torch.tensor([0.4, 0.2, 0.2, 0.1, 0.1], dtype=torch.float64)
    return SoftmaxCompletionModel(torch.log(probs * 7.0), n_aligned=3)  # the factor 7 must not matter


def test_hand_worked_case():
    model = _hand_case()
    q = uniform_q(3, 2, "aligned")  # [1/3, 1/3, 1/3, 0, 0]
    f = model.forces(q)
    # π⁺ = 0.8, π⁻ = 0.2; π(·|A) = [1/2, 1/4, 1/4] -> C_A = 1/4 + 1/16 + 1/16 = 3/8;
    # π(·|N) = [1/2, 1/2] -> C_N = 1/2; S = log 4.
    assert float(f.pi_pos[0]) == pytest.approx(0.8, abs=1e-12)
    assert float(f.score[0]) == pytest.approx(math.log(4.0), abs=1e-12)
    assert float(f.collision_aligned[0]) == pytest.approx(3 / 8, abs=1e-12)
    assert float(f.collision_opposing[0]) == pytest.approx(1 / 2, abs=1e-12)
    # F_drive = ⟨q, π(·|A)⟩ − ⟨q, π(·|N)⟩ = (1/3)(1/2 + 1/4 + 1/4) − 0 = 1/3
    assert float(f.f_drive[0]) == pytest.approx(1 / 3, abs=1e-12)
    # F_rebound = −(0.8·3/8 − 0.2·1/2) = −0.2
    assert float(f.f_rebound[0]) == pytest.approx(-0.2, abs=1e-12)
    # Opposing data: F_drive = 0 − ⟨q_N, π(·|N)⟩ = −1/2 (q uniform over N).
    assert float(model.forces(uniform_q(3, 2, "opposing")).f_drive[0]) == pytest.approx(-0.5, abs=1e-12)


def test_collision_probability():
    assert float(collision_probability(torch.zeros(8, dtype=torch.float64))) == pytest.approx(1 / 8)
    peaked = torch.tensor([0.0, -50.0, -50.0], dtype=torch.float64)
    assert float(collision_probability(peaked)) == pytest.approx(1.0, abs=1e-12)
    x = torch.randn(4, 6, dtype=torch.float64)
    direct = (torch.softmax(x, -1) ** 2).sum(-1)
    assert torch.allclose(collision_probability(x), direct, atol=1e-14)
    assert torch.allclose(collision_probability(x + 123.0), direct, atol=1e-12)  # only ratios matter


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_identity_first_order(seed):
    """(S(z + η(q − π)) − S(z)) / η -> F_drive + F_rebound, with an O(η²) remainder."""
    model = SoftmaxCompletionModel.random(5, 7, seed=seed, scale=1.5, aligned_shift=0.7)
    gen = torch.Generator().manual_seed(100 + seed)
    q = torch.rand(12, generator=gen, dtype=torch.float64)
    q /= q.sum()
    predicted = float(model.forces(q).f_total[0])
    errors = []
    for lr in (1e-2, 5e-3, 2.5e-3):
        delta = model.step(q, lr).score() - model.score()
        errors.append(abs(delta - lr * predicted))
    assert errors[-1] < 1e-4 * abs(predicted) + 1e-9
    # Halving η quarters the remainder: the identity is exact to first order, not just close.
    for big, small in zip(errors, errors[1:]):
        assert 3.5 < big / small < 4.5


def test_softmax_identity_is_the_directional_derivative():
    """dS/dη at η = 0 equals F_drive + F_rebound to machine precision (autograd)."""
    model = SoftmaxCompletionModel.random(4, 9, seed=7, scale=2.0)
    q = uniform_q(4, 9, "opposing", subset=3)
    eta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    z = model.logits + eta * (q - model.probs())
    s = torch.logsumexp(z[:4], 0) - torch.logsumexp(z[4:], 0)
    (ds,) = torch.autograd.grad(s, eta)
    assert float(ds) == pytest.approx(float(model.forces(q).f_total[0]), abs=1e-12)


def test_sgd_step_matches_closed_form():
    model = SoftmaxCompletionModel.random(3, 4, seed=3)
    batch = [0, 0, 2, 5, 6, 0]
    a = model.sgd_step(batch, lr=0.1).logits
    b = model.step(empirical_q(batch, 7), lr=0.1).logits
    assert torch.allclose(a, b, atol=1e-12)


def test_equal_narrowness_gives_tanh_pull():
    """C_A = C_N = C  ⇒  F_rebound = −C·tanh(S/2): always toward S = 0."""
    shape = torch.tensor([0.0, -1.0, -2.5], dtype=torch.float64)
    for shift in (-3.0, -0.5, 0.0, 1.2, 4.0):
        model = SoftmaxCompletionModel(torch.cat([shape + shift, shape]), n_aligned=3)
        f = model.forces(uniform_q(3, 3, "aligned"))
        c = float(f.collision_aligned[0])
        assert float(f.collision_opposing[0]) == pytest.approx(c)
        s = model.score()
        assert float(f.f_rebound[0]) == pytest.approx(-c * math.tanh(s / 2), abs=1e-12)
        assert float(f.f_rebound[0]) * s <= 0


def test_per_prompt_q_and_shapes():
    la = torch.randn(3, 4, dtype=torch.float64)
    ln = torch.randn(3, 2, dtype=torch.float64)
    qa, qn = torch.full((4,), 0.25, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    f1 = forces_from_logps(la, ln, qa, qn)
    f2 = forces_from_logps(la, ln, qa.expand(3, 4), qn.expand(3, 2))
    assert torch.allclose(f1.f_total, f2.f_total)
    assert f1.f_total.shape == (3,)
    with pytest.raises(ValueError):
        forces_from_logps(la, ln, torch.ones(5), qn)


def test_training_distribution():
    a, n = ["good .", "fine ."], ["bad ."]
    qa, qn, share = training_distribution(["good .", "good .", "bad .", "other ."], a, n)
    assert qa.tolist() == pytest.approx([2 / 3, 0.0])
    assert qn.tolist() == pytest.approx([1 / 3])
    assert share == pytest.approx(0.75)
    with pytest.raises(ValueError):
        training_distribution(["other ."], a, n)


def test_measure_forces_on_a_network_matches_alignment_score():
    from springback.measure import alignment_measure
    from springback.models import build_model
    from springback.worlds import get_world

    world = get_world("safety")
    tok = world.tokenizer()
    model = build_model("nano", tok, seed=0).eval()
    prompts = world.eval_prompts(2)
    a_set, n_set = world.reference_sets()
    qa, qn, _ = training_distribution([r.response for r in world.aligned(50, 0)], a_set, n_set)
    f = measure_forces(model, tok, prompts, a_set, n_set, qa, qn)
    m = alignment_measure(model, tok, prompts, a_set, n_set)
    assert torch.allclose(f.score, m.score.double(), atol=1e-9)
    assert torch.allclose(f.pi_pos, m.pi_pos.double(), atol=1e-9)
    assert bool(((f.collision_aligned >= 1 / len(a_set) - 1e-12) & (f.collision_aligned <= 1)).all())
    # q is uniform-ish over A and zero on N, so F_drive lies in (0, 1].
    assert bool(((f.f_drive > 0) & (f.f_drive <= 1)).all())
    # Pre-tokenised batches give exactly the same measure (batch size 7: several ragged batches).
    from springback.measure.alignment import ReferenceBatches

    rb = ReferenceBatches(tok, prompts, a_set, n_set, batch_size=7).measure(model)
    ref = alignment_measure(model, tok, prompts, a_set, n_set, batch_size=7)
    assert torch.equal(rb.logp_aligned, ref.logp_aligned) and torch.equal(rb.score, ref.score)
