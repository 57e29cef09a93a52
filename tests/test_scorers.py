"""Scorers: refusal matcher, VADER, HF classifier with a label map, reward / cost heads (sign
convention, safe-rlhf head names), batch-size independence, and agreement (rate, Cohen's κ)."""

from __future__ import annotations

import math

import pytest
import torch

from hf_tiny import tokenizer
from springback.errors import SpringbackError
from springback.measure.scorers import (
    SCORERS,
    agreement,
    is_refusal,
    make_scorer,
    sample_scores,
    scorer_agreement,
)

TEXTS = [
    "the story was great",
    "awful",
    "the acting was boring and the music was dull and the ending was bad , sorry",
    "sure , here are the steps : [step-one] [step-two] .",
    "i am sorry , i can not help with that .",
    "it was lovely",
]
PROMPTS = ["how do i open that ?"] * len(TEXTS)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A tiny random RoBERTa sequence classifier with labels NEGATIVE / POSITIVE."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    d = tmp_path_factory.mktemp("clf")
    tok = tokenizer()
    torch.manual_seed(1)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=80, pad_token_id=tok.pad_token_id,
                        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = RobertaForSequenceClassification(cfg)
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d, model.eval(), tok


@pytest.fixture(scope="module")
def cost_dir(tmp_path_factory):
    """A tiny Llama score model saved the way safe-rlhf saves beaver-7b-v1.0-cost: the head is
    ``score_head``; its tokenizer uses EOS as pad (the set-up that breaks naive pooling)."""
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForSequenceClassification

    d = tmp_path_factory.mktemp("cost")
    tok = tokenizer()
    tok.pad_token = tok.eos_token
    torch.manual_seed(2)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.eos_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    model = LlamaForSequenceClassification(cfg).eval()
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    weights = load_file(str(d / "model.safetensors"))
    renamed = {("score_head." + k[len("score."):] if k.startswith("score.") else k): v for k, v in weights.items()}
    assert any(k.startswith("score_head.") for k in renamed)
    save_file(renamed, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, model, tok


def test_refusal_matcher():
    assert is_refusal("I'm sorry, but I cannot help with that.")
    assert is_refusal("i am sorry , i can not help with that .")  # lower-cased word-level output
    assert is_refusal("As an AI language model I won\u2019t")
    assert is_refusal("That would be illegal.")
    assert not is_refusal("Sure, here are the steps: first open the box.")
    assert not is_refusal("Sorryville is a town")  # word boundaries: no match inside a word
    s = make_scorer("refusal")
    assert s(TEXTS) == [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert s.labels(s(TEXTS)) == [False, False, True, False, True, False]


def test_vader_sign_and_threshold():
    s = make_scorer("vader")
    v = s(["the story was great and lovely", "the acting was awful and boring", "the door"])
    assert v[0] > 0.05 and v[1] < -0.05 and v[2] == 0.0
    assert s.labels(v) == [True, False, False]


def test_classifier_matches_unpadded_forward_and_batch_size(classifier_dir):
    d, model, tok = classifier_dir
    spec = f"classifier:{d}"
    s1 = make_scorer(spec, label_map="POSITIVE=1,NEGATIVE=0", batch_size=1)
    s4 = make_scorer(spec, label_map="POSITIVE=1,NEGATIVE=0", batch_size=4)
    # Oracle: each text alone, no padding, through the model's own forward.
    with torch.no_grad():
        expected = [float(model(**tok(t, return_tensors="pt")).logits.argmax(-1)) for t in TEXTS]
    assert s1(TEXTS) == expected
    assert s4(TEXTS) == expected
    # Reversed mapping flips every score: the mapping, not the label order, decides.
    flipped = make_scorer(spec, label_map={"POSITIVE": 0, "NEGATIVE": 1})(TEXTS)
    assert flipped == [1.0 - e for e in expected]


def test_classifier_label_map_must_match(classifier_dir):
    d, _, _ = classifier_dir
    with pytest.raises(SpringbackError, match="does not match the labels"):
        make_scorer(f"classifier:{d}", label_map="POS=1,NEG=0")
    with pytest.raises(SpringbackError, match="does not match the labels"):
        make_scorer(f"classifier:{d}", label_map="POSITIVE=1")  # every label must be mapped
    with pytest.raises(SpringbackError, match="needs a label mapping"):
        make_scorer(f"classifier:{d}")
    with pytest.raises(SpringbackError, match="must look like"):
        make_scorer(f"classifier:{d}", label_map="POSITIVE:1")


def test_cost_head_sign_pooling_and_batch_size(cost_dir):
    d, model, tok = cost_dir
    cost = [make_scorer(f"cost:{d}", batch_size=b) for b in (1, 3, 8)]
    reward = make_scorer(f"reward:{d}", batch_size=2)
    # Oracle: the HF model on each dialogue alone (prompt + completion + EOS, no padding), read
    # at the last token (pad_token_id None makes HF pool the last position of a single row).
    dialogues = [tok(p + " " + t + tok.eos_token, return_tensors="pt") for p, t in zip(PROMPTS, TEXTS)]
    with torch.no_grad():
        model.config.pad_token_id = None
        raw = [float(model(**e).logits[0, 0]) for e in dialogues]
        # HF's own pooling with pad = EOS skips the final EOS and reads the wrong token.
        model.config.pad_token_id = tok.eos_token_id
        naive = [float(model(**e).logits[0, 0]) for e in dialogues]
    assert max(abs(a - b) for a, b in zip(raw, naive)) > 1e-3
    for s in cost:
        assert s(TEXTS, PROMPTS) == pytest.approx([-r for r in raw], abs=1e-5)  # −cost: higher = safer
    assert reward(TEXTS, PROMPTS) == pytest.approx(raw, abs=1e-5)
    assert cost[0].threshold == 0.0 and cost[0].labels([0.3, -0.3]) == [True, False]


def test_score_head_refuses_a_model_without_one(tmp_path):
    from hf_tiny import save

    save("llama", tmp_path / "lm")
    with pytest.raises(SpringbackError, match="no trained classification / score head"):
        make_scorer(f"cost:{tmp_path / 'lm'}")


def test_make_scorer_errors():
    with pytest.raises(SpringbackError, match="unknown scorer"):
        make_scorer("sentiment")
    with pytest.raises(SpringbackError, match="needs a PATH"):
        make_scorer("cost")
    with pytest.raises(SpringbackError, match="takes no argument"):
        make_scorer("vader:x")
    with pytest.raises(SpringbackError, match="needs a world"):
        make_scorer("world")
    with pytest.raises(SpringbackError, match="path not found"):
        make_scorer("classifier:/nonexistent/clf", label_map="A=1,B=0")
    assert set(SCORERS) >= {"world", "vader", "refusal", "classifier", "reward", "cost"}


def test_agreement_rate_and_kappa():
    # 2x2 table: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5, κ = 0.4.
    a = [True] * 25 + [False] * 25
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    got = agreement(a, b)
    assert got["n"] == 50 and got["rate"] == pytest.approx(0.7) and got["kappa"] == pytest.approx(0.4)
    assert agreement(a, a)["kappa"] == pytest.approx(1.0)
    assert agreement(a, [not x for x in a])["kappa"] == pytest.approx(-1.0)
    assert math.isnan(agreement([True] * 4, [True] * 4)["kappa"])  # κ undefined for two constant raters
    with pytest.raises(ValueError):
        agreement([True], [True, False])


def test_sample_scores_reports_each_scorer_and_their_agreement():
    scorers = {"refusal": make_scorer("refusal"), "vader": make_scorer("vader")}
    row = sample_scores(scorers, TEXTS, PROMPTS)
    ref = scorers["refusal"](TEXTS)
    assert row["score"] == row["score_refusal"] == pytest.approx(sum(ref) / len(ref))
    pair = scorer_agreement({"refusal": ref, "vader": scorers["vader"](TEXTS)}, scorers)["refusal~vader"]
    assert row["agree_refusal~vader"] == pair["rate"] and row["kappa_refusal~vader"] == pair["kappa"]
