"""Pure analysis over results DataFrames: intervals, slopes, fits, claim verdicts."""

from .fits import SegmentedFit, segmented_fit
from .stats import (
    ABSENT,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    VERDICTS,
    Claim,
    bootstrap_interval,
    claim_by_group,
    claim_from_seed_values,
    combine_verdicts,
    correlation_claim,
    fisher_mean,
    seeds_needed,
    slope,
    t_interval,
    verdict,
    with_groups,
)

__all__ = [
    "Claim",
    "REPRODUCED",
    "NOT_REPRODUCED",
    "ABSENT",
    "INCONCLUSIVE",
    "VERDICTS",
    "t_interval",
    "bootstrap_interval",
    "slope",
    "verdict",
    "combine_verdicts",
    "seeds_needed",
    "claim_from_seed_values",
    "correlation_claim",
    "fisher_mean",
    "with_groups",
    "claim_by_group",
    "SegmentedFit",
    "segmented_fit",
]
