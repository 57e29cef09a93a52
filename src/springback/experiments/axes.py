"""The grid of the scaling experiment (P1 §5.3): which (model size, pre-training budget) points it runs.

* size presets at budgets of ONE pre-training run per size (its intermediate snapshots), at P1's
  TinyLlama checkpoint fractions by default — or a list of real checkpoints (:class:`CheckpointSpec`);
* ``grid: cross`` runs the paper's two axes (every size at the largest budget, every budget at one
  size); ``grid: full`` the whole size × budget table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..models import preset_parameters


@dataclasses.dataclass
class CheckpointSpec:
    """One real checkpoint on the size or data axis (replaces the presets when listed)."""

    path: str  # local directory or hub id
    revision: str = ""  # hub revision / branch, e.g. Pythia "step1000", OLMo "stepX-tokensYB"
    size: str = ""  # size label, e.g. "0.5B" (default: the path); checkpoints sharing it form the data axis
    budget: str = ""  # budget label, e.g. "2.0T" (default: the revision, else "final"); sharing it forms the size axis
    n_params: float = 0  # parameters; 0 = counted from the loaded model
    train_tokens: float = 0  # pre-training tokens of this checkpoint; 0 = unknown (no data-axis trend)


# The data axis (docs/scaling.md, "Pre-training budgets"): checkpoints at the same fractions of the
# final budget as P1's TinyLlama checkpoints — 0.1T, 0.5T, 1T, 2T, 3T of 3T [SPEC §3.3] = 1/30, 1/6,
# 1/3, 2/3, 1 — rounded to multiples of the pre-training batch (32) so the last one is the shared base.
# Over this range the checkpoints still change: the preference S is set within ~1000 examples, but
# the mass on the world's own responses (coverage) keeps growing to the end (result.json,
# base_by_budget). Before issue 14 the axis was 128 / 1280 / all: one barely-trained model and two
# whose S had converged.
P1_TINYLLAMA_TOKENS_T = (0.1, 0.5, 1.0, 2.0, 3.0)  # SPEC §3.3 (appendix adds 0.1T, 0.5T, 1.0T to 2T–3T)


def p1_fraction_budgets(corpus: int, batch: int = 32) -> list[int]:
    """Budgets at P1's checkpoint fractions of ``corpus`` examples, rounded to whole batches (last = corpus)."""
    out = [max(batch, int(round(corpus * t / P1_TINYLLAMA_TOKENS_T[-1] / batch)) * batch) for t in P1_TINYLLAMA_TOKENS_T]
    out[-1] = corpus
    return sorted(set(out))


@dataclasses.dataclass
class Point:
    """One (size, budget) point: where its base comes from and how it is labelled in the rows."""

    size: str
    budget: str
    budget_n: float  # in budget_unit (NaN if unknown)
    budget_unit: str
    preset: str = ""  # tiny preset, or "" for a real checkpoint
    spec: CheckpointSpec | None = None


def _label(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def preset_points(cfg: Any, vocab_size: int) -> list[Point]:
    """The (size, budget) points of a preset run, sizes ordered by parameter count."""
    sizes = sorted(dict.fromkeys(cfg.sizes), key=lambda s: preset_parameters(s, vocab_size))
    budgets = sorted(set(float(b) for b in cfg.budgets))
    data_size = cfg.data_size or sizes[-1]
    pairs = [(s, b) for s in sizes for b in budgets] if cfg.grid == "full" else (
        [(s, budgets[-1]) for s in sizes] + [(data_size, b) for b in budgets[:-1]])
    return [Point(s, _label(b), b, cfg.budget_unit, preset=s) for s, b in dict.fromkeys(pairs)]


def checkpoint_points(cfg: Any) -> list[Point]:
    """One point per listed real checkpoint, labelled by its size and budget labels."""
    pts = []
    for c in cfg.checkpoints:
        pts.append(Point(size=c.size or c.path, budget=c.budget or c.revision or "final",
                         budget_n=float(c.train_tokens) if c.train_tokens > 0 else float("nan"),
                         budget_unit="tokens", spec=c))
    return pts
