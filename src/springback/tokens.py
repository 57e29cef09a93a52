"""Text → token ids: how a (prompt, response) example becomes the ids a model sees.

Every path that feeds a model — training, exact scores, code lengths, KL, sampling — encodes
through this module, so training and measurement see exactly the same ids.

* :func:`encode` gives an example's ids and which of them carry loss (the response and EOS;
  with ``loss_on="all"`` every token after the first).
* :func:`collate` right-pads a batch into ``input_ids`` / ``attention_mask`` / ``labels``
  tensors, with :data:`IGNORE` where no loss is taken.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

IGNORE = -100  # label of positions that carry no loss (PyTorch's cross-entropy default)


@dataclasses.dataclass
class Encoded:
    """A tokenised example: ``input_ids`` and a per-token loss mask (True = learned)."""

    input_ids: list[int]
    loss_mask: list[bool]


def encode(tokenizer: Any, prompt: str, response: str, loss_on: str = "response", max_length: int = 64) -> Encoded:
    """Token ids of ``prompt`` + ``response`` + EOS and which tokens carry loss.

    ``loss_on="response"`` learns the response and EOS only; ``"all"`` learns every token
    after the first (pre-training on plain text).
    """
    if loss_on not in ("response", "all"):
        raise ValueError(f"loss_on must be 'response' or 'all', got {loss_on!r}")
    prompt_ids = tokenizer(prompt).input_ids if prompt else tokenizer("").input_ids
    resp_ids = tokenizer(response, add_special_tokens=False).input_ids if response else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = list(prompt_ids) + list(resp_ids) + eos
    if loss_on == "response":
        mask = [False] * len(prompt_ids) + [True] * (len(resp_ids) + len(eos))
    else:
        mask = [False] + [True] * (len(ids) - 1)
    ids, mask = ids[:max_length], mask[:max_length]
    if not any(mask):
        raise ValueError(f"example has no learned tokens after truncation to {max_length}: {prompt[:40]!r}")
    return Encoded(ids, mask)


def pad_id(tokenizer: Any) -> int:
    """The id used to pad batches (pad, else 0; padded positions are masked everywhere)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def collate(batch: Sequence[Encoded], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE where no loss). [B, T]"""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        attn[i, :n] = 1
        lab = torch.tensor(e.input_ids)
        lab[~torch.tensor(e.loss_mask)] = IGNORE
        labels[i, :n] = lab
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}
