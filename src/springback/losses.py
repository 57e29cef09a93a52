"""Preference-optimisation and RL losses on per-sequence log-probabilities (pure torch).

Every function takes per-example quantities and returns per-example losses ``[B]`` (the caller
takes the mean) plus detached diagnostics. Log-probabilities are always **summed** over the
completion tokens (:func:`sequence_logps`); the methods that length-normalise take the token
counts explicitly and divide inside, so a caller cannot feed them the wrong kind by accident.

========  ==========================================  =================================  ==========================
method    paper                                       reference model is used for        inputs
========  ==========================================  =================================  ==========================
sft       (train.py; not in this module)              nothing                            per-token mean
dpo       Rafailov et al. 2023, arXiv 2305.18290      implicit reward β·log(π/π_ref)     summed log-probs
ipo       Azar et al. 2023, arXiv 2310.12036          log-ratio regressed onto 1/(2β)    summed + token counts;
                                                                                         ratios length-averaged
                                                                                         inside (as TRL)
kto       Ethayarajh et al. 2024, arXiv 2402.01306    implicit reward and the reference  summed log-probs
                                                      point z0 = KL estimate on
                                                      mismatched prompt/completion pairs
simpo     Meng, Xia & Chen 2024, arXiv 2405.14734     nothing (reference-free)           summed + token counts;
                                                                                         length-averaged inside
rloo      Ahmadian et al. 2024, arXiv 2402.14740      KL penalty in the reward:          summed log-probs;
          (estimator: Kool et al. 2019)               Σ_t log π_old − log π_ref          one scalar reward per
                                                                                         completion
========  ==========================================  =================================  ==========================

The reference implementation for every formula is TRL 1.16 (``trl/trainer/dpo_trainer.py``
``DPOTrainer._compute_loss``, ``trl/trainer/kto_trainer.py`` ``KTOTrainer._compute_loss``,
``trl/experimental/cpo/cpo_trainer.py`` ``CPOTrainer.cpo_loss`` for SimPO,
``trl/trainer/rloo_trainer.py`` for RLOO); ``tests/test_losses.py`` runs TRL's own code on the
same float64 batches and checks agreement to 1e-10 (losses and gradients) [SPEC §6].

**Why RLOO as the on-policy method.** The scorers give one scalar per completion, which is
exactly RLOO's setting: the leave-one-out mean of the other samples of the same prompt is an
unbiased baseline, so no value network (PPO) is needed; the loss is sequence-level, so there is
one ratio per completion instead of GRPO's per-token ratios and its several token-aggregation
variants; and with one update per sampled batch its gradient is exactly −A·∇log π(y), a closed
form the tests check.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .config import AlgorithmConfig
from .errors import ConfigError

__all__ = ["ALGORITHMS", "AlgorithmConfig", "validate", "sequence_logps", "dpo_loss", "ipo_loss", "simpo_loss",
           "kto_loss", "rloo_advantages", "rloo_loss"]

Tensor = torch.Tensor

# Registry for `springback list`: name -> one line (DESIGN §6 rule 8: keys are the CLI choices).
ALGORITHMS: dict[str, str] = {
    "sft": "supervised fine-tuning: mean next-token loss on the response tokens (the default)",
    "dpo": "Direct Preference Optimization on (prompt, chosen, rejected) pairs against a frozen reference",
    "ipo": "Identity Preference Optimization: length-averaged log-ratio margin regressed onto 1/(2*beta)",
    "kto": "Kahneman-Tversky Optimization on unpaired desirable / undesirable completions",
    "simpo": "Simple Preference Optimization: length-normalised margin, no reference model",
    "rloo": "REINFORCE leave-one-out: on-policy samples scored by a scorer, KL penalty to the reference",
}


def validate(cfg: AlgorithmConfig) -> None:
    """Bad name or value of an :class:`AlgorithmConfig` -> one-line :class:`~springback.errors.ConfigError`."""
    if cfg.name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{cfg.name}' (choose from: {', '.join(ALGORITHMS)})")
    # `not x > 0` also rejects NaN.
    for field in ("beta", "simpo_beta", "desirable_weight", "undesirable_weight", "temperature"):
        value = getattr(cfg, field)
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"algorithm.{field} must be a finite number > 0, got {value}")
    for field in ("gamma_beta_ratio", "kl_coef"):
        value = getattr(cfg, field)
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"algorithm.{field} must be a finite number >= 0, got {value}")
    if not 0 < cfg.clip_eps < 1:
        raise ConfigError(f"algorithm.clip_eps must lie in (0, 1), got {cfg.clip_eps}")
    if cfg.n_samples_per_prompt < 2:
        raise ConfigError(
            f"algorithm.n_samples_per_prompt must be >= 2 (the leave-one-out baseline needs a sibling), "
            f"got {cfg.n_samples_per_prompt}"
        )
    if cfg.max_new_tokens < 1:
        raise ConfigError(f"algorithm.max_new_tokens must be >= 1, got {cfg.max_new_tokens}")


# ----------------------------------------------------------------------------- helpers


def sequence_logps(token_logps: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of the completion tokens' log-probs and their count.

    ``token_logps`` [B, T]: log π(token_t | prefix) aligned with ``mask`` [B, T] (bool or 0/1,
    True = completion token). Returns ``(sum [B], n_tokens [B] int64)``. Masked positions may
    hold anything, even -inf (padding), without leaking into the sum.
    """
    if token_logps.shape != mask.shape or token_logps.dim() != 2:
        raise ValueError(f"token_logps {tuple(token_logps.shape)} and mask {tuple(mask.shape)} must both be [B, T]")
    keep = mask.bool()
    total = torch.where(keep, token_logps, torch.zeros_like(token_logps)).sum(dim=-1)  # [B]
    return total, keep.sum(dim=-1)


def _same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
        raise ValueError(f"expected tensors of one shape [B], got {shapes}")


def _per_token(logps: Tensor, lengths: Tensor) -> Tensor:
    # A zero-length completion would divide by 0; clamp as TRL does (train.encode already refuses
    # examples without learned tokens, so this only guards against NaN).
    return logps / lengths.clamp(min=1).to(logps.dtype)


# ----------------------------------------------------------------------------- paired preferences


class PreferenceLosses(NamedTuple):
    """Per-pair losses and each method's implicit rewards (detached; margin = chosen − rejected)."""

    losses: Tensor  # [B]
    chosen_rewards: Tensor  # [B]
    rejected_rewards: Tensor  # [B]


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> PreferenceLosses:
    """DPO sigmoid loss −log σ(β[(log π − log π_ref)(y_w) − (log π − log π_ref)(y_l)]).

    All log-probs summed over the completion tokens, [B]. Rafailov et al. 2023, Eq. 7;
    TRL ``loss_type="sigmoid"``. Rewards are β·(log π − log π_ref).
    """
    _same_shape(
        policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps,
    )
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # [B]
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # [B]
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return PreferenceLosses(losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach())


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float,
) -> PreferenceLosses:
    """IPO squared loss (h − 1/(2β))², h = per-token log-ratio of y_w minus that of y_l.

    Pass log-probs **summed** over the completion tokens and the token counts (both from
    :func:`sequence_logps`); the log-ratios are divided by the lengths here. The IPO paper
    (Azar et al. 2023, Eq. 17, β = τ) writes sequence log-probs; TRL length-averages them for
    ``loss_type="ipo"`` (a choice it says the IPO authors confirmed), which keeps β comparable
    across completion lengths. We follow TRL. Rewards are the length-averaged log-ratios
    (their margin is what is pulled to 1/(2β)).
    """
    _same_shape(
        policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps,
        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
    )
    chosen = _per_token(policy_chosen_logps - ref_chosen_logps, chosen_lengths)  # [B]
    rejected = _per_token(policy_rejected_logps - ref_rejected_logps, rejected_lengths)  # [B]
    losses = (chosen - rejected - 1.0 / (2.0 * beta)) ** 2
    return PreferenceLosses(losses, chosen.detach(), rejected.detach())


def simpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float,
    gamma_beta_ratio: float,
) -> PreferenceLosses:
    """SimPO loss −log σ(β/|y_w|·log π(y_w) − β/|y_l|·log π(y_l) − γ), γ = β·gamma_beta_ratio.

    No reference model. Pass log-probs **summed** over the completion tokens and the token
    counts; the averaging happens here (Meng et al. 2024, Eq. 6). TRL runs it as
    ``CPOTrainer`` with ``loss_type="simpo"``, ``simpo_gamma = γ`` and ``cpo_alpha = 0``.
    Rewards are β·(mean token log-prob).
    """
    _same_shape(
        policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
    )
    chosen_rewards = beta * _per_token(policy_chosen_logps, chosen_lengths)  # [B]
    rejected_rewards = beta * _per_token(policy_rejected_logps, rejected_lengths)  # [B]
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - beta * gamma_beta_ratio)
    return PreferenceLosses(losses, chosen_rewards.detach(), rejected_rewards.detach())


# ----------------------------------------------------------------------------- unpaired (KTO)


class KTOLosses(NamedTuple):
    """KTO losses, desirable examples first, then undesirable ones, already weighted."""

    losses: Tensor  # [B_d + B_u]
    chosen_rewards: Tensor  # [B_d] β·(log π − log π_ref), detached
    rejected_rewards: Tensor  # [B_u]
    kl: Tensor  # [] the reference point z0, detached, >= 0


def kto_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    policy_kl_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    ref_kl_logps: Tensor,
    beta: float,
    desirable_weight: float,
    undesirable_weight: float,
) -> KTOLosses:
    """KTO loss (Ethayarajh et al. 2024, Eq. 7 with v = λ·σ(·), loss = λ − v as TRL writes it).

    ``*_chosen_logps`` [B_d] desirable and ``*_rejected_logps`` [B_u] undesirable completions
    (either may be empty), summed log-probs. ``*_kl_logps`` [B_kl]: summed log-probs of
    *mismatched* pairs (prompt i with the completion of another example), from which the
    reference point z0 = max(0, mean(log π − log π_ref)) is estimated without gradient, as TRL
    does. With several processes, gather the KL log-probs first so z0 is the global mean.

    Desirable: λ_D·(1 − σ(β(r − z0))); undesirable: λ_U·(1 − σ(β(z0 − r))), r = log π − log π_ref.
    """
    _same_shape(policy_chosen_logps=policy_chosen_logps, ref_chosen_logps=ref_chosen_logps)
    _same_shape(policy_rejected_logps=policy_rejected_logps, ref_rejected_logps=ref_rejected_logps)
    _same_shape(policy_kl_logps=policy_kl_logps, ref_kl_logps=ref_kl_logps)
    if policy_kl_logps.numel() == 0:
        raise ValueError("kto_loss needs at least one mismatched pair for the KL reference point")
    if policy_chosen_logps.numel() + policy_rejected_logps.numel() == 0:
        raise ValueError("kto_loss needs at least one desirable or undesirable example")
    kl = (policy_kl_logps - ref_kl_logps).mean().detach().clamp(min=0)  # []
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # [B_d]
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # [B_u]
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_logratios - kl))
    rejected_losses = 1 - torch.sigmoid(beta * (kl - rejected_logratios))
    losses = torch.cat([desirable_weight * chosen_losses, undesirable_weight * rejected_losses])
    return KTOLosses(losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach(), kl)


# ----------------------------------------------------------------------------- on-policy RL (RLOO)


class RLOOAdvantages(NamedTuple):
    """Leave-one-out advantages and the KL-penalised rewards they came from (both detached)."""

    advantages: Tensor  # [N*G]
    rewards: Tensor  # [N*G] reward − kl_coef·KL


def rloo_advantages(
    rewards: Tensor,
    n_samples_per_prompt: int,
    old_logps: Tensor | None = None,
    ref_logps: Tensor | None = None,
    kl_coef: float = 0.0,
    normalize: bool = False,
) -> RLOOAdvantages:
    """RLOO advantages A_i = r_i − mean_{j≠i} r_j within each prompt's group of G samples.

    Called once per sampled batch. ``rewards`` [N*G]: one scalar per completion (a scorer's
    output), ordered so that a prompt's G completions are adjacent (p0 s0, p0 s1, …, p1 s0, …).
    With ``kl_coef > 0`` the reward is first penalised by kl_coef·(old_logps − ref_logps), the
    first-order KL estimate summed over the completion tokens under the sampling policy and the
    reference ([N*G] each, summed log-probs) — the KL-penalised RLHF reward of Ahmadian et al.
    2024, as TRL's RLOOTrainer computes it. ``normalize`` rescales the advantages to mean 0, std 1 over the batch
    (TRL's ``normalize_advantages``, unbiased std + 1e-4); with several processes pass the
    gathered batch, as TRL normalises over the gathered generation batch.
    """
    if n_samples_per_prompt < 2:
        raise ValueError(f"RLOO needs n_samples_per_prompt >= 2, got {n_samples_per_prompt}")
    if rewards.dim() != 1 or rewards.numel() % n_samples_per_prompt:
        raise ValueError(
            f"rewards must be [N*G] with G = {n_samples_per_prompt} samples per prompt, got {tuple(rewards.shape)}"
        )
    rewards = rewards.detach()
    if kl_coef != 0.0:
        if old_logps is None or ref_logps is None:
            raise ValueError("kl_coef > 0 needs old_logps and ref_logps")
        _same_shape(rewards=rewards, old_logps=old_logps, ref_logps=ref_logps)
        rewards = rewards - kl_coef * (old_logps.detach() - ref_logps.detach())
    grouped = rewards.view(-1, n_samples_per_prompt)  # [N, G]
    baselines = (grouped.sum(dim=1, keepdim=True) - grouped) / (n_samples_per_prompt - 1)  # [N, G]
    advantages = (grouped - baselines).reshape(-1)  # [N*G]
    if normalize:
        # TRL's 1e-4 (trainer/rloo_trainer.py) keeps an all-equal batch finite.
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
    return RLOOAdvantages(advantages, rewards)


class RLOOLosses(NamedTuple):
    """Per-completion RLOO losses and the sequence importance ratios (detached)."""

    losses: Tensor  # [B]
    ratios: Tensor  # [B] π(y)/π_old(y)
    clipped: Tensor  # [B] bool: the clipped branch was taken (no gradient)


def rloo_loss(
    policy_logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    clip_eps_low: float = 0.2,
    clip_eps_high: float | None = None,
) -> RLOOLosses:
    """Clipped sequence-level policy-gradient loss −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A).

    ``policy_logps`` [B] (with gradient) and ``old_logps`` [B] (the sampling policy, no
    gradient) are log-probs summed over the completion tokens; ρ = exp(policy − old).
    ``advantages`` [B] from :func:`rloo_advantages`. With one update per sampled batch
    ρ = 1 and the gradient is the REINFORCE-leave-one-out estimator −A·∇log π(y).
    ``clip_eps_high`` defaults to ``clip_eps_low``, as TRL's ``epsilon_high``.
    """
    _same_shape(policy_logps=policy_logps, old_logps=old_logps, advantages=advantages)
    high = clip_eps_low if clip_eps_high is None else clip_eps_high
    advantages = advantages.detach()
    ratios = torch.exp(policy_logps - old_logps.detach())  # [B]
    clipped_ratios = torch.clamp(ratios, 1 - clip_eps_low, 1 + high)
    unclipped_obj = ratios * advantages
    clipped_obj = clipped_ratios * advantages
    losses = -torch.min(unclipped_obj, clipped_obj)
    return RLOOLosses(losses, ratios.detach(), (clipped_obj < unclipped_obj).detach())
