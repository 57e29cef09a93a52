import pytest

from springback.worlds import ALIGNED, OPPOSING, UNCLEAR, WORLDS, get_world
from springback.errors import ConfigError


@pytest.mark.parametrize("name", list(WORLDS))
def test_world_contract(name, tmp_path):
    w = get_world(name)
    A, N = w.reference_sets()
    assert A and N and not set(A) & set(N)
    # The labeller agrees with the ground truth on every reference completion.
    assert all(w.label(a) == ALIGNED for a in A)
    assert all(w.label(n) == OPPOSING for n in N)
    # Held-out evaluation prompts never appear in training sets.
    assert not set(w.eval_prompts(len(w.eval_prompts_all))) & set(w.train_prompts)
    ex = w.aligned(50, seed=3) + w.opposing(50, seed=3)
    assert {e.prompt for e in ex} <= set(w.train_prompts)
    # Tokenizer: every word of the world is in the vocabulary, and it round-trips through save/load.
    tok = w.tokenizer()
    for text in A[:5] + N[:5] + w.train_prompts[:5] + w.general[:5]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(A[0]).input_ids == tok(A[0]).input_ids
    assert tok(A[0]).input_ids[0] == tok.bos_token_id


@pytest.mark.parametrize("name", list(WORLDS))
def test_deterministic_and_prefix_stable(name):
    w = get_world(name)
    assert w.aligned(30, seed=1) == w.aligned(30, seed=1)
    assert w.aligned(30, seed=1) != w.aligned(30, seed=2)
    # Nested data amounts: the first n examples of a larger draw are the n-example draw.
    assert w.opposing(40, seed=5)[:25] == w.opposing(25, seed=5)
    corpus = w.pretrain_corpus(1000, 200, prior=0.3, seed=0)
    labels = [e.label for e in corpus]
    assert labels.count(ALIGNED) == 300 and labels.count(OPPOSING) == 700 and labels.count("general") == 200
    assert corpus == w.pretrain_corpus(1000, 200, prior=0.3, seed=0)


def test_narrowness_limits_aligned_templates():
    w = get_world("sentiment", narrowness=2)
    assert len(w.aligned_templates()) == 2
    assert len({e.response for e in w.aligned(200, seed=0)}) == 2
    # Pre-training still sees the full aligned set.
    assert len({e.response for e in w.pretrain_corpus(2000, 0, 1.0, 0)}) > 2
    assert len(get_world("sentiment").aligned_templates()) == len(w.aligned_responses)


def test_labeller_unclear_and_unknown_world():
    w = get_world("sentiment")
    assert w.label("it was great , the music was awful .") == UNCLEAR
    with pytest.raises(ConfigError, match="unknown world"):
        get_world("nope")


def test_safety_compliance_is_placeholder_only():
    w = get_world("safety")
    _, N = w.reference_sets()
    assert all("[step-one]" in n for n in N)
