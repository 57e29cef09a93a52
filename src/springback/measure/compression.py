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
* **Long texts** are scored in windows of at most ``window`` input tokens, in one of two
  conventions (``windows=``, ``springback compress --windows``):

  ``"sliding"`` (default) — the first window predicts up to ``window`` targets; each later
  window predicts the next ``stride`` targets, using the ``window − stride`` preceding tokens
  as extra context (default ``stride = window // 2``). More context, a shorter code, more
  compute.

  ``"disjoint"`` — lm-evaluation-harness's ``loglikelihood_rolling`` (lm_eval/models/
  huggingface.py, ``HFLM.loglikelihood_rolling``, with ``utils.get_rolling_token_windows(...,
  context_len=1)`` and ``utils.make_disjoint_window``; v0.4.13): ``stride == window`` and
  ``window`` defaults to lm-eval's ``max_length`` (:func:`lm_eval_max_length`, uncapped). Each
  full window after the first sees one token of context; the last, partial window is filled
  up to ``window`` tokens with preceding context, exactly as their windows are. Their
  tokenization equals ours with their ``add_bos_token=False`` (no special tokens, then their
  ``prefix_token_id``: BOS, else EOS); v0.4.13 otherwise applies the tokenizer's own default,
  which for BOS-adding tokenizers scores an extra BOS. ``tests/test_compression.py`` checks
  the bits/byte against lm-eval itself.

  Either way every target is scored **exactly once**.
* **One forward per batch of windows**, through :mod:`springback.teacher`
  (:func:`chunk_logprobs`); batches follow :func:`window_plan`. The arithmetic coder's encoder
  reads the very same forwards (``token_bits(..., visit=...)``), so coding a text costs no
  model time beyond scoring it.
* ``masks`` (optional, one bool per token) select which tokens count; unselected tokens and
  padding contribute nothing. Bytes are always supplied by the caller for the scored part.
* **Batch-size independent**: windows are right-padded, the attention mask hides padding,
  and each window's sum is taken over its own positions, so a text's code length does not
  depend on what it was batched with (up to float32 rounding in the matrix products, ~1e-6
  relative). Sums are accumulated in float64.

The functions take a model and a tokenizer (any Hugging Face causal LM, including the tiny
world models) and never touch files: ``springback compress`` (:func:`springback.api.compress`)
reads the files, with the data loaders every other command uses, and calls them.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import lzma
import math
from typing import Any, Callable, Sequence

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


# tokenizer.model_max_length when a tokenizer sets none (transformers' VERY_LARGE_INTEGER, int(1e30))
_UNSET_MODEL_MAX_LENGTH = 10**18


def lm_eval_max_length(model: torch.nn.Module, tokenizer: Any = None, default: int = 2048) -> int:
    """lm-evaluation-harness's context length for a model, uncapped.

    Their rule (lm_eval/models/utils.py, ``resolve_max_length``, v0.4.13): the first of the
    (text) config's ``n_positions``, ``max_position_embeddings``, ``n_ctx``; else the
    tokenizer's ``model_max_length`` unless unset; else 2048 (their ``DEFAULT_MAX_LENGTH``).
    """
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, name, None)
        if value is not None:
            return int(value)
    mml = getattr(tokenizer, "model_max_length", None)
    if mml is not None and mml < _UNSET_MODEL_MAX_LENGTH:
        return int(mml)
    return default


WINDOW_MODES = ("sliding", "disjoint")


def resolve_windows(
    model: torch.nn.Module, tokenizer: Any = None, windows: str = "sliding", window: int | None = None,
    stride: int | None = None,
) -> tuple[int, int]:
    """``(window, stride)`` for a window convention (see the module doc); explicit values win."""
    if windows == "sliding":
        window = window or model_window(model)
        return window, stride or max(1, window // 2)
    if windows == "disjoint":
        window = window or lm_eval_max_length(model, tokenizer)
        if stride is not None and stride != window:
            raise SpringbackError(f"disjoint windows score {window} new tokens per window; got stride {stride} "
                                  "(drop --stride, or use --windows sliding)")
        return window, window
    raise SpringbackError(f"unknown window convention {windows!r} (choose from: {', '.join(WINDOW_MODES)})")


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


Piece = tuple[int, int, int, int]  # (sequence i, c, a, b): input ids[i][c : b-1], targets a .. b-1


def window_plan(lengths: Sequence[int], window: int, stride: int, batch_size: int, staged: bool = False) -> list[list[Piece]]:
    """The batches of windows one scoring pass runs, in order; a pure function of its arguments.

    Unstaged (plain scoring): all windows, longest input first, so batches pad little.
    ``staged`` (the arithmetic coder): window k of every sequence comes after window k − 1 of
    every sequence, so a decoder that learns tokens one at a time always has a window's
    context before it needs it. With one window per sequence the two plans are equal.
    Ties keep sequence order (stable sort), so the plan is reproducible from the lengths.
    """
    per_seq = [windows(n, window, stride) for n in lengths]
    if staged:
        stages = [[(i, *ws[k]) for i, ws in enumerate(per_seq) if len(ws) > k]
                  for k in range(max((len(ws) for ws in per_seq), default=0))]
    else:
        stages = [[(i, *w) for i, ws in enumerate(per_seq) for w in ws]]
    plan: list[list[Piece]] = []
    for pieces in stages:
        pieces.sort(key=lambda p: -(p[3] - 1 - p[1]))
        plan += [pieces[s : s + batch_size] for s in range(0, len(pieces), batch_size)]
    return plan


def chunk_inputs(
    sequences: Sequence[Sequence[int]], chunk: Sequence[Piece], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Right-padded inputs of one batch of windows: ``(ids [R, W], attention_mask [R, W], targets [R, W])``.

    ``targets[r, p]`` is the token input position ``p`` predicts (``pad_id`` past the row's end).
    """
    width = max(b - 1 - c for _, c, _, b in chunk)
    ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
    tgt = np.full((len(chunk), width), pad_id, dtype=np.int64)
    attn = np.zeros((len(chunk), width), dtype=np.int64)
    for r, (i, c, a, b) in enumerate(chunk):
        n = b - 1 - c
        ids[r, :n] = sequences[i][c : b - 1]
        tgt[r, :n] = sequences[i][c + 1 : b]
        attn[r, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(attn), tgt


def scored_positions(chunk: Sequence[Piece]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, input positions, target positions)`` of the tokens a batch scores, step-major.

    Step j holds target ``a + j`` of every row that has one, rows in batch order: the order in
    which a decoder learns them, and the order of the coder's stream.
    """
    c, a, b = (np.array([p[k] for p in chunk], dtype=np.int64) for k in (1, 2, 3))
    n = b - a
    rows = np.repeat(np.arange(len(chunk)), n)
    step = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    order = np.lexsort((rows, step))  # by step, then row
    rows, step = rows[order], step[order]
    t = a[rows] + step
    return rows, t - 1 - c[rows], t


def chunk_logprobs(model: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """log p(next token) at every input position of a batch, float32 [R, W, V], via :mod:`springback.teacher`.

    Scoring, the coder's encoder and its decoder all call exactly this, so equal inputs give
    bit-equal outputs on one machine.
    """
    from ..teacher import next_token_logprobs

    device = next(model.parameters()).device
    return next_token_logprobs(model, ids.to(device), attn.to(device))


# A batch's scored log-probs, for the coder: (logp [R, W, V], rows [n], positions [n], targets [n]), step-major.
Visit = Callable[[torch.Tensor, np.ndarray, np.ndarray, np.ndarray], None]


@torch.no_grad()
def token_bits(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    pad_id: int = 0,
    staged: bool = False,
    visit: Visit | None = None,
) -> list[np.ndarray]:
    """−log2 p of every target token, per sequence: ``out[i][j]`` is the cost of ``sequences[i][j+1]``.

    Arrays are float64 of length ``len(seq) − 1`` (position 0 is the prefix). Windows follow
    :func:`windows`, batches :func:`window_plan` (``staged`` for the coder); results do not
    depend on ``batch_size`` or ``staged`` beyond float32 rounding. ``visit``, if given, sees
    every batch's log-probs with its scored positions (the coder's encoder reads them).
    """
    window = window or model_window(model)
    stride = stride or max(1, window // 2)
    sizes = np.array([max(0, len(s) - 1) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])  # sequence i's targets live at flat[offsets[i] :]
    flat = np.full(int(offsets[-1]), np.nan, dtype=np.float64)
    was_training = model.training
    model.eval()
    for chunk in window_plan([len(s) for s in sequences], window, stride, batch_size, staged):
        ids, attn, tgt = chunk_inputs(sequences, chunk, pad_id)
        logp = chunk_logprobs(model, ids, attn)  # [R, W, V]
        rows, pos, t = scored_positions(chunk)
        targets = tgt[rows, pos]
        lp = logp[tuple(torch.as_tensor(a, device=logp.device) for a in (rows, pos, targets))]  # [n]
        where = offsets[np.array([i for i, _, _, _ in chunk], dtype=np.int64)[rows]] + t - 1
        if not np.all(np.isnan(flat[where])):  # guards the "scored exactly once" invariant
            raise AssertionError("a token was scored twice")
        flat[where] = -lp.double().cpu().numpy() / LN2
        if visit is not None:
            visit(logp, rows, pos, targets)
    if was_training:
        model.train()
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(sequences))]


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
    return code_length_from_bits(token_bits(model, sequences, window, stride, batch_size, pad_id), n_bytes, masks)


def code_length_from_bits(
    per_token: Sequence[np.ndarray], n_bytes: Sequence[int], masks: Sequence[Sequence[bool]] | None = None
) -> CodeLength:
    """A :class:`CodeLength` from per-token bits (as :func:`token_bits` returns them)."""
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
    windows: str = "sliding",
) -> CodeLength:
    """Code length, bits/token, bits/byte and γ of ``texts`` under ``model`` (see the module doc).

    ``windows="disjoint"`` gives lm-evaluation-harness's rolling log-likelihood convention.
    """
    window, stride = resolve_windows(model, tokenizer, windows, window, stride)
    seqs = tokenize_texts(tokenizer, texts, add_eos)
    return code_length_of_ids(model, seqs, [len(t.encode("utf-8")) for t in texts], None, window, stride, batch_size,
                              pad_token(tokenizer))


def pad_token(tokenizer: Any) -> int:
    """The id right padding uses (its value never reaches a scored position)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


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
    return code_length_of_ids(model, [x.input_ids for x in enc], [len(e.response.encode("utf-8")) for e in examples],
                              [x.loss_mask for x in enc], batch_size=batch_size, pad_id=pad_token(tokenizer))


# ----------------------------------------------------------------------------- baselines


def baseline_sizes(data: bytes) -> dict[str, int]:
    """Compressed size in bytes of ``data`` with standard compressors at their strongest settings."""
    return {
        "gzip -9": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "bz2 -9": len(bz2.compress(data, compresslevel=9)),
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
    }
