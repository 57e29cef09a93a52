"""A real lossless coder: range coding of token sequences with a language model [SPEC §4].

:mod:`springback.measure.compression` *computes* the code length −Σ log2 p; this module
*produces* the code — bytes that a decoder holding the same model turns back into exactly
the same tokens — so the computed number is checked against a real compressed size.

The encoder is a scoring pass
-----------------------------
:func:`encode` runs :func:`~springback.measure.compression.token_bits` (one teacher-forcing
forward per batch of windows, :func:`~springback.measure.compression.chunk_logprobs`) and codes
the very log-probs that pass scores. So coding costs no model time of its own: it adds one
vectorised quantisation per scored token and a short Python loop per token, and the scores it
returns (``CodingStats.token_bits``) are the scoring pass's numbers.

The decoder replays the encoder's forwards
-------------------------------------------
A decoder learns token t only after decoding it, yet it must see bit-identical log-probs:
logits of a full-window forward and of a token-by-token (KV-cache) pass differ in the last
float bits (other kernels, shapes and summation orders), the integer tables then differ and
decoding turns to garbage within a few tokens. So :func:`decode` re-runs *the same* forward —
same function, same batch of windows, same shape, same attention mask — once per decoded
position, with the tokens it does not know yet replaced by padding. In a causal LM the output
at position p depends only on inputs ≤ p, and for a fixed shape the kernels' arithmetic does
not depend on the values of other positions (masked attention weights are exactly 0), so
position p's log-probs are bit-identical to the encoder's as soon as tokens ≤ p are known.
``tests/test_coder.py`` checks that for Llama, GPT-2 and GPT-NeoX. The price: decoding runs
one window-sized forward per token position of each batch (≈ ``stride``× the encoder's
forwards for long texts, the text length for short ones); the batch plan is staged
(:func:`~springback.measure.compression.window_plan`) so each forward decodes one token of
up to ``batch_size`` texts. A KV-cache primitive in :mod:`springback.teacher` used by both
sides would make decoding ~window/chunk times cheaper; every forward goes through the teacher.
Decoding on another machine (different BLAS, thread count or device) is not promised; a
CRC-32 of the tokens in the header turns any mismatch into :class:`CoderMismatchError`.

Quantisation (:func:`quantise_cdf`)
-----------------------------------
float32 log-probs → integer cumulative tables ending at ``T = 2**precision_bits`` with every
token's frequency ≥ 1, built only from IEEE-exact or correctly rounded element-wise operations,
table look-ups, a max and prefix sums of exact integers: nothing depends on the position of a
value in the tensor, the batch shape or the thread count (a float sum or ``exp`` could:
vectorised and scalar loop tails round differently). Weights ``exp(logp − max)`` come from two
tables on a grid of 2**-20 nats, and the CDF is rounded rather than each probability, so the
table sums to ``T`` exactly.

What the quantised code costs, exactly (per coded token with model probability p):

* the floor of one unit per token takes ``V`` of the ``T`` units from the model's mass
  (``f_s > p_s (T − V)``): at most ``log2(T / (T − V))`` ≈ V / (T ln 2) bits (1.1e-5 bits at
  V = 32k, 8.6e-5 at V = 256k);
* the 2**-20-nat grid (rounded in float32): at most ~3e-6 bits;
* the integer weights ``floor(2**k w)``: < 2**-k / (p ln 2) bits with k = 52 − bitlength(V)
  (k = 36 at V = 50k: < 2e-6 bits for p > 1e-5; rarer tokens cost > 16 bits anyway);
* the coder's 64-bit range: ≤ 2**(P − 56) / ln 2 ≈ 9e-8 bits;
* but every token costs at most ``P`` bits: a token the model gives p < 2**-P (text the model
  finds absurd: out-of-domain strings, another tokenizer's ids) is coded *shorter* than
  −log2 p. The floored tables can therefore beat the model's own ideal by an unbounded
  amount. :class:`CodingStats` keeps the two references apart: ``quantised_bits`` (the ideal
  length of the tables actually coded — the coder's overhead is measured against it, ≤ 2
  bytes per stream) and ``model_bits`` (the scoring pass's −Σ log2 p).

Range coder
-----------
A byte-oriented range coder — the carry-with-cache scheme of the LZMA SDK's range encoder
(C/LzmaEnc.c, ``RangeEnc_ShiftLow``), reimplemented with a 64-bit range renormalised to
≥ 2**56. It spends −log2(f/T) bits per symbol, plus ≤ 2**(P−56)/ln 2 bits per symbol of
truncation and ≤ 2 bytes per stream to finish on a byte boundary; trailing zero bytes are
dropped (the decoder reads zeros past the end).

Stream format (integers are unsigned LEB128 varints)
---------------------------------------------------
``b"SBAC"`` · version (2) · precision bits · window · stride · batch size · vocabulary size ·
pad id · number of sequences · prefix token id · the coded token count of every sequence ·
CRC-32 of all token ids (4 bytes, little endian) · payload. The window plan is a pure function
of these fields, so the decoder rebuilds every batch of the encoder. The payload is one
range-coded stream of every token after each sequence's prefix token (position 0, shared,
named in the header), batch by batch in the plan's order and step-major inside a batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from typing import Sequence

import numpy as np
import torch

from ..errors import SpringbackError
from .compression import chunk_inputs, chunk_logprobs, model_window, scored_positions, token_bits, window_plan

PRECISION_BITS = 32  # frequencies sum to 2**32; see the module doc for what quantisation costs
MAX_PRECISION_BITS = 40  # the coder's truncation loss is ≤ 2**(P−56) relative per symbol
MAGIC = b"SBAC"
VERSION = 2  # 1: token-by-token KV-cache tables, optional EOS terminator; 2: replayed window forwards

_RANGE_BITS = 64
_TOP = 1 << (_RANGE_BITS - 8)  # renormalise (shift out one byte) while the range is below this
_MASK = (1 << _RANGE_BITS) - 1
_GRID_BITS = 20  # log-weights are rounded to multiples of 2**-20 nats
_LO_BITS = 10  # the grid index splits into a coarse (2**-10 nats) and a fine part
_ELEMENTS_PER_SLAB = 1 << 17  # [rows, V] elements per quantisation call


class CoderMismatchError(SpringbackError):
    """Decoded tokens fail the checksum: the decoder's probabilities differ from the encoder's."""


# ----------------------------------------------------------------------------- quantisation


@functools.lru_cache(maxsize=8)
def _exp_tables(device: torch.device, weight_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """2**weight_bits · exp(−h·2**-10) for h = 0 .. H, then one 0 for "beyond"; and exp(−l·2**-20) for l < 2**10. float64

    H covers weights down to 2**-64, far below the integer weights' resolution. The power of two
    folded into the first table is exact. Python's ``math.exp`` fills them once, so both coder
    sides read the same numbers.
    """
    n_hi = math.ceil(64 * math.log(2) * (1 << _LO_BITS)) + 1
    hi = [math.ldexp(math.exp(-h / (1 << _LO_BITS)), weight_bits) for h in range(n_hi)] + [0.0]
    lo = [math.exp(-k / (1 << _GRID_BITS)) for k in range(1 << (_GRID_BITS - _LO_BITS))]
    return torch.tensor(hi, dtype=torch.float64, device=device), torch.tensor(lo, dtype=torch.float64, device=device)


def quantise_cdf(logp: torch.Tensor, precision_bits: int = PRECISION_BITS) -> torch.Tensor:
    """Integer cumulative frequency tables of next-token distributions: int64 [N, V], ``cum[:, s] = f_0 + … + f_s``.

    ``logp`` [N, V] are log-probabilities (float32 or float64; −inf allowed). Weights
    ``w ≈ exp(logp − max)`` come from tables on a 2**-20-nat grid; integer weights
    ``u = floor(w · 2**k)`` with ``k = 52 − bitlength(V)``, so that every prefix sum ``U_s`` is an
    integer below 2**52, exact in floats whatever the summation order. The CDF, not each
    probability, is rounded: ``cum[:, s] = floor(U_s · (T − V) / U_V) + s + 1``. So the last entry
    is exactly ``T = 2**precision_bits``, every token keeps ``f_s ≥ 1``, and ``f_s > u_s (T − V) / U_V``.
    Every step is exact or correctly rounded element-wise, so a row's table does not depend on the
    other rows, the batch shape, the thread count or the device.
    """
    cum_u, scale, spare = _prefix_weights(logp, precision_bits)
    cum = cum_u.mul_(scale).long()  # truncation = floor (values ≥ 0); monotone
    cum[:, -1] = spare  # U_V · (T − V) / U_V, which the rounded division may leave a hair short of
    return cum.add_(torch.arange(1, cum.size(1) + 1, device=cum.device))


def table_entries(logp: torch.Tensor, symbols: torch.Tensor, precision_bits: int = PRECISION_BITS) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, frequency) of ``symbols`` [N] in :func:`quantise_cdf`'s tables of ``logp`` [N, V], int64 [N] each.

    The encoder's shortcut: the same arithmetic on the two table entries it needs, not all V.
    """
    cum_u, scale, spare = _prefix_weights(logp, precision_bits)
    last = cum_u.size(1) - 1

    def entry(col: torch.Tensor) -> torch.Tensor:  # cum[:, col], for col ≥ 0   [N, 1]
        value = cum_u.gather(1, col.clamp(min=0)).mul_(scale).long()  # the very ops of quantise_cdf
        return torch.where(col == last, spare, value) + col + 1

    col = symbols.to(cum_u.device).long()[:, None]
    end = entry(col)
    start = torch.where(col > 0, entry(col - 1), 0)
    return start.squeeze(1), (end - start).squeeze(1)


def _prefix_weights(logp: torch.Tensor, precision_bits: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(prefix sums U [N, V] of the integer weights, as exact float64; scale (T − V) / U_V [N, 1]; T − V)."""
    if logp.dim() != 2 or logp.size(1) < 1:
        raise ValueError("quantise expects log-probabilities of shape [N, V]")
    vocab = logp.size(1)
    if not 1 <= precision_bits <= MAX_PRECISION_BITS:
        raise SpringbackError(f"precision must be 1..{MAX_PRECISION_BITS} bits, got {precision_bits}")
    spare = (1 << precision_bits) - vocab
    if spare <= 0:
        raise SpringbackError(f"a vocabulary of {vocab} tokens does not fit {precision_bits}-bit frequencies")
    top_logp = logp.amax(dim=-1, keepdim=True)  # [N, 1], exact; NaN propagates
    if not bool(torch.isfinite(top_logp).all()):
        raise SpringbackError("the model returned NaN or all −inf log-probabilities; nothing can be coded")
    weight_bits = 52 - vocab.bit_length()
    hi, lo = _exp_tables(logp.device, weight_bits)
    beyond = (len(hi) - 1) << _LO_BITS  # grid index at which the weight is taken as 0
    # grid ≈ (max − logp) · 2**20 rounded: the 2**-20-nat grid; −inf lands at ``beyond``. In the input's
    # precision: the scaling by 2**20 is exact, so the one addition rounds once, fused or not. (In float32
    # the grid is coarser than 2**-20 only where the weight is below e**-8, a relative error < 2e-6.)
    grid = torch.add(top_logp * float(1 << _GRID_BITS) + 0.5, logp, alpha=-float(1 << _GRID_BITS))
    grid = grid.clamp_(max=beyond).long()  # truncation = floor for values ≥ 0   [N, V]
    flat = grid.view(-1)  # look-ups by index_select: same numbers as take/gather, twice as fast on CPU
    w = hi.index_select(0, flat >> _LO_BITS).mul_(lo.index_select(0, flat & ((1 << _LO_BITS) - 1)))
    u = w.floor_().view_as(grid)  # ≈ 2**k · exp(logp − max)   [N, V]
    cum_u = u.cumsum_(dim=-1)  # exact integers < 2**52
    return cum_u, float(spare) / cum_u[:, -1:], spare


def quantise(logp: torch.Tensor, precision_bits: int = PRECISION_BITS) -> torch.Tensor:
    """The frequencies of :func:`quantise_cdf`'s tables: int64 [N, V], rows sum to ``2**precision_bits``, each ≥ 1."""
    return torch.diff(quantise_cdf(logp, precision_bits), dim=-1, prepend=torch.zeros_like(logp[:, :1], dtype=torch.long))


def _slabs(n_rows: int, vocab: int) -> list[slice]:
    step = max(1, _ELEMENTS_PER_SLAB // max(1, vocab))
    return [slice(s, min(n_rows, s + step)) for s in range(0, n_rows, step)]


# ----------------------------------------------------------------------------- range coder


def range_encode(starts: Sequence[int], freqs: Sequence[int], precision_bits: int = PRECISION_BITS) -> bytes:
    """Range-code symbols given as (cumulative start, frequency) pairs of tables summing to ``2**precision_bits``."""
    low, rng = 0, 1 << _RANGE_BITS
    cache, n_pending = 0, 1  # the byte above the 64-bit window (may still take a carry) + 0xFF bytes after it
    out = bytearray()
    top, mask, carry_at, ff_at = _TOP, _MASK, 1 << _RANGE_BITS, 0xFF << (_RANGE_BITS - 8)
    shift = _RANGE_BITS - 8
    for c, f in zip(starts, freqs):
        r = rng >> precision_bits
        low += r * c
        rng = r * f
        while rng < top:
            # Emit the byte above the window unless it is 0xFF without a carry (a later carry
            # could still turn 0xFF…FF into 00…00 of the next byte up): then count it as pending.
            if low < ff_at or low >= carry_at:
                carry = low >> _RANGE_BITS
                out.append((cache + carry) & 0xFF)
                if n_pending > 1:
                    out.extend(bytes([(0xFF + carry) & 0xFF]) * (n_pending - 1))
                cache, n_pending = (low >> shift) & 0xFF, 0
            n_pending += 1
            low = (low << 8) & mask
            rng <<= 8
    # Finish with the value in [low, low + rng) that has the most trailing zero bits, then
    # flush the window; trailing zero bytes are dropped (the decoder reads zeros past the end).
    for k in range(_RANGE_BITS, -1, -1):
        v = ((low + (1 << k) - 1) >> k) << k
        if v < low + rng:
            low = v
            break
    for _ in range(_RANGE_BITS // 8 + 1):
        if low < ff_at or low >= carry_at:
            carry = low >> _RANGE_BITS
            out.append((cache + carry) & 0xFF)
            out.extend(bytes([(0xFF + carry) & 0xFF]) * (n_pending - 1))
            cache, n_pending = (low >> shift) & 0xFF, 0
        n_pending += 1
        low = (low << 8) & mask
    if out[0] != 0:  # the integer part of a value in [0, 1): always 0, never written
        raise AssertionError("range coder overflow")
    return bytes(out[1:]).rstrip(b"\0")


class RangeDecoder:
    """Decode symbols one at a time from :func:`range_encode`'s bytes, given the same tables."""

    def __init__(self, data: bytes, precision_bits: int = PRECISION_BITS):
        self.data = data
        self.precision_bits = precision_bits
        self.total = 1 << precision_bits
        n = _RANGE_BITS // 8
        self.code = int.from_bytes(data[:n].ljust(n, b"\0"), "big")  # value − low, scaled to the window
        self.pos = n
        self.rng = 1 << _RANGE_BITS

    def decode(self, cum: np.ndarray) -> int:
        """The next symbol under the table with inclusive cumulative sums ``cum`` (``cum[s] = f_0 + … + f_s``)."""
        r = self.rng >> self.precision_bits
        q = min(self.code // r, self.total - 1)  # only a corrupt stream lands in the truncated top sliver
        s = int(np.searchsorted(cum, q, side="right"))
        hi = int(cum[s])
        lo = int(cum[s - 1]) if s else 0
        self.code -= r * lo
        self.rng = r * (hi - lo)
        while self.rng < _TOP:
            byte = self.data[self.pos] if self.pos < len(self.data) else 0
            self.pos += 1
            self.code = (self.code << 8) | byte
            self.rng <<= 8
        return s


# ----------------------------------------------------------------------------- varints / header


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n, shift = 0, 0
    while True:
        if pos >= len(data):
            raise SpringbackError("truncated arithmetic-coded stream (header ends early)")
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, pos


def _crc(sequences: Sequence[Sequence[int]]) -> int:
    """CRC-32 of every token id (int64, little endian), each sequence followed by ``|``."""
    return zlib.crc32(b"".join(np.asarray(s, dtype="<i8").tobytes() + b"|" for s in sequences)) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- encode / decode


@dataclasses.dataclass
class CodingStats:
    """Sizes of one encoding. ``*_bits`` are totals over all sequences."""

    n_sequences: int
    n_tokens: int  # coded tokens (prefix tokens excluded)
    header_bytes: int
    payload_bytes: int
    model_bits: float  # −Σ log2 p: the scoring pass's float32 log-probs, before quantisation
    quantised_bits: float  # −Σ log2(f / T): the ideal length of the integer tables actually coded
    n_tokens_beyond_floor: int  # tokens with p < 2**-P: the floor codes them in ≤ P bits, below −log2 p
    precision_bits: int = PRECISION_BITS
    token_bits: list[np.ndarray] = dataclasses.field(default_factory=list, repr=False)  # per sequence, as token_bits()

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.payload_bytes

    def summary(self) -> dict[str, float]:
        """Sizes in bytes. ``coder_overhead_bytes`` (payload − quantised ideal) is the coder's own
        cost, ≤ ~2; ``quantisation_bytes`` (quantised − model ideal) is what the integer tables
        change, negative when the floor caps improbable tokens (see the module doc)."""
        model_bytes, quantised_bytes = self.model_bits / 8, self.quantised_bits / 8
        n = max(1, self.n_sequences)
        return {
            "n_sequences": self.n_sequences,
            "n_tokens": self.n_tokens,
            "precision_bits": self.precision_bits,
            "header_bytes": self.header_bytes,
            "payload_bytes": self.payload_bytes,
            "total_bytes": self.total_bytes,
            "ideal_bytes": model_bytes,
            "quantised_ideal_bytes": quantised_bytes,
            "quantisation_bytes": quantised_bytes - model_bytes,
            "n_tokens_beyond_floor": self.n_tokens_beyond_floor,
            "coder_overhead_bytes": self.payload_bytes - quantised_bytes,
            "payload_vs_ideal_bytes": self.payload_bytes - model_bytes,
            "total_overhead_bytes_per_sequence": (self.total_bytes - model_bytes) / n,
        }


@torch.no_grad()
def encode(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 32,
    pad_id: int = 0,
    precision_bits: int = PRECISION_BITS,
) -> tuple[bytes, CodingStats]:
    """Range-code token sequences (each starting with the same prefix token) with ``model``.

    Windows are scored as :func:`~springback.measure.compression.token_bits` scores them
    (``window``, ``stride`` and their defaults), in the staged batch plan; the returned
    ``CodingStats.token_bits`` are that pass's per-token costs. ``decode(model, stream)``
    restores ``sequences`` exactly.
    """
    seqs = [list(map(int, s)) for s in sequences]
    if not seqs or any(len(s) < 1 for s in seqs):
        raise SpringbackError("encode needs at least one sequence, each with its prefix token")
    prefix = seqs[0][0]
    if any(s[0] != prefix for s in seqs):
        raise SpringbackError("all sequences must start with the same prefix token")
    vocab = int(model.config.vocab_size)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
    if flat.min() < 0 or flat.max() >= vocab:
        raise SpringbackError(f"token id outside the model's vocabulary of {vocab}")
    if not 1 <= precision_bits <= MAX_PRECISION_BITS:
        raise SpringbackError(f"precision must be 1..{MAX_PRECISION_BITS} bits, got {precision_bits}")
    window = window or model_window(model)
    stride = stride or max(1, window // 2)
    header = bytearray(MAGIC)
    for v in (VERSION, precision_bits, window, stride, batch_size, vocab, pad_id, len(seqs), prefix):
        header += _varint(v)
    for s in seqs:
        header += _varint(len(s) - 1)
    header += _crc(seqs).to_bytes(4, "little")

    starts: list[np.ndarray] = []
    freqs: list[np.ndarray] = []
    pending: list[tuple[torch.Tensor, np.ndarray]] = []  # scored log-prob rows [n, V] and their targets, in stream order

    def flush() -> None:
        # The tables of the pending tokens, in stream order: (start, frequency) of each.
        if not pending:
            return
        logp = torch.cat([lp for lp, _ in pending])  # [n, V]
        targets = np.concatenate([t for _, t in pending])
        pending.clear()
        for sl in _slabs(len(targets), logp.size(-1)):
            start, freq = table_entries(logp[sl], torch.as_tensor(targets[sl]), precision_bits)
            starts.append(start.cpu().numpy())
            freqs.append(freq.cpu().numpy())

    def code_batch(logp: torch.Tensor, rows: np.ndarray, pos: np.ndarray, targets: np.ndarray) -> None:
        # Quantise many window batches at once: per call, the tensor ops cost more than the tiny tables.
        flat = torch.as_tensor(rows * logp.size(1) + pos, device=logp.device)
        pending.append((logp.flatten(0, 1).index_select(0, flat), targets))  # [n, V] scored rows
        if sum(len(t) for _, t in pending) * logp.size(-1) >= _ELEMENTS_PER_SLAB:
            flush()

    per_token = token_bits(model, seqs, window, stride, batch_size, pad_id, staged=True, visit=code_batch)
    flush()
    start_arr = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    freq_arr = np.concatenate(freqs) if freqs else np.zeros(0, np.int64)
    payload = range_encode(start_arr.tolist(), freq_arr.tolist(), precision_bits)
    all_bits = np.concatenate(per_token) if per_token else np.zeros(0)
    stats = CodingStats(
        n_sequences=len(seqs),
        n_tokens=len(freq_arr),
        header_bytes=len(header),
        payload_bytes=len(payload),
        model_bits=float(all_bits.sum()),
        quantised_bits=float(np.sum(precision_bits - np.log2(freq_arr.astype(np.float64)))),
        n_tokens_beyond_floor=int(np.sum(all_bits > precision_bits)),
        precision_bits=precision_bits,
        token_bits=per_token,
    )
    return bytes(header) + payload, stats


@torch.no_grad()
def decode(model: torch.nn.Module, data: bytes, window: int | None = None) -> list[list[int]]:
    """Restore the token sequences of an :func:`encode` stream; raises CoderMismatchError on a checksum failure."""
    if not data.startswith(MAGIC):
        raise SpringbackError("not a springback arithmetic-coded stream (bad magic bytes)")
    pos = len(MAGIC)
    version, pos = _read_varint(data, pos)
    if version != VERSION:
        raise SpringbackError(f"stream version {version} is not supported (this springback reads {VERSION})")
    fields = []
    for _ in range(8):
        v, pos = _read_varint(data, pos)
        fields.append(v)
    precision_bits, stream_window, stride, batch_size, vocab, pad_id, n_seqs, prefix = fields
    if window is not None and window != stream_window:
        raise SpringbackError(f"stream was coded with window {stream_window}, asked to decode with {window}")
    if vocab != int(model.config.vocab_size):
        raise SpringbackError(f"stream was coded with a {vocab}-token vocabulary; this model has {model.config.vocab_size}")
    lengths = []
    for _ in range(n_seqs):
        n, pos = _read_varint(data, pos)
        lengths.append(n)
    if pos + 4 > len(data):
        raise SpringbackError("truncated arithmetic-coded stream (no checksum)")
    crc = int.from_bytes(data[pos : pos + 4], "little")
    dec = RangeDecoder(data[pos + 4 :], precision_bits)
    # Unknown tokens are padding until decoded: they sit only at positions after the ones each forward is read at.
    out = [[prefix] + [pad_id] * n for n in lengths]
    was_training = model.training
    model.eval()
    for chunk in window_plan([n + 1 for n in lengths], stream_window, stride, batch_size, staged=True):
        ids, attn, _ = chunk_inputs(out, chunk, pad_id)
        rows, positions, t_pos = scored_positions(chunk)
        first = np.array([a for _, _, a, _ in chunk], dtype=np.int64)
        steps = t_pos - first[rows]  # stream entries are step-major: step j decodes target a + j of each row
        bounds = np.flatnonzero(np.diff(steps, prepend=-1)).tolist() + [len(rows)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            logp = chunk_logprobs(model, ids, attn)  # [R, W, V]: the encoder's forward, bit for bit where known
            at = tuple(torch.as_tensor(a[lo:hi], device=logp.device) for a in (rows, positions))
            cum = quantise_cdf(logp[at], precision_bits)
            cum = cum.cpu().numpy()  # [n, V] inclusive cumulative frequencies
            for k, (r, p, t) in enumerate(zip(rows[lo:hi].tolist(), positions[lo:hi].tolist(), t_pos[lo:hi].tolist())):
                sym = dec.decode(cum[k])
                i, c, _, b = chunk[r]
                out[i][t] = sym
                if t < b - 1:  # the token is also an input of this window, at index t − c = p + 1
                    ids[r, p + 1] = sym
    if was_training:
        model.train()
    if _crc(out) != crc:
        raise CoderMismatchError(
            "decoded tokens fail the checksum: the decoder's model probabilities differ from the encoder's "
            "(different weights, dtype, device, library version or thread count)"
        )
    return out
