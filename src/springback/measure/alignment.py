"""Exact alignment measures over a world's reference completion sets A and N.

For prompt x, π⁺(x) is the model's probability of an aligned completion *given that it
produces one of the reference completions*: π⁺ = Σ_{y∈A} π(y|x) / Σ_{y∈A∪N} π(y|x), and
π⁻ = 1 − π⁺ (SPEC §5; the renormalisation over A ∪ N is ours and makes π⁺ + π⁻ = 1 hold
exactly even though a model can put mass elsewhere; that mass is reported as ``coverage``).
The alignment score is S = log(π⁺/π⁻).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from .logprobs import TokenizedPairs


@dataclasses.dataclass
class AlignmentMeasure:
    """Per-prompt exact measures. Tensors are [P] (prompts) unless noted."""

    log_pi_pos: torch.Tensor
    log_pi_neg: torch.Tensor
    score: torch.Tensor  # S = log π⁺ − log π⁻
    coverage: torch.Tensor  # Σ_{A∪N} π(y|x): mass on the reference completions
    logp_aligned: torch.Tensor  # [P, |A|] log π(y|x)
    logp_opposing: torch.Tensor  # [P, |N|]

    @property
    def pi_pos(self) -> torch.Tensor:
        return self.log_pi_pos.exp()

    def posterior_aligned(self) -> torch.Tensor:
        """π(y | A, x) = π(y|x) / Σ_A π. [P, |A|]"""
        return torch.softmax(self.logp_aligned, dim=1)

    def posterior_opposing(self) -> torch.Tensor:
        return torch.softmax(self.logp_opposing, dim=1)

    def summary(self) -> dict[str, float]:
        """Prompt-averaged numbers for a records row."""
        return {
            "pi_pos": float(self.pi_pos.mean()),
            "score_S": float(self.score.mean()),
            "coverage": float(self.coverage.mean()),
        }


def measure_from_logprobs(logp: torch.Tensor, n_aligned: int) -> AlignmentMeasure:
    """Summarise log π(y|x) over A ∪ N ([P, |A| + |N|], A first) into an :class:`AlignmentMeasure`."""
    la, ln = logp[:, :n_aligned], logp[:, n_aligned:]
    lse_a = torch.logsumexp(la, 1)
    lse_n = torch.logsumexp(ln, 1)
    lse_all = torch.logaddexp(lse_a, lse_n)
    return AlignmentMeasure(
        log_pi_pos=lse_a - lse_all,
        log_pi_neg=lse_n - lse_all,
        score=lse_a - lse_n,
        coverage=lse_all.exp(),
        logp_aligned=la,
        logp_opposing=ln,
    )


class ReferenceBatches:
    """The pairs of prompts × (A ∪ N), tokenised once, for measuring many checkpoints exactly."""

    def __init__(self, tokenizer: Any, prompts: Sequence[str], aligned: Sequence[str], opposing: Sequence[str],
                 batch_size: int = 256, max_length: int = 128, chat_template: str = "none"):
        self.n_aligned = len(aligned)
        self.pairs = TokenizedPairs(tokenizer, prompts, list(aligned) + list(opposing), batch_size, max_length,
                                    chat_template)

    def logprobs(self, model: torch.nn.Module) -> torch.Tensor:
        """log p(completion + EOS | prompt) in nats. [P, |A| + |N|]"""
        return self.pairs.logprobs(model)

    def measure(self, model: torch.nn.Module) -> AlignmentMeasure:
        return measure_from_logprobs(self.logprobs(model), self.n_aligned)


def alignment_measure(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    aligned: Sequence[str],
    opposing: Sequence[str],
    batch_size: int = 256,
) -> AlignmentMeasure:
    """Teacher-force every completion of A and N after every prompt and summarise."""
    return ReferenceBatches(tokenizer, prompts, aligned, opposing, batch_size).measure(model)


def reference_kl(model: AlignmentMeasure, reference: AlignmentMeasure) -> torch.Tensor:
    """Exact KL(model ‖ reference) between the two distributions over A ∪ N, each renormalised
    to the reference completions, per prompt (nats). [P]

    On a synthetic world almost all probability sits on A ∪ N (see ``coverage``), so this is
    the sequence-level KL without sampling noise; it is our stand-in for P1's KL to the base
    model in the Table 3 protocol [SPEC §3.2].
    """
    lp = torch.cat([model.logp_aligned, model.logp_opposing], 1)
    lq = torch.cat([reference.logp_aligned, reference.logp_opposing], 1)
    lp = lp - torch.logsumexp(lp, 1, keepdim=True)
    lq = lq - torch.logsumexp(lq, 1, keepdim=True)
    return (lp.exp() * (lp - lq)).sum(1)
