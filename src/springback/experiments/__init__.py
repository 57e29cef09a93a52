"""Experiment registry: ``EXPERIMENTS`` maps CLI names to :class:`Experiment` objects.

Order matters: ``springback reproduce`` runs the ones marked ``in_reproduce`` in this order
(cheap ones first, and experiments that share pre-trained bases next to each other).
"""

from __future__ import annotations

from .algorithms import EXPERIMENT as ALGORITHMS
from .base import Experiment
from .compression import EXPERIMENT as COMPRESSION
from .dynamics import EXPERIMENT as DYNAMICS
from .elasticity import EXPERIMENT as ELASTICITY
from .priming import EXPERIMENT as PRIMING
from .rebound import EXPERIMENT as REBOUND
from .resistance import EXPERIMENT as RESISTANCE
from .scaling import EXPERIMENT as SCALING
from .theory import EXPERIMENT as THEORY

EXPERIMENTS: dict[str, Experiment] = {
    THEORY.name: THEORY,  # cheapest: no training
    REBOUND.name: REBOUND,
    DYNAMICS.name: DYNAMICS,  # after rebound: shares its micro sentiment / safety bases
    PRIMING.name: PRIMING,  # likewise
    COMPRESSION.name: COMPRESSION,  # after rebound: reuses its cached sentiment bases
    SCALING.name: SCALING,  # after rebound: its micro sentiment bases are rebound's
    RESISTANCE.name: RESISTANCE,  # reuses rebound's micro bases (sentiment, safety) and scaling's sentiment ones
    ALGORITHMS.name: ALGORITHMS,  # reuses rebound's micro sentiment bases
    ELASTICITY.name: ELASTICITY,  # a benchmark of a user's model: not part of `springback reproduce`
}

__all__ = ["EXPERIMENTS", "Experiment"]
