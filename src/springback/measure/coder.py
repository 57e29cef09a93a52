"""A real lossless coder: arithmetic coding of token sequences with a language model [SPEC §4].

:mod:`springback.measure.compression` *computes* the code length −Σ log2 p; this module
*produces* the code — bytes that a decoder holding the same model turns back into exactly
the same tokens — so the computed number is checked against a real compressed size.

Pieces
------
``quantise``
    float64 probabilities → integer frequencies summing to ``2**PRECISION_BITS`` with every
    symbol ≥ 1 (so any token stays codable). Pure element-wise float64 arithmetic plus one
    deterministic tie-break, so identical inputs give identical tables on any machine.
``ArithmeticEncoder`` / ``ArithmeticDecoder``
    A binary arithmetic coder over Python integers (64-bit state, the classic
    Witten–Neal–Cleary design with pending "underflow" bits). It spends −log2(f/T) bits per
    symbol plus at most 2 bits per message, and ≤ 7 more to pad to a whole byte.
``NextTokenTables``
    Runs the model *incrementally* (one token at a time, with its key/value cache) and turns
    each next-token distribution into a quantised table.

Why encoder and decoder run the very same incremental pass
----------------------------------------------------------
The decoder cannot run the model on the whole sequence at once: it learns token t only after
decoding it. Tools that encode with one full-sequence forward pass and decode step by step
feed the two sides logits that differ in the last float bits (different kernels, shapes and
summation orders). The integer tables then differ, the two coder states drift apart (their
difference doubles with every output bit) and decoding turns into garbage after a few tokens.
Here **both** sides call :class:`NextTokenTables` with the same token at every step, the same
batch composition and the same window resets, so the model sees bit-identical inputs and
returns bit-identical logits on a given machine and software stack. Decoding on another
machine (different BLAS, thread count or device) is not promised; a CRC-32 of the tokens in
the header turns any such mismatch into a clear :class:`CoderMismatchError` instead of silent
garbage.

Stream format (all integers unsigned LEB128 varints)
----------------------------------------------------
``b"SBAC"`` · version · precision bits · window · lock-step batch size · number of sequences ·
prefix token id · terminator (0, or EOS id + 1) · either the token count of every sequence
(no terminator) or the total token count (terminator: each sequence ends at its EOS, coded
by the model like any token) · CRC-32 of all token ids (4 bytes, little endian) · payload.
The payload is **one** arithmetic-coded stream of every token after each sequence's prefix
token (position 0, the shared BOS/EOS context token, named in the header). Sequences are coded
in lock-step groups of ``batch_size``: step t codes token t of every still-running sequence of
the group, in order.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import SpringbackError

PRECISION_BITS = 32  # frequencies sum to 2**32: quantisation costs < 1e-6 bits/token for V ≤ 1e5 typical tables
STATE_BITS = 64  # coder registers; the total may be at most 2**(STATE_BITS-2)
MAGIC = b"SBAC"
VERSION = 1


class CoderMismatchError(SpringbackError):
    """Decoded tokens fail the checksum: the decoder's probabilities differ from the encoder's."""


# ----------------------------------------------------------------------------- quantisation


def quantise(probs: np.ndarray, precision_bits: int = PRECISION_BITS) -> np.ndarray:
    """Integer frequencies (int64, shape [V]) summing to ``2**precision_bits``, each ≥ 1.

    ``f_i = floor(p_i · (T − V)) + 1``; the few units left over (< V) go to the most probable
    symbol (lowest index on ties). Only element-wise IEEE operations, a sum of integers and an
    argmax are involved, so equal float64 inputs give equal tables everywhere.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or len(p) < 1:
        raise ValueError("quantise expects a non-empty 1-d probability vector")
    total = 1 << precision_bits
    spare = total - len(p)
    if spare <= 0:
        raise ValueError(f"vocabulary of {len(p)} symbols does not fit {precision_bits}-bit frequencies")
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    freq = np.floor(p * spare).astype(np.int64) + 1
    top = int(np.argmax(p))
    freq[top] += total - int(freq.sum())  # ≥ 0 for Σp ≤ 1 + 1/spare; tiny negative if float sum overshoots
    if freq[top] < 1:
        raise ValueError("probabilities sum to more than 1")
    return freq


def cumulative(freq: np.ndarray) -> np.ndarray:
    """[0, f0, f0+f1, ...]: the start of every symbol's interval, plus the total (int64, [V+1])."""
    return np.concatenate([[0], np.cumsum(freq, dtype=np.int64)])


def table_bits(cum: np.ndarray, symbol: int) -> float:
    """−log2 of the quantised probability of ``symbol`` under table ``cum``."""
    return -math.log2((int(cum[symbol + 1]) - int(cum[symbol])) / int(cum[-1]))


# ----------------------------------------------------------------------------- arithmetic coder


class _Coder:
    def __init__(self, state_bits: int = STATE_BITS):
        self.state_bits = state_bits
        self.full = 1 << state_bits
        self.half = self.full >> 1
        self.quarter = self.half >> 1
        self.mask = self.full - 1
        self.max_total = self.quarter + 2  # every symbol keeps a non-empty interval
        self.low = 0
        self.high = self.mask

    def _narrow(self, cum: np.ndarray, symbol: int) -> None:
        total = int(cum[-1])
        if total > self.max_total:
            raise ValueError(f"frequency total {total} exceeds the coder's limit {self.max_total}")
        rng = self.high - self.low + 1
        lo, hi = int(cum[symbol]), int(cum[symbol + 1])
        if hi <= lo:
            raise ValueError(f"symbol {symbol} has zero frequency")
        self.high = self.low + hi * rng // total - 1
        self.low = self.low + lo * rng // total
        # Emit the bits the interval has settled, then undo straddles of the midpoint.
        while ((self.low ^ self.high) & self.half) == 0:
            self._shift()
            self.low = (self.low << 1) & self.mask
            self.high = ((self.high << 1) & self.mask) | 1
        while (self.low & ~self.high & self.quarter) != 0:
            self._underflow()
            self.low = (self.low << 1) ^ self.half
            self.high = ((self.high ^ self.half) << 1) | self.half | 1

    def _shift(self) -> None:
        raise NotImplementedError

    def _underflow(self) -> None:
        raise NotImplementedError


class ArithmeticEncoder(_Coder):
    """Encode symbols one at a time with per-symbol cumulative tables; ``finish()`` returns bytes."""

    def __init__(self, state_bits: int = STATE_BITS):
        super().__init__(state_bits)
        self.bits: list[int] = []
        self.pending = 0

    def encode(self, cum: np.ndarray, symbol: int) -> None:
        self._narrow(cum, symbol)

    def _shift(self) -> None:
        bit = self.low >> (self.state_bits - 1)
        self.bits.append(bit)
        self.bits.extend([bit ^ 1] * self.pending)
        self.pending = 0

    def _underflow(self) -> None:
        self.pending += 1

    def finish(self) -> bytes:
        # One 1-bit selects the midpoint of the final interval (low < half <= high); the
        # decoder reads zeros past the end, which completes it.
        self.bits.append(1)
        return np.packbits(np.asarray(self.bits, dtype=np.uint8)).tobytes()


class ArithmeticDecoder(_Coder):
    """Decode symbols from ``data`` given the same sequence of tables the encoder used."""

    def __init__(self, data: bytes, state_bits: int = STATE_BITS):
        super().__init__(state_bits)
        self.stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8)) if data else np.zeros(0, np.uint8)
        self.pos = 0
        self.code = 0
        for _ in range(state_bits):
            self.code = (self.code << 1) | self._read()

    def _read(self) -> int:
        if self.pos < len(self.stream):
            bit = int(self.stream[self.pos])
            self.pos += 1
            return bit
        return 0

    def decode(self, cum: np.ndarray) -> int:
        total = int(cum[-1])
        rng = self.high - self.low + 1
        value = ((self.code - self.low + 1) * total - 1) // rng
        symbol = int(np.searchsorted(cum, value, side="right")) - 1
        self._narrow(cum, symbol)
        return symbol

    def _shift(self) -> None:
        self.code = ((self.code << 1) & self.mask) | self._read()

    def _underflow(self) -> None:
        self.code = (self.code & self.half) | ((self.code << 1) & (self.mask >> 1)) | self._read()


# ----------------------------------------------------------------------------- model tables


class NextTokenTables:
    """Quantised next-token tables of a causal LM for a lock-step group of sequences.

    ``start(prefix_ids)`` feeds each row's first token; ``tables()`` gives the float64
    probabilities [B, V] and cumulative integer tables of the next token; ``push(tokens)``
    appends one token per row. The model runs one token per step on its key/value cache; when
    the cache reaches ``window`` tokens it is rebuilt from the last ``window // 2`` tokens
    (deterministically, the same on both sides). For texts longer than the window these
    contexts differ from the scoring pass's sliding windows, so the coder's own ideal length
    (``CodingStats.model_bits``) can differ slightly from ``compression.code_length``.
    Everything runs under ``torch.no_grad``.
    """

    def __init__(self, model: torch.nn.Module, window: int, precision_bits: int = PRECISION_BITS):
        if window < 2:
            raise SpringbackError(f"coder window must be >= 2 tokens, got {window}")
        self.model = model
        self.window = window
        self.keep = max(1, window // 2)
        self.precision_bits = precision_bits
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def _forward(self, ids: torch.Tensor, cache: Any) -> None:
        out = self.model(input_ids=ids.to(self.device), past_key_values=cache, use_cache=True)
        self.cache = out.past_key_values
        # float64 softmax of the last position's float32 logits: [B, V]
        self.probs = torch.softmax(out.logits[:, -1].double(), dim=-1).cpu().numpy()

    def start(self, prefix_ids: Sequence[int]) -> None:
        self.history = torch.as_tensor(list(prefix_ids), dtype=torch.long)[:, None]  # [B, 1]
        self.cache_len = 1
        self._forward(self.history, None)

    def tables(self) -> tuple[np.ndarray, list[np.ndarray]]:
        cums = [cumulative(quantise(row, self.precision_bits)) for row in self.probs]
        return self.probs, cums

    def push(self, tokens: Sequence[int]) -> None:
        new = torch.as_tensor(list(tokens), dtype=torch.long)[:, None]  # [B, 1]
        self.history = torch.cat([self.history, new], dim=1)
        if self.cache_len + 1 > self.window:
            self.cache_len = self.keep
            self._forward(self.history[:, -self.keep :], None)
        else:
            self.cache_len += 1
            self._forward(new, self.cache)


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
    crc = 0
    for s in sequences:
        crc = zlib.crc32(np.asarray(s, dtype="<i8").tobytes(), crc)
        crc = zlib.crc32(b"|", crc)
    return crc & 0xFFFFFFFF


# ----------------------------------------------------------------------------- encode / decode


@dataclasses.dataclass
class CodingStats:
    """Sizes of one encoding. ``*_bits`` are totals over all sequences."""

    n_sequences: int
    n_tokens: int  # coded tokens (prefix tokens excluded)
    header_bytes: int
    payload_bytes: int
    model_bits: float  # −Σ log2 p with the float64 probabilities the coder saw
    quantised_bits: float  # −Σ log2 (f / T) with the integer tables actually used

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.payload_bytes

    def summary(self) -> dict[str, float]:
        ideal_bytes = self.model_bits / 8
        return {
            "n_sequences": self.n_sequences,
            "n_tokens": self.n_tokens,
            "header_bytes": self.header_bytes,
            "payload_bytes": self.payload_bytes,
            "total_bytes": self.total_bytes,
            "ideal_bytes": ideal_bytes,
            "quantised_ideal_bytes": self.quantised_bits / 8,
            "payload_overhead_bytes": self.payload_bytes - ideal_bytes,
            "payload_overhead_bytes_per_sequence": (self.payload_bytes - ideal_bytes) / max(1, self.n_sequences),
            "total_overhead_bytes_per_sequence": (self.total_bytes - ideal_bytes) / max(1, self.n_sequences),
        }


def _groups(n: int, batch_size: int) -> list[range]:
    return [range(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]


def _default_window(model: torch.nn.Module, window: int | None) -> int:
    from .compression import model_window

    return window or model_window(model)


@torch.no_grad()
def encode(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    window: int | None = None,
    batch_size: int = 8,
    precision_bits: int = PRECISION_BITS,
    terminator: int | None = None,
) -> tuple[bytes, CodingStats]:
    """Arithmetic-code token sequences (each starting with its prefix token) with ``model``.

    All sequences must share the same prefix token (position 0). With ``terminator`` (an EOS
    id that ends every sequence and occurs nowhere else) the decoder stops each sequence at it
    and the header stores no per-sequence lengths — the model codes the boundaries itself.
    Returns the stream and its sizes; ``decode(model, stream)`` restores ``sequences`` exactly.
    """
    seqs = [list(map(int, s)) for s in sequences]
    if not seqs or any(len(s) < 1 for s in seqs):
        raise SpringbackError("encode needs at least one sequence, each with its prefix token")
    prefix = seqs[0][0]
    if any(s[0] != prefix for s in seqs):
        raise SpringbackError("all sequences must start with the same prefix token")
    vocab = int(model.config.vocab_size)
    if any(t < 0 or t >= vocab for s in seqs for t in s):
        raise SpringbackError(f"token id outside the model's vocabulary of {vocab}")
    if terminator is not None and any(len(s) < 2 or s[-1] != terminator or terminator in s[1:-1] for s in seqs):
        raise SpringbackError(f"with terminator {terminator}, every sequence must end with it and contain it only there")
    window = _default_window(model, window)
    n_tokens = sum(len(s) - 1 for s in seqs)
    header = bytearray(MAGIC)
    # terminator field: 0 = per-sequence lengths follow, t + 1 = sequences end at token t
    for v in (VERSION, precision_bits, window, batch_size, len(seqs), prefix, 0 if terminator is None else terminator + 1):
        header += _varint(v)
    if terminator is None:
        for s in seqs:
            header += _varint(len(s) - 1)
    else:
        header += _varint(n_tokens)  # a bound that stops a mismatched decoder
    header += _crc(seqs).to_bytes(4, "little")

    enc = ArithmeticEncoder()
    tables = NextTokenTables(model, window, precision_bits)
    model_bits = quant_bits = 0.0
    for group in _groups(len(seqs), batch_size):
        rows = [seqs[i] for i in group]
        steps = max(len(r) for r in rows) - 1
        tables.start([prefix] * len(rows))
        for t in range(1, steps + 1):
            probs, cums = tables.tables()
            nxt = []
            for r, row in enumerate(rows):
                if t < len(row):
                    sym = row[t]
                    enc.encode(cums[r], sym)
                    model_bits += -math.log2(max(float(probs[r, sym]), 1e-300))
                    quant_bits += table_bits(cums[r], sym)
                    nxt.append(sym)
                else:
                    nxt.append(prefix)  # finished rows idle on the prefix token
            if t < steps:  # the decoder pushes exactly when some row of the group is unfinished
                tables.push(nxt)
    payload = enc.finish()
    stats = CodingStats(len(seqs), n_tokens, len(header), len(payload), model_bits, quant_bits)
    return bytes(header) + payload, stats


@torch.no_grad()
def decode(model: torch.nn.Module, data: bytes, window: int | None = None) -> list[list[int]]:
    """Restore the token sequences of an :func:`encode` stream; raises CoderMismatchError on a checksum failure."""
    if not data.startswith(MAGIC):
        raise SpringbackError("not a springback arithmetic-coded stream (bad magic bytes)")
    pos = len(MAGIC)
    fields = []
    for _ in range(7):
        v, pos = _read_varint(data, pos)
        fields.append(v)
    version, precision_bits, stream_window, batch_size, n_seqs, prefix, term_field = fields
    if version != VERSION:
        raise SpringbackError(f"stream version {version} is not supported (this springback reads {VERSION})")
    if window is not None and window != stream_window:
        raise SpringbackError(f"stream was coded with window {stream_window}, asked to decode with {window}")
    terminator = term_field - 1 if term_field else None
    lengths: list[int] | None = None
    if terminator is None:
        lengths = []
        for _ in range(n_seqs):
            n, pos = _read_varint(data, pos)
            lengths.append(n)
    else:
        budget, pos = _read_varint(data, pos)
    if pos + 4 > len(data):
        raise SpringbackError("truncated arithmetic-coded stream (no checksum)")
    crc = int.from_bytes(data[pos : pos + 4], "little")
    dec = ArithmeticDecoder(data[pos + 4 :])
    tables = NextTokenTables(model, stream_window, precision_bits)
    out: list[list[int]] = [[prefix] for _ in range(n_seqs)]
    decoded = 0
    for group in _groups(n_seqs, batch_size):
        idx = list(group)
        active = [True] * len(idx)
        tables.start([prefix] * len(idx))
        t = 0
        while True:
            t += 1
            if lengths is not None:
                active = [t <= lengths[i] for i in idx]
            if not any(active):
                break
            _, cums = tables.tables()
            nxt = []
            for r, i in enumerate(idx):
                if active[r]:
                    sym = dec.decode(cums[r])
                    out[i].append(sym)
                    nxt.append(sym)
                    decoded += 1
                    if terminator is not None and sym == terminator:
                        active[r] = False
                else:
                    nxt.append(prefix)
            if terminator is not None and decoded > budget:
                raise CoderMismatchError("decoding ran past the stream's token count: the decoder's probabilities "
                                         "differ from the encoder's")
            still = any(active) if lengths is None else any(t + 1 <= lengths[i] for i in idx)
            if still:
                tables.push(nxt)
            else:
                break
    if _crc(out) != crc:
        raise CoderMismatchError(
            "decoded tokens fail the checksum: the decoder's model probabilities differ from the encoder's "
            "(different weights, dtype, device, library version or thread count)"
        )
    return out
