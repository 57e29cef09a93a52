"""Experiment registry: ``EXPERIMENTS`` maps CLI names to :class:`Experiment` objects.

Order matters: ``springback reproduce`` runs them in this order (cheap ones first, and
experiments that share pre-trained bases next to each other).
"""

from __future__ import annotations

from .base import Experiment, RunContext
from .rebound import EXPERIMENT as REBOUND

EXPERIMENTS: dict[str, Experiment] = {
    REBOUND.name: REBOUND,
}

__all__ = ["EXPERIMENTS", "Experiment", "RunContext"]
