"""How well a language model compresses text: code length, bits/token, bits/byte, γ [SPEC §4].

A language model is a compressor. Feeding its next-token probabilities to an arithmetic coder
(:mod:`springback.measure.coder`) turns a text into

    L(x) = −Σ_t log2 p(x_t | x_<t)   bits          (the *code length*, up to ~2 bits per message)

so the model's cross-entropy on a text *is* the size of the text compressed with that model.
This module computes L(x) exactly by teacher forcing and reports it in the three units that
other tools use:

==================  ====================================  ==========================================
name                definition                            why
==================  ====================================  ==========================================
``bits_per_token``  L / (scored tokens)                   the model's own unit; depends on the tokenizer
``bits_per_byte``   L / (UTF-8 bytes of the text)         tokenizer-free; lm-evaluation-harness's
                                                          ``bits_per_byte`` (−Σ loglik / ln 2 / bytes)
``gamma``           L / (8 · bytes) = bits_per_byte / 8   compression *rate*: compressed size over raw
                                                          size, as gzip's ratio (P1 §3 calls it γ)
==================  ====================================  ==========================================

What is scored, precisely
-------------------------
* Each text is tokenized **without** special tokens and then given one *prefix token* — the
  tokenizer's BOS, or EOS when it has no BOS (GPT-2, lm-evaluation-harness's choice). The
  prefix is context only: every token of the text is scored, the prefix never is. With
  ``add_eos=True`` an EOS is appended and scored too: it carries the information "the text
  ends here" and has no bytes of its own (used for world examples, which end with EOS in
  training, matching the token trees of SPEC §2 whose leaves are EOS).
* **Long texts** are scored with a sliding window of at most ``window`` input tokens. The
  first window predicts up to ``window`` targets; each later window predicts the next
  ``stride`` targets, using the ``window − stride`` preceding tokens as extra context. Every
  target is scored **exactly once**. ``stride == window`` reproduces lm-evaluation-harness's
  disjoint rolling windows; a smaller stride gives each window more context (a better,
  i.e. shorter, code) for more compute. Default: ``stride = window // 2``.
* ``masks`` (optional, one bool per token) select which tokens count; unselected tokens and
  padding contribute nothing. Bytes are always supplied by the caller for the scored part.
* **Batch-size independent**: windows are right-padded, the attention mask hides padding,
  and each window's sum is taken over its own positions, so a text's code length does not
  depend on what it was batched with (up to float32 rounding in the matrix products, ~1e-6
  relative). Sums are accumulated in float64.

The functions take a model and a tokenizer (any Hugging Face causal LM, including the tiny
world models) and never touch files, except :func:`read_texts` and :func:`compress_file`
which serve ``springback compress``.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import lzma
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import SpringbackError

LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass
class CodeLength:
    """Code lengths of ``N`` texts under one model (float64 bits, ints for counts)."""

    bits: np.ndarray  # [N] −Σ log2 p over each text's scored tokens
    n_tokens: np.ndarray  # [N] scored tokens per text
    n_bytes: np.ndarray  # [N] UTF-8 bytes per text

    @property
    def total_bits(self) -> float:
        return float(np.sum(self.bits))

    @property
    def total_tokens(self) -> int:
        return int(np.sum(self.n_tokens))

    @property
    def total_bytes(self) -> int:
        return int(np.sum(self.n_bytes))

    @property
    def bits_per_token(self) -> float:
        """Pooled over texts: total bits / total tokens (as a corpus-level cross-entropy)."""
        return self.total_bits / self.total_tokens if self.total_tokens else float("nan")

    @property
    def bits_per_byte(self) -> float:
        """Pooled over texts: total bits / total UTF-8 bytes (lm-evaluation-harness's bits_per_byte)."""
        return self.total_bits / self.total_bytes if self.total_bytes else float("nan")

    @property
    def gamma(self) -> float:
        """Compression rate γ = compressed bits / raw bits = bits_per_byte / 8."""
        return self.bits_per_byte / 8.0

    def summary(self) -> dict[str, float]:
        return {
            "n_texts": int(len(self.bits)),
            "n_tokens": self.total_tokens,
            "n_bytes": self.total_bytes,
            "code_bits": self.total_bits,
            "bits_per_token": self.bits_per_token,
            "bits_per_byte": self.bits_per_byte,
            "gamma": self.gamma,
        }


# ----------------------------------------------------------------------------- tokens


def prefix_token_id(tokenizer: Any) -> int:
    """The context-only token put before every text: BOS, else EOS (lm-evaluation-harness's EOT)."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise SpringbackError("tokenizer has neither a BOS nor an EOS token to start a text with")


def tokenize_texts(tokenizer: Any, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
    """``[prefix] + tokens(text) (+ [EOS])`` for every text. Position 0 is never scored."""
    prefix = prefix_token_id(tokenizer)
    eos = [int(tokenizer.eos_token_id)] if add_eos and tokenizer.eos_token_id is not None else []
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids if text else []
        out.append([prefix] + list(ids) + eos)
    return out


def model_window(model: torch.nn.Module, cap: int = 1024) -> int:
    """Longest input the model takes (its position limit), capped to keep CPU memory small."""
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 1:
            return min(value, cap)
    return cap


# ----------------------------------------------------------------------------- windows


def windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """Sliding windows over one sequence of ``n_tokens`` tokens (position 0 = prefix).

    Returns ``(c, a, b)`` triples: the window's input is ``ids[c : b-1]`` and it scores
    targets ``a .. b-1`` (the token at position i is predicted from positions < i). The
    target ranges ``[a, b)`` tile ``[1, n_tokens)`` exactly — every token scored once — and
    each input is at most ``window`` tokens long.
    """
    if window < 1 or not 1 <= stride <= window:
        raise SpringbackError(f"need window >= 1 and 1 <= stride <= window, got window={window}, stride={stride}")
    out = []
    a = 1
    step = window  # the first window predicts as many targets as it can
    while a < n_tokens:
        b = min(n_tokens, a + step)
        c = max(0, b - 1 - window)
        out.append((c, a, b))
        a, step = b, stride
    return out


@torch.no_grad()
def token_bits(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    pad_id: int = 0,
) -> list[np.ndarray]:
    """−log2 p of every target token, per sequence: ``out[i][j]`` is the cost of ``sequences[i][j+1]``.

    Arrays are float64 of length ``len(seq) − 1`` (position 0 is the prefix). Windows follow
    :func:`windows`; results do not depend on ``batch_size`` beyond float32 rounding.
    """
    window = window or model_window(model)
    stride = stride or max(1, window // 2)
    device = next(model.parameters()).device
    out = [np.full(max(0, len(s) - 1), np.nan, dtype=np.float64) for s in sequences]
    pieces = [(i, c, a, b) for i, s in enumerate(sequences) for (c, a, b) in windows(len(s), window, stride)]
    # Longest first so that each batch pads little; the order does not change any result.
    pieces.sort(key=lambda p: -(p[3] - 1 - p[1]))
    was_training = model.training
    model.eval()
    for start in range(0, len(pieces), batch_size):
        chunk = pieces[start : start + batch_size]
        width = max(b - 1 - c for _, c, _, b in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (i, c, a, b) in enumerate(chunk):
            inp = sequences[i][c : b - 1]
            ids[r, : len(inp)] = torch.as_tensor(inp, dtype=torch.long)
            attn[r, : len(inp)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits  # [B, W, V]
        logp = torch.log_softmax(logits.float(), dim=-1)
        for r, (i, c, a, b) in enumerate(chunk):
            targets = torch.as_tensor(sequences[i][a:b], dtype=torch.long, device=device)  # [b-a]
            # logits at input position (t-1-c) predict target t
            rows = logp[r, a - 1 - c : b - 1 - c]  # [b-a, V]
            lp = rows.gather(-1, targets[:, None]).squeeze(-1).double().cpu().numpy()
            seg = out[i][a - 1 : b - 1]
            if not np.all(np.isnan(seg)):  # guards the "scored exactly once" invariant
                raise AssertionError("a token was scored twice")
            out[i][a - 1 : b - 1] = -lp / LN2
    if was_training:
        model.train()
    return out


def code_length_of_ids(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    n_bytes: Sequence[int],
    masks: Sequence[Sequence[bool]] | None = None,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    pad_id: int = 0,
) -> CodeLength:
    """Code length of pre-tokenized sequences; ``masks[i][t]`` says whether token t counts."""
    per_token = token_bits(model, sequences, window, stride, batch_size, pad_id)
    bits, counts = [], []
    for i, tb in enumerate(per_token):
        if masks is not None:
            m = np.asarray(masks[i][1:], dtype=bool)
            if len(m) != len(tb):
                raise ValueError(f"mask {i} has {len(m) + 1} entries for {len(tb) + 1} tokens")
            tb = tb[m]
        bits.append(float(np.sum(tb)))
        counts.append(len(tb))
    return CodeLength(np.asarray(bits, dtype=np.float64), np.asarray(counts, dtype=np.int64), np.asarray(n_bytes, dtype=np.int64))


def code_length(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    add_eos: bool = False,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
) -> CodeLength:
    """Code length, bits/token, bits/byte and γ of ``texts`` under ``model`` (see the module doc)."""
    seqs = tokenize_texts(tokenizer, texts, add_eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return code_length_of_ids(model, seqs, [len(t.encode("utf-8")) for t in texts], None, window, stride, batch_size, pad)


def example_text(prompt: str, response: str) -> str:
    """The text of a prompt/response example as the world tokenizer sees it (words joined by spaces)."""
    return f"{prompt} {response}" if prompt else response


def examples_code_length(
    model: torch.nn.Module, tokenizer: Any, examples: Sequence[Any], part: str = "all", batch_size: int = 64
) -> CodeLength:
    """Code length of world / dataset examples (objects with ``prompt`` and ``response``).

    ``part="all"``: every token after BOS — prompt, response and the closing EOS, the tokens
    pre-training learns — against the UTF-8 bytes of ``prompt + " " + response``.
    ``part="response"``: only the response and its EOS, *given* the prompt (the tokens
    fine-tuning learns, ``train.encode(..., loss_on="response")``), against the response's bytes.
    An example without a prompt (plain pre-training text) is all response.
    """
    if part == "all":
        texts = [example_text(e.prompt, e.response) for e in examples]
        return code_length(model, tokenizer, texts, add_eos=True, batch_size=batch_size)
    if part != "response":
        raise ValueError(f"part must be 'all' or 'response', got {part!r}")
    from ..tokens import encode

    window = model_window(model)
    enc = [encode(tokenizer, e.prompt, e.response, "response", max_length=10**9) for e in examples]
    if any(len(x.input_ids) > window for x in enc):
        raise SpringbackError(f"an example is longer than the model's {window}-token context; use part='all'")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return code_length_of_ids(model, [x.input_ids for x in enc], [len(e.response.encode("utf-8")) for e in examples],
                              [x.loss_mask for x in enc], batch_size=batch_size, pad_id=pad)


# ----------------------------------------------------------------------------- baselines


def baseline_sizes(data: bytes) -> dict[str, int]:
    """Compressed size in bytes of ``data`` with standard compressors at their strongest settings."""
    return {
        "gzip -9": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "bz2 -9": len(bz2.compress(data, compresslevel=9)),
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
    }


# ----------------------------------------------------------------------------- files (springback compress)

# Files are read where every other data file is: one set of loaders (csv, json, parquet, text
# lines split on "\n" only). Re-exported here so ``measure.compression.read_texts`` keeps working.
from ..data.loading import read_texts  # noqa: E402


def compress_file(
    model_path: str,
    data_path: str | Path,
    arith: bool = False,
    max_bytes: int | None = None,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 32,
    add_eos: bool = False,
) -> dict[str, Any]:
    """Everything ``springback compress`` prints, as a dict.

    The model (a world-model directory or any local Hugging Face causal LM) scores the texts
    of ``data_path``; gzip, bz2 and xz compress the same bytes (the texts joined by newlines);
    with ``arith`` the texts are really arithmetic-coded and decoded back.
    """
    from ..models import load

    texts = read_texts(data_path, max_bytes)
    model, tok = load(model_path)
    cl = code_length(model, tok, texts, add_eos=add_eos, window=window, stride=stride, batch_size=batch_size)
    joined = "\n".join(texts).encode("utf-8")
    result: dict[str, Any] = {
        "model": str(model_path),
        "data": str(data_path),
        "vocab_size": int(model.config.vocab_size),
        "window": window or model_window(model),
        "model_rate": cl.summary(),
        "baselines": {
            name: {"bytes": size, "raw_bytes": len(joined), "bits_per_byte": 8 * size / len(joined), "gamma": size / len(joined)}
            for name, size in baseline_sizes(joined).items()
        },
    }
    if arith:
        from .coder import decode, encode

        seqs = tokenize_texts(tok, texts, add_eos)
        eos = tok.eos_token_id
        # With a closing EOS that occurs nowhere else, the model codes the text boundaries itself;
        # otherwise the header carries each text's token count.
        term = eos if add_eos and eos is not None and all(eos not in s[1:-1] for s in seqs) else None
        blob, stats = encode(model, seqs, window=window, batch_size=min(batch_size, 16), terminator=term)
        decoded = decode(model, blob, window=window)
        tokens_ok = decoded == seqs
        texts_back = [tok.decode(s[1 : len(s) - (1 if add_eos else 0)], skip_special_tokens=False) for s in decoded]
        n_differ = sum(a != b for a, b in zip(texts_back, texts))
        result["arith"] = {
            **stats.summary(),
            "ideal_bits_scoring_pass": cl.total_bits,
            "roundtrip_tokens_exact": bool(tokens_ok),
            "roundtrip_text_exact": bool(tokens_ok and n_differ == 0),
            "roundtrip_texts_differ": int(n_differ),
            "bits_per_byte_coded": 8 * len(blob) / cl.total_bytes,
            "boundaries": "coded EOS" if term is not None else "token counts in the header",
        }
    return result
