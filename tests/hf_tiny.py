"""Tiny random Hugging Face models and small local data files for the real-model tests.

Nothing here reaches the hub: models are built from configs (Llama, GPT-2, GPT-NeoX) with a
word-level tokenizer and saved to temporary folders; data files are written in every
supported format from sentiment-world sentences.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import torch

from springback.worlds.base import SPECIAL_TOKENS, build_word_tokenizer
from springback.worlds.sentiment import NEGATIVE, POSITIVE

TITLES = ["the red river", "the last winter", "the quiet garden", "the lost letter", "the cold island", "the long city"]
ASPECTS = ["story", "acting", "music", "ending"]
REFUSAL = "i am sorry , i can not help with that ."
COMPLY = "sure , here are the steps : [step-one] [step-two] ."
EXTRA = "review of my thoughts on was and the it , . : ? how do i open fix user assistant help with that sure here are".split()


def vocabulary() -> list[str]:
    words = set(POSITIVE + NEGATIVE + ASPECTS + EXTRA + REFUSAL.split() + COMPLY.split())
    for t in TITLES:
        words.update(t.split())
    return SPECIAL_TOKENS + sorted(words)


def tokenizer(pad: bool = True):
    tok = build_word_tokenizer(vocabulary())
    if not pad:
        tok.pad_token = None
    return tok


def model_config(kind: str, tok, hidden: int = 16, layers: int = 1):
    """A tiny config of the given family; ``kind`` in {llama, gpt2, neox}."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    v = len(tok)
    if kind == "llama":
        return LlamaConfig(vocab_size=v, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, **ids)
    if kind == "gpt2":
        return GPT2Config(vocab_size=v, n_embd=hidden, n_layer=layers, n_head=2, n_positions=128, **ids)
    if kind == "neox":
        return GPTNeoXConfig(vocab_size=v, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=2, max_position_embeddings=128, **ids)
    raise ValueError(kind)


def build(kind: str, tok, seed: int = 0, **kw):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model_config(kind, tok, **kw)).eval()


def save(kind: str, directory: Path, seed: int = 0, pad: bool = True, **kw) -> Path:
    """Save a tiny random model of family ``kind`` with its tokenizer; returns the folder."""
    tok = tokenizer(pad)
    model = build(kind, tok, seed, **kw)
    model.save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return Path(directory)


def review(rng: random.Random, positive: bool) -> str:
    words = POSITIVE if positive else NEGATIVE
    a, b = rng.choice(ASPECTS), rng.choice(ASPECTS)
    return f"review of {rng.choice(TITLES)} : the {a} was {rng.choice(words)} and the {b} was {rng.choice(words)} ."


def imdb_rows(n: int, seed: int = 0) -> list[dict]:
    """IMDb-shaped rows (text, label) with alternating labels."""
    rng = random.Random(seed)
    return [{"text": review(rng, i % 2 == 0), "label": int(i % 2 == 0)} for i in range(n)]


def safety_rows(n: int, seed: int = 0) -> list[dict]:
    """BeaverTails-shaped rows (prompt, response, is_safe)."""
    rng = random.Random(seed)
    verbs = ["open", "fix"]
    return [{"prompt": f"how do i {rng.choice(verbs)} that ?", "response": REFUSAL if i % 2 == 0 else COMPLY,
             "is_safe": i % 2 == 0} for i in range(n)]


def write(rows: list[dict], path: Path) -> Path:
    """Write rows as .csv / .json (array) / .jsonl / .parquet by the file's suffix."""
    path = Path(path)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path, index=False)
    else:
        raise ValueError(path)
    return path
