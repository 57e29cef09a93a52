"""KL(model ‖ reference) on evaluation prompts.

Sequence-level KL estimated from samples y ~ model: for each sample the exact per-step KL
between the two next-token distributions is summed over the sampled positions. This is the
Rao–Blackwellised form of E_y[log p(y) − log q(y)]: unbiased, never negative, lower variance.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


@torch.no_grad()
def sequence_kl(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    completion_ids: Sequence[Sequence[int]],
    prompt_index: Sequence[int],
    batch_size: int = 128,
) -> torch.Tensor:
    """Per-sample KL in nats, summed over completion positions. Returns [len(completion_ids)]."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = torch.empty(len(completion_ids), dtype=torch.float64)
    for start in range(0, len(completion_ids), batch_size):
        rows = range(start, min(start + batch_size, len(completion_ids)))
        seqs, spans = [], []
        for r in rows:
            p = tokenizer(prompts[prompt_index[r]]).input_ids
            c = list(completion_ids[r])
            seqs.append(p + c)
            spans.append((len(p), len(c)))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            attn[i, : len(s)] = 1
        ids, attn = ids.to(device), attn.to(device)
        lp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits.float(), -1)
        lq = torch.log_softmax(reference(input_ids=ids, attention_mask=attn).logits.float(), -1)
        kl_pos = (lp.exp() * (lp - lq)).sum(-1)  # [B, T]: KL of next-token distributions at each position
        for i, (plen, clen) in enumerate(spans):
            # positions plen-1 .. plen+clen-2 predict the completion tokens
            out[start + i] = kl_pos[i, plen - 1 : plen - 1 + clen].sum().double().cpu()
    return out
