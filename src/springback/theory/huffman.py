"""A real Huffman code, and the quantities that check it (Kraft sum, entropy).

The compression protocol of P1 §3 Huffman-codes the leaves of a pruned token tree. Huffman's
code is the optimal prefix code for known symbol probabilities: its mean length L satisfies
H ≤ L < H + 1 bits (Shannon's source coding bound), and a Huffman code for ≥ 2 symbols is
complete, Σ 2^(−len) = 1 (Kraft's equality). Both facts are tested, not assumed.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Sequence

import numpy as np


def huffman_lengths(probs: Sequence[float]) -> np.ndarray:
    """Codeword length of every symbol (int64, shape [n]) of a binary Huffman code.

    Ties are broken by creation order, so the code is deterministic. One symbol gets length 1
    (a code needs at least one bit to say anything).
    """
    p = np.asarray(probs, dtype=np.float64)
    n = len(p)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.ones(1, dtype=np.int64)
    counter = itertools.count()
    # heap items: (weight, tie-break, symbols under this node)
    heap = [(float(w), next(counter), [i]) for i, w in enumerate(p)]
    heapq.heapify(heap)
    lengths = np.zeros(n, dtype=np.int64)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        for i in s1:
            lengths[i] += 1
        for i in s2:
            lengths[i] += 1
        heapq.heappush(heap, (w1 + w2, next(counter), s1 + s2))
    return lengths


def canonical_code(lengths: Sequence[int]) -> list[str]:
    """Canonical prefix codewords for the given lengths (shorter codes first, then by symbol)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    codes = [""] * len(lengths)
    code, prev = 0, 0
    for i in order:
        L = int(lengths[i])
        code <<= L - prev
        codes[i] = format(code, f"0{L}b") if L else ""
        code += 1
        prev = L
    return codes


def kraft_sum(lengths: Sequence[int]) -> float:
    """Σ 2^(−len): ≤ 1 for any prefix code, = 1 for a complete one."""
    return float(sum(2.0 ** (-int(L)) for L in lengths))


def entropy_bits(probs: Sequence[float]) -> float:
    """Shannon entropy −Σ p log2 p of a distribution (zeros contribute nothing)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def mean_length(probs: Sequence[float], lengths: Sequence[int]) -> float:
    """Expected codeword length Σ p_i len_i in bits."""
    return float(np.dot(np.asarray(probs, dtype=np.float64), np.asarray(lengths, dtype=np.float64)))


def is_prefix_free(codes: Sequence[str]) -> bool:
    s = sorted(codes)
    return all(not b.startswith(a) for a, b in zip(s, s[1:]))


__all__ = ["huffman_lengths", "canonical_code", "kraft_sum", "entropy_bits", "mean_length", "is_prefix_free"]
