"""Sampling steps per second at a real vocabulary (V = 32000): the old sampler against the new, in one run.

    python bench/sample_throughput.py [--vocab 32000] [--batch-size 64] [--steps 24]

A one-layer, width-16 Llama with a V-word vocabulary keeps the model's own cost small, so
the numbers are the sampler's. "old" is ``SAMPLER_VERSION`` 1's token choice, reproduced here
(full-vocabulary sort for top-p, probabilities moved to the CPU, ``torch.multinomial`` from
one generator); "new" is :func:`springback.measure.sampling.draw`. Both run inside the same
:func:`~springback.measure.sampling.sample` loop. Threads follow SPRINGBACK_NUM_THREADS; rates are
per CPU second.
"""

from __future__ import annotations

import argparse
import time

import torch

import springback.measure.sampling as sampling
from springback.runtime import configure_determinism
from springback.worlds.base import SPECIAL_TOKENS, build_word_tokenizer


def old_draw(gen: torch.Generator):
    """SAMPLER_VERSION 1's step (measure/sampling.py before this change), for comparison only."""

    def step(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
        if temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / temperature, -1)
        if top_p < 1.0:
            sorted_p, idx = probs.sort(-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)
            probs = probs / probs.sum(-1, keepdim=True)
        return torch.multinomial(probs.cpu(), 1, generator=gen).to(logits.device).squeeze(1)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=24, help="new tokens per completion")
    args = ap.parse_args()
    configure_determinism()
    from transformers import AutoModelForCausalLM, LlamaConfig

    words = [f"w{i}" for i in range(args.vocab - len(SPECIAL_TOKENS))]
    tok = build_word_tokenizer(SPECIAL_TOKENS + words)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(30.0)  # spread the logits like a trained model's (std ≈ 3)
    prompts = [" ".join(words[(7 * i + j) % len(words)] for j in range(5)) for i in range(args.batch_size)]
    print(f"V = {len(tok)}, batch {args.batch_size}, {args.steps} steps, torch threads {torch.get_num_threads()}")
    new_draw = sampling.draw
    for temperature, top_p in ((1.0, 1.0), (1.0, 0.95), (0.05, 0.95)):
        rates = {}
        for name, fn in (("old", old_draw(torch.Generator().manual_seed(0))), ("new", new_draw)):
            sampling.draw = fn
            try:
                kw = dict(seed=0, temperature=temperature, top_p=top_p, max_new_tokens=args.steps, batch_size=args.batch_size)
                sampling.sample(model, tok, prompts[:2], 1, **kw)  # warm-up
                t0 = time.process_time()  # CPU time: steadier than wall time on shared cores
                _, ids, _ = sampling.sample(model, tok, prompts, 1, **kw)
                rates[name] = args.steps / (time.process_time() - t0)
            finally:
                sampling.draw = new_draw
        print(f"temperature {temperature:<5} top-p {top_p:<5} old {rates['old']:7.1f} steps/s   new {rates['new']:7.1f} "
              f"steps/s   new/old {rates['new'] / rates['old']:.1f}x")


if __name__ == "__main__":
    main()
