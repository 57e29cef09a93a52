"""Models: tiny Llama-architecture presets built from a config, or any Hugging Face causal LM.

One model type serves every scale (DESIGN §4): a preset is an ordinary
``LlamaForCausalLM`` created with ``from_config`` and saved with ``save_pretrained``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, SpringbackError


@dataclasses.dataclass(frozen=True)
class SizePreset:
    hidden_size: int
    n_layers: int
    n_heads: int
    intermediate_size: int


# One width/depth dial; parameter counts (with a ~100-word world vocabulary) in comments.
PRESETS: dict[str, SizePreset] = {
    "nano": SizePreset(hidden_size=32, n_layers=2, n_heads=4, intermediate_size=64),  # ~0.03M
    "micro": SizePreset(hidden_size=64, n_layers=3, n_heads=4, intermediate_size=128),  # ~0.13M
    "mini": SizePreset(hidden_size=96, n_layers=4, n_heads=4, intermediate_size=256),  # ~0.45M
    "small": SizePreset(hidden_size=128, n_layers=6, n_heads=4, intermediate_size=384),  # ~1.3M
    "base": SizePreset(hidden_size=256, n_layers=6, n_heads=8, intermediate_size=768),  # ~4.8M
}


def preset_config(name: str, vocab_size: int, max_positions: int = 128, tokenizer: Any = None):
    """The ``LlamaConfig`` of size preset ``name`` for a vocabulary of ``vocab_size`` words."""
    from transformers import LlamaConfig

    if name not in PRESETS:
        raise ConfigError(f"unknown size preset '{name}' (choose from: {', '.join(PRESETS)})")
    p = PRESETS[name]
    kw = {}
    if tokenizer is not None:
        kw = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.n_layers,
        num_attention_heads=p.n_heads,
        num_key_value_heads=p.n_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        **kw,
    )


def build_model(preset: str, tokenizer: Any, seed: int, max_positions: int = 128) -> torch.nn.Module:
    """A freshly initialised preset model; the same seed gives the same weights."""
    from transformers import AutoModelForCausalLM

    cfg = preset_config(preset, len(tokenizer), max_positions, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def preset_parameters(name: str, vocab_size: int = 100) -> int:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(preset_config(name, vocab_size))
    return count_parameters(model)


def _hub_hint(exc: Exception) -> str:
    text = str(exc)
    if any(s in text for s in ("offline", "Connection", "resolve", "Max retries", "not a local folder", "Repository Not Found", "couldn't connect", "Could not connect")):
        return " (the Hugging Face hub is not reachable here: pass a local directory instead)"
    return ""


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (False at once under ``HF_HUB_OFFLINE=1``).

    Asked before any hub download so that an offline machine gets one clear line at once
    instead of the hub client's half a minute of retries.
    """
    import os
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return False
        endpoint = constants.ENDPOINT
    except Exception:  # noqa: BLE001 - very old huggingface_hub
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _causal_lm_classes() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


def check_causal_lm(config: Any, path: str) -> None:
    """Refuse checkpoints whose saved architecture is not a causal LM (e.g. a classifier or
    a masked LM): ``AutoModelForCausalLM`` would otherwise bolt a fresh LM head onto them."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = list(getattr(config, "architectures", None) or [])
    name = f"{type(config).__name__}" + (f", architecture {', '.join(arch)}" if arch else "")
    if getattr(config, "model_type", None) not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise SpringbackError(f"'{path}' is not a causal language model ({name})")
    if arch and not any(a in _causal_lm_classes() or a.endswith(("ForCausalLM", "LMHeadModel")) for a in arch):
        raise SpringbackError(f"'{path}' is not a causal language model ({name})")


def resolve_source(path: str, what: str = "model") -> tuple[str, dict[str, Any]]:
    """(name to pass to ``from_pretrained``, extra keyword arguments) for a local directory or
    hub id. Offline, a hub id is looked up in the local Hugging Face cache only."""
    local = Path(path).expanduser()
    looks_local = path.startswith((".", "/", "~")) or local.exists()
    if looks_local:
        if not local.is_dir():
            raise SpringbackError(f"{what} path not found: {path}")
        return str(local), {}
    if not hub_reachable():
        return path, {"local_files_only": True}
    return path, {}


def _offline_line(path: str, what: str) -> str:
    return (f"{what} '{path}' is not a local directory and the Hugging Face hub is not reachable "
            "(offline?): pass a local directory, or download it on a connected machine first")


def load_model(
    path: str,
    revision: str = "",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> tuple[torch.nn.Module, Any]:
    """Load a causal LM and its tokenizer from a local directory or a hub id.

    Weights are read from safetensors only: pickled weights (``pytorch_model.bin``) can run code
    when loaded, so they need ``allow_pickle=True`` (``model.allow_pickle``). ``trust_remote_code``
    stays off unless asked. Weights the architecture expects but the checkpoint lacks (they would
    be randomly initialised) or holds but the architecture does not use are an error, not a
    warning. A tokenizer without a pad token gets its EOS token as pad (left alone otherwise).
    Every failure the user can fix (missing path, not a causal LM, hub id while offline, pickled
    or mismatched weights) raises :class:`SpringbackError` with one line.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ..runtime import quiet_hf, torch_dtype

    quiet_hf()
    name, kw = resolve_source(path, "model")
    offline = kw.get("local_files_only", False)
    kw["trust_remote_code"] = trust_remote_code
    if revision:
        kw["revision"] = revision
    try:
        config = AutoConfig.from_pretrained(name, **kw)
    except Exception as exc:  # noqa: BLE001 - turn hub / format errors into one clear line
        if offline:
            raise SpringbackError(_offline_line(path, "model")) from None
        raise SpringbackError(f"cannot load model config from '{path}': {str(exc).splitlines()[0]}{_hub_hint(exc)}") from None
    check_causal_lm(config, path)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype(dtype), output_loading_info=True,
                                                           use_safetensors=None if allow_pickle else True, **kw)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise SpringbackError(f"'{path}' is not a causal language model ({type(config).__name__})") from None
        raise SpringbackError(f"cannot load model from '{path}': {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        if not allow_pickle and Path(name).is_dir() and not list(Path(name).glob("*.safetensors")) \
                and list(Path(name).glob("*.bin")):
            raise SpringbackError(f"'{path}' has only pickled weights (*.bin), which can run code when loaded: convert "
                                  "them to safetensors, or set model.allow_pickle=true for a checkpoint you trust") from None
        if offline:
            raise SpringbackError(_offline_line(path, "model")) from None
        raise SpringbackError(f"cannot load model from '{path}': {str(exc).splitlines()[0]}{_hub_hint(exc)}") from None
    for kind, keys in (("missing from", info.get("missing_keys") or []), ("unexpected in", info.get("unexpected_keys") or [])):
        keys = sorted(keys)
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise SpringbackError(f"weights {kind} '{path}': {keys[0]}{more} (a {type(config).__name__} checkpoint "
                                  "with other weights than its architecture's: truncated or converted wrongly?)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kw)
    except Exception as exc:  # noqa: BLE001
        raise SpringbackError(f"cannot load tokenizer from '{path}': {str(exc).splitlines()[0]}{_hub_hint(exc)}") from None
    prepare_tokenizer(tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load(path: str, model_cfg: Any = None) -> tuple[torch.nn.Module, Any]:
    """:func:`load_model` with ``model_cfg``'s options, placed on the runtime device in eval mode.

    ``model_cfg`` is a :class:`~springback.config.ModelConfig` (default options when None); its
    ``revision`` applies only when ``path`` is its own ``path``.
    """
    from ..config import ModelConfig
    from ..runtime import device

    mc = model_cfg or ModelConfig()
    model, tok = load_model(path, revision=mc.revision if mc.path == path else "", dtype=mc.dtype,
                            trust_remote_code=mc.trust_remote_code, allow_pickle=mc.allow_pickle)
    model.to(device()).eval()
    return model, tok


def load_tokenizer(path: str, revision: str = "", trust_remote_code: bool = False) -> Any:
    """Only the tokenizer of a checkpoint (local directory or hub id), with a pad token."""
    from transformers import AutoTokenizer

    from ..runtime import quiet_hf

    quiet_hf()
    name, kw = resolve_source(path, "model")
    kw["trust_remote_code"] = trust_remote_code
    if revision:
        kw["revision"] = revision
    try:
        return prepare_tokenizer(AutoTokenizer.from_pretrained(name, **kw))
    except SpringbackError:
        raise
    except Exception as exc:  # noqa: BLE001
        if kw.get("local_files_only"):
            raise SpringbackError(_offline_line(path, "model")) from None
        raise SpringbackError(f"cannot load tokenizer from '{path}': {str(exc).splitlines()[0]}{_hub_hint(exc)}") from None


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Ensure a pad token exists (EOS doubles as pad, the usual choice for causal LMs)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SpringbackError("tokenizer has neither a pad token nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_model(model: torch.nn.Module, tokenizer: Any, directory: str | Path) -> None:
    """Save weights (safetensors) and tokenizer to ``directory``."""
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))


from .training import finish_training, is_lora, prepare_for_training  # noqa: E402

__all__ = ["PRESETS", "SizePreset", "build_model", "load", "load_model", "load_tokenizer", "save_model", "count_parameters", "preset_parameters",
           "preset_config", "prepare_tokenizer", "prepare_for_training", "finish_training", "is_lora", "hub_reachable",
           "check_causal_lm"]
