"""Measurements of a model: exact alignment scores, samples, scorers, KL, compression rates (and the coder in .coder)."""

from .alignment import AlignmentMeasure, ReferenceBatches, alignment_measure, measure_from_logprobs, reference_kl
from .compression import CodeLength, code_length, examples_code_length
from .forces import (
    Forces,
    SoftmaxCompletionModel,
    collision_probability,
    forces,
    forces_from_logps,
    measure_forces,
    training_distribution,
)
from .kl import sequence_kl
from .logprobs import completion_logprobs
from .sampling import sample
from .scorers import (
    SCORERS,
    Scorer,
    agreement,
    classifier_scorer,
    cost_scorer,
    make_scorer,
    refusal_scorer,
    reward_scorer,
    scorer_agreement,
    vader_scorer,
    world_label_scorer,
)

__all__ = [
    "AlignmentMeasure",
    "alignment_measure",
    "measure_from_logprobs",
    "reference_kl",
    "completion_logprobs",
    "sample",
    "sequence_kl",
    "SCORERS",
    "Scorer",
    "make_scorer",
    "classifier_scorer",
    "reward_scorer",
    "cost_scorer",
    "refusal_scorer",
    "agreement",
    "scorer_agreement",
    "vader_scorer",
    "world_label_scorer",
    "Forces",
    "ReferenceBatches",
    "SoftmaxCompletionModel",
    "collision_probability",
    "forces",
    "forces_from_logps",
    "measure_forces",
    "training_distribution",
    "CodeLength",
    "code_length",
    "examples_code_length",
]
