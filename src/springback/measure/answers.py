"""Measures of sampled answers and fine-tuning targets (P1 Table 1's protocol, SPEC §3.1).

* :func:`answer_examples` — a checkpoint's sampled answers to held-out prompts, as training examples;
* :func:`dataset_loss` — a model's mean loss on examples, in the training loss's own reduction;
* :func:`exact_answer_stats` — exact π⁺ / S over finite answer sets and the exact entropy of a
  sampler's distribution over them (the floor of a training loss on its samples);
* :func:`mean_kl` — KL(learner ‖ target) from the learner's samples.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..teacher import logits, per_example_loss
from ..tokens import IGNORE, Encoder, collate, pad_id
from ..worlds.base import ALIGNED, Example
from .kl import sequence_kl
from .logprobs import TokenizedPairs
from .sampling import _probs as sampling_probs
from .sampling import sample


@torch.no_grad()
def dataset_loss(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example], max_length: int = 64,
                 batch_size: int = 128, chat_template: str = "none") -> float:
    """Mean over examples of :func:`per_example_loss` (nats per response token, per-example
    weighted) — the same reduction as the training loss, so the two can be subtracted."""
    device = next(model.parameters()).device
    pad = pad_id(tokenizer)
    was_training = model.training
    model.eval()
    total = 0.0
    encoded, _ = Encoder(tokenizer, chat_template, max_length, "left").encode_all(examples)
    for start in range(0, len(encoded), batch_size):
        batch = {k: v.to(device) for k, v in collate(encoded[start : start + batch_size], pad).items()}
        total += float(per_example_loss(model, batch).double().sum())
    if was_training:
        model.train()
    return total / len(encoded)


@torch.no_grad()
def exact_answer_stats(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], aligned: Sequence[str],
                       opposing: Sequence[str], temperature: float, top_p: float, batch_size: int = 256,
                       max_length: int = 128, chat_template: str = "none") -> dict[str, float]:
    """Exact measures over the finite answer sets A (``aligned``) and N (``opposing``), one pass:

    * ``pi_pos``, ``score_S``, ``coverage`` — π⁺ = Σ_A π / Σ_{A∪N} π at temperature 1, S = log(π⁺/π⁻)
      and the mass on A ∪ N (as :func:`springback.measure.alignment_measure`);
    * ``target_entropy``, ``target_coverage`` — for the *sampling* distribution q (temperature
      and top-p applied per token, exactly as :func:`springback.measure.sample` draws), the
      exact E_{y~q}[−log q(y|x) / n_tokens(y)] over A ∪ N renormalised, and q's mass there.
      Nats per token, in the reduction of the training loss (per example, then mean).
    Prompt means of each."""
    device = next(model.parameters()).device
    completions = list(aligned) + list(opposing)
    pairs = TokenizedPairs(tokenizer, prompts, completions, batch_size, max_length, chat_template)
    n = len(prompts) * len(completions)
    logp = torch.empty(n, dtype=torch.float64)  # log π(y|x), temperature 1
    logq = torch.empty(n, dtype=torch.float64)  # log q(y|x), the sampler's distribution
    n_tok = torch.empty(n, dtype=torch.float64)
    start = 0
    for cpu_batch in pairs.batches:
        batch = {k: v.to(device) for k, v in cpu_batch.items()}
        z = logits(model, batch["input_ids"], batch["attention_mask"])[:, :-1]  # [B, T-1, V]
        mask = batch["labels"][:, 1:] != IGNORE  # [B, T-1]
        rows = mask.nonzero()[:, 0]  # only the scored positions: [N] row of each
        flat = z[mask]  # [N, V]
        tgt = batch["labels"][:, 1:][mask].unsqueeze(-1)  # [N, 1]
        lp = torch.log_softmax(flat, -1).gather(-1, tgt).squeeze(-1).double()  # [N]
        lq = sampling_probs(flat, temperature, top_p).gather(-1, tgt).squeeze(-1).double().log()  # the sampler's own transform
        b = len(batch["input_ids"])
        end = start + b
        logp[start:end] = torch.zeros(b, dtype=torch.float64, device=lp.device).index_add_(0, rows, lp).cpu()
        logq[start:end] = torch.zeros(b, dtype=torch.float64, device=lq.device).index_add_(0, rows, lq).cpu()
        n_tok[start:end] = mask.sum(1).double().cpu()
        start = end
    shape = (len(prompts), len(completions))
    logp, logq, n_tok = logp.view(shape), logq.view(shape), n_tok.view(shape)
    na = len(aligned)
    lse_a, lse_n = torch.logsumexp(logp[:, :na], 1), torch.logsumexp(logp[:, na:], 1)
    lse_all = torch.logaddexp(lse_a, lse_n)
    q = logq.exp()
    cov_q = q.sum(1)
    per_tok = torch.where(q > 0, -logq / n_tok, torch.zeros_like(logq))  # 0·log 0 = 0
    entropy = (q * per_tok).sum(1) / cov_q.clamp_min(1e-300)
    entropy = entropy[cov_q > 0]  # undefined where the sampler cannot produce any answer of the set
    return {"pi_pos": float((lse_a - lse_all).exp().mean()), "score_S": float((lse_a - lse_n).mean()),
            "coverage": float(lse_all.exp().mean()),
            "target_entropy": float(entropy.mean()) if len(entropy) else float("nan"),
            "target_coverage": float(cov_q.mean())}


def mean_kl(learner: torch.nn.Module, target: torch.nn.Module, tokenizer: Any, prompts: Sequence[str],
            n_per_prompt: int, seed: int, max_new_tokens: int, chat_template: str = "none") -> float:
    """KL(learner ‖ target) in nats per answer, from the learner's own samples (temperature 1)."""
    _, ids, pidx = sample(learner, tokenizer, prompts, n_per_prompt, seed=seed, max_new_tokens=max_new_tokens,
                          chat_template=chat_template)
    return float(sequence_kl(learner, target, tokenizer, prompts, ids, pidx, chat_template=chat_template).mean())


def answer_examples(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], n_answers: int, seed: int, *,
                    temperature: float, top_p: float, max_new_tokens: int, chat_template: str = "none") -> list[Example]:
    """``n_answers`` sampled answers per prompt (prompt-major order), as training examples.

    The answer text is decoded without stripping, so re-encoding it reproduces the sampled
    tokens (a leading-space token of a BPE vocabulary survives)."""
    from ..tokens import Encoder

    _, ids, pidx = sample(model, tokenizer, prompts, n_answers, seed=seed, temperature=temperature, top_p=top_p,
                          max_new_tokens=max_new_tokens, chat_template=chat_template)
    stops = set(Encoder(tokenizer, chat_template, None).stop_token_ids)
    out = []
    for row, p in zip(ids, pidx):
        body = [t for t in row if t not in stops]
        out.append(Example(prompts[p], tokenizer.decode(body, skip_special_tokens=True), ALIGNED))
    return out


