"""Base models: a user's checkpoint, or a tiny preset pre-trained on a world (built once, cached).

* :func:`pretrain_spec` — the :class:`~.spec.BaseSpec` of a cached pre-trained base.
* :func:`base_path` — the directory of a base (training and caching it on first use).
* Intermediate pre-training checkpoints (SPEC §3.3's data axis uses TinyLlama's intermediate
  checkpoints: snapshots of ONE pre-training run, not separate runs on smaller corpora). We do
  the same: one run over the world's whole corpus per (world, size, seed), saving the model
  after exactly b examples for every budget b. A budget-b snapshot is therefore NOT the base a
  smaller world would give (that corpus is drawn and shuffled differently); it is the prefix
  of the full run, as in TinyLlama.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig, TrainConfig, WorldConfig, to_dict
from ..errors import ConfigError
from .spec import BaseSpec, Cell

# Pre-training of tiny world models: higher lr and batch than fine-tuning; constant lr so
# that intermediate checkpoints are comparable (as TinyLlama's are).
DEFAULT_PRETRAIN = TrainConfig(lr=2e-3, batch_size=32, max_length=64)


def pretrain_spec(world: str, world_cfg: WorldConfig, model_cfg: ModelConfig, pretrain: TrainConfig, seed: int,
                  snapshots: tuple[int, ...] = (), at: int = 0) -> BaseSpec:
    """The base of a cell: ``model_cfg.path`` when set (nothing is trained), else the preset
    pre-trained on ``world``'s corpus with ``seed`` (optionally one snapshot of that run)."""
    if model_cfg.path:
        return BaseSpec(path=model_cfg.path, revision=model_cfg.revision, dtype=model_cfg.dtype,
                        trust_remote_code=model_cfg.trust_remote_code, allow_pickle=model_cfg.allow_pickle)
    pre = {"world": world, "prior": world_cfg.prior, "n_task_examples": world_cfg.n_task_examples,
           "n_general_examples": world_cfg.n_general_examples, "preset": model_cfg.preset,
           "pretrain": to_dict(pretrain), "seed": seed}
    return BaseSpec(dtype=model_cfg.dtype, pretrain=pre, snapshots=tuple(snapshots), at=at)


def corpus_size(spec: BaseSpec) -> int:
    """Examples one pass of the base's pre-training run visits (all epochs)."""
    p = spec.pretrain
    return (p["n_task_examples"] + p["n_general_examples"]) * p["pretrain"]["epochs"]


def base_path(ctx: Any, spec: BaseSpec) -> str:
    """Directory of the base model ``spec`` names; a pre-trained base is trained once and cached."""
    if spec.path:
        return spec.path
    if spec.snapshots:
        return pretrained_snapshots(ctx, spec)[spec.at]
    return pretrained_base(ctx, spec)


def _corpus(spec: BaseSpec):
    from ..worlds import get_world

    p = spec.pretrain
    world = get_world(p["world"])
    return world, world.pretrain_corpus(p["n_task_examples"], p["n_general_examples"], p["prior"], p["seed"])


def _pretrain(ctx: Any, spec: BaseSpec, out_dir: Path, snapshots: list[int] | None = None) -> None:
    """Pre-train the preset on the world's corpus into ``out_dir``: the final model, or with
    ``snapshots`` the model after exactly b examples in ``out_dir/n{b}`` for each b."""
    from ..models import build_model, save_model
    from ..train import train

    p = spec.pretrain
    world, corpus = _corpus(spec)
    tok = world.tokenizer()
    model = build_model(p["preset"], tok, p["seed"])

    def snapshot(n: int, m: torch.nn.Module) -> None:
        save_model(m, tok, out_dir / f"n{n}")

    result = train(model, tok, corpus, TrainConfig(**p["pretrain"]), seed=p["seed"],
                   stage=f"pretrain {p['world']}/{p['preset']}/s{p['seed']}", loss_on="all",
                   measure_at=snapshots or (), on_measure=snapshot if snapshots else None, progress=ctx.progress)
    stats = {"n_examples": result.n_examples[-1], "final_loss": result.final_loss, "mean_loss": result.mean_loss}
    (out_dir / "pretrain_loss.json").write_text(json.dumps(stats))
    if not snapshots:
        save_model(model, tok, out_dir)


def pretrained_base(ctx: Any, spec: BaseSpec) -> str:
    """Path of the base for (world, size, pre-training config, seed), trained once and cached."""
    key = dataclasses.replace(spec, snapshots=(), at=0).key()
    return str(ctx.cached_dir("bases", key, lambda tmp: _pretrain(ctx, spec, tmp)))


def shares_base(budgets: list[int], pretrain: dict, total_examples: int) -> bool:
    """True when a snapshot run's last model is bit for bit :func:`pretrained_base`'s.

    train() cuts a batch short at every measurement point, so the run repeats the plain
    pre-training exactly only when every budget falls on a batch boundary."""
    return max(budgets) == total_examples and all(b % pretrain["batch_size"] == 0 for b in budgets)


def pretrained_snapshots(ctx: Any, spec: BaseSpec) -> dict[int, str]:
    """Paths of the model after exactly b pre-training examples, for every b in ``spec.snapshots``,
    all from ONE constant-lr run over the world's corpus (cached by content hash).

    A single budget equal to the whole corpus is the plain cached base. When every budget falls
    on a batch boundary, the run's final model is bit-identical to :func:`pretrained_base`'s, so
    it is published into (or read from) the same ``bases`` cache entry and other experiments reuse
    it; otherwise the final snapshot stays private to this run."""
    total = corpus_size(spec)
    points = sorted(set(int(b) for b in spec.snapshots))
    if not points:
        raise ConfigError("no pre-training budgets given")
    bad = [b for b in points if b < 0 or b > total]
    if bad:
        raise ConfigError(f"pre-training budgets {bad} outside 0..{total} examples (the world's corpus: "
                          "world.n_task_examples + world.n_general_examples, times pretrain.epochs)")
    plain = dataclasses.replace(spec, snapshots=(), at=0)
    if points == [total]:
        return {total: pretrained_base(ctx, plain)}

    def build(tmp: Path) -> None:
        _pretrain(ctx, spec, tmp, points)

    key = {**plain.key(), "checkpoints_at": points}
    run_dir = ctx.cached_dir("checkpoints", key, build)
    paths = {b: str(run_dir / f"n{b}") for b in points}
    if shares_base(points, spec.pretrain["pretrain"], total):

        def publish(tmp: Path) -> None:
            shutil.copytree(run_dir / f"n{total}", tmp, dirs_exist_ok=True)
            shutil.copy(run_dir / "pretrain_loss.json", tmp / "pretrain_loss.json")

        paths[total] = str(ctx.cached_dir("bases", plain.key(), publish))
    return paths


# ----------------------------------------------------------------------------- pre-training budgets in tokens


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


def pretraining_token_counts(spec: BaseSpec) -> list[int]:
    """Tokens of each pre-training example of a base's run, in the order the run visits them."""
    from ..tokens import encode

    world, corpus = _corpus(spec)
    tok = world.tokenizer()
    p = spec.pretrain["pretrain"]
    lengths = [len(encode(tok, ex.prompt, ex.response, "all", p["max_length"]).input_ids) for ex in corpus]
    return [lengths[i % len(lengths)] for i in pretraining_order(len(corpus), spec.pretrain["seed"], p["epochs"])]


def load_base(ctx: Any, cell: Cell) -> tuple[Any, Any, Any]:
    """(base model, tokenizer, source) of a cell; the model is loaded once per base (memo)."""
    from ..models import load
    from .source import build_source

    source = build_source(cell.source)
    spec = cell.base

    def build():
        path = base_path(ctx, spec)
        mc = ModelConfig(path=spec.path, revision=spec.revision, dtype=spec.dtype,
                         trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle)
        return load(path, mc)

    model, tok = ctx.memo({"base": spec.key()}, build)
    return model, tok, source
