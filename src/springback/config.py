"""Typed run configurations.

Every experiment declares a dataclass schema. A resolved config is built from, in order:
the schema's defaults, a named preset (``quick`` / ``full``), an optional YAML file, and
``--set key.sub=value`` overrides. Unknown keys and values of the wrong type are errors
(:class:`~springback.errors.ConfigError`), never silently ignored. The resolved config is
saved next to the results and hashed to name the run directory.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml

from .errors import ConfigError


# ----------------------------------------------------------------------------- schemas shared by experiments


@dataclasses.dataclass
class WorldConfig:
    """A synthetic world (see ``springback.worlds``)."""

    prior: float = 0.2  # share of aligned behaviour among the world's task examples in pre-training
    narrowness: int = 0  # number of distinct aligned templates in aligned sets (0 = all of them)
    n_task_examples: int = 20000  # world task examples (prompt + response) in the pre-training corpus
    n_general_examples: int = 8000  # general-language sentences in the pre-training corpus
    n_eval_prompts: int = 8  # held-out evaluation prompts (exact scores vary little across them)


@dataclasses.dataclass
class ModelConfig:
    """Which model to start from: a tiny preset trained from scratch, or a Hugging Face checkpoint."""

    preset: str = "micro"  # size preset (``springback list``), used when ``path`` is empty
    path: str = ""  # local directory or hub id of a causal LM; skips pre-training when set
    revision: str = ""  # hub revision / branch (e.g. Pythia "step1000"); empty = default
    dtype: str = "float32"  # float32 | bfloat16 | float16
    trust_remote_code: bool = False
    allow_pickle: bool = False  # load pickled weights (*.bin, can run code) when a checkpoint has no safetensors
    lora_r: int = 0  # LoRA rank for fine-tuning stages (0 = full fine-tuning)
    lora_alpha: int = 16
    gradient_checkpointing: bool = False
    # How prompts and responses are put into the model's text: "none" (raw text: prompt, space,
    # response — P1's protocol on base models), "auto" (the tokenizer's chat template when it has
    # one, else none) or a Jinja template file. Applied the same way in training, scoring and
    # sampling; with a template, data prompts are not also wrapped in data.template unless set.
    chat_template: str = "none"


@dataclasses.dataclass
class AlgorithmConfig:
    """Which objective a training stage optimises, and its hyper-parameters.

    Only the fields of the chosen ``name`` are read; the others keep their defaults. The names and
    the value checks live with the losses (:data:`springback.losses.ALGORITHMS`,
    :func:`springback.losses.validate`); this is only the schema, so every config can hold one.
    In a config, a bare string is the name: ``align.algorithm: dpo`` = ``{name: dpo}``.
    """

    name: str = "sft"  # sft | dpo | ipo | kto | simpo | rloo (springback.losses.ALGORITHMS)
    # DPO / IPO (τ) / KTO strength of the pull towards the reference. TRL's default: DPOConfig.beta and
    # KTOConfig.beta = 0.1 (trl 1.16 trainer/dpo_config.py, trainer/kto_config.py). P1's authors' code
    # shipped DPO with β = 0.02, 1 epoch, lr 2e-5 [SPEC §6]; their ablation settings are not public, so
    # we keep TRL's default and let a config set 0.02 to match the authors' code.
    beta: float = 0.1
    # SimPO's β and γ/β. Defaults of the SimPO authors' code (princeton-nlp/SimPO scripts/simpo_config.py:
    # beta = 2.0, gamma_beta_ratio = 0.25, i.e. a target margin γ = 0.5). TRL's CPOConfig defaults
    # (beta = 0.1, simpo_gamma = 0.5) are tuned for CPO, not SimPO, so we do not use them.
    simpo_beta: float = 2.0
    gamma_beta_ratio: float = 0.25
    # KTO weights λ_D, λ_U of desirable / undesirable examples. TRL KTOConfig defaults 1.0 / 1.0;
    # the KTO paper (Ethayarajh et al. 2024) advises λ_D·n_D / (λ_U·n_U) in [1, 4/3] for imbalanced data.
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    # RLOO. kl_coef: TRL RLOOConfig.beta = 0.05 (trl 1.16 trainer/rloo_config.py). Samples per prompt:
    # TRL RLOOConfig.num_generations defaults to 2 (the least a leave-one-out baseline needs);
    # Ahmadian et al. 2024 report k = 2 and k = 4 and find k = 4 better, so we take 4.
    kl_coef: float = 0.05
    n_samples_per_prompt: int = 4
    # Ratio clipping ε (TRL RLOOConfig.epsilon = 0.2). Inert with one update per sampled batch (ratio = 1).
    clip_eps: float = 0.2
    normalize_advantages: bool = False  # TRL RLOOConfig.normalize_advantages = False
    # Sampling temperature; the log-probs in the loss are taken at the same temperature, as TRL does
    # (TRL RLOOConfig.temperature = 1.0).
    temperature: float = 1.0
    # Completion length cap. Ours: equals MeasureConfig.max_new_tokens; TRL's max_completion_length = 512
    # is sized for chat models, far beyond the tiny worlds' responses.
    max_new_tokens: int = 20

    @property
    def needs_reference(self) -> bool:
        """Whether the stage needs a frozen reference model (a copy of the stage's starting weights)."""
        if self.name in ("dpo", "ipo", "kto"):
            return True
        return self.name == "rloo" and self.kl_coef > 0


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of one training stage. Data amounts are examples, never steps."""

    lr: float = 3e-4
    batch_size: int = 16  # examples per optimizer update, summed over processes and micro-batches
    grad_accum: int = 1  # micro-batches per update on each process
    epochs: int = 1
    weight_decay: float = 0.0  # the paper's SFT used 0 [SPEC §3.2]
    adam_beta1: float = 0.9  # AdamW betas (0.9, 0.95) as the paper's SFT [SPEC §3.2]
    adam_beta2: float = 0.95
    lr_schedule: str = "constant"  # constant (the paper) | linear (decay to 0) | cosine
    warmup_examples: int = 0
    max_grad_norm: float = 0.0  # 0 disables clipping
    max_length: int = 64  # tokens per example (prompt + response)
    # An example longer than max_length: "left" cuts its prompt from the left (the response and EOS
    # stay), "drop" drops it and draws the next one of the stream (counted), "error" stops the run.
    truncation: str = "left"
    # The stage's objective: SFT (the paper's, and the default) or a preference / RL method; a bare
    # string names it (``--set align.algorithm=dpo``). What one "example" is depends on it (docs/algorithms.md).
    algorithm: AlgorithmConfig = dataclasses.field(default_factory=AlgorithmConfig)

    def __post_init__(self) -> None:
        # Built from a plain dict (a cached base's key, a cell's stage) the algorithm arrives as a
        # mapping or a bare name; keep the field typed either way.
        if isinstance(self.algorithm, dict):
            self.algorithm = AlgorithmConfig(**self.algorithm)
        elif isinstance(self.algorithm, str):
            self.algorithm = AlgorithmConfig(name=self.algorithm)


@dataclasses.dataclass
class MeasureConfig:
    """What is measured at each checkpoint."""

    n_samples: int = 4  # sampled completions per evaluation prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 20
    kl: bool = True  # KL(model || reference) on the evaluation prompts
    vader: bool = True  # VADER compound score of the samples (sentiment-like worlds only)
    batch_size: int = 256  # sequences per forward pass when scoring; results do not depend on it
    # Tokens per scored (prompt, reference completion) pair: prompts are cut from the left to fit;
    # a completion that does not fit at all is an error (found before any training).
    max_length: int = 128


# ----------------------------------------------------------------------------- dict <-> dataclass

_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def to_dict(obj: Any) -> Any:
    """A dataclass (recursively) as plain dicts / lists / scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; the only conversion allowed is int -> float."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and _has_name(tp):  # a bare string names it: algorithm: dpo
            value = {"name": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, val_tp = get_args(tp) or (Any, Any)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads "2e-5" (no dot) as a string; accept plain scientific notation.
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp}")


def _has_name(tp: type) -> bool:
    """Whether dataclass ``tp`` has a ``name`` field (a bare string in a config is then its name)."""
    return any(f.name == "name" for f in dataclasses.fields(tp))


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (valid keys here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in recursively (update wins); inputs are not modified."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        elif isinstance(value, str) and isinstance(out.get(key), dict) and "name" in out[key]:
            # A bare string onto a named section (``--set align.algorithm=dpo``) changes its name and
            # keeps the values set before it (e.g. ``algorithm.beta`` from a YAML file).
            out[key] = {**out[key], "name": value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(item: str) -> dict:
    """``"a.b=3"`` -> ``{"a": {"b": 3}}``; the value is read as YAML (numbers, lists, bools)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set has an empty key in '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value '{raw}': {exc}") from None
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file or malformed YAML raises ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {p}{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def resolve(
    cls: type,
    presets: dict[str, dict] | None = None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    fields: dict[str, Any] | None = None,
) -> Any:
    """Defaults <- preset <- YAML file <- ``fields`` (dotted keys; empty values skipped) <- --set
    overrides, validated against ``cls``."""
    data = to_dict(cls())
    if preset:
        presets = presets or {}
        if preset not in presets:
            raise ConfigError(f"unknown preset '{preset}' (choose from: {', '.join(presets)})")
        data = deep_merge(data, presets[preset])
    if config_file:
        data = deep_merge(data, load_yaml(config_file))
    for key, value in (fields or {}).items():
        if value in (None, "", [], ()):
            continue
        node: dict = {}
        cur = node
        *parents, leaf = key.split(".")
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[leaf] = list(value) if isinstance(value, tuple) else value
        data = deep_merge(data, node)
    for item in sets or []:
        data = deep_merge(data, parse_set(item))
    return from_dict(cls, data)


def stable_hash(obj: Any, length: int = 10) -> str:
    """A short hash of ``obj`` that is the same on every machine and Python run."""
    blob = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
