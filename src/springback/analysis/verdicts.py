"""Verdicts of claims with several parts or a target value (docs/science.md, "Verdicts").

:mod:`.stats` decides one effect against a null and a band ±δ. Two shapes of claim need more:

* **parts** — "starts higher *and* falls faster": every part is its own :class:`~.stats.Claim`
  (own unit, δ and verdict); the claim's verdict is :func:`~.stats.combine_verdicts` of all of
  them (:func:`with_parts`).
* **targets** — "the log-log slope is 1", "r is above 0.99": the effect must first lie on the
  paper's side of the null (the sign), then its interval inside the target band. An interval
  wholly outside the band is ``not_reproduced`` — an effect exists, but not the one stated
  (:func:`with_target`).

When either turns a decided claim inconclusive, ``seeds_needed`` is re-estimated for what is
still undecided, so every inconclusive claim says how many seeds would decide it.

Pure functions; nothing here trains or reads files.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from .stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Claim,
    _FISHER,
    _LINEAR,
    _finite,
    _spread,
    combine_verdicts,
    most_seeds_needed,
    replicates_to_seeds,
    seeds_needed,
)


def _scale(claim: Claim):
    return _FISHER if claim.details.get("scale") == _FISHER.name else _LINEAR


def _mean_sd(claim: Claim) -> tuple[float, float]:
    """(mean, sd) of the claim's per-seed values in its interval's scale, sd floored at its resolution."""
    x = _scale(claim).forward(_finite(claim.details.get("per_seed", [])))
    if len(x) == 0:
        return float("nan"), float("nan")
    sd, _ = _spread(x, claim.details.get("resolution"))
    return float(x.mean()), sd


def summary(claim: Claim) -> dict[str, Any]:
    """A part's numbers for its parent claim's details."""
    return {"effect": claim.effect, "ci": [claim.ci_low, claim.ci_high], "verdict": claim.verdict,
            "delta": claim.delta, "n_seeds": claim.n_seeds, "seeds_needed": claim.seeds_needed,
            "unit": claim.unit, "groups": claim.groups}


def with_parts(claim: Claim, parts: Mapping[str, Claim]) -> Claim:
    """``claim`` combined with further required parts: verdict = :func:`combine_verdicts` of all,
    each part's numbers in ``details["parts"]``; an inconclusive result gets the largest
    ``seeds_needed`` of the undecided parts."""
    verdicts = [claim.verdict] + [p.verdict for p in parts.values()]
    out = dataclasses.replace(claim, details={**claim.details, "parts": {k: summary(p) for k, p in parts.items()}},
                              verdict=combine_verdicts(verdicts))
    out.details["own_verdict"] = claim.verdict
    if out.verdict == INCONCLUSIVE:
        out.seeds_needed = most_seeds_needed([c.seeds_needed for c in [claim, *parts.values()] if c.verdict == INCONCLUSIVE])
    else:
        out.seeds_needed = None
    return out


def band_verdict(lo: float, hi: float, band: tuple[float, float]) -> str:
    """``reproduced`` if [lo, hi] lies inside ``band``, ``not_reproduced`` if wholly outside it,
    ``inconclusive`` otherwise or if undefined."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if band[0] <= lo and hi <= band[1]:
        return REPRODUCED
    if hi < band[0] or lo > band[1]:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def with_target(claim: Claim, band: tuple[float, float]) -> Claim:
    """``claim`` (its sign decided against its null and δ) refined by a target band.

    Only a ``reproduced`` sign is refined: its interval inside ``band`` stays reproduced, wholly
    outside becomes ``not_reproduced``, across an edge ``inconclusive`` with the seeds needed to
    place it (the distance from the mean to the nearest edge, in the interval's scale). Other
    verdicts stand: no sign, no target. Details gain ``target_band`` and ``target_verdict``."""
    lo_b, hi_b = float(band[0]), float(band[1])
    tv = band_verdict(claim.ci_low, claim.ci_high, (lo_b, hi_b))
    out = dataclasses.replace(claim, details={**claim.details, "target_band": [lo_b, hi_b], "target_verdict": tv,
                                              "sign_verdict": claim.verdict})
    if claim.verdict != REPRODUCED:
        return out
    out.verdict = tv
    if tv == INCONCLUSIVE:
        scale = _scale(claim)
        mean, sd = _mean_sd(claim)
        edges = [scale.edge(lo_b), scale.edge(hi_b)]
        nearest = min((e for e in edges if math.isfinite(e)), key=lambda e: abs(e - mean), default=float("nan"))
        out.seeds_needed = seeds_needed(mean, sd, null=nearest) if math.isfinite(nearest) else None
        out = replicates_to_seeds(out)
    return out


def per_group(values: Mapping[tuple[str, int], float]) -> dict[str, list[float]]:
    """{(group, seed): value} → {group: [value per seed, in seed order]}."""
    out: dict[str, list[tuple[int, float]]] = {}
    for (group, seed), v in values.items():
        out.setdefault(str(group), []).append((int(seed), float(v)))
    return {g: [v for _, v in sorted(pairs)] for g, pairs in sorted(out.items())}


def finite_mean(values: Any) -> float:
    """Mean of the finite values (NaN when there are none)."""
    x = _finite(list(values))
    return float(np.mean(x)) if len(x) else float("nan")


def brief(c: Claim) -> dict:
    """A sub-claim's numbers for another claim's details (effect, interval, verdict, groups)."""
    return {"effect": c.effect, "ci": [c.ci_low, c.ci_high], "verdict": c.verdict, "n_replicates": c.n_seeds,
            "seeds_needed": c.seeds_needed, "groups": {w: {"effect": g["effect"], "verdict": g["verdict"]}
                                                       for w, g in c.groups.items()}}


def renamed(claims_: list[Claim], prefix: str, note: str = "", paper: str = "") -> list[Claim]:
    """Rebound's claims under another id prefix (``rebound.X`` → ``PREFIX.X``), with ``note``
    prepended to each statement and ``paper`` (when given) replacing the paper's reference."""
    out = []
    for c in claims_:
        rest = c.id.split(".", 1)[1] if "." in c.id else c.id
        out.append(dataclasses.replace(c, id=f"{prefix}.{rest}", statement=f"{note}{c.statement}",
                                       paper=paper or c.paper))
    return out
