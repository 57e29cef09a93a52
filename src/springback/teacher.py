"""Teacher forcing: the one place a model's next-token probabilities are computed from ids.

Training loss, exact alignment scores, code lengths, KL and the arithmetic coder all read
the model through these functions, so they agree to the last bit on the same ids:

* :func:`logits` — one forward pass, float32 logits. [B, T, V]
* :func:`next_token_logprobs` — log-softmax of those logits: the full next-token
  distribution at every position (KL, code lengths, the coder). [B, T, V]
* :func:`token_nll` — −log p of each labelled next token (0 where the label is IGNORE). [B, T−1]
* :func:`token_logprobs` — log p of each labelled next token at a sampling temperature, with
  its mask (the preference and RL objectives sum these per completion). [B, T−1]
* :func:`per_example_loss` — mean NLL over each example's labelled tokens (the training loss). [B]
* :func:`sequence_logprobs` — Σ log p over each example's labelled tokens, in nats. [B]

``token_nll`` uses ``cross_entropy(reduction="none")``, which is exactly ``−log_softmax``
gathered at the target (it computes one, then the other), so a sequence's summed log-prob
equals minus its summed training NLL bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch

from .tokens import IGNORE


def logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Float32 next-token logits at every position. [B, T, V]

    ``use_cache=False``: a teacher-forced pass never reuses keys and values, and building the
    cache cost ~7% of a tiny model's training step (same logits, bit for bit)."""
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits.float()


def next_token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(· | prefix up to t) at every position t, float32. [B, T, V]"""
    return torch.log_softmax(logits(model, input_ids, attention_mask), dim=-1)


def token_nll(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(−log p of each labelled next token [B, T−1] (0 where IGNORE), mask [B, T−1]).

    ``batch`` holds ``input_ids``, ``attention_mask`` and ``labels`` (as :func:`springback.tokens.collate`
    makes them); position t's logits predict label t + 1.
    """
    z = logits(model, batch["input_ids"], batch["attention_mask"])[:, :-1]  # [B, T-1, V]
    targets = batch["labels"][:, 1:]  # [B, T-1]
    mask = targets != IGNORE
    nll = torch.nn.functional.cross_entropy(
        z.reshape(-1, z.size(-1)), targets.clamp_min(0).reshape(-1), reduction="none"
    ).view(targets.shape)
    return nll * mask, mask


def token_logprobs(model: Any, batch: dict[str, torch.Tensor], temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each labelled next token [B, T−1] (0 where IGNORE), mask [B, T−1]) under the
    model's distribution at ``temperature`` (softmax of logits / temperature, as a sampler draws).

    At temperature 1 this is exactly −:func:`token_nll`, so a preference objective's summed
    log-prob of a completion equals minus its summed SFT loss bit for bit."""
    if temperature == 1.0:
        nll, mask = token_nll(model, batch)
        return -nll, mask
    z = logits(model, batch["input_ids"], batch["attention_mask"])[:, :-1] / temperature  # [B, T-1, V]
    targets = batch["labels"][:, 1:]  # [B, T-1]
    mask = targets != IGNORE
    logp = torch.log_softmax(z, dim=-1).gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)
    return logp * mask, mask


def per_example_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over each example's labelled tokens, nats per token. [B]"""
    nll, mask = token_nll(model, batch)
    return nll.sum(1) / mask.sum(1).clamp_min(1)


def sequence_logprobs(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(labelled tokens | their prefixes), summed per example, in nats; float64. [B]

    Summed in float32 (as the loss is), then widened: rows are independent of each other and
    of the batch size, since padding is masked out."""
    nll, _ = token_nll(model, batch)
    return (-nll).sum(1).double()
