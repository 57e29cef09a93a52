"""The compression protocol of P1 §3–4, on pruned token trees [SPEC §2].

Vectors here are distributions over a common list of pruned leaves (see
:func:`springback.theory.tree.leaf_index`); all logs are base 2, so rates are in bits per token.

* **Ideal code length** of a response x for a model of depth d [P1 §3]:
  E[L(x)] = ⌈|x| / d⌉ · ⌈H(pruned tree)⌉ — the response is cut into ⌈|x|/d⌉ chunks of d tokens
  and each chunk costs the pruned tree's leaf entropy, rounded up to whole bits.
* **Joint training** on D_1..D_N leaves the size-weighted mixture p^D = Σ|D_i| p^{D_i} / Σ|D_i|.
* **Compression rate** of the model on D_i: γ^{D_i} = H(p^{D_i}, p^D) / d, the cross-entropy
  of D_i's leaves under the model, per token of a depth-d chunk. This is the Θ(·) form of
  P1's rate with the constant fixed to 1; a real Huffman code of p^D gives
  :func:`huffman_rate`, within 1/d bit/token of it.
* **Normalised rate** — our choice: γ^{D_i/D} = γ^{D_i} − H(p^{D_i}) / d = KL(p^{D_i} ‖ p^D) / d.
  The subtracted term is D_i's own entropy, which does not depend on how much perturbation
  data is mixed in, so every derivative in l is unchanged (as SPEC §2 requires), and the
  normalised rate is the "stretch" KL of the Hooke's-law analogy.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .huffman import entropy_bits, huffman_lengths


def ideal_code_length(n_tokens: int, d: int, pruned_probs: Sequence[float]) -> int:
    """E[L(x)] = ⌈|x|/d⌉ · ⌈H⌉ bits for a response of ``n_tokens`` tokens [P1 §3, SPEC §2]."""
    if d < 1 or n_tokens < 0:
        raise ValueError("need d >= 1 and n_tokens >= 0")
    return math.ceil(n_tokens / d) * math.ceil(entropy_bits(pruned_probs) - 1e-12)


def joint_distribution(dists: Sequence[np.ndarray], sizes: Sequence[float]) -> np.ndarray:
    """p^D = Σ_i |D_i| p^{D_i} / Σ_i |D_i| (the model after joint training on all D_i)."""
    if len(dists) != len(sizes) or not dists:
        raise ValueError("one size per distribution")
    sizes = np.asarray(sizes, dtype=np.float64)
    if np.any(sizes < 0) or sizes.sum() <= 0:
        raise ValueError("dataset sizes must be >= 0 with a positive sum")
    return np.sum([s * np.asarray(p, dtype=np.float64) for s, p in zip(sizes, dists)], axis=0) / sizes.sum()


def cross_entropy_bits(p: np.ndarray, q: np.ndarray) -> float:
    """H(p, q) = −Σ p log2 q (infinite if q misses mass that p has)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = p > 0
    if np.any(q[m] <= 0):
        return float("inf")
    return float(-(p[m] * np.log2(q[m])).sum())


def kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) in bits."""
    return cross_entropy_bits(p, q) - entropy_bits(p)


def compression_rate(p_i: np.ndarray, p_model: np.ndarray, d: int) -> float:
    """γ^{D_i} = H(p^{D_i}, p^D) / d, bits per token."""
    return cross_entropy_bits(p_i, p_model) / d


def normalised_rate(p_i: np.ndarray, p_model: np.ndarray, d: int) -> float:
    """γ^{D_i/D} = KL(p^{D_i} ‖ p^D) / d (γ minus D_i's own entropy rate; see the module doc)."""
    return kl_bits(p_i, p_model) / d


def huffman_rate(p_i: np.ndarray, p_model: np.ndarray, d: int) -> float:
    """Mean Huffman codeword length per token when D_i's leaves are coded with the Huffman code of p^D."""
    lengths = huffman_lengths(p_model)
    return float(np.dot(np.asarray(p_i, dtype=np.float64), lengths)) / d
