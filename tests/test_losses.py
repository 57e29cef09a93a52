"""Preference and RL losses: parity with TRL's own code, closed forms, config validation.

Parity tests run TRL's trainer methods unbound on minimal stand-ins carrying exactly the
attributes those methods read; the "model" is a table of per-token log-probs keyed by the input
row, returning what TRL's fused LM head returns (``FusedCausalLMOutput``: per-token log-probs of
the labels, zero where the label is -100). TRL's formulas are never restated here.
"""

from __future__ import annotations

import contextlib
import math
import os
import types
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from springback.config import from_dict
from springback.errors import ConfigError
from springback.losses import (
    ALGORITHMS,
    AlgorithmConfig,
    dpo_loss,
    ipo_loss,
    kto_loss,
    rloo_advantages,
    rloo_loss,
    sequence_logps,
    simpo_loss,
    validate,
)

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # CPOTrainer (SimPO) lives in trl.experimental
try:
    from trl.experimental.cpo import CPOTrainer
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.kto_trainer import KTOTrainer
    from trl.trainer.rloo_trainer import RLOOTrainer
    from trl.trainer.utils import FusedCausalLMOutput
except ImportError as exc:  # the closed-form and config tests still run
    _TRL_MISSING = f"TRL is the reference implementation; install the dev extra (pip install '.[dev]'): {exc}"
else:
    _TRL_MISSING = ""
requires_trl = pytest.mark.skipif(bool(_TRL_MISSING), reason=_TRL_MISSING)

F64 = torch.float64
TOL = dict(atol=1e-10, rtol=0.0)  # float64 on both sides: far tighter than the 1e-6 asked for


# ----------------------------------------------------------------------------- stand-ins


class _Accelerator:
    """One CPU process: gathers and reductions are the identity."""

    device = torch.device("cpu")
    process_index = 0
    is_main_process = True

    def gather(self, t):
        return t

    gather_for_metrics = gather

    def reduce(self, t, reduction="sum"):
        return t

    def autocast(self):
        return contextlib.nullcontext()


class _TablePolicy:
    """A causal LM patched by TRL's ``add_fused_lm_head``, reduced to a lookup table.

    ``token_logps[i, t]`` is the log-prob of token t+1 of row i given its prefix; rows are found
    by their exact ``input_ids``, so every TRL call (policy, KL pairs, sampling) hits the right row.
    """

    training = True
    is_gradient_checkpointing = False

    def __init__(self, input_ids: torch.Tensor, token_logps: torch.Tensor):
        self.index = {tuple(row.tolist()): i for i, row in enumerate(input_ids)}
        assert len(self.index) == len(input_ids), "rows must be unique"
        self.token_logps = token_logps  # [N, T-1]

    def __call__(self, input_ids, labels, fused_lm_head=False, **kwargs):
        assert fused_lm_head
        rows = torch.tensor([self.index[tuple(r.tolist())] for r in input_ids])
        mask = labels[:, 1:] != -100  # [B, T-1] the next-token label exists
        log_probs = self.token_logps[rows].masked_fill(~mask, 0.0)
        zeros = torch.zeros_like(log_probs).detach()
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / mask.sum().clamp(min=1), log_probs=log_probs, entropy=zeros,
            mean_logits=zeros, is_top1=torch.zeros_like(mask), label_mask=mask,
        )


def _metrics():
    return defaultdict(lambda: defaultdict(list))


def _sequences(gen: torch.Generator, n: int, first_id: int, max_prompt: int = 3, max_completion: int = 5):
    """n right-padded prompt+completion rows of varied lengths and random per-token log-probs.

    Returns input_ids / attention_mask / completion_mask [n, T] and token_logps [n, T-1]
    (float64, -inf where no completion label follows: padding must never leak into a sum).
    """
    T = max_prompt + max_completion
    input_ids = torch.zeros(n, T, dtype=torch.long)
    attention_mask = torch.zeros(n, T, dtype=torch.long)
    completion_mask = torch.zeros(n, T, dtype=torch.long)
    for i in range(n):
        n_prompt = int(torch.randint(1, max_prompt + 1, (1,), generator=gen))
        n_completion = int(torch.randint(1, max_completion + 1, (1,), generator=gen))
        ids = torch.randint(3, 50, (n_prompt + n_completion,), generator=gen)
        ids[0] = first_id + i  # a unique first token makes every row unique
        input_ids[i, : len(ids)] = ids
        attention_mask[i, : len(ids)] = 1
        completion_mask[i, n_prompt : len(ids)] = 1
    token_logps = -(3.0 * torch.rand(n, T - 1, generator=gen, dtype=F64) + 0.01)
    token_logps = token_logps.masked_fill(completion_mask[:, 1:] == 0, float("-inf"))
    return SimpleNamespace(
        input_ids=input_ids, attention_mask=attention_mask, completion_mask=completion_mask, token_logps=token_logps
    )


# ----------------------------------------------------------------------------- DPO and IPO


def _dpo_standin(policy: _TablePolicy, loss_type: str, beta: float) -> SimpleNamespace:
    return SimpleNamespace(
        model=policy, accelerator=_Accelerator(), ld_alpha=None, precompute_ref_logps=True,
        f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0], beta=beta,
        use_weighting=False, aux_loss_enabled=False, label_smoothing=0.0, _metrics=_metrics(),
        _total_train_tokens=0, _tp_size=1,
    )


@requires_trl
@pytest.mark.parametrize("beta", [0.02, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_and_ipo_match_trl(loss_type: str, beta: float):
    gen = torch.Generator().manual_seed(13)
    B = 8
    seqs = _sequences(gen, 2 * B, first_id=1000)  # rows [0, B) chosen, [B, 2B) rejected, as TRL stacks them
    token_logps = seqs.token_logps.clone().requires_grad_(True)
    policy = _TablePolicy(seqs.input_ids, token_logps)

    logps, n_tokens = sequence_logps(token_logps, seqs.completion_mask[:, 1:])  # [2B]
    ref = logps.detach() + 2.0 * torch.randn(2 * B, generator=gen, dtype=F64)
    margins = (logps[:B] - ref[:B]) - (logps[B:] - ref[B:])
    assert (margins > 0).any() and (margins < 0).any(), "the batch must cover both signs of the margin"
    if loss_type == "sigmoid":
        ours = dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:], beta)
    else:
        ours = ipo_loss(logps[:B], logps[B:], ref[:B], ref[B:], n_tokens[:B], n_tokens[B:], beta)

    def trl_loss(pairs: list[int]) -> torch.Tensor:
        rows = pairs + [B + i for i in pairs]
        inputs = {
            "input_ids": seqs.input_ids[rows], "attention_mask": seqs.attention_mask[rows],
            "completion_mask": seqs.completion_mask[rows],
            "ref_chosen_logps": ref[pairs], "ref_rejected_logps": ref[[B + i for i in pairs]],
        }
        standin = _dpo_standin(policy, loss_type, beta)
        return DPOTrainer._compute_loss(standin, policy, inputs, return_outputs=False), standin

    # per pair (TRL returns the batch mean, so one pair per call) ...
    for i in range(B):
        assert_close(ours.losses[i], trl_loss([i])[0], **TOL)
    # ... and the whole batch, with gradients and logged rewards
    loss, standin = trl_loss(list(range(B)))
    assert_close(ours.losses.mean(), loss, **TOL)
    (g_ours,) = torch.autograd.grad(ours.losses.mean(), token_logps)
    (g_trl,) = torch.autograd.grad(loss, token_logps)
    assert_close(g_ours, g_trl, **TOL)
    if loss_type == "sigmoid":  # for IPO TRL logs β·(summed log-ratio), which is not IPO's quantity
        logged = standin._metrics["train"]
        assert logged["rewards/chosen"][-1] == pytest.approx(ours.chosen_rewards.mean().item(), abs=1e-10)
        assert logged["rewards/rejected"][-1] == pytest.approx(ours.rejected_rewards.mean().item(), abs=1e-10)


def test_dpo_closed_forms():
    beta = 0.3
    zero = torch.zeros(4, dtype=F64)
    logps = torch.tensor([-3.0, -7.5, -1.0, -12.0], dtype=F64)
    # zero margin -> log 2, whatever the log-probs
    assert_close(dpo_loss(logps, logps, logps, logps, beta).losses, torch.full((4,), math.log(2), dtype=F64), **TOL)
    # softplus(-x) - softplus(x) = -x: loss(m) - loss(-m) = -beta*m
    m = torch.tensor([-4.0, -0.5, 0.5, 4.0], dtype=F64)
    gap = dpo_loss(m, zero, zero, zero, beta).losses - dpo_loss(-m, zero, zero, zero, beta).losses
    assert_close(gap, -beta * m, **TOL)
    # the reference shifts the margin: log-ratios, not log-probs, matter
    assert_close(dpo_loss(m + 5, zero, zero + 5, zero, beta).losses, dpo_loss(m, zero, zero, zero, beta).losses, **TOL)


def test_ipo_closed_forms_and_length_averaging():
    beta = 0.25  # target margin 1/(2 beta) = 2
    zero = torch.zeros(3, dtype=F64)
    lengths = torch.tensor([4, 4, 4])
    # per-token log-ratio margin exactly at the target -> loss 0
    at_target = ipo_loss(torch.full((3,), 8.0, dtype=F64), zero, zero, zero, lengths, lengths, beta)
    assert_close(at_target.losses, zero, **TOL)
    # equal lengths L: (delta/L - 1/(2 beta))^2
    delta = torch.tensor([-6.0, 0.0, 20.0], dtype=F64)
    assert_close(ipo_loss(delta, zero, zero, zero, lengths, lengths, beta).losses, (delta / 4 - 2.0) ** 2, **TOL)
    # doubling every completion (summed log-ratios and lengths) leaves the length-averaged loss unchanged
    a = ipo_loss(delta, zero - 1, zero, zero, lengths, lengths + 1, beta).losses
    b = ipo_loss(2 * delta, 2 * (zero - 1), zero, zero, 2 * lengths, 2 * (lengths + 1), beta).losses
    assert_close(a, b, **TOL)


# ----------------------------------------------------------------------------- SimPO


@requires_trl
@pytest.mark.parametrize("beta,gamma_beta_ratio", [(2.0, 0.25), (2.5, 0.55), (10.0, 0.3), (0.5, 0.0)])
def test_simpo_matches_trl(beta: float, gamma_beta_ratio: float):
    gen = torch.Generator().manual_seed(7)
    B, T, V = 8, 7, 11
    logits = torch.randn(2 * B, T, V, generator=gen, dtype=F64).requires_grad_(True)
    labels = torch.randint(0, V, (2 * B, T), generator=gen)
    for i in range(2 * B):  # prompt of 1..3 tokens, completion of 1.. tokens, right padding
        n_prompt = int(torch.randint(1, 4, (1,), generator=gen))
        end = int(torch.randint(n_prompt + 1, T + 1, (1,), generator=gen))
        labels[i, :n_prompt] = -100
        labels[i, end:] = -100

    # TRL: CPOTrainer with loss_type="simpo" (cpo_alpha = 0 drops CPO's NLL term, which lives outside cpo_loss)
    standin = SimpleNamespace(
        alpha=0.0, beta=beta, simpo_gamma=beta * gamma_beta_ratio, label_smoothing=0.0, loss_type="simpo",
        accelerator=_Accelerator(),
    )
    avg_logps = CPOTrainer.get_batch_logps(logits, labels, average_log_prob=True)  # [2B]
    trl_losses, trl_chosen, trl_rejected = CPOTrainer.cpo_loss(standin, avg_logps[:B], avg_logps[B:])

    # ours: summed log-probs and token counts; the averaging happens inside simpo_loss
    next_labels = labels[:, 1:]
    token_logps = logits[:, :-1].log_softmax(-1).gather(-1, next_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logps, n_tokens = sequence_logps(token_logps, next_labels != -100)
    ours = simpo_loss(logps[:B], logps[B:], n_tokens[:B], n_tokens[B:], beta, gamma_beta_ratio)

    margins = ours.chosen_rewards - ours.rejected_rewards - beta * gamma_beta_ratio
    assert (margins > 0).any() and (margins < 0).any(), "the batch must cover both signs of the margin"
    assert_close(ours.losses, trl_losses, **TOL)
    assert_close(ours.chosen_rewards, trl_chosen, **TOL)
    assert_close(ours.rejected_rewards, trl_rejected, **TOL)
    (g_ours,) = torch.autograd.grad(ours.losses.mean(), logits)
    (g_trl,) = torch.autograd.grad(trl_losses.mean(), logits)
    assert_close(g_ours, g_trl, **TOL)


def test_simpo_closed_forms():
    beta = 2.0
    lengths = torch.tensor([5, 5, 5])
    chosen = torch.tensor([-4.0, -10.0, -2.0], dtype=F64)
    rejected = torch.tensor([-6.0, -3.0, -2.0], dtype=F64)
    zero = torch.zeros(3, dtype=F64)
    # gamma = 0 and equal lengths L: DPO without a reference at beta/L
    assert_close(
        simpo_loss(chosen, rejected, lengths, lengths, beta, 0.0).losses,
        dpo_loss(chosen, rejected, zero, zero, beta / 5).losses, **TOL,
    )
    # zero reward margin: -log sigmoid(-gamma) = softplus(gamma), gamma = beta * ratio = 1.0
    same = simpo_loss(chosen, chosen, lengths, lengths, beta, 0.5).losses
    assert_close(same, torch.full((3,), math.log1p(math.e), dtype=F64), **TOL)


# ----------------------------------------------------------------------------- KTO


def _bind(obj: object, trainer_cls: type, *names: str) -> None:
    """Give a stand-in TRL's own methods (unchanged), bound to the stand-in."""
    for name in names:
        setattr(obj, name, types.MethodType(getattr(trainer_cls, name), obj))


class _KTOStandIn:
    def __init__(self, policy: _TablePolicy, beta: float, desirable_weight: float, undesirable_weight: float):
        _bind(self, KTOTrainer, "_compute_loss", "_compute_kl_logps")
        self.model = policy
        self.accelerator = _Accelerator()
        self.precompute_ref_logps = True
        self.calculate_KL = True
        self.loss_type = "kto"
        self.beta = beta
        self.desirable_weight = desirable_weight
        self.undesirable_weight = undesirable_weight
        self.aux_loss_enabled = False
        self._metrics = _metrics()
        self._total_train_tokens = 0
        self._tp_size = 1


@requires_trl
@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0])
@pytest.mark.parametrize("kl_sign", [1.0, -1.0])  # the KL estimate is positive, or negative and clamped to 0
def test_kto_matches_trl(beta: float, kl_sign: float):
    gen = torch.Generator().manual_seed(2)
    n = 10
    desirable_weight, undesirable_weight = 1.0, 1.33  # unequal, so the weighting is exercised
    label = torch.tensor([1, 0, 1, 1, 0, 1, 0, 0, 1, 1], dtype=torch.bool)
    seqs = _sequences(gen, n, first_id=1000)
    kl_seqs = _sequences(gen, n, first_id=2000)  # mismatched prompt/completion pairs
    token_logps = torch.cat([seqs.token_logps, kl_seqs.token_logps]).requires_grad_(True)
    policy = _TablePolicy(torch.cat([seqs.input_ids, kl_seqs.input_ids]), token_logps)

    logps, _ = sequence_logps(token_logps[:n], seqs.completion_mask[:, 1:])  # [n]
    kl_logps, _ = sequence_logps(token_logps[n:], kl_seqs.completion_mask[:, 1:])  # [n]
    ref_logps = logps.detach() + 2.0 * torch.randn(n, generator=gen, dtype=F64)
    ref_kl_logps = kl_logps.detach() - kl_sign * (1.0 + torch.rand(n, generator=gen, dtype=F64))
    ours = kto_loss(
        logps[label], logps[~label], kl_logps, ref_logps[label], ref_logps[~label], ref_kl_logps,
        beta, desirable_weight, undesirable_weight,
    )
    expected_kl = max(0.0, (kl_logps - ref_kl_logps).mean().item())
    assert ours.kl.item() == pytest.approx(expected_kl, abs=1e-12)
    assert (ours.kl > 0).item() == (kl_sign > 0)
    shifted = torch.cat([ours.chosen_rewards, ours.rejected_rewards]) / beta - ours.kl
    assert (shifted > 0).any() and (shifted < 0).any(), "log-ratios must fall on both sides of the reference point"

    def trl_loss(examples: list[int]):
        inputs = {
            "input_ids": seqs.input_ids[examples], "attention_mask": seqs.attention_mask[examples],
            "completion_mask": seqs.completion_mask[examples], "label": label[examples],
            "ref_logps": ref_logps[examples],
            # the full mismatched batch every time, so the reference point is the same as ours
            "KL_input_ids": kl_seqs.input_ids, "KL_attention_mask": kl_seqs.attention_mask,
            "KL_completion_mask": kl_seqs.completion_mask, "ref_KL_logps": ref_kl_logps,
        }
        standin = _KTOStandIn(policy, beta, desirable_weight, undesirable_weight)
        return standin._compute_loss(policy, inputs, return_outputs=False)

    # ours lists desirable examples first; map back to the batch order
    order = torch.cat([torch.nonzero(label).view(-1), torch.nonzero(~label).view(-1)])
    per_example = torch.empty(n, dtype=F64)
    per_example[order] = ours.losses.detach()
    for i in range(n):
        assert_close(per_example[i], trl_loss([i]).detach(), **TOL)
    loss = trl_loss(list(range(n)))
    assert_close(ours.losses.mean(), loss, **TOL)
    # gradients: the KL reference point carries none, on either side
    (g_ours,) = torch.autograd.grad(ours.losses.mean(), token_logps)
    (g_trl,) = torch.autograd.grad(loss, token_logps)
    assert_close(g_ours, g_trl, **TOL)
    assert g_ours[n:].abs().sum() == 0


def test_kto_closed_forms():
    # policy == reference: r = 0 and z0 = 0, so each loss is lambda * (1 - sigmoid(0)) = lambda / 2
    lp = torch.tensor([-3.0, -5.0], dtype=F64)
    out = kto_loss(lp, lp[:1], lp, lp, lp[:1], lp, 0.1, 1.0, 3.0)
    assert_close(out.losses, torch.tensor([0.5, 0.5, 1.5], dtype=F64), **TOL)
    # a negative KL estimate is clamped to 0; the estimate is detached
    kl_policy = torch.tensor([-4.0, -6.0], dtype=F64, requires_grad=True)
    out = kto_loss(lp, lp[:0], kl_policy, lp, lp[:0], kl_policy.detach() + 1.0, 0.1, 1.0, 1.0)
    assert out.kl.item() == 0.0 and not out.kl.requires_grad
    with pytest.raises(ValueError):
        kto_loss(lp, lp, lp[:0], lp, lp, lp[:0], 0.1, 1.0, 1.0)


# ----------------------------------------------------------------------------- RLOO


class _RLOOStandIn:
    def __init__(self, old_policy, ref_policy, sampled, rewards, n_samples, kl_coef, normalize, clip_eps):
        _bind(self, RLOOTrainer, "_generate_and_score_completions", "_calculate_rewards",
              "_get_per_token_logps_and_entropies", "_compute_loss", "_log_completion_extra", "_log_metric")
        self.model, self.ref_model = old_policy, ref_policy
        self._sampled = sampled  # (prompt ids, completion ids, completion texts): generation is not under test
        self.accelerator = _Accelerator()
        self.args = SimpleNamespace(
            per_device_train_batch_size=len(rewards), gradient_checkpointing_kwargs=None, report_to=[]
        )
        self.state = SimpleNamespace(global_step=0, num_input_tokens_seen=0)
        self._tokenizer = SimpleNamespace(pad_token_id=0)
        self.pad_to_multiple_of = None
        self.mask_truncated_completions = False
        self.beta = kl_coef
        self.num_generations = n_samples
        self.normalize_advantages = normalize
        self.reward_funcs = [lambda prompts, completions, **kwargs: rewards.tolist()]  # a scorer
        self.reward_processing_classes = [None]
        self.reward_func_names = ["scorer"]
        self.reward_weights = torch.ones(1)
        self.reward_clip_range = None
        self.epsilon_low = self.epsilon_high = clip_eps
        self.aux_loss_enabled = False
        self.log_multimodal = False
        self._metrics = _metrics()
        self._logs = {"prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [],
                      "extra": defaultdict(list)}
        self._pending_extra_logs = {}
        self._pending_metrics = {}

    def _generate(self, prompts):
        return self._sampled


@pytest.fixture
def default_float64():
    # TRL builds its reward table with the default dtype; float64 keeps both sides in one precision.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(previous)


@requires_trl
@pytest.mark.parametrize("n_samples,kl_coef,normalize", [(2, 0.0, False), (4, 0.05, False), (4, 0.5, True),
                                                         (3, 0.05, True)])
def test_rloo_matches_trl(default_float64, n_samples: int, kl_coef: float, normalize: bool):
    gen = torch.Generator().manual_seed(5)
    n_prompts, clip_eps = 3, 0.2
    B = n_prompts * n_samples
    P, C = 3, 5  # padded prompt and completion widths
    # Prompts of 1..3 tokens (left-padded by TRL), completions of 1..5 (right-padded); a prompt's
    # samples are adjacent, as TRL's sampler repeats each prompt n_samples times.
    prompt_ids = [torch.randint(3, 50, (int(torch.randint(1, P + 1, (1,), generator=gen)),), generator=gen).tolist()
                  for _ in range(n_prompts)]
    prompt_ids = [ids for ids in prompt_ids for _ in range(n_samples)]
    completion_ids = []
    for i in range(B):
        ids = torch.randint(3, 50, (int(torch.randint(1, C, (1,), generator=gen)),), generator=gen).tolist()
        completion_ids.append([1000 + i] + ids)  # a unique first token makes every row unique
    assert max(map(len, prompt_ids)) == P and max(map(len, completion_ids)) == C
    input_ids = torch.zeros(B, P + C, dtype=torch.long)
    completion_mask = torch.zeros(B, C, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        input_ids[i, P - len(p) : P] = torch.tensor(p)
        input_ids[i, P : P + len(c)] = torch.tensor(c)
        completion_mask[i, : len(c)] = 1

    def table(scale: float, base: torch.Tensor | None = None) -> torch.Tensor:  # [B, P+C-1]
        noise = scale * torch.randn(B, P + C - 1, generator=gen, dtype=F64)
        return (base + noise) if base is not None else -(3.0 * torch.rand(B, P + C - 1, generator=gen) + 0.01)

    old_table = table(0.0)
    ref_table = table(0.3, old_table)
    new_table = table(0.15, old_table).requires_grad_(True)  # a few updates after sampling: some ratios clip
    # a scorer's rewards, rounded to float32 as TRL stores reward-function outputs
    rewards = torch.randn(B, generator=gen, dtype=F64).float().double()

    # TRL: score the sampled batch, then the loss on the new policy
    standin = _RLOOStandIn(
        _TablePolicy(input_ids, old_table), _TablePolicy(input_ids, ref_table),
        (prompt_ids, completion_ids, [f"completion {i}" for i in range(B)]),
        rewards, n_samples, kl_coef, normalize, clip_eps,
    )
    batch = standin._generate_and_score_completions([{"prompt": f"prompt {i // n_samples}"} for i in range(B)])
    trl_loss = standin._compute_loss(_TablePolicy(input_ids, new_table), batch)

    # ours, from the same per-token tables (completion positions are the last C label positions)
    def logps(t: torch.Tensor) -> torch.Tensor:
        return sequence_logps(t[:, -C:], completion_mask)[0]

    adv = rloo_advantages(rewards, n_samples, logps(old_table), logps(ref_table), kl_coef, normalize)
    assert_close(adv.advantages, batch["advantages"], **TOL)
    assert (adv.advantages > 0).any() and (adv.advantages < 0).any()
    ours = rloo_loss(logps(new_table), logps(old_table), adv.advantages, clip_eps)
    assert ours.clipped.any() and not ours.clipped.all(), "the batch must exercise both branches of the clip"
    assert_close(ours.losses.mean(), trl_loss, **TOL)
    assert standin._metrics["train"]["clip_ratio/region_mean"][-1] == pytest.approx(ours.clipped.double().mean().item())
    (g_ours,) = torch.autograd.grad(ours.losses.mean(), new_table)
    (g_trl,) = torch.autograd.grad(trl_loss, new_table)
    assert_close(g_ours, g_trl, **TOL)


def test_rloo_advantages_by_hand():
    # leave-one-out: A_i = r_i - mean of the other samples of the same prompt
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0], dtype=F64)
    adv = rloo_advantages(rewards, 4).advantages
    expected = torch.tensor([1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3, -4 / 3, -4 / 3, -4 / 3, 4.0], dtype=F64)
    assert_close(adv, expected, **TOL)
    # KL penalty: reward - kl_coef * (old - ref) before the baseline
    pen = rloo_advantages(torch.tensor([1.0, 1.0], dtype=F64), 2, torch.tensor([-1.0, -3.0], dtype=F64),
                          torch.tensor([-1.5, -2.5], dtype=F64), kl_coef=1.0)
    assert_close(pen.rewards, torch.tensor([0.5, 1.5], dtype=F64), **TOL)
    assert_close(pen.advantages, torch.tensor([-1.0, 1.0], dtype=F64), **TOL)
    with pytest.raises(ValueError):
        rloo_advantages(rewards, 3)  # 8 completions do not split into groups of 3
    with pytest.raises(ValueError):
        rloo_advantages(rewards, 4, kl_coef=0.1)  # a KL penalty needs the log-probs


def test_rloo_loss_on_policy_is_reinforce():
    # one update per sampled batch: ratio 1, loss -A, gradient -A d log pi
    policy = torch.tensor([-3.0, -5.0, -1.0], dtype=F64, requires_grad=True)
    advantages = torch.tensor([2.0, -1.0, 0.5], dtype=F64)
    out = rloo_loss(policy, policy.detach(), advantages)
    assert_close(out.losses, -advantages, **TOL)
    (grad,) = torch.autograd.grad(out.losses.sum(), policy)
    assert_close(grad, -advantages, **TOL)
    assert not out.clipped.any()
    # ratio e^0.5 > 1.2: clipped (no gradient) for A > 0, unclipped for A < 0
    old = policy.detach() - 0.5
    out = rloo_loss(policy, old, torch.tensor([1.0, -1.0, 1.0], dtype=F64), clip_eps_low=0.2)
    assert_close(out.losses, torch.tensor([-1.2, math.exp(0.5), -1.2], dtype=F64), **TOL)
    (grad,) = torch.autograd.grad(out.losses.sum(), policy)
    assert_close(grad, torch.tensor([0.0, math.exp(0.5), 0.0], dtype=F64), **TOL)
    assert out.clipped.tolist() == [True, False, True]


# ----------------------------------------------------------------------------- helpers and config


def test_sequence_logps_sums_completion_tokens_only():
    token_logps = torch.tensor([[-1.0, -2.0, float("-inf")], [float("-inf"), -0.5, -0.25]], dtype=F64)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    total, n_tokens = sequence_logps(token_logps, mask)
    assert_close(total, torch.tensor([-3.0, -0.75], dtype=F64), **TOL)
    assert n_tokens.tolist() == [2, 2]
    with pytest.raises(ValueError):
        sequence_logps(token_logps, mask[:, :2])


def test_shape_mismatch_is_refused():
    a = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError):
        dpo_loss(a, a, a, torch.zeros(2, dtype=F64), 0.1)


def test_algorithm_config_validates():
    validate(AlgorithmConfig())
    for name in ALGORITHMS:
        validate(AlgorithmConfig(name=name))
    assert set(ALGORITHMS) == {"sft", "dpo", "ipo", "kto", "simpo", "rloo"}
    bad = [
        dict(name="ppo"), dict(beta=0.0), dict(beta=float("nan")), dict(simpo_beta=-1.0),
        dict(gamma_beta_ratio=-0.1), dict(desirable_weight=0.0), dict(kl_coef=-0.01), dict(clip_eps=1.0),
        dict(n_samples_per_prompt=1), dict(temperature=0.0), dict(max_new_tokens=0),
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError) as info:
            validate(AlgorithmConfig(**kwargs))
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="choose from: sft, dpo"):
        validate(AlgorithmConfig(name="ppo"))


def test_algorithm_config_loads_through_the_config_system():
    cfg = from_dict(AlgorithmConfig, {"name": "dpo", "beta": 0.02})  # P1 authors' beta [SPEC §6]
    assert cfg == AlgorithmConfig(name="dpo", beta=0.02)
    with pytest.raises(ConfigError):
        from_dict(AlgorithmConfig, {"name": "dpo", "betta": 0.02})
    assert [AlgorithmConfig(name=n).needs_reference for n in ("sft", "dpo", "ipo", "kto", "simpo", "rloo")] == [
        False, True, True, True, False, True,
    ]
    assert not AlgorithmConfig(name="rloo", kl_coef=0.0).needs_reference
