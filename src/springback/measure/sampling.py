"""Sampling completions with the KV cache, reproducibly and fast on any vocabulary.

How a token is drawn (``SAMPLER_VERSION`` 2)
--------------------------------------------
* **Random numbers**: every completion — prompt ``i``, sample ``k`` — owns a stream of
  float64 uniforms from a CPU ``torch.Generator`` seeded with ``SeedSequence([seed, i, k])``;
  step t of that completion uses its t-th uniform. The draws therefore do not depend on the
  device, on ``batch_size``, on prompts appended after it, or on ``max_new_tokens`` (a longer
  run extends a shorter one).
* **Inversion on the device**: the step's distribution (temperature, then top-p, as
  :func:`_probs` defines it) is accumulated in float64 in token-id order and the uniform is
  looked up with ``searchsorted``: O(V) per row on the device, no transfer of probabilities to
  the CPU, no ``torch.multinomial``. A token can be drawn only if its probability is > 0.
  On another device the float32 probabilities differ in the last bits, so a draw can differ
  only when its uniform falls within ~1e-7 of a CDF boundary (or a top-p cut within ~1e-7 of
  a token), a chance of order 1e-7 per step.
* **Top-p** keeps the smallest set of most probable tokens whose mass reaches ``top_p``:
  token i is kept iff the probability of the tokens ranked before it (descending probability,
  lower id first on ties) is < ``top_p``; the most probable token is always kept. The set is
  found without sorting the vocabulary (:func:`nucleus_mask`): O(V) per row plus an exact
  ranking of the few tokens within 1/64 octave of the cut.

``SAMPLER_VERSION`` 1 drew with ``torch.multinomial`` over the whole batch from one generator
(so samples depended on the batch size). Callers put the version into cache keys, so results
drawn by an older sampler are not reused.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

SAMPLER_VERSION = 2
_ONE_BITS = 0x3F800000  # the bit pattern of float32 1.0
_MANTISSA_DROP = 17  # top-p bins keep the exponent and 6 mantissa bits of p (≤ 1/64 octave)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n_per_prompt: int,
    *,
    seed: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 20,
    batch_size: int = 64,
    chat_template: str = "none",
) -> tuple[list[str], list[list[int]], list[int]]:
    """``n_per_prompt`` completions for each prompt (prompt-major order).

    Prompts are encoded as training encodes them (:meth:`springback.tokens.Encoder.encode_prompts`,
    with ``chat_template``), and a completion ends at the first stop token (the template's
    end-of-turn, or EOS). Returns (texts, completion token ids up to and including the stop token,
    prompt index of each). The same model, seed and prompt give the same samples whatever the
    batch size.
    """
    from ..tokens import Encoder

    device = next(model.parameters()).device
    encoder = Encoder(tokenizer, chat_template, None)
    prompt_ids = encoder.encode_prompts(list(prompts))
    stops = list(encoder.stop_token_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    jobs = [(i, k) for i in range(len(prompts)) for k in range(n_per_prompt)]
    texts: list[str] = []
    ids_out: list[list[int]] = []
    was_training = model.training
    model.eval()
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        enc = [prompt_ids[i] for i, _ in chunk]
        width = max(len(e) for e in enc)
        # Left padding so every row's next token comes right after its prompt.
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attn = torch.zeros_like(input_ids)
        for r, e in enumerate(enc):
            input_ids[r, width - len(e) :] = torch.tensor(e)
            attn[r, width - len(e) :] = 1
        u = torch.stack([uniforms(seed, i, k, max_new_tokens) for i, k in chunk]).to(device)  # [B, T] float64
        new = _sample_loop(model, input_ids.to(device), attn.to(device), u, temperature, top_p, max_new_tokens, stops)
        for row in new.tolist():
            end = next((j for j, t in enumerate(row) if t in stops), None)
            if end is not None:
                row = row[: end + 1]
            ids_out.append(row)
            texts.append(tokenizer.decode([t for t in row if t not in stops], skip_special_tokens=True).strip())
    if was_training:
        model.train()
    return texts, ids_out, [i for i, _ in jobs]


def uniforms(seed: int, prompt_index: int, sample_index: int, n: int) -> torch.Tensor:
    """The first ``n`` uniforms in [0, 1) of one completion's stream, float64 on the CPU. [n]"""
    state = np.random.SeedSequence([seed % 2**64, prompt_index, sample_index]).generate_state(2, np.uint32)
    gen = torch.Generator(device="cpu").manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return torch.rand(n, generator=gen, dtype=torch.float64)


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward argument that takes a KV cache: ``cache`` since transformers 5.24 (its old
    name ``past_key_values`` warns, and goes in 5.40), ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _sample_loop(model, input_ids, attn, u, temperature, top_p, max_new_tokens, stops: Sequence[int]) -> torch.Tensor:
    """Ancestral sampling with a KV cache; step t of row r draws with ``u[r, t]``; a row is done at
    its first token in ``stops`` (later positions hold ``stops[0]``). Returns new tokens [B, max_new_tokens]."""
    from transformers import DynamicCache

    b = input_ids.size(0)
    position_ids = (attn.cumsum(-1) - 1).clamp_min(0)
    cache = DynamicCache()
    kw = cache_kwarg(model)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids, use_cache=True, **{kw: cache})
    logits = out.logits[:, -1]
    finished = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
    stop_ids = torch.tensor(list(stops), dtype=torch.long, device=input_ids.device)
    tokens = []
    next_pos = position_ids[:, -1:] + 1
    for t in range(max_new_tokens):
        nxt = draw(logits, u[:, t], temperature, top_p)  # [B]
        if stops:
            nxt = torch.where(finished, torch.full_like(nxt, stops[0]), nxt)
            finished |= torch.isin(nxt, stop_ids)
        tokens.append(nxt)
        if bool(finished.all()):
            break
        attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype, device=attn.device)], 1)
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True, **{kw: cache})
        logits = out.logits[:, -1]
        next_pos = next_pos + 1
    new = torch.stack(tokens, 1)
    if new.size(1) < max_new_tokens and stops:
        pad = torch.full((b, max_new_tokens - new.size(1)), stops[0], dtype=new.dtype, device=new.device)
        new = torch.cat([new, pad], 1)
    return new


def draw(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row by inverting the CDF of :func:`_probs` (token-id order) at ``u`` ∈ [0, 1).

    ``logits`` [B, V]; ``u`` [B] float64 on the same device. Greedy (argmax) for temperature ≤ 0. Returns [B] long.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    cdf = _nucleus_probs(logits, temperature, top_p).double().cumsum(-1)  # [B, V], unnormalised
    total = cdf[:, -1]
    # u < 1, but u · total may round up to total; stay strictly below so a zero-probability tail is never drawn.
    target = torch.minimum(u.to(cdf.dtype) * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target[:, None], right=True).squeeze(1)


def _probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution a step samples from, float32 [B, V]: softmax(logits / temperature), restricted to the top-p set."""
    if temperature <= 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).float()
    probs = _nucleus_probs(logits, temperature, top_p)
    return probs / probs.sum(-1, keepdim=True) if top_p < 1.0 else probs


def _nucleus_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """softmax(logits / temperature) with the tokens outside the top-p set zeroed, not renormalised. [B, V]"""
    probs = torch.softmax(logits.float() / temperature, -1)
    return probs.masked_fill_(~nucleus_mask(probs, top_p), 0.0) if top_p < 1.0 else probs


def nucleus_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The top-p set of every row of probabilities in [0, 1] (see the module doc), bool [B, V].

    No sort of the vocabulary. A row whose most probable token alone reaches ``top_p`` (the
    usual case at low temperature) keeps just that token; the other rows go to :func:`_binned_nucleus`.
    """
    p32 = probs.float()
    top_prob, top_id = p32.max(-1, keepdim=True)  # the first maximum: lowest id on ties
    mask = torch.zeros_like(p32, dtype=torch.bool).scatter_(-1, top_id, True)
    rest = (top_prob.squeeze(-1) < top_p).nonzero().squeeze(-1)
    if len(rest):
        mask[rest] = _binned_nucleus(p32[rest], top_p)
    return mask


def _binned_nucleus(p32: torch.Tensor, top_p: float) -> torch.Tensor:
    """:func:`nucleus_mask` by binning: tokens are binned by the top bits of their float32 pattern
    (exponent and 6 mantissa bits: bins of at most 1/64 octave, in order of probability); the
    bins wholly before the one where the mass crosses ``top_p`` are kept, those after it
    dropped, and only the crossing bin's few tokens are ranked exactly. [B, V] → bool [B, V]
    """
    n_rows = p32.size(0)
    # For 0 ≤ p ≤ 1 the int32 view of a float32 grows with p; 1.0 → bin 0, 0.0 → the last bin.
    bins = ((_ONE_BITS - p32.view(torch.int32)) >> _MANTISSA_DROP).long()  # [B, V]
    n_bins = (_ONE_BITS >> _MANTISSA_DROP) + 1
    mass = torch.zeros(n_rows, n_bins, dtype=torch.float64, device=p32.device).scatter_add_(1, bins, p32.double())
    above = mass.cumsum(1) - mass  # [B, n_bins] mass of the more probable bins
    top_bin = (mass > 0).int().argmax(1, keepdim=True)  # the most probable token's bin: it is always kept
    crossing = torch.maximum((above < top_p).sum(1, keepdim=True) - 1, top_bin)  # [B, 1]
    # The crossing bin's tokens, padded to [B, k]; nonzero lists them row by row, lower ids first.
    rows, cols = (bins == crossing).nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=n_rows)
    slot = torch.arange(len(rows), device=p32.device) - (counts.cumsum(0) - counts)[rows]
    k = max(1, int(counts.max()))
    vals = torch.full((n_rows, k), -1.0, device=p32.device).index_put_((rows, slot), p32[rows, cols])
    idx = torch.zeros((n_rows, k), dtype=torch.long, device=p32.device).index_put_((rows, slot), cols)
    rank = torch.argsort(-vals, dim=-1, stable=True)  # descending probability, lower id first on ties
    vals, idx = vals.gather(-1, rank), idx.gather(-1, rank)
    valid = vals >= 0  # padding slots hold −1
    v64 = torch.where(valid, vals.double(), torch.zeros_like(vals, dtype=torch.float64))
    before = above.gather(1, crossing) + v64.cumsum(-1) - v64  # mass ranked before each candidate
    keep = valid & (before < top_p)
    keep[:, 0] |= crossing.squeeze(1) == top_bin.squeeze(1)  # the first-ranked token of the top bin
    row_of = torch.arange(n_rows, device=p32.device)[:, None].expand_as(idx)
    return (bins < crossing).index_put_((row_of[valid], idx[valid]), keep[valid])
