"""Statistics for claims: intervals over seeds, trend slopes, verdicts.

Pure functions over numbers and DataFrames; nothing here trains or reads files.

How a claim is decided (SPEC §7; issue 14). A claim's effect is the mean over seeds of one
value per seed, with a two-sided 95% Student-t interval over seeds. Against the null (0 unless
stated) and an equivalence band ±δ around it (the smallest effect that would matter, in the
claim's own unit):

1. ``reproduced``     the interval lies wholly above the null (the paper's side);
2. ``not_reproduced`` the interval lies wholly below the null;
3. ``absent``         the interval lies strictly inside (null − δ, null + δ);
4. ``inconclusive``   otherwise — and then ``seeds_needed`` says how many seeds would decide it.

Equivalence (``absent``) is two one-sided tests (TOST, Schuirmann 1987) read off the **same
95% interval the report prints**, not the conventional 90% one. Why: "interval wholly above the
null" is a one-sided test at α = 0.025; reading TOST off the 95% interval makes each of its two
one-sided tests α = 0.025 too, so every verdict has the same 2.5% error rate, none is easier to
reach than another, and a reader can check every verdict by eye against the printed interval.
The price is a slightly more conservative ``absent`` (more seeds needed) than TOST at α = 0.05.

Degenerate spread. Seeds that agree exactly (or more closely than the measurement can show)
would give a zero-width interval and a falsely certain verdict. Each claim therefore has a
``resolution``: the smallest difference its measurement can show (e.g. 1/n_prompts for a share
over n_prompts). The per-seed standard deviation is floored at the resolution — seeds that agree
to within it are treated as spreading by one resolution unit, because the measurement cannot
show that they agree more closely — and the claim's details carry ``degenerate_spread: true``.
Unless stated, the resolution is δ/10 (a measurement worth running resolves a tenth of the
smallest effect that matters; ``RESOLUTION_PER_DELTA``). With neither δ nor a resolution, an
exactly zero spread leaves the interval undefined (NaN) and the claim inconclusive.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ..errors import SpringbackError

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not_reproduced", "inconclusive"
ABSENT = "absent"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, ABSENT, INCONCLUSIVE)

CONFIDENCE = 0.95  # SPEC §7: every claim reports a 95% interval over seeds; TOST reads the same one
RESOLUTION_PER_DELTA = 0.1  # default resolution = δ/10 (ours; see the module docstring)
SEEDS_NEEDED_CAP = 1000  # beyond this, seeds_needed is reported as ">1000"
# Fisher z: |r| is clipped here before atanh, which diverges at ±1. With the handful of points a
# per-seed correlation rests on, |r| > 0.999 cannot be told from 1; the clip keeps |z| ≤ 3.80 so
# one perfect seed cannot dominate the mean in z (ours).
R_MAX = 0.999


def _finite(values: Sequence[float]) -> np.ndarray:
    """The finite values as a float array (None and NaN dropped)."""
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def _half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of a Student-t interval for a mean of ``n`` values with standard deviation ``sd``."""
    if n < 2 or not math.isfinite(sd) or sd <= 0.0:
        return float("nan")
    return float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)


def _spread(x: np.ndarray, resolution: float | None) -> tuple[float, bool]:
    """(standard deviation used, degenerate?): the sample sd (ddof=1), floored at ``resolution``.

    Degenerate when the floor was needed, or when the seeds agree (to rounding) and no floor exists."""
    if len(x) < 2:
        return float("nan"), False
    sd = float(x.std(ddof=1))
    if sd <= 1e-12 * float(np.abs(x).max()):  # equal to rounding (the mean of equal floats need not be exact)
        sd = 0.0
    if resolution is not None and sd < resolution:
        return float(resolution), True
    return sd, sd == 0.0


def t_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, sd_floor: float = 0.0
) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t interval for the mean.

    NaN bounds with < 2 finite values, and when every value is the same and ``sd_floor`` is 0:
    a zero spread over a few seeds says nothing about the interval, so none is claimed.
    ``sd_floor`` (≥ 0) is the smallest standard deviation used (see the module docstring)."""
    x = _finite(values)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    sd, _ = _spread(x, sd_floor if sd_floor > 0 else None)
    half = _half_width(sd, len(x), confidence)
    return mean, mean - half, mean + half


def bootstrap_interval(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) percentile bootstrap of the mean; deterministic given ``seed``."""
    x = _finite(values)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(x.mean()), float(lo), float(hi)


def slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of y on x (NaN if fewer than two distinct finite x)."""
    pts = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    if len({a for a, _ in pts}) < 2:
        return float("nan")
    xa = np.array([a for a, _ in pts])
    ya = np.array([b for _, b in pts])
    xc = xa - xa.mean()
    return float((xc * (ya - ya.mean())).sum() / (xc**2).sum())


def verdict(ci_low: float, ci_high: float, null: float = 0.0, delta: float | None = None) -> str:
    """The verdict of an interval (module docstring): ``reproduced`` if it lies wholly above
    ``null`` (the paper's direction), ``not_reproduced`` if wholly below, ``absent`` if strictly
    inside (null − delta, null + delta), ``inconclusive`` otherwise or if undefined.
    Without ``delta`` a claim can never be ``absent``."""
    if ci_low is None or ci_high is None or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return INCONCLUSIVE
    if ci_low > null:
        return REPRODUCED
    if ci_high < null:
        return NOT_REPRODUCED
    if delta is not None and null - delta < ci_low and ci_high < null + delta:
        return ABSENT
    return INCONCLUSIVE


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """The verdict of a claim whose parts must all hold (a conjunction).

    - ``not_reproduced`` if any part is; also if some part is ``absent`` but not all are: a
      required part is shown to be negligible, so the claim as a whole is decided false;
    - ``absent`` only if every part is absent;
    - ``reproduced`` only if every part is;
    - ``inconclusive`` otherwise (some part undecided, none decided against the claim), or if empty.
    """
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    if verdicts and all(v == ABSENT for v in verdicts):
        return ABSENT
    if any(v == ABSENT for v in verdicts):
        return NOT_REPRODUCED
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE


def seeds_needed(
    mean: float,
    sd: float,
    null: float = 0.0,
    band: tuple[float, float] | None = None,
    confidence: float = CONFIDENCE,
    cap: int = SEEDS_NEEDED_CAP,
) -> int | str | None:
    """Smallest number of seeds n ≥ 2 whose expected t-interval would decide a claim.

    Plug-in: the per-seed mean ``mean`` and standard deviation ``sd`` are taken as the truth, so
    the expected interval at n seeds is mean ± h(n) with h(n) = t_{(1+confidence)/2, n−1}·sd/√n,
    which shrinks strictly with n. It decides the claim when it excludes the null,
    h(n) < |mean − null|, or fits strictly inside ``band`` = (lo, hi) (null ± δ),
    h(n) < min(mean − lo, hi − mean); so n is the smallest with h(n) < max of the two targets.
    Returns ``f">{cap}"`` when no n ≤ ``cap`` suffices (e.g. mean exactly at the null and no band),
    and None when ``sd`` is not a finite positive number (nothing to extrapolate from).
    It is a point estimate (about 50% power), not a power calculation."""
    if not (math.isfinite(mean) and math.isfinite(sd)) or sd <= 0.0:
        return None
    target = abs(mean - null)
    if band is not None:
        target = max(target, min(mean - band[0], band[1] - mean))
    n = np.arange(2, cap + 1)
    h = sps.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n)
    ok = np.flatnonzero(h < target)
    return int(n[ok[0]]) if len(ok) else f">{cap}"


def most_seeds_needed(needed: Sequence[Any]) -> int | str | None:
    """The largest of several ``seeds_needed`` values (">N" beats any int); None if none is known."""
    known = [n for n in needed if n is not None]
    if not known:
        return None
    capped = [n for n in known if isinstance(n, str)]
    return capped[0] if capped else int(max(known))


@dataclasses.dataclass
class Claim:
    """One checked claim, as written to ``result.json`` and the report.

    ``delta``: the equivalence band half-width in the claim's unit (None: no band stated, never
    ``absent``). ``seeds_needed``: for an inconclusive claim, seeds that would decide it (int, or
    ``">1000"``); None when decided or when it cannot be estimated. ``groups``: per-group results
    (see :func:`with_groups`), empty when the claim does not pool groups."""

    id: str
    statement: str  # what we test, in our words
    paper: str  # what the paper says, with its section / table / figure
    effect: float
    ci_low: float
    ci_high: float
    n_seeds: int
    verdict: str
    unit: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    delta: float | None = None
    seeds_needed: int | str | None = None
    groups: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- building claims


@dataclasses.dataclass(frozen=True)
class _Scale:
    """Where the t-interval is built: ``forward`` maps per-seed values there, ``back`` maps back."""

    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    back: Callable[[float], float]
    edge: Callable[[float], float]  # a band edge, mapped without clipping (±inf outside the domain)


def _atanh_edge(r: float) -> float:
    return math.atanh(r) if -1.0 < r < 1.0 else math.copysign(math.inf, r)


_LINEAR = _Scale("linear", lambda x: x, lambda v: v, lambda v: v)
_FISHER = _Scale("fisher_z", lambda r: np.arctanh(np.clip(r, -R_MAX, R_MAX)), math.tanh, _atanh_edge)


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SpringbackError(f"{name} must be a finite number > 0 (or None), got {value!r}")


def _build(
    scale: _Scale,
    id: str,
    statement: str,
    paper: str,
    per_seed: Sequence[float],
    unit: str,
    null: float,
    delta: float | None,
    resolution: float | None,
    details: dict[str, Any],
) -> Claim:
    """One claim from per-seed values: interval in ``scale``, verdict and seeds_needed."""
    _check_positive("delta", delta)
    _check_positive("resolution", resolution)
    res = resolution if resolution is not None else (delta * RESOLUTION_PER_DELTA if delta is not None else None)
    x = scale.forward(_finite(per_seed))  # (n_seeds,) in the interval's scale
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    sd, degenerate = _spread(x, res)
    half = _half_width(sd, n)
    effect, lo, hi = scale.back(mean), scale.back(mean - half), scale.back(mean + half)
    v = verdict(lo, hi, null, delta)
    band = None if delta is None else (scale.edge(null - delta), scale.edge(null + delta))
    needed = seeds_needed(mean, sd, scale.edge(null), band) if v == INCONCLUSIVE else None
    info: dict[str, Any] = {"per_seed": list(per_seed), "null": null, "resolution": res,
                            "degenerate_spread": degenerate}
    if v in (REPRODUCED, NOT_REPRODUCED) and delta is not None and null - delta < lo and hi < null + delta:
        info["below_delta"] = True  # decided, but the whole interval is smaller than the effect that matters
    return Claim(id=id, statement=statement, paper=paper, effect=effect, ci_low=lo, ci_high=hi, n_seeds=n,
                 verdict=v, unit=unit, details={**info, **details}, delta=delta, seeds_needed=needed)


def claim_from_seed_values(
    id: str,
    statement: str,
    paper: str,
    per_seed: Sequence[float],
    unit: str = "",
    null: float = 0.0,
    *,
    delta: float | None = None,
    resolution: float | None = None,
    **details: Any,
) -> Claim:
    """A claim whose effect is the mean of one value per seed, with a 95% t-interval over seeds.

    ``delta`` (required for new code; None = no band stated) is the equivalence half-width in the
    claim's unit; ``resolution`` the smallest difference the measurement shows (default δ/10),
    used as a floor on the per-seed standard deviation. Verdict rules: module docstring.
    Details gain ``per_seed``, ``null``, ``resolution`` (the one used), ``degenerate_spread`` and,
    for a decided claim whose interval lies inside ±δ, ``below_delta``."""
    return _build(_LINEAR, id, statement, paper, per_seed, unit, null, delta, resolution, details)


def fisher_mean(rs: Sequence[float]) -> float:
    """Mean of correlations through Fisher's z: tanh(mean(atanh(r))), |r| clipped at ``R_MAX``;
    non-finite values are skipped (NaN if none is left)."""
    z = _FISHER.forward(_finite(rs))
    return float(math.tanh(z.mean())) if len(z) else float("nan")


def correlation_claim(
    id: str,
    statement: str,
    paper: str,
    per_seed_r: Sequence[float],
    null: float = 0.0,
    delta: float | None = None,
    *,
    unit: str = "Pearson r",
    resolution: float | None = None,
    **details: Any,
) -> Claim:
    """A claim about a correlation, one r per seed, decided in Fisher-z space.

    Each r is clipped to [−R_MAX, R_MAX] and mapped to z = atanh(r); the mean and the t-interval
    are taken over z and mapped back with tanh, so effect = :func:`fisher_mean` and the interval
    never leaves (−1, 1). ``null`` and ``delta`` are in r units (the band is null ± delta in r);
    ``resolution`` is applied in z units (near r = 0 one unit of r is one of z). Raises
    ValueError for an r outside [−1, 1] beyond rounding."""
    r = _finite(per_seed_r)
    if len(r) and np.abs(r).max() > 1.0 + 1e-9:
        raise ValueError(f"a correlation must lie in [-1, 1], got {float(r[np.abs(r).argmax()])}")
    if not -1.0 < null < 1.0:
        raise ValueError(f"the null of a correlation must lie in (-1, 1), got {null}")
    info = {"scale": _FISHER.name, "r_max": R_MAX, "n_clipped": int((np.abs(r) > R_MAX).sum())}
    return _build(_FISHER, id, statement, paper, per_seed_r, unit, null, delta, resolution, {**info, **details})


# ----------------------------------------------------------------------------- groups


def with_groups(claim: Claim, per_group_values: Mapping[str, Sequence[float]]) -> Claim:
    """A copy of ``claim`` with per-group results, for a claim that pools several groups.

    Each group (e.g. a synthetic world) is decided like the pooled claim — same null, δ,
    resolution and scale (Fisher z for a :func:`correlation_claim`) — and stored in ``groups``
    as {effect, ci_low, ci_high, n_seeds, verdict, delta, seeds_needed}. ``details["groups_disagree"]``
    is True when some group's effect lies above the null and another's below. Rules when the
    groups disagree:

    - **every group decided** (none inconclusive): the claim is decided by its groups as by the
      required parts of a conjunction (:func:`combine_verdicts`): all absent → ``absent``; any
      group not reproduced, or absent while another is not → ``not_reproduced``. The claim says
      the effect holds in every world; a world where it is shown reversed or negligible decides
      it, and no number of seeds would change that. ``details["decided_by_groups"]`` is True and
      a differing pooled verdict is kept in ``details["pooled_verdict"]``.
    - **some group undecided**: a pooled ``reproduced`` / ``not_reproduced`` stands only if every
      group has that same verdict, and a pooled ``absent`` only if no group shows an effect (none
      is reproduced or not_reproduced: near the null, group means of either sign are what
      "absent" predicts, and the pooled interval already holds the spread between groups);
      otherwise the claim becomes inconclusive, the pooled verdict is kept in
      ``details["pooled_verdict"]`` and ``seeds_needed`` is what would decide every undecided
      group (the largest group's count, in seeds: one replicate per seed in a group).

    Groups that agree in sign never change the pooled verdict: pooling them is what buys the seeds."""
    null = float(claim.details.get("null", 0.0))
    res = claim.details.get("resolution")
    scale = _FISHER if claim.details.get("scale") == _FISHER.name else _LINEAR
    groups: dict[str, dict[str, Any]] = {}
    for name, values in per_group_values.items():
        g = _build(scale, f"{claim.id}[{name}]", "", "", values, claim.unit, null, claim.delta, res, {})
        groups[str(name)] = {"effect": g.effect, "ci_low": g.ci_low, "ci_high": g.ci_high, "n_seeds": g.n_seeds,
                             "verdict": g.verdict, "delta": g.delta, "seeds_needed": g.seeds_needed}
    signs = {np.sign(g["effect"] - null) for g in groups.values() if math.isfinite(g["effect"])}
    disagree = bool(1.0 in signs and -1.0 in signs)
    out = dataclasses.replace(claim, details={**claim.details, "groups_disagree": disagree}, groups=groups)
    decided = [g["verdict"] for g in groups.values() if g["verdict"] != INCONCLUSIVE]
    if disagree and len(decided) == len(groups) >= 2:
        by_groups = combine_verdicts(decided)
        out.details["decided_by_groups"] = True
        if by_groups != claim.verdict:
            out.details["pooled_verdict"] = claim.verdict
            out.verdict = by_groups
            out.seeds_needed = None
        return out
    if claim.verdict == ABSENT:
        blocked = any(g["verdict"] in (REPRODUCED, NOT_REPRODUCED) for g in groups.values())
    else:
        blocked = claim.verdict != INCONCLUSIVE and any(g["verdict"] != claim.verdict for g in groups.values())
    if disagree and blocked:
        out.details["pooled_verdict"] = claim.verdict
        out.verdict = INCONCLUSIVE
        out.seeds_needed = most_seeds_needed([g["seeds_needed"] for g in groups.values() if g["verdict"] == INCONCLUSIVE])
        out.details["seeds_needed_per_group"] = True  # already in seeds: not divided by the groups
        out.details["seeds_needed_note"] = ("the groups disagree in sign: seeds_needed is what would decide "
                                            "every undecided group, each on its own")
    return out


def claim_by_group(
    id: str,
    statement: str,
    paper: str,
    per_group: Mapping[str, Sequence[float]],
    unit: str = "",
    null: float = 0.0,
    *,
    delta: float | None = None,
    resolution: float | None = None,
    correlation: bool = False,
    **details: Any,
) -> Claim:
    """A claim pooled over groups plus per-group results (:func:`with_groups`).

    The pooled per-seed values are every group's values together: each (group, seed) run is one
    independent replicate. (A caller that pairs groups by seed can average per seed itself and
    call :func:`with_groups`.) ``correlation=True`` builds a :func:`correlation_claim`.
    Every seed adds one replicate per group, so ``seeds_needed`` is given in seeds (replicates
    needed ÷ groups, rounded up); ``details["replicates_needed"]`` keeps the replicate count and
    ``details["replicates_per_seed"]`` the number of groups."""
    pooled = [v for values in per_group.values() for v in values]
    if correlation:
        claim = correlation_claim(id, statement, paper, pooled, null, delta, unit=unit or "Pearson r",
                                  resolution=resolution, **details)
    else:
        claim = claim_from_seed_values(id, statement, paper, pooled, unit, null, delta=delta,
                                       resolution=resolution, **details)
    out = with_groups(claim, per_group)
    n_groups = sum(1 for values in per_group.values() if len(_finite(values)))
    out.details["replicates_per_seed"] = n_groups
    return replicates_to_seeds(out)


def replicates_to_seeds(claim: Claim) -> Claim:
    """Turn an integer ``seeds_needed`` counted in replicates into seeds, for a claim pooling
    ``details["replicates_per_seed"]`` groups (each seed adds one replicate per group)."""
    per_seed = int(claim.details.get("replicates_per_seed") or 1)
    if per_seed > 1 and isinstance(claim.seeds_needed, int) and not claim.details.get("seeds_needed_per_group"):
        claim.details["replicates_needed"] = claim.seeds_needed
        claim.seeds_needed = max(2, math.ceil(claim.seeds_needed / per_seed))
    return claim
