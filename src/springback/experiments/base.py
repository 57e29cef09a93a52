"""The experiment protocol: an experiment is its protocol (which cells) and its claims.

An :class:`Experiment` is plain data: a config schema, presets, and functions —
``cells`` (config → the list of :class:`~springback.pipeline.Cell` to run), ``claims``
(records DataFrame → claims, computed with :mod:`springback.analysis`), ``figures``
(records DataFrame → named figures drawn by :mod:`springback.report`), an optional ``check``
(config errors before any work) and ``summary`` (extra ``result.json`` fields). The runner in
:mod:`springback.api` glues them to the pipeline; experiments never train, plot or touch files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..config import ModelConfig, to_dict


def _no_figures(df: pd.DataFrame, cfg: Any) -> list:
    return []


def _no_check(cfg: Any) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config_cls: type
    presets: dict[str, dict]
    cells: Callable[[Any], list]  # config -> list[Cell]
    claims: Callable[[pd.DataFrame, Any], list]  # -> list[Claim]
    figures: Callable[[pd.DataFrame, Any], list[tuple[str, Any]]] = _no_figures  # -> [(file stem, Figure)]
    check: Callable[[Any], None] = _no_check
    summary: Callable[[pd.DataFrame, Any], dict] | None = None  # extra result.json fields
    in_reproduce: bool = True  # part of `springback reproduce`


# ----------------------------------------------------------------------------- helpers experiments share


def model_label(model: ModelConfig) -> str:
    """The records' ``model`` column: the size preset, or the checkpoint's directory name."""
    return (Path(model.path).name or model.path) if model.path else model.preset


def model_options(model: ModelConfig) -> dict:
    """Model options that change results (a cell-key part): LoRA rank and scale, and the chat
    template as it will be used (``auto`` resolved against the tokenizer)."""
    from ..pipeline import effective_chat_template

    return {"lora_r": model.lora_r, "lora_alpha": model.lora_alpha, "chat_template": effective_chat_template(model)}


def sources(worlds: list[str], world: Any, data: Any, model: ModelConfig) -> list[dict]:
    """The cells' sources (:func:`springback.pipeline.source_specs`), data prompts framed for the
    model's chat template."""
    from ..pipeline import effective_chat_template, source_specs

    return source_specs(worlds, world, data, effective_chat_template(model))


def run_options(model: ModelConfig) -> dict:
    """Execution options that change no result (not part of a cell's key)."""
    return {"gradient_checkpointing": model.gradient_checkpointing}


def checkpoint_measure(measure: Any, n_eval_prompts: int, kl_reference: str = "base", exact_kl: bool = False,
                       count_params: bool = False) -> dict:
    """Parameters of the ``checkpoint`` measurement kind (see springback.pipeline.measurers)."""
    return {"measure": to_dict(measure), "n_eval_prompts": n_eval_prompts, "kl_reference": kl_reference,
            "exact_kl": exact_kl, "count_params": count_params}
