"""The one training loop (DESIGN §4), run through :mod:`accelerate`.

* **Data amounts are examples.** Updates use ``batch_size`` examples (summed over processes
  and micro-batches); measurement points are example counts, and a batch is cut short where
  a measurement point falls inside it, so a model is measured after exactly n examples.
* **Loss** is the mean over each example's *response* tokens (plus EOS) — the prompt is
  context only, as in the paper's SFT [SPEC §3.2] — then the mean over examples. Averaging
  per example (not per token over the batch) makes the update independent of how a batch
  is split into micro-batches or processes: 1 process × batch 8 equals 2 processes × 4
  equals 1 × (8 micro-batches of 1), up to float rounding.
* **Stages** (pre-train → align → opposing) each call :func:`train` on the previous
  weights with a fresh AdamW optimizer, constant learning rate by default [SPEC §3.2].
* Seeded: the data order comes from ``seed`` alone, so runs repeat bit for bit on CPU.
* **Objective** (:mod:`springback.objectives`): what is minimised is a plug point. SFT (above) is
  the default; a stage whose ``cfg.algorithm`` names a preference or RL method trains on that
  method's items (pairs, labelled examples, prompts) with the same loop, data order, batches,
  measurement points and accumulation rules — one item is one "example".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import runtime
from .config import TrainConfig
from .errors import ConfigError, DivergenceError
from .objectives import ITEM_KINDS, Objective, build_objective, encode_items, is_encoded
from .tokens import Encoder, pad_id


@dataclasses.dataclass
class TrainResult:
    """Loss curve of one stage: ``n_examples[i]`` examples seen after update i, its mean loss."""

    n_examples: list[int]
    loss: list[float]
    stage: str

    @property
    def mean_loss(self) -> float:
        return float(sum(self.loss) / len(self.loss)) if self.loss else float("nan")

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1]) if self.loss else float("nan")


def _schedule(cfg: TrainConfig, total_examples: int) -> Callable[[int], float]:
    """Learning-rate multiplier as a function of examples seen."""
    if cfg.lr_schedule not in ("constant", "linear", "cosine"):
        raise ConfigError(f"unknown lr_schedule '{cfg.lr_schedule}' (choose from: constant, linear, cosine)")

    def factor(seen: int) -> float:
        if cfg.warmup_examples and seen < cfg.warmup_examples:
            return (seen + 1) / cfg.warmup_examples
        if cfg.lr_schedule == "constant":
            return 1.0
        frac = min(1.0, seen / max(1, total_examples))
        if cfg.lr_schedule == "linear":
            return 1.0 - frac
        return 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor


def _batches(order: list[int], batch_size: int, cut_points: set[int]) -> list[list[int]]:
    """Split ``order`` into batches of ``batch_size``, also cutting at every cut point."""
    out, cur = [], []
    for i, idx in enumerate(order):
        cur.append(idx)
        seen = i + 1
        if len(cur) == batch_size or seen in cut_points:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def train(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Any],
    cfg: TrainConfig,
    *,
    seed: int,
    stage: str = "train",
    loss_on: str = "response",
    measure_at: Sequence[int] = (),
    on_measure: Callable[[int, torch.nn.Module], bool | None] | None = None,
    shuffle: bool = True,
    progress: bool = True,
    encoder: Encoder | None = None,
    on_step: Callable[[int, float], None] | None = None,
    objective: Objective | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``examples``: objects with ``prompt`` and ``response`` (encoded
    here with ``encoder``, default raw text with ``cfg.max_length`` and ``cfg.truncation``), or
    :class:`~springback.tokens.Encoded` examples encoded by the caller — or, for a stage whose
    ``cfg.algorithm`` is not SFT, that method's items (raw or encoded, see
    :func:`springback.objectives.encode_items`). ``objective`` overrides both (RLOO needs one built
    with a sampler and a reward; ``examples`` is then ignored).

    ``on_measure(n_examples, model)`` is called before training when 0 is in ``measure_at``
    and after exactly n examples for every other n in ``measure_at`` (n counts across epochs).
    If it returns ``True``, training stops right after that measurement (the answer must be the
    same on every process, e.g. a deterministic function of the model).
    ``on_step(n_examples, loss)`` is called after every update with the examples seen so far and
    that update's loss (e.g. an experiment tracker); it only reads, so it changes no result.
    Raises :class:`DivergenceError` on a non-finite loss.
    """
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs < 1:
        raise ConfigError(f"stage '{stage}': batch_size, grad_accum and epochs must be >= 1")
    if cfg.lr <= 0:
        raise ConfigError(f"stage '{stage}': lr must be > 0, got {cfg.lr}")
    acc = runtime.accelerator()
    world, rank = acc.num_processes, acc.process_index
    if objective is None:
        if len(examples) and is_encoded(examples[0]):
            items = list(examples)
        else:
            encoder = encoder or Encoder(tokenizer, "none", cfg.max_length, cfg.truncation)
            items, _ = encode_items(ITEM_KINDS.get(cfg.algorithm.name, "examples"), examples, encoder, loss_on)
        objective = build_objective(cfg.algorithm, items, pad_id(tokenizer), max_length=cfg.max_length, seed=seed)
    n = len(objective)
    total = n * cfg.epochs
    points = sorted(set(int(m) for m in measure_at))
    bad = [m for m in points if m < 0 or m > total]
    if bad:
        raise ConfigError(f"stage '{stage}': measurement points {bad} outside 0..{total} examples")

    # Data order: one permutation per epoch, from the seed alone (same on every process).
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(cfg.epochs):
        order += torch.randperm(n, generator=gen).tolist() if shuffle else list(range(n))
    batches = _batches(order, cfg.batch_size, set(points))

    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
    )
    lr_factor = _schedule(cfg, total)
    wrapped, optimizer = acc.prepare(model, optimizer)
    device = acc.device
    objective.start(acc.unwrap_model(wrapped), device)  # e.g. reference log-probs of the starting weights

    def measure(seen: int) -> bool:
        """Run the callback; True when it asks to stop training."""
        if on_measure is None:
            return False
        model.eval()
        with torch.no_grad():
            stop = on_measure(seen, acc.unwrap_model(wrapped))
        model.train()
        return stop is True  # only an explicit True stops (callbacks may return anything else)

    result = TrainResult([], [], stage)
    stopped = bool(0 in points and measure(0))
    seen = 0
    bar = tqdm(total=total, desc=stage, unit="ex", disable=not (progress and acc.is_main_process), leave=False, mininterval=1.0)
    for step, batch_idx in enumerate(batches):
        if stopped:
            break
        b = len(batch_idx)
        local = batch_idx[rank::world]
        chunks = [local[i::cfg.grad_accum] for i in range(cfg.grad_accum)]
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(seen)
        step_loss = torch.zeros((), device=device)
        objective.begin_update(acc.unwrap_model(wrapped), batch_idx, seen, device)  # the whole (global) batch
        for chunk in chunks:
            # Every process runs the same number of backward passes (DDP all-reduces in each);
            # an empty chunk runs a zero-weight example.
            weight = 1.0 if chunk else 0.0
            losses = objective.losses(wrapped, chunk if chunk else [batch_idx[0]], device)  # [b_chunk]
            # Sum of per-example losses / global batch, times world size because DDP averages.
            loss = losses.sum() * (weight * world / b)
            acc.backward(loss)
            step_loss += losses.detach().sum() * weight
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(wrapped.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = acc.reduce(step_loss, reduction="sum") / b if world > 1 else step_loss / b
        value = float(step_loss)
        if not math.isfinite(value):
            bar.close()
            raise DivergenceError(stage, step, value)
        seen += b
        result.n_examples.append(seen)
        result.loss.append(value)
        if on_step is not None:
            on_step(seen, value)
        bar.update(b)
        if seen in points and seen != 0:
            stopped = measure(seen)
    bar.close()
    model.eval()
    # Reset the accelerator for the next stage: free_memory drops its prepared models, optimizers
    # and step count and destroys a DeepSpeed engine (which a second prepare() would otherwise
    # reuse, so the next stage would not train its own model with its own fresh optimizer).
    acc.free_memory()
    return result
