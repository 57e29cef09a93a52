"""KL(model ‖ reference) on evaluation prompts.

Sequence-level KL estimated from samples y ~ model: for each sample the exact per-step KL
between the two next-token distributions is summed over the sampled positions. This is the
Rao–Blackwellised form of E_y[log p(y) − log q(y)]: unbiased, never negative, lower variance.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..teacher import next_token_logprobs


@torch.no_grad()
def sequence_kl(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    completion_ids: Sequence[Sequence[int]],
    prompt_index: Sequence[int],
    batch_size: int = 128,
    chat_template: str = "none",
) -> torch.Tensor:
    """Per-sample KL in nats, summed over completion positions. Returns [len(completion_ids)].

    Prompts are encoded as the sampler encodes them (:meth:`springback.tokens.Encoder.encode_prompts`
    with the same ``chat_template``), so the completion ids continue exactly those prompt ids."""
    from ..tokens import Encoder

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prompt_ids = Encoder(tokenizer, chat_template, None).encode_prompts(list(prompts))
    out = torch.empty(len(completion_ids), dtype=torch.float64)
    for start in range(0, len(completion_ids), batch_size):
        rows = range(start, min(start + batch_size, len(completion_ids)))
        seqs, spans = [], []
        for r in rows:
            p = prompt_ids[prompt_index[r]]
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
        lp = next_token_logprobs(model, ids, attn)  # [B, T, V]
        lq = next_token_logprobs(reference, ids, attn)
        kl_pos = (lp.exp() * (lp - lq)).sum(-1)  # [B, T]: KL of next-token distributions at each position
        for i, (plen, clen) in enumerate(spans):
            # positions plen-1 .. plen+clen-2 predict the completion tokens
            out[start + i] = kl_pos[i, plen - 1 : plen - 1 + clen].sum().double().cpu()
    return out
