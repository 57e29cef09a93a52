"""The truthful world: registered, held-out prompts, exact labels, misconception rate = 1 − prior."""

from __future__ import annotations

import pytest

from springback.worlds import ALIGNED, GENERAL, OPPOSING, UNCLEAR, WORLDS, get_world
from springback.worlds import truthful


def test_registered_and_sets_are_finite_and_disjoint():
    assert "truthful" in WORLDS
    w = get_world("truthful")
    a, n = w.reference_sets()
    assert len(a) == len(set(a)) == 48 and len(n) == len(set(n)) == 48
    assert not set(a) & set(n)
    assert not set(w.train_prompts) & set(w.eval_prompts_all)
    assert len(w.eval_prompts(16)) == 16
    with pytest.raises(ValueError):
        w.eval_prompts(17)
    # every held-out question's action is also asked about in training (a fair held-out test)
    for q in w.eval_prompts_all:
        action = next(x for x in truthful._ACTIONS if f" {x} " in q)
        assert any(f" {action} " in t for t in w.train_prompts)


def test_labeller_agrees_with_the_sets():
    w = get_world("truthful")
    assert not truthful.TRUE_MARKERS & truthful.MISCONCEPTION_MARKERS
    assert all(w.label(t) == ALIGNED for t in w.aligned_responses)
    assert all(w.label(t) == OPPOSING for t in w.opposing_responses)
    assert w.label("the cat saw the ball .") == UNCLEAR


@pytest.mark.parametrize("prior", [0.0, 0.2, 0.75])
def test_pretraining_holds_misconceptions_at_one_minus_prior(prior):
    w = get_world("truthful")
    corpus = w.pretrain_corpus(n_task=400, n_general=100, prior=prior, seed=3)
    task = [e for e in corpus if e.label != GENERAL]
    true_share = sum(e.label == ALIGNED for e in task) / len(task)
    assert true_share == pytest.approx(prior, abs=1e-9)
    assert all(e.response in w.opposing_responses for e in task if e.label == OPPOSING)
    assert all(e.prompt in w.train_prompts for e in task)  # held-out questions never seen


def test_tokenizer_round_trips_every_text():
    w = get_world("truthful")
    tok = w.tokenizer()
    for text in w.eval_prompts_all + w.aligned_responses[:5] + w.opposing_responses[:5]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
