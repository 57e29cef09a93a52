"""Token trees [P1 §3; SPEC §2].

A dataset of responses over a binary vocabulary {0, 1} is a tree: every response is a path
of binary tokens closed by an EOS leaf, a leaf's weight is the response's probability and an
inner node's weight is the sum of its children's. A model of "depth" d sees the tree pruned
to its top d layers: a response whose path (EOS included) is longer than d is cut at depth
d, and all responses sharing those d tokens merge into one leaf. The pruned tree's leaves —
EOS leaves at depth ≤ d and cut nodes at depth d — are the symbols the compression protocol
codes (:mod:`springback.theory.protocol`).

Paths are tuples over {0, 1, EOS}; only the last element of a full path is EOS.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Iterable, Sequence

import numpy as np

EOS = 2  # the end-of-sequence token, the third symbol of the tree's alphabet
Path = tuple[int, ...]


def response_path(response: Sequence[int]) -> Path:
    """The tree path of a response: its binary tokens followed by EOS."""
    if any(t not in (0, 1) for t in response):
        raise ValueError(f"responses are binary token strings, got {tuple(response)}")
    return tuple(response) + (EOS,)


@dataclasses.dataclass
class TokenTree:
    """A probability distribution over responses, seen as a weighted token tree."""

    leaves: dict[Path, float]  # full path (ending in EOS) -> probability

    @classmethod
    def from_responses(cls, responses: Sequence[Sequence[int]], probs: Sequence[float]) -> "TokenTree":
        if len(responses) != len(probs):
            raise ValueError("one probability per response")
        leaves: dict[Path, float] = {}
        for r, p in zip(responses, probs):
            path = response_path(r)
            leaves[path] = leaves.get(path, 0.0) + float(p)
        return cls(leaves)

    @property
    def depth(self) -> int:
        """Length of the longest path, EOS included."""
        return max((len(p) for p in self.leaves), default=0)

    def node_weights(self) -> dict[Path, float]:
        """Weight of every node (the empty prefix is the root, weight = total mass)."""
        weights: dict[Path, float] = {}
        for path, w in self.leaves.items():
            for i in range(len(path) + 1):
                weights[path[:i]] = weights.get(path[:i], 0.0) + w
        return weights

    def prune(self, d: int) -> dict[Path, float]:
        """Leaves of the tree cut to its top ``d`` layers, with their weights (mass is kept)."""
        if d < 1:
            raise ValueError(f"pruning depth must be >= 1, got {d}")
        out: dict[Path, float] = {}
        for path, w in self.leaves.items():
            key = path[:d]
            out[key] = out.get(key, 0.0) + w
        return out


def random_responses(rng: random.Random, n: int, first_token: int, min_len: int = 1, max_len: int = 12) -> list[tuple[int, ...]]:
    """``n`` distinct binary responses starting with ``first_token`` (lengths uniform in [min_len, max_len]).

    Putting two datasets under different first tokens gives them disjoint supports at every
    pruning depth.
    """
    capacity = sum(2 ** (L - 1) for L in range(max(1, min_len), max_len + 1))
    if n > capacity:
        raise ValueError(f"only {capacity} distinct responses of length {min_len}..{max_len} start with {first_token}")
    seen: set[tuple[int, ...]] = set()
    out = []
    while len(out) < n:
        length = rng.randint(max(1, min_len), max_len)
        r = (first_token,) + tuple(rng.randint(0, 1) for _ in range(length - 1))
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def pareto_masses(n: int, exponent: float) -> np.ndarray:
    """Zipf / discrete Pareto masses p_r ∝ r^(−exponent), r = 1..n (float64, sums to 1)."""
    if n < 1:
        raise ValueError("need at least one rank")
    w = np.arange(1, n + 1, dtype=np.float64) ** (-float(exponent))
    return w / w.sum()


def leaf_index(prunings: Iterable[dict[Path, float]]) -> list[Path]:
    """The union of the pruned leaves of several trees, in a fixed (sorted) order."""
    keys: set[Path] = set()
    for p in prunings:
        keys |= set(p)
    return sorted(keys)


def as_vector(pruned: dict[Path, float], index: Sequence[Path]) -> np.ndarray:
    """A pruned-leaf distribution as a vector over ``index`` (zeros where it has no mass)."""
    pos = {k: i for i, k in enumerate(index)}
    v = np.zeros(len(index), dtype=np.float64)
    for k, w in pruned.items():
        v[pos[k]] += w
    return v
