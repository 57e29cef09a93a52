"""Resistance: forward vs inverse alignment (SPEC §3.1, P1 §5.1 Table 1), with an entropy control.

Protocol per (world, size, seed):

1. Base: a cached pre-trained world model (shared with ``rebound``: same world, pre-training
   budget and seed give the same base) or any causal LM from ``model.path``.
2. One epoch of SFT on ``n_align_examples`` aligned examples; weights are snapshot at the
   ``checkpoint_fractions`` of the epoch (default 0.25 / 0.5 / 0.75, as the authors' code
   suggests [SPEC §3.1]) — θ1, θ2, θ3.
3. Every checkpoint answers the same held-out prompts (``answers.n_answers`` each; temperature
   0.05, top-p 0.95 as the authors [SPEC §3.1]), with the same sampling seed.
4. For every pair i < j: **inverse** = fine-tune a copy of θj on θi's answers; **forward** =
   fine-tune a copy of θi on θj's answers. Both directions get the same prompts in the same
   order, the same number of examples and updates, the same seed and hyper-parameters, and a
   fresh optimizer (the paper's stages start fresh [SPEC §3.2]). With ``model.lora_r > 0`` every
   stage trains a fresh LoRA adapter that is merged back (:func:`.common.finetune`).

Metrics per direction (one records row each):

* ``mean_loss`` — mean training loss over the run (the authors' code); ``final_loss`` — the
  last update's loss (the paper's text); the full curve is kept (``curve_loss``).
* ``generator_loss`` — the loss of the checkpoint that *wrote* the targets on its own answers,
  and ``excess_mean_loss`` / ``excess_final_loss`` = training loss − generator_loss. Forward and
  inverse train on different targets, so raw loss partly measures how hard each target is
  [SPEC §3.1, ours]; the excess removes what the writer itself could not predict.
  **Reduction**: every loss here is the one :func:`springback.train.per_example_loss` uses —
  the mean NLL over an example's response tokens (+ EOS), then the mean over examples — so
  the training loss and the generator's loss are the same kind of number (nats per token,
  per-example weighted) and their difference is like for like.
* ``target_entropy`` (synthetic worlds) — the exact entropy of the distribution the targets
  were drawn from, in the same reduction: E_{y~q}[−log q(y|x) / n_tokens(y)], where q is the
  writer's *sampling* distribution (temperature and top-p applied per token, as sampled)
  restricted to the world's finite answer sets A ∪ N (``target_coverage`` = q's mass there).
  This is the loss a learner equal to q would have, the floor of the training loss.
* ``kl_before`` / ``kl_after`` — KL(learner ‖ target checkpoint) in nats per answer on the
  held-out prompts before and after fine-tuning (:func:`springback.measure.sequence_kl`,
  samples from the learner at temperature 1); ``kl_change = kl_before − kl_after``, how far
  the fine-tune moved the learner toward its target (P1's appendix variant [SPEC §3.1]; the
  paper reports only that the change is larger forward than inverse — this reading is ours).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..analysis import Claim, claim_from_seed_values, t_interval
from ..analysis.stats import REPRODUCED
from ..config import ModelConfig, TrainConfig, WorldConfig, to_dict
from ..errors import ConfigError, SpringbackError
from ..measure import sample, sequence_kl
from ..measure.sampling import _probs
from ..models.training import finish_training
from ..teacher import per_example_loss
from ..tokens import IGNORE, Encoded, collate, encode
from ..train import TrainResult
from ..worlds import get_world
from ..worlds.base import ALIGNED, Example
from .base import Experiment, RunContext
from .common import DEFAULT_PRETRAIN, base_key, clone, finetune, finetune_key, load, pretrained_base


@dataclasses.dataclass
class AnswerConfig:
    """How each checkpoint answers the shared held-out prompts."""

    n_answers: int = 2  # answers per prompt per checkpoint
    temperature: float = 0.05  # the authors' sampling [SPEC §3.1]
    top_p: float = 0.95
    max_new_tokens: int = 20
    n_kl_samples: int = 4  # samples per prompt (temperature 1) for the KL estimates; 0 = no KL


@dataclasses.dataclass
class ResistanceDataConfig:
    """A real data file in place of the worlds (empty ``path`` = the synthetic worlds)."""

    path: str = ""  # local Alpaca / TruthfulQA / BeaverTails / pairs file (csv, json, jsonl, parquet)
    format: str = "auto"  # auto | alpaca | truthfulqa | beavertails | pairs (see springback.data.FORMATS)
    template: str = ""  # prompt template name or string with {input}; "" = the format's (the paper's)
    n_eval_prompts: int = 16  # distinct prompts held out from SFT; the checkpoints answer these


@dataclasses.dataclass
class ResistanceConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment", "safety", "truthful"])
    # Size presets; ignored when model.path is set. micro bases are shared with rebound.
    sizes: list[str] = dataclasses.field(default_factory=lambda: ["nano", "micro"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    n_align_examples: int = 1000  # the SFT epoch (real data: 0 = every aligned example not held out)
    checkpoint_fractions: list[float] = dataclasses.field(default_factory=lambda: [0.25, 0.5, 0.75])
    answers: AnswerConfig = dataclasses.field(default_factory=AnswerConfig)
    world: WorldConfig = dataclasses.field(default_factory=WorldConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    # forward / inverse fine-tunes: both directions use exactly this (epochs = passes over the answers)
    finetune: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(epochs=4))
    data: ResistanceDataConfig = dataclasses.field(default_factory=ResistanceDataConfig)


# quick = the embedded default grid (3 worlds × nano, micro × 3 seeds). Its cost is mostly the 18
# pre-trained bases; under `springback reproduce` the micro sentiment / safety ones are rebound's
# and the nano sentiment ones scaling's, so only safety / truthful nano and truthful micro are new.
PRESETS = {
    "quick": {},
    "full": {"seeds": [0, 1, 2, 3, 4], "answers": {"n_answers": 4, "n_kl_samples": 16}},
}

FORWARD, INVERSE = "forward", "inverse"


# ----------------------------------------------------------------------------- measurements


@torch.no_grad()
def dataset_loss(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example], max_length: int = 64,
                 batch_size: int = 128) -> float:
    """Mean over examples of :func:`per_example_loss` (nats per response token, per-example
    weighted) — the same reduction as the training loss, so the two can be subtracted."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(examples), batch_size):
        enc = [encode(tokenizer, e.prompt, e.response, "response", max_length) for e in examples[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(enc, pad_id).items()}
        total += float(per_example_loss(model, batch).double().sum())
    if was_training:
        model.train()
    return total / len(examples)


def _pair_encodings(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], max_length: int) -> list[Encoded]:
    """``encode(tokenizer, p, c)`` for every (prompt, completion) pair, prompt-major, with each
    text tokenised once (the same ids and loss mask as :func:`springback.train.encode`)."""
    p_ids = [tokenizer(p).input_ids for p in prompts]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    c_ids = [(tokenizer(c, add_special_tokens=False).input_ids if c else []) + eos for c in completions]
    out = []
    for p in p_ids:
        for c in c_ids:
            ids, mask = (list(p) + list(c))[:max_length], ([False] * len(p) + [True] * len(c))[:max_length]
            out.append(Encoded(ids, mask))
    return out


@torch.no_grad()
def exact_answer_stats(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], aligned: Sequence[str],
                       opposing: Sequence[str], temperature: float, top_p: float, batch_size: int = 256,
                       max_length: int = 128) -> dict[str, float]:
    """Exact measures over the finite answer sets A (``aligned``) and N (``opposing``), one pass:

    * ``pi_pos``, ``score_S``, ``coverage`` — π⁺ = Σ_A π / Σ_{A∪N} π at temperature 1, S = log(π⁺/π⁻)
      and the mass on A ∪ N (as :func:`springback.measure.alignment_measure`);
    * ``target_entropy``, ``target_coverage`` — for the *sampling* distribution q (temperature
      and top-p applied per token, exactly as :func:`springback.measure.sample` draws), the
      exact E_{y~q}[−log q(y|x) / n_tokens(y)] over A ∪ N renormalised, and q's mass there.
      Nats per token, in the reduction of the training loss (per example, then mean).
    Prompt means of each."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    completions = list(aligned) + list(opposing)
    enc = _pair_encodings(tokenizer, prompts, completions, max_length)
    logp = torch.empty(len(enc), dtype=torch.float64)  # log π(y|x), temperature 1
    logq = torch.empty(len(enc), dtype=torch.float64)  # log q(y|x), the sampler's distribution
    n_tok = torch.empty(len(enc), dtype=torch.float64)
    for start in range(0, len(enc), batch_size):
        chunk = enc[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        mask = batch["labels"][:, 1:] != IGNORE  # [B, T-1]
        rows = mask.nonzero()[:, 0]  # only the scored positions: [N] row of each
        flat = logits[mask].float()  # [N, V]
        tgt = batch["labels"][:, 1:][mask].unsqueeze(-1)  # [N, 1]
        lp = torch.log_softmax(flat, -1).gather(-1, tgt).squeeze(-1).double()  # [N]
        lq = _probs(flat, temperature, top_p).gather(-1, tgt).squeeze(-1).double().log()  # the sampler's own transform
        end = start + len(chunk)
        logp[start:end] = torch.zeros(len(chunk), dtype=torch.float64, device=lp.device).index_add_(0, rows, lp).cpu()
        logq[start:end] = torch.zeros(len(chunk), dtype=torch.float64, device=lq.device).index_add_(0, rows, lq).cpu()
        n_tok[start:end] = mask.sum(1).double().cpu()
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
            n_per_prompt: int, seed: int, max_new_tokens: int) -> float:
    """KL(learner ‖ target) in nats per answer, from the learner's own samples (temperature 1)."""
    _, ids, pidx = sample(learner, tokenizer, prompts, n_per_prompt, seed=seed, max_new_tokens=max_new_tokens)
    return float(sequence_kl(learner, target, tokenizer, prompts, ids, pidx).mean())


def answer_examples(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], cfg: AnswerConfig,
                    seed: int) -> list[Example]:
    """``cfg.n_answers`` sampled answers per prompt (prompt-major order), as training examples.

    The answer text is decoded without stripping, so re-encoding it reproduces the sampled
    tokens (a leading-space token of a BPE vocabulary survives)."""
    _, ids, pidx = sample(model, tokenizer, prompts, cfg.n_answers, seed=seed, temperature=cfg.temperature,
                          top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    eos = tokenizer.eos_token_id
    out = []
    for row, p in zip(ids, pidx):
        body = [t for t in row if t != eos]
        out.append(Example(prompts[p], tokenizer.decode(body, skip_special_tokens=True), ALIGNED))
    return out


# ----------------------------------------------------------------------------- one pair


def direction_run(learner_start: torch.nn.Module, target: torch.nn.Module, tokenizer: Any,
                  targets: Sequence[Example], generator_loss: float, cfg: ResistanceConfig, prompts: Sequence[str],
                  *, seed: int, stage: str = "finetune", progress: bool = False) -> tuple[dict, TrainResult]:
    """Fine-tune a copy of ``learner_start`` on ``targets`` (written by ``target``); one row."""
    model = clone(learner_start)
    a = cfg.answers
    row: dict[str, Any] = {}
    kl_on = a.n_kl_samples > 0
    if kl_on:
        row["kl_before"] = mean_kl(model, target, tokenizer, prompts, a.n_kl_samples, seed + 7, a.max_new_tokens)
    row["start_loss"] = dataset_loss(model, tokenizer, targets, cfg.finetune.max_length)
    result = finetune(model, tokenizer, list(targets), cfg.finetune, cfg.model, seed=seed, stage=stage, progress=progress)
    row["end_loss"] = dataset_loss(model, tokenizer, targets, cfg.finetune.max_length)
    if kl_on:
        row["kl_after"] = mean_kl(model, target, tokenizer, prompts, a.n_kl_samples, seed + 7, a.max_new_tokens)
        row["kl_change"] = row["kl_before"] - row["kl_after"]
    row.update(
        n_examples=result.n_examples[-1], n_updates=len(result.loss), mean_loss=result.mean_loss,
        final_loss=result.final_loss, generator_loss=generator_loss,
        excess_mean_loss=result.mean_loss - generator_loss, excess_final_loss=result.final_loss - generator_loss,
        excess_end_loss=row["end_loss"] - generator_loss,
        curve_n_examples=list(result.n_examples), curve_loss=[float(x) for x in result.loss],
    )
    del model
    return row, result


def pair_rows(checkpoints: Sequence[torch.nn.Module], answers: Sequence[Sequence[Example]],
              generator_losses: Sequence[float], tokenizer: Any, cfg: ResistanceConfig, prompts: Sequence[str],
              *, seed: int, label: str = "", progress: bool = False) -> list[dict]:
    """Forward and inverse runs for every pair i < j of checkpoints (1-based in the rows)."""
    rows = []
    for i, j in itertools.combinations(range(len(checkpoints)), 2):
        pair = f"{i + 1}-{j + 1}"
        # inverse: the later θj learns the earlier θi's answers; forward: θi learns θj's.
        for direction, learner, writer in ((INVERSE, j, i), (FORWARD, i, j)):
            row, _ = direction_run(checkpoints[learner], checkpoints[writer], tokenizer, answers[writer],
                                   generator_losses[writer], cfg, prompts, seed=seed,
                                   stage=f"{direction} {pair} {label}".strip(), progress=progress)
            rows.append({"phase": "finetune", "pair": pair, "i": i + 1, "j": j + 1, "direction": direction,
                         "learner": learner + 1, "writer": writer + 1, **row})
    return rows


# ----------------------------------------------------------------------------- tasks (world or data file)


@dataclasses.dataclass
class Task:
    """What one cell needs: SFT examples, held-out prompts, and (worlds) exact answer sets."""

    name: str
    sft: list[Example]
    prompts: list[str]
    answer_sets: tuple[list[str], list[str]] | None  # (A, N) for exact π⁺ and target entropy
    labeller: Any = None  # text -> label, or None


def world_task(name: str, cfg: ResistanceConfig, seed: int) -> Task:
    world = get_world(name, cfg.world.narrowness)
    if cfg.n_align_examples < 1:
        raise ConfigError("n_align_examples must be >= 1 for a synthetic world")
    return Task(name, world.aligned(cfg.n_align_examples, seed), world.eval_prompts(cfg.world.n_eval_prompts),
                world.reference_sets(), world.label)


def data_task(cfg: ResistanceConfig) -> Task:
    """Aligned examples of ``data.path``; ``data.n_eval_prompts`` distinct prompts (a fixed
    shuffle, the same for every seed) are held out from SFT and answered by the checkpoints."""
    from ..data import load_examples

    d = cfg.data
    examples = load_examples(d.path, d.format, label=ALIGNED, template=d.template or None)
    prompts = list(dict.fromkeys(e.prompt for e in examples))
    random.Random("resistance/held-out").shuffle(prompts)
    if d.n_eval_prompts < 1 or d.n_eval_prompts >= len(prompts):
        raise SpringbackError(f"data.n_eval_prompts must be in 1..{len(prompts) - 1} ({d.path} has {len(prompts)} distinct prompts)")
    held = set(prompts[: d.n_eval_prompts])
    sft = [e for e in examples if e.prompt not in held]
    if cfg.n_align_examples > 0:
        if cfg.n_align_examples > len(sft):
            raise SpringbackError(f"n_align_examples = {cfg.n_align_examples} but {d.path} has {len(sft)} aligned examples outside the held-out prompts")
        sft = sft[: cfg.n_align_examples]
    return Task(f"data:{Path(d.path).stem}", sft, prompts[: d.n_eval_prompts], None, None)


# ----------------------------------------------------------------------------- one cell


def checkpoint_points(n_examples: int, fractions: Sequence[float]) -> list[int]:
    """Example counts of the checkpoints; distinct, inside the epoch."""
    points = [int(round(f * n_examples)) for f in fractions]
    if len(points) < 2 or any(not 0 < p <= n_examples for p in points) or len(set(points)) != len(points) or points != sorted(points):
        raise ConfigError(f"checkpoint_fractions {list(fractions)} of {n_examples} examples must give >= 2 distinct, "
                          "increasing points inside the epoch")
    return points


def cell_rows(base: torch.nn.Module, tokenizer: Any, task: Task, cfg: ResistanceConfig, seed: int,
              label: str = "", progress: bool = False) -> list[dict]:
    """SFT with checkpoints, answers, then every pair in both directions. Rows without ids."""
    points = checkpoint_points(len(task.sft), cfg.checkpoint_fractions)
    model = clone(base)
    checkpoints: list[torch.nn.Module] = []
    # A snapshot is a plain model: under LoRA the copy's adapter is merged into its weights.
    finetune(model, tokenizer, task.sft, cfg.align, cfg.model, seed=seed, stage=f"align {label}", measure_at=points,
             on_measure=lambda n, m: checkpoints.append(finish_training(clone(m))), progress=progress)
    del model
    a = cfg.answers
    answers = [answer_examples(m, tokenizer, task.prompts, a, seed) for m in checkpoints]
    gen_losses = [dataset_loss(m, tokenizer, ans, cfg.finetune.max_length) for m, ans in zip(checkpoints, answers)]
    rows = []
    for k, (m, ans) in enumerate(zip(checkpoints, answers)):
        row = {"phase": "checkpoint", "checkpoint": k + 1, "n_align_seen": points[k], "generator_loss": gen_losses[k],
               "n_distinct_answers": len({(e.prompt, e.response) for e in ans}), "n_answers": len(ans)}
        if task.labeller is not None:
            row["answer_aligned_rate"] = sum(task.labeller(e.response) == ALIGNED for e in ans) / len(ans)
        if task.answer_sets is not None:
            a_set, n_set = task.answer_sets
            row.update(exact_answer_stats(m, tokenizer, task.prompts, a_set, n_set, a.temperature, a.top_p))
            known = set(a_set) | set(n_set)
            row["answer_in_sets_rate"] = sum(e.response in known for e in ans) / len(ans)
        rows.append(row)
    rows += pair_rows(checkpoints, answers, gen_losses, tokenizer, cfg, task.prompts, seed=seed, label=label,
                      progress=progress)
    # Each direction's target entropy is its writer's (None outside the synthetic worlds).
    by_ckpt = {r["checkpoint"]: r for r in rows if r["phase"] == "checkpoint"}
    for r in rows:
        if r["phase"] == "finetune" and "target_entropy" in by_ckpt[r["writer"]]:
            r["target_entropy"] = by_ckpt[r["writer"]]["target_entropy"]
            r["target_coverage"] = by_ckpt[r["writer"]]["target_coverage"]
            r["excess_over_entropy_mean_loss"] = r["mean_loss"] - r["target_entropy"]
    return rows


def run(cfg: ResistanceConfig, ctx: RunContext) -> None:
    if cfg.data.path and not cfg.model.path:
        raise ConfigError("data.path is set: also set model.path (a tiny preset has no tokenizer for real text)")
    # Fail on bad input before any training.
    checkpoint_points(max(cfg.n_align_examples, 100), cfg.checkpoint_fractions)
    if not cfg.seeds:
        raise ConfigError("seeds must list at least one seed")
    if not cfg.data.path:
        from ..models import PRESETS as SIZE_PRESETS

        for name in cfg.worlds:
            get_world(name)
        unknown = [s for s in cfg.sizes if s not in SIZE_PRESETS]
        if unknown or not cfg.sizes:
            raise ConfigError(f"unknown size preset '{unknown[0] if unknown else ''}' (choose from: {', '.join(SIZE_PRESETS)})")
        if cfg.n_align_examples < 1:
            raise ConfigError("n_align_examples must be >= 1 for the synthetic worlds")
    if cfg.answers.n_answers < 1:
        raise ConfigError("answers.n_answers must be >= 1")
    sizes = [cfg.model.path] if cfg.model.path else list(cfg.sizes)
    task_names = [None] if cfg.data.path else list(cfg.worlds)
    common = {"kind": "resistance/cell", "n_align_examples": cfg.n_align_examples,
              "checkpoint_fractions": list(cfg.checkpoint_fractions), "answers": to_dict(cfg.answers),
              "align": to_dict(cfg.align), "finetune": to_dict(cfg.finetune), **finetune_key(cfg.model)}
    if cfg.data.path:
        common["data"] = to_dict(cfg.data)
    else:
        common.update(n_eval_prompts=cfg.world.n_eval_prompts, narrowness=cfg.world.narrowness)
    for world_name in task_names:
        for size in sizes:
            model_cfg = cfg.model if cfg.model.path else dataclasses.replace(cfg.model, preset=size)
            size_label = (Path(cfg.model.path).name or cfg.model.path) if cfg.model.path else size
            for seed in cfg.seeds:
                bkey = base_key(world_name or "data", cfg.world, model_cfg, cfg.pretrain, seed)

                def compute(world_name=world_name, model_cfg=model_cfg, size_label=size_label, seed=seed):
                    task = data_task(cfg) if world_name is None else world_task(world_name, cfg, seed)
                    path = pretrained_base(ctx, world_name or "data", cfg.world, model_cfg, cfg.pretrain, seed)
                    base, tok = load(path, model_cfg)
                    label = f"{task.name}/{size_label}/s{seed}"
                    rows = cell_rows(base, tok, task, cfg, seed, label=label, progress=ctx.progress)
                    return [{"world": task.name, "size": size_label, "seed": seed, **r} for r in rows]

                ctx.run_cell({**common, "base": bkey}, compute, name=f"{world_name or 'data'} {size_label} s{seed}")


# ----------------------------------------------------------------------------- analysis


def paired(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """forward, inverse and diff = forward − inverse per (world, size, pair, seed)."""
    ft = df[df.phase == "finetune"]
    if metric not in ft.columns or ft[metric].isna().all():
        return pd.DataFrame(columns=["world", "size", "pair", "seed", FORWARD, INVERSE, "diff"])
    wide = ft.pivot_table(index=["world", "size", "pair", "seed"], columns="direction", values=metric, aggfunc="first")
    wide = wide.dropna(subset=[FORWARD, INVERSE]).reset_index()
    wide["diff"] = wide[FORWARD] - wide[INVERSE]
    return wide


def cell_table(p: pd.DataFrame) -> list[dict]:
    """The Table-1 matrix: per (world, size, pair) the mean forward and inverse values over
    seeds, and forward − inverse with its 95% t-interval over seeds."""
    out = []
    for (world, size, pair), g in p.groupby(["world", "size", "pair"], sort=True):
        mean, lo, hi = t_interval(g["diff"].tolist())
        out.append({"world": world, "size": size, "pair": pair, FORWARD: float(g[FORWARD].mean()),
                    INVERSE: float(g[INVERSE].mean()), "diff": mean, "ci_low": lo, "ci_high": hi,
                    "n_seeds": int(len(g)), "n_seeds_holding": int((g["diff"] > 0).sum()), "holds": bool(mean > 0)})
    return out


def paired_claim(df: pd.DataFrame, metric: str, id: str, statement: str, paper: str, unit: str, **extra: Any) -> Claim:
    """Effect = mean over seeds of (mean over cells of forward − inverse); t-interval over seeds;
    plus the share of (world, size, pair) cells where the seed-mean difference is > 0."""
    p = paired(df, metric)
    per_seed = [float(g["diff"].mean()) for _, g in p.groupby("seed", sort=True)] if len(p) else []
    cells = cell_table(p) if len(p) else []
    n_hold = sum(c["holds"] for c in cells)
    return claim_from_seed_values(
        id, statement, paper, per_seed, unit=unit, metric=metric, n_cells=len(cells), n_cells_holding=n_hold,
        fraction_cells_holding=(n_hold / len(cells)) if cells else float("nan"),
        n_cells_interval_above_zero=sum(1 for c in cells if c["ci_low"] > 0), cells=cells, **extra,
    )


def _sub(claim: Claim) -> dict:
    """A secondary measure's numbers, for a claim's details."""
    d = claim.details
    return {"effect": claim.effect, "ci": [claim.ci_low, claim.ci_high], "verdict": claim.verdict,
            "n_cells_holding": d.get("n_cells_holding"), "n_cells": d.get("n_cells")}


PAPER_TABLE1 = ("Inverse alignment (θj trained on θi's answers) reaches a lower training loss than forward "
                "alignment (θi on θj's answers) in all 27 cells (Llama2-7B/13B, Llama3-8B × Alpaca, TruthfulQA, "
                "BeaverTails × pairs 1-2, 2-3, 1-3); gaps 0.0002–0.0961 [P1 §5.1, Table 1; SPEC §3.1]")


def analyze(df: pd.DataFrame, cfg: ResistanceConfig) -> list[Claim]:
    ft = df[df.phase == "finetune"] if "phase" in df.columns else df.iloc[0:0]
    n_pairs = ft.groupby(["world", "size", "seed", "pair"]).ngroups if len(ft) else 0
    # 1. raw loss (mean over the run, as the authors' code; final loss, as the text, in details)
    final = paired_claim(df, "final_loss", "final", "", "", "")
    end = paired_claim(df, "end_loss", "end", "", "", "")
    c1 = paired_claim(
        df, "mean_loss", "resistance.inverse_lower_loss",
        "Inverse alignment has a lower mean training loss than forward alignment with the same prompts, "
        "examples, updates and hyper-parameters (effect: forward − inverse, mean over cells, interval over seeds)",
        PAPER_TABLE1, "nats per token", final_loss=_sub(final), end_loss_full_set=_sub(end), n_pair_runs=n_pairs,
    )
    # 2. the entropy control
    c2 = paired_claim(
        df, "excess_mean_loss", "resistance.inverse_lower_excess_loss",
        "Inverse alignment has a lower excess loss (training loss − the writer checkpoint's own loss on its "
        "answers) than forward alignment (effect: forward − inverse)",
        PAPER_TABLE1 + "; the excess-loss control is ours [SPEC §3.1]", "nats per token",
        excess_final_loss=_sub(paired_claim(df, "excess_final_loss", "x", "", "", "")),
    )
    def seed_gap(frame: pd.DataFrame, meaning: str) -> dict:
        m, lo, hi = t_interval([float(g["diff"].mean()) for _, g in frame.groupby("seed", sort=True)])
        return {"effect": m, "ci": [lo, hi], "meaning": meaning}

    gen = paired(df, "generator_loss")
    if len(gen):
        c2.details["writer_loss_gap"] = seed_gap(gen, "forward writer's own loss − inverse writer's own loss "
                                                 "(θj's − θi's), mean over cells")
    ent = paired(df, "target_entropy")
    if len(ent):
        c2.details["exact_target_entropy_gap"] = seed_gap(ent, "entropy of θj's sampling distribution − θi's "
                                                          "(forward targets − inverse targets), exact over A ∪ N")
        c2.details["excess_over_exact_entropy"] = _sub(paired_claim(df, "excess_over_entropy_mean_loss", "e", "", "", ""))
    if c1.verdict == REPRODUCED and c2.verdict != REPRODUCED:
        c2.statement += (". Raw loss favours inverse alignment but excess loss does not: the raw result is "
                         "explained by the different entropy (predictability) of the two directions' targets")
        c2.details["raw_explained_by_target_entropy"] = True
    elif c1.verdict == REPRODUCED and c2.verdict == REPRODUCED:
        c2.statement += ". The raw result survives the control"
        c2.details["raw_explained_by_target_entropy"] = False
    # 3. KL variant
    c3 = paired_claim(
        df, "kl_change", "resistance.inverse_smaller_kl_change",
        "Fine-tuning moves the learner less toward its target checkpoint inverse than forward: "
        "kl_change = KL(learner‖target) before − after, on held-out prompts (effect: forward − inverse)",
        "With finer checkpoints the KL change is larger forward than inverse in 7 of 7 pairs "
        "(e.g. 0.4568 vs 0.2796) [P1 appendix; SPEC §3.1]; which KL the paper differences is not stated — our reading",
        "nats per answer",
        kl_after=_sub(paired_claim(df, "kl_after", "k", "", "", "")),
        kl_before=_sub(paired_claim(df, "kl_before", "k", "", "", "")),
    )
    if "kl_change" in ft.columns and ft["kl_change"].notna().any():
        means = {d: float(ft[ft.direction == d]["kl_change"].mean()) for d in (FORWARD, INVERSE)}
        c3.details["mean_kl_change"] = means
        if all(v < 0 for v in means.values()):
            # Targets written at a low temperature are sharper than the writer's own distribution:
            # fitting them can carry the learner past the target checkpoint, so KL to it grows.
            c3.statement += (f". On average fine-tuning moved the learner away from its target checkpoint in both "
                             f"directions (mean kl_change forward {means[FORWARD]:.3f}, inverse {means[INVERSE]:.3f} "
                             "nats): a positive effect here means the inverse run's divergence grew more")
    return [c1, c2, c3]


# ----------------------------------------------------------------------------- figures

HEATMAPS = {
    "mean_loss": "mean training loss",
    "excess_mean_loss": "excess loss (− writer's own loss)",
    "kl_change": "KL change toward target (nats)",
}


def plot(df: pd.DataFrame, cfg: ResistanceConfig, fig_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    paths = []
    for metric, label in HEATMAPS.items():
        p = paired(df, metric)
        if not len(p):
            continue
        cells = pd.DataFrame(cell_table(p))
        worlds = sorted(cells.world.unique())
        sizes = list(dict.fromkeys(s for s in (cfg.sizes if not cfg.model.path else cells["size"].unique()) if s in set(cells["size"])))
        sizes += [s for s in sorted(cells["size"].unique()) if s not in sizes]
        pairs = sorted(cells.pair.unique())
        vmax = float(np.nanmax(np.abs(cells["diff"]))) or 1e-9
        fig, axes = plt.subplots(1, len(worlds), figsize=(3.0 * len(worlds) + 0.8, 0.75 * len(sizes) + 1.9), squeeze=False)
        im = None
        for n_ax, (ax, world) in enumerate(zip(axes[0], worlds)):
            grid = np.full((len(sizes), len(pairs)), np.nan)
            for _, c in cells[cells.world == world].iterrows():
                r, k = sizes.index(c["size"]), pairs.index(c["pair"])
                grid[r, k] = c["diff"]
                ax.text(k, r, f"{c['diff']:+.3f}\n{c['n_seeds_holding']}/{c['n_seeds']}", ha="center", va="center",
                        fontsize=7, color="white" if abs(c["diff"]) > 0.6 * vmax else "black")
            im = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto")
            ax.set_xticks(range(len(pairs)), [f"θ{p.replace('-', '↔θ')}" for p in pairs], fontsize=8)
            ax.set_yticks(range(len(sizes)), sizes if n_ax == 0 else [""] * len(sizes), fontsize=8)
            ax.set_title(world, fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="forward − inverse")
        fig.suptitle(f"resistance · {label}: forward − inverse (> 0 = inverse easier; seeds holding)", fontsize=9, y=1.04)
        path = fig_dir / f"resistance_heatmap_{metric}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    # Loss curves: mean over seeds, one panel per world, largest size, every pair.
    ft = df[df.phase == "finetune"] if "phase" in df.columns else df.iloc[0:0]
    if len(ft) and "curve_loss" in ft.columns:
        worlds = sorted(ft.world.unique())
        fig, axes = plt.subplots(1, len(worlds), figsize=(3.6 * len(worlds), 3.0), squeeze=False)
        size = ft["size"].iloc[-1]
        for ax, world in zip(axes[0], worlds):
            sub = ft[(ft.world == world) & (ft["size"] == size)]
            for (pair, direction), g in sub.groupby(["pair", "direction"]):
                curves = np.array([np.asarray(c, float) for c in g.curve_loss])
                x = np.asarray(g.curve_n_examples.iloc[0], float)
                ax.plot(x, curves.mean(0), ls="-" if direction == FORWARD else "--", lw=1.2,
                        color=plt.get_cmap("tab10")(sorted(sub.pair.unique()).index(pair)),
                        label=f"{pair} {direction}")
            ax.set_title(f"{world} · {size}", fontsize=9)
            ax.set_xlabel("examples seen")
            ax.set_ylabel("training loss (nats/token)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, frameon=False)
        fig.tight_layout()
        path = fig_dir / "resistance_loss_curves.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


EXPERIMENT = Experiment(
    name="resistance",
    description="forward vs inverse alignment between SFT checkpoints, raw and excess loss, KL (P1 Table 1)",
    config_cls=ResistanceConfig,
    presets=PRESETS,
    run=run,
    analyze=analyze,
    plot=plot,
)
