"""Make an aligned model: fine-tune a checkpoint on aligned data and save a standard Hugging Face
checkpoint (``springback align``), so ``springback elasticity`` has something to measure without
user scripts.

The stage is the same as every experiment's alignment stage: the first ``n_examples`` of the data
set's seeded aligned stream (all of them by default), encoded with the model's chat template
(``model.chat_template``) and the stage's ``max_length`` / ``truncation``, trained by the one
training loop with a fresh optimizer, LoRA merged back when ``model.lora_r`` > 0. ``train.algorithm``
picks the objective (SFT by default; DPO / IPO / SimPO on the data's preference pairs, KTO on its
labelled examples, RLOO on its prompts rewarded by the first scorer; docs/algorithms.md). The output
directory holds the weights (safetensors), the tokenizer and ``springback_align.json`` (the
resolved config, the data files' fingerprints, what truncation did, the loss curve).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..config import ModelConfig, TrainConfig, to_dict
from ..data import DataConfig
from ..errors import ConfigError, SpringbackError
from .source import build_source, data_spec, effective_chat_template


@dataclasses.dataclass
class AlignConfig:
    """What ``springback align`` trains (``--set`` keys)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)  # model.path: the checkpoint to align
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # data.aligned: its aligned examples
    # P1's SFT used lr 1e-5, AdamW β = (0.9, 0.95), one epoch, constant lr on 7B models [SPEC §3.2];
    # the default here is the loop's (3e-4, suited to the tiny presets): set train.lr for real checkpoints.
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    n_examples: int = 0  # examples of the aligned stream to train on (0 = all of them)
    seed: int = 0  # the stream's order and the training seed


def align(cfg: AlignConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train and save; returns the summary written to ``OUT/springback_align.json``."""
    from ..io import atomic_write_json, fingerprint
    from ..models import load, save_model
    from .stages import check_stage_algorithm, encode_stream, finetune, stage_encoder, stage_objective
    from .spec import BaseSpec, Cell, stage_data

    if not cfg.model.path:
        raise ConfigError("give the model to align: --model PATH (or model.path)")
    if not (cfg.data.aligned or cfg.data.opposing):
        raise ConfigError("give the aligned data: --data FILE (or data.aligned)")
    if cfg.n_examples < 0:
        raise ConfigError(f"n_examples must be >= 0 (0 = all), got {cfg.n_examples}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SpringbackError(f"output directory {out} is not empty (choose a new --out)")
    chat = effective_chat_template(cfg.model)
    data = cfg.data if chat == "none" or cfg.data.template else dataclasses.replace(cfg.data, template="raw")
    spec = data_spec(data)
    source = build_source(spec)
    kind = stage_data("aligned", 0, cfg.seed, cfg.train).kind
    n = cfg.n_examples or source.inner.n_items(kind, "aligned")
    if n < 1:
        raise SpringbackError(f"no aligned {kind} in {cfg.data.aligned or cfg.data.opposing}")
    stream = stage_data("aligned", n, cfg.seed, cfg.train)
    check_stage_algorithm("align", cfg.train, stream)
    source.stream(stream)  # too few examples: one line, before the model is loaded
    if cfg.train.algorithm.name == "rloo":
        source.reward("aligned")  # no scorer to reward with: one line, before the model is loaded
    model, tok = load(cfg.model.path, cfg.model)
    cell = Cell(experiment="align", name="align", source=spec, base=BaseSpec(path=cfg.model.path),
                model_options={"chat_template": chat})
    examples, encoded, report = encode_stream(source, stream, stage_encoder(tok, cell, cfg.train))
    options = {"lora_r": cfg.model.lora_r, "lora_alpha": cfg.model.lora_alpha,
               "gradient_checkpointing": cfg.model.gradient_checkpointing}
    objective = stage_objective(cfg.train, stream, encoded, tok, source, chat, cfg.seed)
    result = finetune(model, tok, encoded, cfg.train, options, seed=cfg.seed, stage="align", progress=progress,
                      objective=objective)
    save_model(model, tok, out)
    files = [p for p in (cfg.data.aligned, cfg.data.opposing) if p and Path(p).expanduser().is_file()]
    summary = {
        "config": to_dict(cfg), "chat_template": chat, "algorithm": cfg.train.algorithm.name, "item_kind": kind,
        "n_examples": len(examples),
        "encoding": report.summary(), "n_truncated": report.n_truncated, "n_dropped": report.n_dropped,
        "data_fingerprints": {p: fingerprint(p) for p in files}, "base_fingerprint": fingerprint(cfg.model.path)
        if Path(cfg.model.path).expanduser().exists() else None,
        "loss": {"n_examples": result.n_examples, "loss": result.loss, "final": result.final_loss,
                 "mean": result.mean_loss},
    }
    atomic_write_json(out / "springback_align.json", summary)
    return json.loads(json.dumps(summary, default=str))
