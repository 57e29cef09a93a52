"""Teacher-forced log-probabilities of completions — the primitive under every exact measure."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..teacher import sequence_logprobs
from ..tokens import collate, encode, pad_id


class TokenizedPairs:
    """Every (prompt, completion) pair, tokenised and batched once.

    Build it once and call :meth:`logprobs` at every checkpoint of a run: tokenising is a
    large share of a tiny model's measurement cost, and the pairs never change.
    """

    def __init__(self, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
                 batch_size: int = 256, max_length: int = 128):
        self.n_prompts, self.n_completions = len(prompts), len(completions)
        pairs = [(p, c) for p in prompts for c in completions]
        pad = pad_id(tokenizer)
        self.batches = [
            collate([encode(tokenizer, p, c, "response", max_length) for p, c in pairs[i : i + batch_size]], pad)
            for i in range(0, len(pairs), batch_size)
        ]

    @torch.no_grad()
    def logprobs(self, model: torch.nn.Module) -> torch.Tensor:
        """log p(completion + EOS | prompt) in nats. [P, C]

        Each row is independent of the others and of the batch size (padding is masked out).
        """
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out = []
        for cpu_batch in self.batches:
            batch = {k: v.to(device) for k, v in cpu_batch.items()}
            out.append(sequence_logprobs(model, batch).cpu())
        if was_training:
            model.train()
        return torch.cat(out).view(self.n_prompts, self.n_completions)


def completion_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 256,
    max_length: int = 128,
) -> torch.Tensor:
    """log p(completion + EOS | prompt) in nats for every pair. Returns [len(prompts), len(completions)]."""
    return TokenizedPairs(tokenizer, prompts, completions, batch_size, max_length).logprobs(model)
