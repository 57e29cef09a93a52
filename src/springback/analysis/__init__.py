"""Pure analysis over results DataFrames: intervals, slopes, claim verdicts."""

from .stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Claim,
    bootstrap_interval,
    claim_from_seed_values,
    combine_verdicts,
    slope,
    t_interval,
    verdict,
)

__all__ = [
    "Claim",
    "REPRODUCED",
    "NOT_REPRODUCED",
    "INCONCLUSIVE",
    "t_interval",
    "bootstrap_interval",
    "slope",
    "verdict",
    "combine_verdicts",
    "claim_from_seed_values",
]
