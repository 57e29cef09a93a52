"""Fine-tuning options of :class:`~springback.config.ModelConfig`, applied in one place.

``prepare_for_training(model, model_cfg, seed)`` turns on gradient checkpointing and wraps
the model in a ``peft`` LoRA adapter when ``lora_r > 0``; ``finish_training(model)`` merges
the adapter back into the weights and returns the plain model. Every fine-tuning stage is
prepare → :func:`springback.train.train` → finish, so each stage trains a fresh adapter on
the previous stage's (merged) weights — the LoRA analogue of the paper's "each stage starts
from the previous weights with a fresh optimizer" [SPEC §3.2].

The merge happens in place: peft injects its layers into the caller's model object and
``merge_and_unload`` swaps them back, so a caller holding the original reference sees the
updated weights (tests check this).
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig
from ..errors import ConfigError


def lora_target_modules(model: torch.nn.Module) -> Any:
    """peft's own default target modules for this architecture (q/v projections for Llama,
    ``c_attn`` for GPT-2, ``query_key_value`` for GPT-NeoX), else every linear layer."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return DEFAULTS.get(model_type, "all-linear")


def prepare_for_training(model: torch.nn.Module, model_cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """The model to hand to :func:`~springback.train.train`: ``model`` itself (full fine-tuning)
    or a ``peft`` LoRA wrapper around it. The adapter's random init is drawn from ``seed``."""
    if model_cfg.lora_r < 0:
        raise ConfigError(f"model.lora_r must be >= 0, got {model_cfg.lora_r}")
    if model_cfg.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input-embedding hooks and works with frozen bases.
        _checkpointing(model, True)
        model.config.use_cache = False
    if model_cfg.lora_r == 0:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=model_cfg.lora_r,
        lora_alpha=model_cfg.lora_alpha,
        lora_dropout=0.0,  # dropout would make the measured checkpoints depend on train/eval mode
        target_modules=lora_target_modules(model),
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, lora)


def finish_training(model: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`prepare_for_training`: merge a LoRA adapter into the weights, switch
    gradient checkpointing off, and return the plain model (the same object the caller
    passed to ``prepare_for_training``)."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        PeftModel = ()  # type: ignore[assignment]
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    if _checkpointing(model, None):
        _checkpointing(model, False)
        model.config.use_cache = True
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return model


def _checkpointing(model: torch.nn.Module, on: bool | None) -> bool:
    """Switch activation (gradient) checkpointing on / off, or (``on=None``) ask whether it is
    on; transformers 5 renamed the methods, older versions have only the old names."""
    new = hasattr(model, "activation_checkpointing_enable")
    if on is None:
        return bool(getattr(model, "is_activation_checkpointing" if new else "is_gradient_checkpointing", False))
    if on:
        kwargs = {"use_reentrant": False}
        if new:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        (model.activation_checkpointing_disable if new else model.gradient_checkpointing_disable)()
    return on


def is_lora(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)
