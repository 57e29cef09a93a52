"""The elasticity theorem, simulated [P1 §4 (ACL version); SPEC §2; simulator ours].

Setting. Three datasets over the leaves of one pruned token tree: pre-training D_p,
alignment D_a and perturbation D_t, each with a Pareto (Zipf) mass distribution. In units of
|D_a|: |D_p| = k, |D_a| = 1, |D_t| = l. The model after joint training is the mixture

    p^D(l) = (k p_p + p_a + l p_t) / (k + 1 + l)

and γ_i(l) = KL(p_i ‖ p^D(l)) / d is its normalised compression rate on D_i
(:mod:`springback.theory.protocol`). The theorem says that as l grows, γ_a rises about k times
faster than γ_p falls: dγ_a/dl = Θ(−k · dγ_p/dl), dγ_a/dl > 0 > dγ_p/dl.

Assumptions of the simulator (stated, because the signs depend on them):

* D_a's responses sit under a different first token than D_p's, so their supports are
  disjoint at every depth — alignment behaviour is rare in pre-training.
* D_t lives on D_p's support with its own Zipf exponent and a perturbed ranking —
  opposing data looks like pre-training data (e.g. negative reviews, harmful compliance).
  If D_t were disjoint from D_p as well, adding it would *worsen* γ_p (dγ_p/dl = +1/(k+1+l)/(d ln 2)):
  the theorem's sign for D_p needs the overlap.

Closed form, the test oracle (D_a disjoint, p_t = p_p):
    dγ_a/dl = 1 / ((k+1+l) d ln 2) ≈ 1/k,   dγ_p/dl = −1 / ((k+l)(k+1+l) d ln 2) ≈ −1/k²,
so the ratio is k + l exactly. For any p_t on D_p's support, at l = 0 dγ_p/dl = −1/(k(k+1) d ln 2);
for l > 0 the sign of dγ_p/dl stays negative while roughly l · χ²(p_t ‖ p_p) < 1.

Hooke's law: with Δγ_i = γ_i(l) − γ_i(0), |D_p|·|Δγ_p| ≈ |D_a|·|Δγ_a| ≈ l/(k d ln 2): the dataset
size plays the spring constant, the change in normalised rate the stretch.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Sequence

import numpy as np

from .protocol import compression_rate, huffman_rate, joint_distribution, normalised_rate
from .tree import TokenTree, as_vector, leaf_index, pareto_masses, random_responses

LN2 = math.log(2.0)


@dataclasses.dataclass
class Scenario:
    """Leaf distributions of D_p, D_a, D_t over one pruned tree of depth ``d``."""

    d: int
    p_p: np.ndarray
    p_a: np.ndarray
    p_t: np.ndarray
    n_leaves: int
    params: dict

    @property
    def chi2_t_p(self) -> float:
        """χ²(p_t ‖ p_p) = Σ p_t²/p_p − 1: how far the perturbation is from pre-training data."""
        m = self.p_t > 0
        if np.any(self.p_p[m] <= 0):
            return float("inf")
        return float((self.p_t[m] ** 2 / self.p_p[m]).sum() - 1.0)


def make_scenario(
    seed: int,
    d: int = 8,
    n_pretrain: int = 400,
    n_align: int = 60,
    max_len: int = 14,
    exponent_range: tuple[float, float] = (0.8, 1.4),
    t_exponent_jitter: float = 0.2,
    t_rank_noise: float = 0.0,
) -> Scenario:
    """A random instance: response sets, Zipf exponents and rankings drawn from ``seed``.

    D_t's exponent is D_p's plus a uniform jitter in ±``t_exponent_jitter``; ``t_rank_noise``
    shuffles D_t's ranking of D_p's responses (Gaussian rank noise, in units of the number of
    responses; 0 = same order). Rank noise quickly makes χ²(p_t ‖ p_p) large, because a Zipf
    head moved onto D_p's tail puts much mass where D_p has little.
    """
    rng = random.Random(f"theory/{seed}")
    pre = random_responses(rng, n_pretrain, first_token=0, max_len=max_len)
    ali = random_responses(rng, n_align, first_token=1, max_len=max_len)
    s_p = rng.uniform(*exponent_range)
    s_a = rng.uniform(*exponent_range)
    s_t = max(0.1, s_p + rng.uniform(-t_exponent_jitter, t_exponent_jitter))
    # Rankings: D_p's order is the list order (random already); D_t's is a noisy copy of it.
    keys = [i + rng.gauss(0.0, t_rank_noise * n_pretrain) for i in range(n_pretrain)]
    t_order = sorted(range(n_pretrain), key=lambda i: keys[i])
    m_p = pareto_masses(n_pretrain, s_p)
    m_t = np.zeros(n_pretrain)
    m_t[t_order] = pareto_masses(n_pretrain, s_t)
    m_a = pareto_masses(n_align, s_a)
    trees = [TokenTree.from_responses(pre, m_p), TokenTree.from_responses(ali, m_a), TokenTree.from_responses(pre, m_t)]
    pruned = [t.prune(d) for t in trees]
    index = leaf_index(pruned)
    p_p, p_a, p_t = (as_vector(p, index) for p in pruned)
    return Scenario(d, p_p, p_a, p_t, len(index),
                    {"seed": seed, "s_p": s_p, "s_a": s_a, "s_t": s_t, "t_rank_noise": t_rank_noise,
                     "n_pretrain": n_pretrain, "n_align": n_align, "max_len": max_len})


def closed_form_scenario(d: int = 8, n_pretrain: int = 400, n_align: int = 60, seed: int = 0) -> Scenario:
    """The oracle case: D_a disjoint from D_p and p_t = p_p exactly."""
    s = make_scenario(seed, d, n_pretrain, n_align, t_exponent_jitter=0.0, t_rank_noise=0.0)
    return dataclasses.replace(s, p_t=s.p_p.copy(), params={**s.params, "s_t": s.params["s_p"], "t_rank_noise": 0.0})


def model_distribution(s: Scenario, k: float, l: float) -> np.ndarray:
    """p^D for |D_p| = k, |D_a| = 1, |D_t| = l."""
    return joint_distribution([s.p_p, s.p_a, s.p_t], [k, 1.0, l])


def rates(s: Scenario, k: float, l: float, huffman: bool = False) -> dict[str, float]:
    """γ (cross-entropy rate), normalised γ (KL rate) and optionally the real Huffman rate on each dataset."""
    q = model_distribution(s, k, l)
    out = {}
    for name, p in (("p", s.p_p), ("a", s.p_a), ("t", s.p_t)):
        out[f"gamma_{name}"] = compression_rate(p, q, s.d)
        out[f"norm_gamma_{name}"] = normalised_rate(p, q, s.d)
        if huffman:
            out[f"huffman_gamma_{name}"] = huffman_rate(p, q, s.d)
    return out


def derivatives(s: Scenario, k: float, l: float) -> tuple[float, float]:
    """(dγ_p/dl, dγ_a/dl), exact: dp^D/dl = (p_t − p^D)/(k+1+l), dγ_i/dl = −Σ p_i (dp^D/dl)/p^D / (d ln 2).

    Normalising γ subtracts an l-independent term, so these are also the normalised rates' derivatives.
    """
    q = model_distribution(s, k, l)
    dq = (s.p_t - q) / (k + 1.0 + l)

    def d_rate(p: np.ndarray) -> float:
        m = p > 0
        return float(-(p[m] * dq[m] / q[m]).sum() / (s.d * LN2))

    return d_rate(s.p_p), d_rate(s.p_a)


def closed_form_derivatives(k: float, l: float, d: int) -> tuple[float, float]:
    """(dγ_p/dl, dγ_a/dl) for D_a disjoint and p_t = p_p: (−1/((k+l)(k+1+l)), 1/(k+1+l)) / (d ln 2)."""
    return -1.0 / ((k + l) * (k + 1.0 + l) * d * LN2), 1.0 / ((k + 1.0 + l) * d * LN2)


def sweep(s: Scenario, ks: Sequence[float], ls: Sequence[float], huffman: bool = True) -> list[dict]:
    """One row per (k, l): rates, derivatives, their ratio, the closed form and the Hooke products."""
    rows = []
    for k in ks:
        r0 = rates(s, k, 0.0)
        for l in ls:
            r = rates(s, k, l, huffman=huffman)
            dp, da = derivatives(s, k, l)
            cp, ca = closed_form_derivatives(k, l, s.d)
            delta_p = r["norm_gamma_p"] - r0["norm_gamma_p"]
            delta_a = r["norm_gamma_a"] - r0["norm_gamma_a"]
            rows.append({
                "k": float(k), "l": float(l), **r,
                "dgamma_p_dl": dp, "dgamma_a_dl": da,
                "ratio": abs(da) / abs(dp) if dp != 0 else float("inf"),
                "opposite_signs": bool(da > 0 > dp),
                "closed_dgamma_p_dl": cp, "closed_dgamma_a_dl": ca,
                "delta_norm_gamma_p": delta_p, "delta_norm_gamma_a": delta_a,
                # Hooke products in units of |D_a|: |D_p| = k, |D_a| = 1
                "hooke_p": k * abs(delta_p), "hooke_a": 1.0 * abs(delta_a),
                "hooke_ratio": (k * abs(delta_p)) / abs(delta_a) if delta_a != 0 else float("nan"),
            })
    return rows
