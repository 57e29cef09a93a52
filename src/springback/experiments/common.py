"""Pieces every world experiment shares: cached pre-trained bases and checkpoint measurement."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig, to_dict
from ..measure import alignment_measure, sample, sequence_kl, vader_scorer, world_label_scorer
from ..models import build_model, load, save_model
from ..train import train
from ..worlds import get_world
from ..worlds.base import TemplateWorld
from .base import RunContext

# Pre-training of tiny world models: higher lr and batch than fine-tuning; constant lr so
# that intermediate checkpoints are comparable (as TinyLlama's are).
DEFAULT_PRETRAIN = TrainConfig(lr=2e-3, batch_size=32, max_length=64)


def base_key(world_name: str, world_cfg: WorldConfig, model_cfg: ModelConfig, pretrain: TrainConfig, seed: int) -> dict:
    """Everything that determines a pre-trained base (and nothing else, so bases are shared)."""
    if model_cfg.path:
        return {"model_path": model_cfg.path, "revision": model_cfg.revision, "dtype": model_cfg.dtype}
    return {
        "world": world_name,
        "prior": world_cfg.prior,
        "n_task_examples": world_cfg.n_task_examples,
        "n_general_examples": world_cfg.n_general_examples,
        "preset": model_cfg.preset,
        "pretrain": to_dict(pretrain),
        "seed": seed,
    }


def pretrained_base(
    ctx: RunContext, world_name: str, world_cfg: WorldConfig, model_cfg: ModelConfig, pretrain: TrainConfig, seed: int
) -> str:
    """Path of the base model for (world, size, pre-training budget, seed), trained once and cached.

    With ``model.path`` set, the user's checkpoint is the base and nothing is trained.
    """
    if model_cfg.path:
        return model_cfg.path
    world = get_world(world_name)

    def build(tmp: Path) -> None:
        tok = world.tokenizer()
        model = build_model(model_cfg.preset, tok, seed)
        corpus = world.pretrain_corpus(world_cfg.n_task_examples, world_cfg.n_general_examples, world_cfg.prior, seed)
        result = train(model, tok, corpus, pretrain, seed=seed, stage=f"pretrain {world_name}/{model_cfg.preset}/s{seed}",
                       loss_on="all", progress=ctx.progress)
        save_model(model, tok, tmp)
        (tmp / "pretrain_loss.json").write_text(
            __import__("json").dumps({"n_examples": result.n_examples[-1], "final_loss": result.final_loss, "mean_loss": result.mean_loss})
        )

    return str(ctx.cached_dir("bases", base_key(world_name, world_cfg, model_cfg, pretrain, seed), build))


def clone(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model)


def finetune(model: torch.nn.Module, tokenizer: Any, examples: Any, train_cfg: TrainConfig, model_cfg: ModelConfig,
             *, seed: int, **kwargs: Any):
    """One fine-tuning stage honouring ``model_cfg``'s LoRA rank and gradient checkpointing:
    prepare → :func:`~springback.train.train` → merge. ``model`` is updated in place (a LoRA
    adapter is merged back into it), so later stages and measurements see plain weights.
    ``kwargs`` go to ``train`` (stage, measure_at, on_measure, progress, ...)."""
    from ..models import finish_training, prepare_for_training

    wrapped = prepare_for_training(model, model_cfg, seed=seed)
    try:
        return train(wrapped, tokenizer, examples, train_cfg, seed=seed, **kwargs)
    finally:
        finish_training(wrapped)


def finetune_key(model_cfg: ModelConfig) -> dict:
    """Cell-key entries for fine-tuning options that change results (LoRA); empty for full
    fine-tuning so existing cell ids stay valid. Gradient checkpointing changes no result."""
    if model_cfg.lora_r > 0:
        return {"lora_r": model_cfg.lora_r, "lora_alpha": model_cfg.lora_alpha}
    return {}


def measure_checkpoint(
    model: torch.nn.Module,
    tokenizer: Any,
    world: TemplateWorld,
    reference: torch.nn.Module | None,
    cfg: MeasureConfig,
    n_eval_prompts: int,
    seed: int,
    reference_measure: Any = None,
    reference_batches: Any = None,
) -> dict[str, float]:
    """Exact π⁺ / S over A and N, sampled aligned rate, VADER (sentiment-like worlds), KL to reference.

    ``reference_measure`` (the reference model's :class:`AlignmentMeasure` on the same prompts,
    computed once by the caller) adds ``kl_ref_to_base``: the exact KL over A ∪ N.
    ``reference_batches`` (a :class:`~springback.measure.ReferenceBatches` of the same prompts
    and sets, built once per run) skips re-tokenising them at every checkpoint.
    """
    from ..measure import reference_kl

    prompts = world.eval_prompts(n_eval_prompts)
    a_set, n_set = world.reference_sets()
    # A real data set may lack one side of reference completions: then there is no exact S.
    row = {}
    if a_set and n_set:
        am = (reference_batches.measure(model) if reference_batches is not None
              else alignment_measure(model, tokenizer, prompts, a_set, n_set, cfg.batch_size))
        row = am.summary()
        if reference_measure is not None:
            row["kl_ref_to_base"] = float(reference_kl(am, reference_measure).mean())
    if cfg.n_samples > 0:
        texts, ids, pidx = sample(model, tokenizer, prompts, cfg.n_samples, seed=seed, temperature=cfg.temperature,
                                  top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
        labels = world_label_scorer(world)(texts)
        row["sampled_rate"] = sum(labels) / len(labels)
        if cfg.vader and world.sentiment_like:
            v = vader_scorer()(texts)
            row["vader"] = sum(v) / len(v)
        if cfg.kl and reference is not None:
            row["kl_to_base"] = float(sequence_kl(model, reference, tokenizer, prompts, ids, pidx).mean())
        extra = getattr(world, "score_samples", None)  # real-data worlds: their scorers and agreement
        if extra is not None:
            row.update(extra(texts, [prompts[i] for i in pidx]))
    return row


# ----------------------------------------------------------------------------- intermediate pre-training checkpoints
#
# The data axis of SPEC §3.3 uses TinyLlama's intermediate checkpoints: snapshots of ONE
# pre-training run, not separate runs on smaller corpora. We do the same: one run over the
# world's whole pre-training corpus per (world, size, seed), saving the model after exactly b
# examples for every budget b. A budget-b checkpoint is therefore NOT the base a smaller world
# (``n_task_examples`` = b ...) would give: that corpus is drawn and shuffled differently (the
# data order depends on the corpus size). It is the prefix of the full run, as in TinyLlama.


def pretraining_order(n_examples: int, seed: int, epochs: int = 1) -> list[int]:
    """Indices in the order :func:`~springback.train.train` visits ``n_examples`` examples
    (shuffle on, one permutation per epoch drawn from ``seed``). Kept identical to train's."""
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(epochs):
        order += torch.randperm(n_examples, generator=gen).tolist()
    return order


def examples_at_token_budgets(token_counts: list[int], budgets_tokens: list[float]) -> list[int]:
    """For each token budget, the number of examples (in training order) after which the run
    has seen at least that many tokens; ``token_counts[i]`` is the i-th example's tokens.
    Budget 0 is the freshly initialised model. A budget beyond the run raises ConfigError."""
    import numpy as np

    from ..errors import ConfigError

    cum = np.cumsum(np.asarray(token_counts, dtype=np.int64))
    total = int(cum[-1]) if len(cum) else 0
    out = []
    for b in budgets_tokens:
        if b < 0:
            raise ConfigError(f"pre-training budget must be >= 0 tokens, got {b}")
        if b == 0:
            out.append(0)
            continue
        if b > total:
            raise ConfigError(f"pre-training budget {b:g} tokens exceeds the run's {total} tokens "
                              "(raise world.n_task_examples / n_general_examples or lower the budget)")
        out.append(int(np.searchsorted(cum, b, side="left")) + 1)
    return out


def pretraining_token_counts(world_name: str, world_cfg: WorldConfig, pretrain: TrainConfig, seed: int) -> list[int]:
    """Tokens of each pre-training example of (world, seed), in the order the run visits them."""
    from ..tokens import encode

    world = get_world(world_name)
    tok = world.tokenizer()
    corpus = world.pretrain_corpus(world_cfg.n_task_examples, world_cfg.n_general_examples, world_cfg.prior, seed)
    lengths = [len(encode(tok, ex.prompt, ex.response, "all", pretrain.max_length).input_ids) for ex in corpus]
    return [lengths[i % len(lengths)] for i in pretraining_order(len(corpus), seed, pretrain.epochs)]


def shares_base(budgets: list[int], pretrain: TrainConfig, total_examples: int) -> bool:
    """True when the checkpoint run's last model is bit for bit :func:`pretrained_base`'s.

    train() cuts a batch short at every measurement point, so the run repeats the plain
    pre-training exactly only when every budget falls on a batch boundary."""
    return max(budgets) == total_examples and all(b % pretrain.batch_size == 0 for b in budgets)


def checkpoints_key(world_name: str, world_cfg: WorldConfig, model_cfg: ModelConfig, pretrain: TrainConfig, seed: int,
                    budgets: list[int]) -> dict:
    """Cache key of one checkpoint run (the base's key plus where it was snapshotted)."""
    return {**base_key(world_name, world_cfg, model_cfg, pretrain, seed), "checkpoints_at": sorted(set(int(b) for b in budgets))}


def pretrained_checkpoints(
    ctx: RunContext, world_name: str, world_cfg: WorldConfig, model_cfg: ModelConfig, pretrain: TrainConfig, seed: int,
    budgets: list[int],
) -> dict[int, str]:
    """Paths of the model after exactly b pre-training examples, for every b in ``budgets``,
    all from ONE constant-lr run over the world's corpus (cached by content hash).

    ``pretrained_base`` is untouched: a single budget equal to the whole corpus simply returns
    it. When every budget falls on a batch boundary, the run's final model is bit-identical to
    ``pretrained_base``'s, so it is published into (or read from) the same ``bases`` cache entry
    and later rebound / resistance / priming runs reuse it; otherwise the final checkpoint
    stays private to this run (its batches differ after the first off-boundary budget).
    """
    import json
    import shutil

    from ..errors import ConfigError

    if model_cfg.path:
        raise ConfigError("intermediate pre-training checkpoints need a size preset: list real checkpoints instead")
    total = (world_cfg.n_task_examples + world_cfg.n_general_examples) * pretrain.epochs
    points = sorted(set(int(b) for b in budgets))
    if not points:
        raise ConfigError("no pre-training budgets given")
    bad = [b for b in points if b < 0 or b > total]
    if bad:
        raise ConfigError(f"pre-training budgets {bad} outside 0..{total} examples (the world's corpus: "
                          "world.n_task_examples + world.n_general_examples, times pretrain.epochs)")
    if points == [total]:
        return {total: pretrained_base(ctx, world_name, world_cfg, model_cfg, pretrain, seed)}
    world = get_world(world_name)
    stats: dict = {}

    def build(tmp: Path) -> None:
        tok = world.tokenizer()
        model = build_model(model_cfg.preset, tok, seed)
        corpus = world.pretrain_corpus(world_cfg.n_task_examples, world_cfg.n_general_examples, world_cfg.prior, seed)

        def snapshot(n: int, m: torch.nn.Module) -> None:
            save_model(m, tok, tmp / f"n{n}")

        result = train(model, tok, corpus, pretrain, seed=seed, stage=f"pretrain {world_name}/{model_cfg.preset}/s{seed}",
                       loss_on="all", measure_at=points, on_measure=snapshot, progress=ctx.progress)
        stats.update({"n_examples": result.n_examples[-1], "final_loss": result.final_loss, "mean_loss": result.mean_loss})
        (tmp / "pretrain_loss.json").write_text(json.dumps(stats))

    key = checkpoints_key(world_name, world_cfg, model_cfg, pretrain, seed, points)
    run_dir = ctx.cached_dir("checkpoints", key, build)
    paths = {b: str(run_dir / f"n{b}") for b in points}
    if shares_base(points, pretrain, total):

        def publish(tmp: Path) -> None:
            shutil.copytree(run_dir / f"n{total}", tmp, dirs_exist_ok=True)
            shutil.copy(run_dir / "pretrain_loss.json", tmp / "pretrain_loss.json")

        paths[total] = str(ctx.cached_dir("bases", base_key(world_name, world_cfg, model_cfg, pretrain, seed), publish))
    return paths
