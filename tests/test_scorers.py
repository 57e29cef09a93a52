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


def safe_rlhf_score_model(d, score_type: str, bias: bool, do_normalize: bool, seed: int = 2):
    """A tiny score model saved in safe-rlhf's own published layout (PKU-Alignment/safe-rlhf,
    ``safe_rlhf/models/score_model``; e.g. beaver-7b-v1.0-cost): ``config.json`` with architecture
    ``LlamaForScore`` and the score fields (``score_dim``, ``bias``, ``score_type``, ``do_normalize``,
    ``normalizer_type``, ``momentum``, ``mean``, ``var``), weights ``model.*`` (a LlamaModel) and
    ``score_head.weight`` (+ ``score_head.bias``), no LM head; the tokenizer pads with EOS (the
    set-up that breaks naive "last non-pad token" pooling). Returns (dir, backbone, head, tok)."""
    import json

    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaModel

    tok = tokenizer()
    tok.pad_token = tok.eos_token
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.eos_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    backbone = LlamaModel(cfg).eval()
    head = torch.nn.Linear(16, 1, bias=bias)
    weights = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    weights["score_head.weight"] = head.weight.detach().clone()
    if bias:
        weights["score_head.bias"] = head.bias.detach().clone()
    d.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(d / "model.safetensors"), metadata={"format": "pt"})
    config = {**cfg.to_diff_dict(), "architectures": ["LlamaForScore"], "model_type": "llama", "score_dim": 1,
              "bias": bias, "score_type": score_type, "do_normalize": do_normalize,
              "normalizer_type": "ExponentialMovingAverage" if do_normalize else None, "momentum": 0.9,
              "mean": [0.7], "var": [4.0]}
    (d / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(str(d))
    return d, backbone, head, tok


def _safe_rlhf_end_scores(backbone, head, tok, texts, score_type, do_normalize):
    """Oracle: safe-rlhf's score on each dialogue alone (prompt, space, completion, EOS): the head on
    the last hidden state of the sequence, normalised by the config's statistics when do_normalize
    (affine for reward, scale for cost)."""
    out = []
    with torch.no_grad():
        for t in texts:
            e = tok(t + tok.eos_token, return_tensors="pt")
            h = backbone(**e).last_hidden_state[0, -1]
            v = float(head(h))
            if do_normalize:
                v = (v - 0.7) / (2.0 + 1e-8) if score_type == "reward" else v / (2.0 + 1e-8)
            out.append(v)
    return out


@pytest.fixture(scope="module")
def cost_dir(tmp_path_factory):
    d, backbone, head, tok = safe_rlhf_score_model(tmp_path_factory.mktemp("cost") / "m", "cost", bias=False,
                                                   do_normalize=False)
    return d, backbone, head, tok


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
    d, backbone, head, tok = cost_dir
    cost = [make_scorer(f"cost:{d}", batch_size=b) for b in (1, 3, 8)]
    raw = _safe_rlhf_end_scores(backbone, head, tok, [p + " " + t for p, t in zip(PROMPTS, TEXTS)], "cost", False)
    for s in cost:
        assert s(TEXTS, PROMPTS) == pytest.approx([-r for r in raw], abs=1e-5)  # −cost: higher = safer
    assert cost[0].threshold == 0.0 and cost[0].labels([0.3, -0.3]) == [True, False]


@pytest.mark.parametrize("score_type,bias,do_normalize", [("reward", True, True), ("cost", True, True),
                                                          ("reward", False, False)])
def test_safe_rlhf_score_models_in_their_published_layout(tmp_path, score_type, bias, do_normalize):
    """The loader reads safe-rlhf's own format: the score_head name, its optional bias and the
    config's normalisation (affine for reward, scale for cost), at the last attended token."""
    d, backbone, head, tok = safe_rlhf_score_model(tmp_path / "m", score_type, bias, do_normalize, seed=5)
    scorer = make_scorer(f"{score_type}:{d}", batch_size=3)
    raw = _safe_rlhf_end_scores(backbone, head, tok, [p + " " + t for p, t in zip(PROMPTS, TEXTS)], score_type,
                                do_normalize)
    sign = -1.0 if score_type == "cost" else 1.0
    assert scorer(TEXTS, PROMPTS) == pytest.approx([sign * r for r in raw], abs=1e-5)
    # A model whose weights are not a score model's (extra tensors) is refused in one line.
    from safetensors.torch import load_file, save_file

    w = load_file(str(d / "model.safetensors"))
    w["value_head.weight"] = torch.zeros(1, 16)
    save_file(w, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SpringbackError, match="does not use"):
        make_scorer(f"{score_type}:{d}")


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
