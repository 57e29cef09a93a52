"""What the one training loop minimises: a stage's objective, its plug point (DESIGN §6 rule 7).

:func:`springback.train.train` owns everything that must not vary between methods — the data
order from the seed, batches in examples, the cut at every measurement point, gradient
accumulation, DDP, the fresh AdamW, divergence checks — and asks an :class:`Objective` only for
the per-example losses of a micro-batch, given the indices of its items. SFT is today's
objective, unchanged (:class:`SFTObjective`); the preference and RL methods of
:mod:`springback.losses` are the others.

What one "example" (one item, one unit of ``n_examples``) is for each method:

=========  ==========  ====================================================================
method     item kind   one example is
=========  ==========  ====================================================================
sft        examples    one (prompt, response) pair; loss = mean NLL over its response tokens
dpo / ipo  pairs       one preference pair (prompt, chosen, rejected): two sequences
simpo      pairs       the same; no reference model
kto        labelled    one (prompt, completion) labelled desirable or undesirable
rloo       prompts     one prompt with its k = ``n_samples_per_prompt`` on-policy samples
=========  ==========  ====================================================================

The loop's loss per update is the mean over the update's examples of these per-example losses
(an RLOO example's loss is the mean over its k samples), so the accounting and the
accumulation-invariance of SFT carry over to every method.

**Reference model.** DPO, IPO and KTO compare the policy with the stage's starting weights.
Their reference log-probs are computed once, before the first update, for every sequence the
stage will ever score (the completions, and KTO's mismatched pairs), so no second copy of the
model is kept and the reference cannot drift. RLOO scores fresh samples, so it keeps a frozen
copy of the starting weights (``requires_grad`` off) when ``kl_coef > 0``. SimPO needs none.

**Per-update state.** Two methods need the whole update batch before its micro-batches: KTO's
reference point z0 (the mean log-ratio of the batch's mismatched pairs, no gradient, as TRL
computes it per batch) and RLOO's samples and leave-one-out advantages. :meth:`Objective.begin_update`
computes them on the *global* update batch on every process (replicated, deterministic), so
neither depends on how the batch is split into micro-batches or processes.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Sequence

import torch

from .config import AlgorithmConfig
from .errors import ConfigError
from .losses import dpo_loss, ipo_loss, kto_loss, rloo_advantages, rloo_loss, sequence_logps, simpo_loss
from .teacher import per_example_loss, token_logprobs
from .tokens import Encoded, EncodingReport, collate

# Which items each method trains on (DataSpec.kind in springback.pipeline).
ITEM_KINDS: dict[str, str] = {"sft": "examples", "dpo": "pairs", "ipo": "pairs", "simpo": "pairs",
                              "kto": "labelled", "rloo": "prompts"}
# Sequences per no-gradient forward pass when scoring references, z0 and samples (results do
# not depend on it beyond float rounding; it only bounds memory).
SCORE_BATCH = 32

# (model, prompts, n_per_prompt, seed) -> (texts, completion ids, prompt index of each), prompt-major
Sampler = Callable[[torch.nn.Module, Sequence[str], int, int], tuple[list[str], list[list[int]], list[int]]]
# (prompts, completions) -> one scalar reward per completion (higher = the stage's side)
Reward = Callable[[Sequence[str], Sequence[str]], list[float]]


# ----------------------------------------------------------------------------- encoded items


@dataclasses.dataclass
class EncodedPair:
    """A preference pair as two encoded sequences sharing a prompt."""

    chosen: Encoded
    rejected: Encoded


@dataclasses.dataclass
class EncodedLabelled:
    """A KTO example: one encoded sequence and whether it is desirable."""

    example: Encoded
    desirable: bool


@dataclasses.dataclass
class EncodedPrompt:
    """An RLOO example: the prompt text and the ids a sampler feeds for it."""

    prompt: str
    ids: list[int]


_ENCODED_TYPES = {"examples": Encoded, "pairs": EncodedPair, "labelled": EncodedLabelled, "prompts": EncodedPrompt}


def is_encoded(item: Any) -> bool:
    return isinstance(item, tuple(_ENCODED_TYPES.values()))


def _merge_reports(a: EncodingReport, b: EncodingReport) -> EncodingReport:
    """One report for pairs: a pair is kept when both sequences are, truncated when either is."""
    kept_b = set(b.kept)
    kept = [i for i in a.kept if i in kept_b]
    return EncodingReport(
        n_examples=a.n_examples, n_kept=len(kept), n_truncated=0, n_response_cut=0,
        n_dropped=a.n_examples - len(kept), n_prompt_mismatch=max(a.n_prompt_mismatch, b.n_prompt_mismatch),
        longest_tokens=max(a.longest_tokens, b.longest_tokens), max_length=a.max_length, truncation=a.truncation,
        template=a.template, kept=kept)


def encode_items(kind: str, items: Sequence[Any], encoder: Any, loss_on: str = "response") -> tuple[list, EncodingReport]:
    """Encode a stage's items with the stage's :class:`~springback.tokens.Encoder` (chat template,
    ``max_length``, ``truncation``) exactly as SFT encodes its examples; returns (encoded items,
    report), items dropped by truncation left out (``report.kept`` indexes the kept ones).

    ``kind``: ``examples`` (objects with prompt/response), ``pairs`` (prompt/chosen/rejected),
    ``labelled`` (prompt/response/desirable) or ``prompts`` (objects with a prompt; never truncated,
    as sampling prompts never are)."""
    if kind == "examples":
        return encoder.encode_all(items, loss_on)
    if kind == "pairs":
        chosen, rep_c = encoder.encode_all([(p.prompt, p.chosen) for p in items], loss_on)
        rejected, rep_r = encoder.encode_all([(p.prompt, p.rejected) for p in items], loss_on)
        by_c, by_r = dict(zip(rep_c.kept, chosen)), dict(zip(rep_r.kept, rejected))
        report = _merge_reports(rep_c, rep_r)
        report.n_truncated = sum(by_c[i].n_cut > 0 or by_r[i].n_cut > 0 for i in report.kept)
        report.n_response_cut = sum(by_c[i].response_cut or by_r[i].response_cut for i in report.kept)
        return [EncodedPair(by_c[i], by_r[i]) for i in report.kept], report
    if kind == "labelled":
        encoded, report = encoder.encode_all(items, loss_on)
        return [EncodedLabelled(e, bool(items[i].desirable)) for i, e in zip(report.kept, encoded)], report
    if kind == "prompts":
        prompts = [it.prompt for it in items]
        ids = encoder.encode_prompts(prompts)
        report = EncodingReport(
            n_examples=len(items), n_kept=len(items), n_truncated=0, n_response_cut=0, n_dropped=0,
            n_prompt_mismatch=0, longest_tokens=max((len(i) for i in ids), default=0), max_length=None,
            truncation=encoder.truncation, template=encoder.template_name, kept=list(range(len(items))))
        return [EncodedPrompt(p, i) for p, i in zip(prompts, ids)], report
    raise ValueError(f"unknown item kind {kind!r} (known: {', '.join(_ENCODED_TYPES)})")


# ----------------------------------------------------------------------------- the plug point


class Objective:
    """Per-example losses of a stage's items for :func:`springback.train.train`.

    ``len(objective)`` is the number of examples; ``start`` runs once before the first update
    (no gradient: reference log-probs), ``begin_update`` once per update on the whole (global)
    update batch, ``losses`` once per micro-batch and returns ``[len(indices)]`` with gradient."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def start(self, model: torch.nn.Module, device: torch.device) -> None:
        return None

    def begin_update(self, model: torch.nn.Module, indices: Sequence[int], seen: int, device: torch.device) -> None:
        return None

    def losses(self, model: torch.nn.Module, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface


def _batch(encoded: Sequence[Encoded], pad: int, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in collate(encoded, pad).items()}


def _seq_logps(model: Any, encoded: Sequence[Encoded], pad: int, device: torch.device,
               temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probs of each sequence's learned tokens [B], their counts [B]) in one forward pass."""
    logps, mask = token_logprobs(model, _batch(encoded, pad, device), temperature)  # [B, T-1] each
    return sequence_logps(logps, mask)


@torch.no_grad()
def _score_all(model: torch.nn.Module, encoded: Sequence[Encoded], pad: int, device: torch.device,
               temperature: float = 1.0) -> torch.Tensor:
    """Summed log-probs of many sequences without gradient, in eval mode, in chunks. [N]"""
    was_training = model.training
    model.eval()
    try:
        out = [_seq_logps(model, encoded[i : i + SCORE_BATCH], pad, device, temperature)[0]
               for i in range(0, len(encoded), SCORE_BATCH)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=device)


class SFTObjective(Objective):
    """The paper's SFT [SPEC §3.2]: mean next-token NLL over each example's learned tokens."""

    def __init__(self, encoded: Sequence[Encoded], pad: int):
        self.encoded, self.pad = list(encoded), pad

    def __len__(self) -> int:
        return len(self.encoded)

    def losses(self, model: torch.nn.Module, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        return per_example_loss(model, _batch([self.encoded[i] for i in indices], self.pad, device))  # [b]


class PairObjective(Objective):
    """DPO, IPO or SimPO on preference pairs (chosen and rejected in one forward pass)."""

    def __init__(self, cfg: AlgorithmConfig, pairs: Sequence[EncodedPair], pad: int):
        self.cfg, self.pairs, self.pad = cfg, list(pairs), pad
        self.ref_chosen: torch.Tensor | None = None  # [N] summed log-probs under the starting weights
        self.ref_rejected: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def start(self, model: torch.nn.Module, device: torch.device) -> None:
        if self.cfg.name == "simpo":
            return  # reference-free
        self.ref_chosen = _score_all(model, [p.chosen for p in self.pairs], self.pad, device)
        self.ref_rejected = _score_all(model, [p.rejected for p in self.pairs], self.pad, device)

    def losses(self, model: torch.nn.Module, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        b = len(indices)
        seqs = [self.pairs[i].chosen for i in indices] + [self.pairs[i].rejected for i in indices]
        logps, lengths = _seq_logps(model, seqs, self.pad, device)  # [2b] each
        pc, pr, lc, lr = logps[:b], logps[b:], lengths[:b], lengths[b:]
        c = self.cfg
        if c.name == "simpo":
            return simpo_loss(pc, pr, lc, lr, c.simpo_beta, c.gamma_beta_ratio).losses
        idx = torch.tensor(list(indices), device=device)
        rc, rr = self.ref_chosen[idx], self.ref_rejected[idx]
        if c.name == "ipo":
            return ipo_loss(pc, pr, rc, rr, lc, lr, c.beta).losses
        return dpo_loss(pc, pr, rc, rr, c.beta).losses


def mismatched(prompt_side: Encoded, response_side: Encoded, max_length: int | None) -> Encoded:
    """KTO's KL pair: the prompt ids of one example followed by the completion ids of another (a
    token-level splice, as TRL builds its KL completions); the prompt is cut from the left to fit."""
    prompt = prompt_side.input_ids[: prompt_side.n_prompt_tokens]
    resp_ids = response_side.input_ids[response_side.n_prompt_tokens :]
    resp_mask = response_side.loss_mask[response_side.n_prompt_tokens :]
    if max_length is not None and len(prompt) + len(resp_ids) > max_length:
        keep = max(1, max_length - len(resp_ids))
        prompt = prompt[-keep:]
        resp_ids, resp_mask = resp_ids[: max_length - len(prompt)], resp_mask[: max_length - len(prompt)]
    return Encoded(prompt + resp_ids, [False] * len(prompt) + list(resp_mask), len(prompt))


class KTOObjective(Objective):
    """KTO on labelled examples; example i's KL pair is its prompt with example i+1's completion
    (cyclically, in stream order), so every reference log-prob is known before training."""

    def __init__(self, cfg: AlgorithmConfig, items: Sequence[EncodedLabelled], pad: int, max_length: int | None):
        if not items:
            raise ConfigError("a KTO stage needs at least one example")
        self.cfg, self.items, self.pad = cfg, list(items), pad
        n = len(self.items)
        self.kl_pairs = [mismatched(self.items[i].example, self.items[(i + 1) % n].example, max_length) for i in range(n)]
        self.ref: torch.Tensor | None = None  # [N] reference log-probs of the completions
        self.ref_kl: torch.Tensor | None = None  # [N] of the KL pairs
        self._kl_policy: torch.Tensor | None = None  # this update's batch: policy log-probs of its KL pairs
        self._kl_ref: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.items)

    def start(self, model: torch.nn.Module, device: torch.device) -> None:
        self.ref = _score_all(model, [it.example for it in self.items], self.pad, device)
        self.ref_kl = _score_all(model, self.kl_pairs, self.pad, device)

    def begin_update(self, model: torch.nn.Module, indices: Sequence[int], seen: int, device: torch.device) -> None:
        # z0 from the whole update batch, without gradient (TRL: one KL estimate per batch).
        self._kl_policy = _score_all(model, [self.kl_pairs[i] for i in indices], self.pad, device)
        self._kl_ref = self.ref_kl[torch.tensor(list(indices), device=device)]

    def losses(self, model: torch.nn.Module, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        logps, _ = _seq_logps(model, [self.items[i].example for i in indices], self.pad, device)  # [b]
        ref = self.ref[torch.tensor(list(indices), device=device)]
        want = torch.tensor([self.items[i].desirable for i in indices], device=device)
        d, u = want.nonzero().squeeze(1), (~want).nonzero().squeeze(1)
        c = self.cfg
        out = kto_loss(logps[d], logps[u], self._kl_policy, ref[d], ref[u], self._kl_ref, c.beta,
                       c.desirable_weight, c.undesirable_weight).losses  # desirable first, then undesirable
        order = torch.cat([d, u])
        return torch.empty_like(out).scatter(0, order, out)  # back in the items' order


class RLOOObjective(Objective):
    """RLOO: per update, k samples per prompt from the current policy, rewarded by ``reward``,
    penalised by kl_coef × (log π_old − log π_ref), leave-one-out advantages, one update."""

    def __init__(self, cfg: AlgorithmConfig, prompts: Sequence[EncodedPrompt], pad: int, sampler: Sampler,
                 reward: Reward, seed: int):
        self.cfg, self.prompts, self.pad = cfg, list(prompts), pad
        self.sampler, self.reward, self.seed = sampler, reward, seed
        self.reference: torch.nn.Module | None = None
        self._samples: dict[int, tuple[list[Encoded], torch.Tensor]] = {}  # prompt index -> (k sequences, advantages [k])
        self.history: list[dict[str, float]] = []  # per update: mean reward, mean KL estimate (diagnostics)

    def __len__(self) -> int:
        return len(self.prompts)

    def start(self, model: torch.nn.Module, device: torch.device) -> None:
        if self.cfg.needs_reference:
            self.reference = copy.deepcopy(model).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

    def begin_update(self, model: torch.nn.Module, indices: Sequence[int], seen: int, device: torch.device) -> None:
        c, g = self.cfg, self.cfg.n_samples_per_prompt
        prompts = [self.prompts[i] for i in indices]
        # One sampling seed per update, from the stage seed and the examples seen: runs repeat exactly.
        texts, completions, pidx = self.sampler(model, [p.prompt for p in prompts], g, self.seed * 1_000_003 + seen)
        seqs = [Encoded(prompts[j].ids + ids, [False] * len(prompts[j].ids) + [True] * len(ids), len(prompts[j].ids))
                for j, ids in zip(pidx, completions)]  # [N*G], prompt-major
        rewards = torch.tensor(self.reward([prompts[j].prompt for j in pidx], texts), dtype=torch.float32, device=device)
        old = _score_all(model, seqs, self.pad, device, c.temperature) if c.kl_coef > 0 else None
        ref = _score_all(self.reference, seqs, self.pad, device, c.temperature) if c.kl_coef > 0 else None
        adv = rloo_advantages(rewards, g, old, ref, c.kl_coef, c.normalize_advantages).advantages  # [N*G]
        self._samples = {i: (seqs[j * g : (j + 1) * g], adv[j * g : (j + 1) * g]) for j, i in enumerate(indices)}
        self.history.append({"seen": float(seen), "reward": float(rewards.mean()),
                             "kl": float((old - ref).mean()) if old is not None else float("nan")})

    def losses(self, model: torch.nn.Module, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        g = self.cfg.n_samples_per_prompt
        seqs = [s for i in indices for s in self._samples[i][0]]
        adv = torch.cat([self._samples[i][1] for i in indices])  # [b*G]
        logps, _ = _seq_logps(model, seqs, self.pad, device, self.cfg.temperature)  # [b*G]
        # One update per sampled batch: the sampling policy is the current one, so π_old = π.detach() (ratio 1).
        out = rloo_loss(logps, logps.detach(), adv, self.cfg.clip_eps).losses
        return out.view(len(indices), g).mean(1)  # [b]: one example = one prompt with its k samples


def build_objective(cfg: AlgorithmConfig, items: Sequence[Any], pad: int, *, max_length: int | None = None,
                    sampler: Sampler | None = None, reward: Reward | None = None, seed: int = 0) -> Objective:
    """The objective of a stage training by ``cfg.name`` on encoded ``items`` (see :func:`encode_items`).

    RLOO needs ``sampler`` (draws completions from the current policy) and ``reward`` (scores
    them); the pipeline builds both from the stage's data source."""
    kind = ITEM_KINDS.get(cfg.name)
    if kind is None:
        raise ConfigError(f"unknown algorithm '{cfg.name}' (choose from: {', '.join(ITEM_KINDS)})")
    want = _ENCODED_TYPES[kind]
    if items and not isinstance(items[0], want):
        raise ConfigError(f"algorithm '{cfg.name}' trains on {kind}, got {type(items[0]).__name__} items")
    if cfg.name == "sft":
        return SFTObjective(items, pad)
    if kind == "pairs":
        return PairObjective(cfg, items, pad)
    if kind == "labelled":
        return KTOObjective(cfg, items, pad, max_length)
    if sampler is None or reward is None:
        raise ConfigError("algorithm 'rloo' samples and scores completions: it runs inside an experiment or "
                          "`springback align`, which give it the data source's labeller or scorer as reward")
    return RLOOObjective(cfg, items, pad, sampler, reward, seed)
