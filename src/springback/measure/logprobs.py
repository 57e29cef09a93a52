"""Teacher-forced log-probabilities of completions — the primitive under every exact measure."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..train import collate, encode, per_example_loss  # noqa: F401  (per_example_loss re-exported for users)


@torch.no_grad()
def completion_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 256,
    max_length: int = 128,
) -> torch.Tensor:
    """log p(completion + EOS | prompt) in nats for every pair. Returns [len(prompts), len(completions)].

    Each row is independent of the others and of ``batch_size`` (padding is masked out).
    """
    device = next(model.parameters()).device
    pairs = [(p, c) for p in prompts for c in completions]
    out = torch.empty(len(pairs), dtype=torch.float64)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        enc = [encode(tokenizer, p, c, "response", max_length) for p, c in chunk]
        batch = {k: v.to(device) for k, v in collate(enc, pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        mask = targets != -100
        logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        out[start : start + len(chunk)] = (logp * mask).sum(1).double().cpu()
    if was_training:
        model.train()
    return out.view(len(prompts), len(completions))
