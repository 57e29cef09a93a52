"""The sampler: seeded, independent of batching, distributed as the model says, top-p keeps the documented set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import hf_tiny
from springback.measure.sampling import SAMPLER_VERSION, _probs, draw, nucleus_mask, sample, uniforms

PROMPTS = ["review of", "the red river", "how do i open that ?", "the music was"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    from springback.runtime import configure_determinism

    configure_determinism()


@pytest.fixture(scope="module")
def tiny():
    tok = hf_tiny.tokenizer()
    model = hf_tiny.build("llama", tok, hidden=32, layers=2)
    with torch.no_grad():  # sharpen the random model so that samples are far from uniform
        model.model.norm.weight.mul_(8.0)
    return model, tok


def test_version_is_recorded():
    assert SAMPLER_VERSION == 2


def test_same_seed_same_samples_other_seed_differs(tiny):
    model, tok = tiny
    a = sample(model, tok, PROMPTS, 3, seed=7, max_new_tokens=6)
    assert sample(model, tok, PROMPTS, 3, seed=7, max_new_tokens=6) == a
    assert sample(model, tok, PROMPTS, 3, seed=8, max_new_tokens=6)[1] != a[1]
    assert a[2] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_batching_neighbours_and_length_do_not_change_samples(tiny):
    model, tok = tiny
    _, ids, _ = sample(model, tok, PROMPTS, 3, seed=1, temperature=0.9, top_p=0.9, max_new_tokens=8, batch_size=64)
    for bs in (1, 5):
        assert sample(model, tok, PROMPTS, 3, seed=1, temperature=0.9, top_p=0.9, max_new_tokens=8, batch_size=bs)[1] == ids
    # a completion's draws belong to (prompt index, sample index): appending prompts changes nothing before them
    _, more, _ = sample(model, tok, PROMPTS + ["the lost letter"], 3, seed=1, temperature=0.9, top_p=0.9, max_new_tokens=8)
    assert more[:12] == ids
    # a shorter run is a prefix of a longer one
    _, short, _ = sample(model, tok, PROMPTS, 3, seed=1, temperature=0.9, top_p=0.9, max_new_tokens=3)
    assert all(s == row[: len(s)] for s, row in zip(short, ids))
    assert torch.equal(uniforms(1, 2, 0, 8)[:3], uniforms(1, 2, 0, 3))


def test_inverse_cdf_draws_each_token_with_its_exact_frequency():
    """On an even grid of uniforms the counts are N·p to within one draw, and zero-probability tokens never appear."""
    p = torch.tensor([[0.05, 0.0, 0.4, 0.25, 0.0, 0.3]])
    logits = p.log()
    n = 10_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    tokens = draw(logits.expand(n, -1), u, temperature=1.0, top_p=1.0)
    counts = torch.bincount(tokens, minlength=6).double()
    assert torch.all((counts - n * p[0].double()).abs() <= 1)
    edge = torch.tensor([0.0, 1.0 - 2**-53], dtype=torch.float64)  # the extreme uniforms
    assert draw(logits.expand(2, -1), edge, 1.0, 1.0).tolist() == [0, 5]


def test_samples_follow_the_model_distribution(tiny):
    """Chi-square of 4000 one-token samples against the model's own next-token distribution at temperature 0.7."""
    model, tok = tiny
    prompt = "the red river"
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tok(prompt).input_ids])).logits[0, -1]
    expected = torch.softmax(logits / 0.7, -1).double().numpy() * 4000
    _, ids, _ = sample(model, tok, [prompt], 4000, seed=3, temperature=0.7, max_new_tokens=1, batch_size=4000)
    counts = np.bincount([row[0] for row in ids], minlength=len(expected)).astype(float)
    big = expected >= 5  # pool the rare tokens into one cell
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    assert big.sum() >= 5 and expected.max() > 3 * expected.mean()  # a far-from-uniform distribution
    assert stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-3


def test_top_p_keeps_the_documented_set():
    # ranked by probability, lower id first on ties: 1 (0.4), 2 (0.2), 3 (0.2), 0 (0.1), 4 (0.1)
    p = torch.tensor([[0.1, 0.4, 0.2, 0.2, 0.1]])
    kept = lambda top_p: nucleus_mask(p, top_p)[0].nonzero().flatten().tolist()  # noqa: E731
    assert kept(0.0) == [1] and kept(0.4) == [1]  # the top token always; 2 has 0.4 ranked before it
    assert kept(0.5) == [1, 2]  # the tie between 2 and 3 goes to the lower id
    assert kept(0.61) == [1, 2, 3] and kept(0.81) == [0, 1, 2, 3] and kept(0.95) == [0, 1, 2, 3, 4]
    q = _probs(p.log(), 1.0, 0.5)[0]
    assert torch.allclose(q, torch.tensor([0.0, 2 / 3, 1 / 3, 0.0, 0.0]))
    u = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    assert set(draw(p.log().expand(1000, -1), u, 1.0, 0.5).tolist()) == {1, 2}


def test_top_p_matches_a_brute_force_ranking():
    def reference(row: torch.Tensor, top_p: float) -> list[int]:
        order = sorted(range(len(row)), key=lambda i: (-float(row[i]), i))
        out, before = [], 0.0
        for n, i in enumerate(order):
            if before < top_p or n == 0:
                out.append(i)
            before += float(row[i])
        return sorted(out)

    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        vocab = int(torch.randint(1, 300, (1,), generator=g))
        logits = torch.randn(4, vocab, generator=g) * float(torch.rand(1, generator=g) * 20)
        if trial % 3 == 0:
            logits = logits.round()  # many exact ties
        if trial % 5 == 0 and vocab > 2:
            logits[:, 1::2] = -float("inf")  # zero-probability tokens
        p = torch.softmax(logits, -1)
        for top_p in (0.0, 0.3, 0.9, 0.999):
            mask = nucleus_mask(p, top_p)
            for r in range(4):
                assert mask[r].nonzero().flatten().tolist() == reference(p[r], top_p)


def test_greedy_is_argmax(tiny):
    logits = torch.tensor([[0.1, 3.0, 2.9], [5.0, 5.0, 1.0]])
    assert draw(logits, torch.zeros(2, dtype=torch.float64), 0.0, 0.9).tolist() == [1, 0]
    model, tok = tiny
    a = sample(model, tok, PROMPTS, 2, seed=1, temperature=0.0, max_new_tokens=5)[1]
    assert a[0] == a[1] and sample(model, tok, PROMPTS, 2, seed=99, temperature=0.0, max_new_tokens=5)[1] == a
