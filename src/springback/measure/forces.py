"""Driving and rebound forces on the alignment score (SPEC §5).

Only P2's abstract is public; the decomposition below is *our* formulation, consistent with
that abstract (SPEC §5), not the paper's text.

Setting. Completions y of a prompt are split into an aligned set A and an opposing set N.
π(y) is the model's probability of y renormalised over A ∪ N (as in
:mod:`springback.measure.alignment`), π⁺ = Σ_A π, π⁻ = 1 − π⁺, and the alignment score is
S = log(π⁺/π⁻). The outcome-conditioned posteriors are π(y|A) = π(y)/π⁺ on A and
π(y|N) = π(y)/π⁻ on N; their collision probabilities C_A = Σ_A π(y|A)² and
C_N = Σ_N π(y|N)² measure how *narrow* each side is (1 = one completion carries all the
mass, 1/|A| = spread evenly).

The identity. Give every completion its own logit z_y (a pure softmax model) and take one
gradient step on the log-likelihood of a training distribution q over A ∪ N:
Δz = η (q − π). Since ∂S/∂z_y = π(y|A) on A and −π(y|N) on N, to first order in η

    ΔS ≈ η (F_drive + F_rebound),
    F_drive   = ⟨q, π(·|A)⟩ − ⟨q, π(·|N)⟩        (what the data asks for)
    F_rebound = −(π⁺ C_A − π⁻ C_N)               (what the model's own mass does).

With C_A = C_N = C, F_rebound = −C · tanh(S/2): a pull toward S = 0 that is stronger the
narrower the posteriors. For a neural network the logits are tied through shared
parameters, so this is a prediction up to an unknown, state-dependent step size — see
``springback.experiments.dynamics`` for how it is tested there.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Sequence

import numpy as np
import torch

from .alignment import AlignmentMeasure, alignment_measure


@dataclasses.dataclass
class Forces:
    """Per-prompt force decomposition. Every tensor is [P] (prompts)."""

    pi_pos: torch.Tensor
    score: torch.Tensor  # S = log π⁺ − log π⁻
    collision_aligned: torch.Tensor  # C_A
    collision_opposing: torch.Tensor  # C_N
    f_drive: torch.Tensor
    f_rebound: torch.Tensor

    @property
    def pi_neg(self) -> torch.Tensor:
        return 1.0 - self.pi_pos

    @property
    def f_total(self) -> torch.Tensor:
        """F_drive + F_rebound: the first-order ΔS per unit step size η."""
        return self.f_drive + self.f_rebound

    def summary(self) -> dict[str, float]:
        """Prompt means, as columns of a records row."""
        return {
            "pi_pos": float(self.pi_pos.mean()),
            "score_S": float(self.score.mean()),
            "collision_A": float(self.collision_aligned.mean()),
            "collision_N": float(self.collision_opposing.mean()),
            "f_drive": float(self.f_drive.mean()),
            "f_rebound": float(self.f_rebound.mean()),
            "f_total": float(self.f_total.mean()),
        }


def collision_probability(logp: torch.Tensor) -> torch.Tensor:
    """Σ_y p(y)² of the distribution proportional to exp(logp) along the last dim. [..., K] -> [...]

    Computed in log space (``2·log p`` then logsumexp), so very peaked or very flat
    distributions lose no precision.
    """
    log_post = logp - torch.logsumexp(logp, dim=-1, keepdim=True)
    return torch.logsumexp(2.0 * log_post, dim=-1).exp()


def _as_rows(q: torch.Tensor, n_prompts: int, width: int, name: str) -> torch.Tensor:
    q = torch.as_tensor(q, dtype=torch.float64)
    if q.dim() == 1:
        q = q.unsqueeze(0).expand(n_prompts, -1)
    if q.shape != (n_prompts, width):
        raise ValueError(f"{name} must have shape [{width}] or [{n_prompts}, {width}], got {list(q.shape)}")
    return q


def forces_from_logps(
    logp_aligned: torch.Tensor,
    logp_opposing: torch.Tensor,
    q_aligned: torch.Tensor,
    q_opposing: torch.Tensor,
) -> Forces:
    """Forces from log-probabilities of every completion of A ([P, |A|]) and N ([P, |N|]).

    ``q_aligned`` / ``q_opposing``: the training distribution restricted to A and to N
    ([|A|] / [|N|], or per prompt), together summing to 1 over A ∪ N. The log-probabilities
    need not be normalised: only their ratios matter.
    """
    la = logp_aligned.double()
    ln = logp_opposing.double()
    p, k_a = la.shape
    k_n = ln.shape[1]
    qa = _as_rows(q_aligned, p, k_a, "q_aligned")
    qn = _as_rows(q_opposing, p, k_n, "q_opposing")
    lse_a = torch.logsumexp(la, 1)
    lse_n = torch.logsumexp(ln, 1)
    lse = torch.logaddexp(lse_a, lse_n)
    pi_pos = (lse_a - lse).exp()
    pi_neg = (lse_n - lse).exp()
    post_a = torch.softmax(la, 1)  # π(y|A) [P, |A|]
    post_n = torch.softmax(ln, 1)  # π(y|N) [P, |N|]
    c_a = collision_probability(la)
    c_n = collision_probability(ln)
    f_drive = (qa * post_a).sum(1) - (qn * post_n).sum(1)
    f_rebound = -(pi_pos * c_a - pi_neg * c_n)
    return Forces(pi_pos=pi_pos, score=lse_a - lse_n, collision_aligned=c_a, collision_opposing=c_n,
                  f_drive=f_drive, f_rebound=f_rebound)


def forces(measure: AlignmentMeasure, q_aligned: torch.Tensor, q_opposing: torch.Tensor) -> Forces:
    """Forces of an :class:`AlignmentMeasure` (exact teacher-forced log-probabilities)."""
    return forces_from_logps(measure.logp_aligned, measure.logp_opposing, q_aligned, q_opposing)


def training_distribution(
    responses: Sequence[str], aligned: Sequence[str], opposing: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The empirical distribution q of ``responses`` over A ∪ N.

    Returns (q over A [|A|], q over N [|N|], share of responses that fall in A ∪ N).
    Responses outside A ∪ N are left out (q is renormalised over those inside); with none
    inside, a ValueError is raised, since q is then undefined.
    """
    counts = Counter(r.strip() for r in responses)
    qa = torch.tensor([float(counts.get(y.strip(), 0)) for y in aligned], dtype=torch.float64)
    qn = torch.tensor([float(counts.get(y.strip(), 0)) for y in opposing], dtype=torch.float64)
    inside = float(qa.sum() + qn.sum())
    if inside == 0:
        raise ValueError("none of the training responses is in the reference sets A ∪ N")
    return qa / inside, qn / inside, inside / max(1, len(responses))


def measure_forces(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    aligned: Sequence[str],
    opposing: Sequence[str],
    q_aligned: torch.Tensor,
    q_opposing: torch.Tensor,
    batch_size: int = 256,
) -> Forces:
    """Teacher-force every completion of A and N after every prompt, then decompose."""
    m = alignment_measure(model, tokenizer, prompts, aligned, opposing, batch_size)
    return forces(m, q_aligned, q_opposing)


# ----------------------------------------------------------------------------- pure softmax model


@dataclasses.dataclass
class SoftmaxCompletionModel:
    """One free logit per completion: the first ``n_aligned`` entries are A, the rest N.

    The model in which the force decomposition is an exact first-order identity: a step of
    size ``lr`` on the log-likelihood of q moves the logits by exactly ``lr · (q − π)``.
    """

    logits: torch.Tensor  # [|A| + |N|] float64
    n_aligned: int

    def __post_init__(self) -> None:
        self.logits = torch.as_tensor(self.logits, dtype=torch.float64).clone()
        if not 0 < self.n_aligned < self.logits.numel():
            raise ValueError("need at least one aligned and one opposing completion")

    @classmethod
    def random(cls, n_aligned: int, n_opposing: int, seed: int, scale: float = 1.0,
               aligned_shift: float = 0.0) -> "SoftmaxCompletionModel":
        """Gaussian logits (std ``scale``); ``aligned_shift`` is added to every aligned logit."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n_aligned + n_opposing, generator=gen, dtype=torch.float64) * scale
        z[:n_aligned] += aligned_shift
        return cls(z, n_aligned)

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, 0)

    def score(self) -> float:
        """S = log π⁺ − log π⁻."""
        a = self.n_aligned
        return float(torch.logsumexp(self.logits[:a], 0) - torch.logsumexp(self.logits[a:], 0))

    def forces(self, q: torch.Tensor) -> Forces:
        """Force decomposition for training distribution ``q`` over all completions ([K])."""
        q = torch.as_tensor(q, dtype=torch.float64)
        a = self.n_aligned
        return forces_from_logps(self.logits[None, :a], self.logits[None, a:], q[:a], q[a:])

    def step(self, q: torch.Tensor, lr: float) -> "SoftmaxCompletionModel":
        """The model after one gradient-ascent step on E_q[log π(y)] (closed form: Δz = lr·(q − π))."""
        q = torch.as_tensor(q, dtype=torch.float64)
        return SoftmaxCompletionModel(self.logits + lr * (q - self.probs()), self.n_aligned)

    def sgd_step(self, completions: Sequence[int], lr: float) -> "SoftmaxCompletionModel":
        """One SGD step on the mean negative log-likelihood of sampled completion indices.

        Computed with autograd, so it checks the closed form of :meth:`step` with q the
        empirical distribution of ``completions``.
        """
        z = self.logits.clone().requires_grad_(True)
        idx = torch.as_tensor(list(completions), dtype=torch.long)
        loss = -torch.log_softmax(z, 0)[idx].mean()
        loss.backward()
        return SoftmaxCompletionModel((z - lr * z.grad).detach(), self.n_aligned)


def empirical_q(completions: Sequence[int], n_completions: int) -> torch.Tensor:
    """Empirical distribution of completion indices. [n_completions]"""
    q = torch.bincount(torch.as_tensor(list(completions), dtype=torch.long), minlength=n_completions).double()
    return q / q.sum()


def uniform_q(n_aligned: int, n_opposing: int, side: str, subset: int = 0) -> torch.Tensor:
    """q uniform over the first ``subset`` completions of one side (0 = all of that side). [|A| + |N|]"""
    if side not in ("aligned", "opposing"):
        raise ValueError(f"side must be 'aligned' or 'opposing', got {side!r}")
    q = torch.zeros(n_aligned + n_opposing, dtype=torch.float64)
    lo, size = (0, n_aligned) if side == "aligned" else (n_aligned, n_opposing)
    k = size if subset <= 0 else min(subset, size)
    q[lo : lo + k] = 1.0 / k
    return q


def softmax_trace(n_aligned: int, n_opposing: int, narrowness: int, seed: int, lr: float, n_steps: int,
                  start_score: float, gain: float = 0.0, max_rows: int = 100) -> list[dict]:
    """Align then opposing phase of a :class:`SoftmaxCompletionModel` with exact full-batch steps.

    Each row: the state at a step, the forces for that step's q, the first-order prediction
    lr·(F_drive + F_rebound) and the exact ΔS of the step. The align phase ends after
    ``n_steps`` or, with ``gain`` > 0, once S has risen by ``gain`` (as in the network runs);
    the opposing phase after ``n_steps`` or once S is back at its starting level.
    At most ``max_rows`` evenly spaced steps per phase are kept (every step is simulated).
    """
    model = SoftmaxCompletionModel.random(n_aligned, n_opposing, seed=seed, scale=0.5)
    model.logits[:n_aligned] += start_score - model.score()  # start at the world's base level
    z = model.logits.numpy().copy()
    rows: list[dict] = []

    def score(v: np.ndarray) -> float:
        a, o = v[:n_aligned], v[n_aligned:]
        return float(a.max() + np.log(np.exp(a - a.max()).sum()) - o.max() - np.log(np.exp(o - o.max()).sum()))

    s_base = score(z)
    for phase, q in (("align", uniform_q(n_aligned, n_opposing, "aligned", subset=narrowness)),
                     ("opposing", uniform_q(n_aligned, n_opposing, "opposing"))):
        qn = q.numpy()
        states = [z]
        s_start = score(z)
        for _ in range(n_steps):
            s = score(z)
            if phase == "align" and gain > 0 and s >= s_start + gain:
                break
            if phase == "opposing" and s <= s_base:  # back at the base level: the rebound is over
                break
            p = np.exp(z - z.max())
            z = z + lr * (qn - p / p.sum())  # the exact gradient step on E_q[log π]
            states.append(z)
        zs = torch.from_numpy(np.stack(states))  # [T + 1, K]
        f = forces_from_logps(zs[:, :n_aligned], zs[:, n_aligned:], q[:n_aligned], q[n_aligned:])  # every state at once
        scores = f.score
        n_done = len(states) - 1
        keep = sorted(set(np.linspace(0, n_done - 1, min(max_rows, n_done)).round().astype(int).tolist())) if n_done else []
        for t in keep:
            rows.append({"stage": phase, "step": t, "pi_pos": float(f.pi_pos[t]), "score_S": float(scores[t]),
                         "collision_A": float(f.collision_aligned[t]), "collision_N": float(f.collision_opposing[t]),
                         "f_drive": float(f.f_drive[t]), "f_rebound": float(f.f_rebound[t]), "f_total": float(f.f_total[t]),
                         "predicted_delta_S": lr * float(f.f_total[t]), "delta_S": float(scores[t + 1] - scores[t])})
        rows.append({"stage": phase, "step": n_done, "score_S": float(scores[-1]), "f_rebound": float(f.f_rebound[-1]),
                     "collision_A": float(f.collision_aligned[-1]), "predicted_delta_S": float("nan"), "delta_S": float("nan")})
    return rows
