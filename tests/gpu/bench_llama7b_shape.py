"""Throughput of springback's own loop, sampler and teacher-forcing on a GPU, for a randomly
initialised model with Llama-2-7B's shape (no download: the hub need not be reachable).

    python tests/gpu/bench_llama7b_shape.py [--shape 7b|1b] [--lora-r 16] [--batch-size 16]

Prints one JSON line: examples/s for fine-tuning (bf16, optional LoRA, gradient
checkpointing), new tokens/s for batched KV-cache sampling, sequences/s for teacher-forced
log-probabilities, and the peak GPU memory. Used to plan the paper-scale rebound run
(docs/multi_gpu.md). Weights are random, so only speed and memory mean anything.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Llama-2-7B [Touvron et al. 2023, Table 1 / its config.json]; a TinyLlama-1.1B-like shape for comparison.
SHAPES = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4),
}
CUDA = torch.cuda.is_available()


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if CUDA else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="7b", choices=list(SHAPES))  # tiny: a CPU smoke test
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=96)
    ap.add_argument("--n-sample-prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, LlamaConfig

    from hf_tiny import review, vocabulary
    from springback import runtime
    from springback.config import ModelConfig, TrainConfig
    from springback.experiments.common import finetune
    from springback.measure.logprobs import completion_logprobs
    from springback.measure.sampling import sample
    from springback.worlds.base import Example, build_word_tokenizer

    words = vocabulary()
    tok = build_word_tokenizer(words + [f"w{i}" for i in range(32000 - len(words))])  # Llama-2's vocabulary size
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SHAPES[args.shape])
    dev = runtime.device()
    t0 = time.perf_counter()
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    init_s = time.perf_counter() - t0

    rng = random.Random(0)
    # IMDb-like lengths: an 8-word prefix and a ~48-word continuation [data.prefix_words / max_words defaults].
    def long_review() -> str:
        return " ".join(review(rng, rng.random() < 0.5) for _ in range(4))

    examples = []
    for _ in range(args.n_train):
        w = long_review().split()
        examples.append(Example(" ".join(w[:8]), " " + " ".join(w[8:56]), "aligned"))
    train_cfg = TrainConfig(lr=1e-5, batch_size=args.batch_size, max_length=128)
    model_cfg = ModelConfig(lora_r=args.lora_r, gradient_checkpointing=True, dtype="bfloat16")
    finetune(model, tok, examples[: args.batch_size], train_cfg, model_cfg, seed=0, progress=False)  # warm-up
    _sync()
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = finetune(model, tok, examples, train_cfg, model_cfg, seed=1, progress=False)
    _sync()
    train_s = time.perf_counter() - t0
    train_peak = _peak_gib()

    prompts = [" ".join(long_review().split()[:8]) for _ in range(args.n_sample_prompts)]
    sample(model, tok, prompts[:4], 1, seed=0, max_new_tokens=4)  # warm-up
    _sync()
    t0 = time.perf_counter()
    texts, ids, _ = sample(model, tok, prompts, 1, seed=0, max_new_tokens=args.max_new_tokens, batch_size=64)
    _sync()
    sample_s = time.perf_counter() - t0
    new_tokens = sum(len(i) for i in ids)

    comps = [" " + " ".join(long_review().split()[8:56]) for _ in range(32)]
    t0 = time.perf_counter()
    lp = completion_logprobs(model, tok, prompts[:16], comps, batch_size=64)
    _sync()
    logprob_s = time.perf_counter() - t0
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(0) if CUDA else "cpu", "shape": args.shape, "parameters": n_params, "init_s": round(init_s, 1),
        "lora_r": args.lora_r, "batch_size": args.batch_size, "tokens_per_example": 8 + 48 + 2,
        "train_examples_per_s": round(args.n_train / train_s, 2), "train_final_loss": round(res.final_loss, 3),
        "train_peak_gib": round(train_peak, 1),
        "sample_new_tokens_per_s": round(new_tokens / sample_s, 1), "sample_sequences": len(ids),
        "logprob_sequences_per_s": round(lp.numel() / logprob_s, 1),
        "peak_gib": round(_peak_gib(), 1),
    }))


if __name__ == "__main__":
    main()
