"""Sampling completions with the KV cache, reproducibly."""

from __future__ import annotations

from typing import Any, Sequence

import torch


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n_per_prompt: int,
    *,
    seed: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 20,
    batch_size: int = 64,
) -> tuple[list[str], list[list[int]], list[int]]:
    """``n_per_prompt`` completions for each prompt (prompt-major order).

    Returns (texts, completion token ids up to and including EOS, prompt index of each).
    Sampling is seeded per call, so the same model and seed give the same samples.
    """
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = tokenizer.eos_token_id
    jobs = [i for i in range(len(prompts)) for _ in range(n_per_prompt)]
    texts: list[str] = []
    ids_out: list[list[int]] = []
    gen = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        enc = [tokenizer(prompts[i]).input_ids for i in chunk]
        width = max(len(e) for e in enc)
        # Left padding so every row's next token comes right after its prompt.
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(input_ids)
        for r, e in enumerate(enc):
            input_ids[r, width - len(e) :] = torch.tensor(e)
            attn[r, width - len(e) :] = 1
        input_ids, attn = input_ids.to(device), attn.to(device)
        new = _sample_loop(model, input_ids, attn, gen, temperature, top_p, max_new_tokens, eos_id)
        for row in new.tolist():
            if eos_id in row:
                row = row[: row.index(eos_id) + 1]
            ids_out.append(row)
            texts.append(tokenizer.decode([t for t in row if t != eos_id], skip_special_tokens=True).strip())
    if was_training:
        model.train()
    return texts, ids_out, jobs


def _sample_loop(model, input_ids, attn, gen, temperature, top_p, max_new_tokens, eos_id) -> torch.Tensor:
    """Ancestral sampling with a KV cache; the random draws come from ``gen`` on the CPU
    so results do not depend on the device. Returns new tokens [B, max_new_tokens]."""
    from transformers import DynamicCache

    b = input_ids.size(0)
    position_ids = (attn.cumsum(-1) - 1).clamp_min(0)
    cache = DynamicCache()
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids, past_key_values=cache, use_cache=True)
    cache = out.past_key_values
    logits = out.logits[:, -1]
    finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
    tokens = []
    next_pos = position_ids[:, -1:] + 1
    for _ in range(max_new_tokens):
        probs = _probs(logits.float(), temperature, top_p)  # [B, V]
        nxt = torch.multinomial(probs.cpu(), 1, generator=gen).to(input_ids.device).squeeze(1)
        if eos_id is not None:
            nxt = torch.where(finished, torch.full_like(nxt, eos_id), nxt)
            finished |= nxt == eos_id
        tokens.append(nxt)
        if bool(finished.all()):
            break
        attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype, device=attn.device)], 1)
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=next_pos, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits = out.logits[:, -1]
        next_pos = next_pos + 1
    new = torch.stack(tokens, 1)
    if new.size(1) < max_new_tokens and eos_id is not None:
        pad = torch.full((b, max_new_tokens - new.size(1)), eos_id, dtype=new.dtype, device=new.device)
        new = torch.cat([new, pad], 1)
    return new


def _probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    if temperature <= 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).float()
    probs = torch.softmax(logits / temperature, -1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # always keeps the top token
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs
