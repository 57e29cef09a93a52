"""Teacher-forced log-probabilities of completions — the primitive under every exact measure."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import SpringbackError
from ..teacher import sequence_logprobs
from ..tokens import Encoder, collate, pad_id


class TokenizedPairs:
    """Every (prompt, completion) pair, tokenised and batched once.

    Build it once and call :meth:`logprobs` at every checkpoint of a run: tokenising is a
    large share of a tiny model's measurement cost, and the pairs never change.
    """

    def __init__(self, tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
                 batch_size: int = 256, max_length: int = 128, chat_template: str = "none"):
        self.n_prompts, self.n_completions = len(prompts), len(completions)
        pairs = [(p, c) for p in prompts for c in completions]
        # A prompt that does not fit is cut from the left (the completion is conditioned on its end);
        # a completion that does not fit cannot be scored exactly: that is an error, never a silent cut.
        encoder = Encoder(tokenizer, chat_template, max_length, "left")
        encoded, report = encoder.encode_all(pairs)
        if report.n_response_cut:
            longest = max(len(encoder.encode("", c).input_ids) for c in completions)
            raise SpringbackError(f"{report.n_response_cut} scored completions do not fit in measure.max_length="
                                  f"{max_length} tokens (the longest has {longest}): raise measure.max_length")
        self.report = report
        pad = pad_id(tokenizer)
        self.batches = [collate(encoded[i : i + batch_size], pad) for i in range(0, len(pairs), batch_size)]

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
    chat_template: str = "none",
) -> torch.Tensor:
    """log p(completion + EOS | prompt) in nats for every pair. Returns [len(prompts), len(completions)]."""
    return TokenizedPairs(tokenizer, prompts, completions, batch_size, max_length, chat_template).logprobs(model)
