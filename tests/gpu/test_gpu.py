"""GPU tier: bf16 training, LoRA, generation and scorers on CUDA. Skipped without a GPU.

Run on a GPU machine with ``pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/hf_tiny.py

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from hf_tiny import save

    return save("llama", tmp_path_factory.mktemp("gpu") / "llama", seed=11, hidden=64, layers=2)


def _examples(tmp_path, n=32):
    from hf_tiny import imdb_rows, write
    from springback.data import load_examples

    return load_examples(str(write(imdb_rows(n), tmp_path / "r.jsonl")), "imdb", prefix_words=4)


@pytest.mark.parametrize("lora_r", [0, 4])
def test_bf16_training_step_on_cuda(model_dir, tmp_path, lora_r):
    from springback import runtime
    from springback.config import ModelConfig, TrainConfig
    from springback.experiments.common import finetune
    from springback.models import load_model

    assert runtime.device().type == "cuda"
    model, tok = load_model(str(model_dir), dtype="bfloat16")
    model.to(runtime.device())
    before = [p.detach().clone() for p in model.parameters()]
    result = finetune(model, tok, _examples(tmp_path), TrainConfig(lr=1e-3, batch_size=8),
                      ModelConfig(lora_r=lora_r, gradient_checkpointing=True), seed=0, progress=False)
    assert all(torch.isfinite(torch.tensor(result.loss)))
    assert next(model.parameters()).dtype == torch.bfloat16 and next(model.parameters()).is_cuda
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_cuda_greedy_generation_equals_cpu(model_dir):
    from springback.measure.sampling import sample
    from springback.models import load_model

    prompts = ["review of the red river :", "the", "review of the last winter : the story was great"]
    cpu, tok = load_model(str(model_dir))
    gpu, _ = load_model(str(model_dir))
    gpu.to("cuda")
    _, ids_cpu, _ = sample(cpu, tok, prompts, 2, seed=0, temperature=0.0, max_new_tokens=12)
    _, ids_gpu, _ = sample(gpu, tok, prompts, 2, seed=0, temperature=0.0, max_new_tokens=12)
    assert ids_cpu == ids_gpu
    # Seeded sampling draws on the CPU generator, so temperature-1 samples match across devices too.
    _, s_cpu, _ = sample(cpu, tok, prompts, 2, seed=3, temperature=1.0, max_new_tokens=12)
    _, s_gpu, _ = sample(gpu, tok, prompts, 2, seed=3, temperature=1.0, max_new_tokens=12)
    agree = sum(a == b for a, b in zip(s_cpu, s_gpu)) / len(s_cpu)
    assert agree >= 0.5  # float differences may flip a rare near-tie draw


def test_score_head_batch_independent_on_cuda(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from hf_tiny import tokenizer
    from springback.measure.scorers import make_scorer

    tok = tokenizer()
    torch.manual_seed(0)
    m = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id))
    m.save_pretrained(str(tmp_path / "rm"))
    tok.save_pretrained(str(tmp_path / "rm"))
    texts = ["the story was great", "awful", "i am sorry , i can not help with that .", "sure"]
    one = make_scorer(f"reward:{tmp_path / 'rm'}", batch_size=1)(texts)
    four = make_scorer(f"reward:{tmp_path / 'rm'}", batch_size=4)(texts)
    assert one == pytest.approx(four, abs=1e-4)
