"""Alignment dynamics: driving force vs rebound force (SPEC §5; P2's formulation is ours).

Only P2's abstract is public; the force decomposition (:mod:`springback.measure.forces`) is our
formulation, consistent with it. Three parts, each a kind of cell:

(a) **pure softmax model** — one free logit per completion of A ∪ N: a step Δz = η(q − π) moves S
    by η(F_drive + F_rebound) to first order, checked step by step (:func:`softmax_rows`);
(b) **tiny world models** — align a copy of the cached base (to a fixed gain), then fine-tune on
    opposing data, measuring S and the forces exactly every ``window_examples`` examples; the force
    at a window's start is tested as a predictor of the direction and time course of the measured
    ΔS over it (in a network the logits share parameters, so η_eff is fitted, not predicted);
(c) **narrowness** — the same runs with k distinct aligned templates: narrower aligned posteriors
    should rebound harder (SPEC §5 (b)).

What each test means and the measured results: ``docs/dynamics.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import pandas as pd

from ..analysis import Claim, claim_by_group, fisher_mean
from ..analysis.verdicts import per_group, with_parts, with_target
from ..analysis.curves import half_gain_table
from ..analysis.forces import (narrowness_slopes, per_replicate, pull_shares, signed_r2, softmax_half_gain,
                               softmax_identity, window_correlations)
from ..config import ModelConfig, TrainConfig, WorldConfig
from ..errors import ConfigError
from ..measure.forces import softmax_trace
from ..pipeline import (
    DEFAULT_PRETRAIN,
    BaseSpec,
    Cell,
    DataSpec,
    MeasureSpec,
    Stage,
    StopRule,
    labels,
    pretrain_spec,
    world_spec,
)
from ..worlds import get_world
from .base import Experiment, model_options, model_label, run_options


@dataclasses.dataclass
class DynamicsConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment", "safety"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    # Distinct aligned templates in the alignment data (0 = all of them); the 1, 2, 4, 16.
    narrowness: list[int] = dataclasses.field(default_factory=lambda: [1, 4, 16])
    n_align: int = 1024  # budget of aligned examples in the align phase
    # The align phase stops once S has gained this much over the base (log-odds; 0 = use the whole
    # budget). Matching the gain across narrowness keeps "lose half the gain" comparable: with a fixed
    # example count, narrow alignment gains less, and a smaller gain is lost in fewer examples.
    align_gain: float = 2.5
    n_opposing: int = 384  # opposing examples after it
    window_examples: int = 64  # examples between force measurements (a multiple of the batch keeps batches whole)
    # world.narrowness is not used: the `narrowness` list above sets it per run.
    world: WorldConfig = dataclasses.field(default_factory=lambda: WorldConfig(n_eval_prompts=4))
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    opposing: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    measure_batch_size: int = 256  # sequences per teacher-forcing pass (results do not depend on it)
    # Pure softmax model (part a): step size η and steps per phase.
    softmax_lr: float = 0.5  # per-completion probabilities are ~1/|A|, so η ~ 1 moves S by ~0.01 per step
    softmax_steps: int = 2000  # cap per phase (the align phase stops at align_gain)


PRESETS = {
    "quick": {},
    # full: 12 seeds (24 replicates): narrow_rebounds_faster needed 15 at quick; the grid stays
    # close to quick's (4 prompts, 64-example windows) so that the seeds fit the time (docs/science.md).
    "full": {"seeds": list(range(12)), "narrowness": [1, 2, 4, 16], "n_opposing": 512},
}


# ----------------------------------------------------------------------------- cells


def measurement_grid(n_examples: int, window: int) -> list[int]:
    """0, window, 2·window, ... and always ``n_examples`` itself."""
    if window < 1:
        raise ValueError(f"window_examples must be >= 1, got {window}")
    grid = list(range(0, n_examples + 1, window))
    if grid[-1] != n_examples:
        grid.append(n_examples)
    return grid


@functools.lru_cache(maxsize=None)
def n_templates(world_name: str, k: int) -> int:
    """Distinct aligned templates in the alignment data for narrowness ``k`` (0 = all)."""
    return len(get_world(world_name, k).aligned_templates())


def check(cfg: DynamicsConfig) -> None:
    """Fail before any training on values that cannot work (ConfigError, one line)."""
    if cfg.model.path:
        # The forces are exact only over a world's finite completion sets, for a model whose
        # pre-training prior on them is known: the tiny presets trained on the world.
        raise ConfigError("dynamics runs on the synthetic worlds' own pre-trained presets: model.path is not used "
                          "(measure a checkpoint with `springback run elasticity` or `rebound`)")
    if cfg.window_examples < 1 or cfg.n_align < 1 or cfg.n_opposing < 1:
        raise ConfigError("window_examples, n_align and n_opposing must be >= 1")
    if not cfg.narrowness or any(k < 0 for k in cfg.narrowness):
        raise ConfigError(f"narrowness: give one or more template counts >= 0 (0 = all), got {cfg.narrowness}")
    if cfg.align_gain < 0 or cfg.softmax_lr <= 0 or cfg.softmax_steps < 1:
        raise ConfigError("align_gain must be >= 0, softmax_lr > 0 and softmax_steps >= 1")
    if not cfg.worlds or not cfg.seeds:
        raise ConfigError("worlds and seeds must not be empty")


def cells(cfg: DynamicsConfig) -> list[Cell]:
    ks = list(dict.fromkeys(cfg.narrowness))
    forces = MeasureSpec("forces", {"window_examples": cfg.window_examples, "n_eval_prompts": cfg.world.n_eval_prompts,
                                    "batch_size": cfg.measure_batch_size})
    out = []
    for world in cfg.worlds:
        for seed in cfg.seeds:
            # (a) the pure softmax model: no network, no training (computed by softmax_rows).
            out.append(Cell(experiment="dynamics", name=f"{world} softmax s{seed}", source=world_spec(world), base=BaseSpec(),
                            seed=seed, runner="springback.experiments.dynamics:softmax_rows",
                            params={"world": world, "ks": ks, "prior": cfg.world.prior, "lr": cfg.softmax_lr,
                                    "steps": cfg.softmax_steps, "gain": cfg.align_gain}))
            # (b, c) tiny networks: align (in stream order, to a fixed gain), then opposing, forces every window.
            for k in ks:
                stages = (
                    Stage("align", DataSpec("aligned", cfg.n_align, seed, narrowness=k, shuffle=False), cfg.align, seed,
                          measure_at=tuple(measurement_grid(cfg.n_align, cfg.window_examples)),
                          stop=StopRule("gain", "score_S", value=cfg.align_gain)),
                    Stage("opposing", DataSpec("opposing", cfg.n_opposing, seed, shuffle=False), cfg.opposing, seed + 1,
                          measure_at=tuple(measurement_grid(cfg.n_opposing, cfg.window_examples))))
                out.append(Cell(
                    experiment="dynamics", name=f"{world} k={k} s{seed}", source=world_spec(world), seed=seed,
                    base=pretrain_spec(world, cfg.world, cfg.model, cfg.pretrain, seed), stages=stages, measure=forces,
                    labels=labels(kind="network", world=world, model=model_label(cfg.model), seed=seed, narrowness=k,
                                  n_templates=n_templates(world, k)),
                    model_options=model_options(cfg.model), options=run_options(cfg.model)))
    return out


def softmax_rows(cell: Cell, ctx: Any) -> list[dict]:
    """Part (a): the softmax model over the world's completion sets, from the world's prior."""
    p = cell.params
    a_set, n_set = get_world(p["world"]).reference_sets()
    # Base level of S in the softmax model: the world's pre-training prior log(p/(1 − p)).
    prior = min(max(p["prior"], 1e-3), 1 - 1e-3)
    rows = []
    for k in p["ks"]:
        for r in softmax_trace(len(a_set), len(n_set), k, cell.seed, p["lr"], p["steps"], math.log(prior / (1 - prior)),
                               p["gain"]):
            rows.append({"kind": "softmax", "world": p["world"], "seed": cell.seed, "narrowness": k,
                         "n_templates": n_templates(p["world"], k), **r})
    return rows


# ----------------------------------------------------------------------------- analysis


def _num(x: float) -> str:
    """A number for claim text (3 significant digits, '—' when undefined)."""
    return f"{x:.3g}" if x is not None and math.isfinite(x) else "—"


# Equivalence bands δ (docs/science.md, "Equivalence bands δ"; fixed before the runs).
DELTA_R = 0.1  # Pearson r: below it a predictor explains under 1% of the variance
IDENTITY_BAND = (0.99, 1.0)  # the softmax identity must explain ≥ 98% of the variance of ΔS
DELTA_GAIN = 0.05  # variance of ΔS explained beyond F_drive alone (r·|r| − r_d·|r_d|)
DELTA_SHARE = 0.1  # pull share: 60% of checkpoints instead of a coin's 50%
DELTA_N_HALF = 2.0  # opposing examples per doubling of the number of aligned templates


def claims(df: pd.DataFrame, cfg: DynamicsConfig) -> list[Claim]:
    """Four claims; one replicate per (world, seed), each world also reported as a group."""
    claims: list[Claim] = []

    # (a) the identity in the pure softmax model: r > 0 against no relation, then r above 0.99.
    sm = df[df.kind == "softmax"] if "kind" in df else df.iloc[0:0]
    r_sm, err_sm = softmax_identity(sm)
    c_id = claim_by_group(
        "dynamics.softmax_identity",
        f"In a pure softmax model over the worlds' completion sets (one logit per completion), the exact "
        f"ΔS of each step η(q − π) (η = {cfg.softmax_lr}) matches η(F_drive + F_rebound): effect = Pearson r "
        f"over all steps of the align and opposing phases per (world, seed); reproduced when r > 0 and the "
        f"interval lies above {IDENTITY_BAND[0]}",
        "Our formulation of P2's force decomposition (SPEC §5; only P2's abstract is public)",
        per_group(r_sm), unit="Pearson r", delta=DELTA_R, correlation=True,
        median_relative_error=per_group(err_sm),
    )
    claims.append(with_target(c_id, IDENTITY_BAND))

    # (b) predicted direction / time course vs measured ΔS in tiny networks, per run over both phases.
    net = df[df.kind == "network"].copy() if "kind" in df else df.iloc[0:0]
    ct = window_correlations(net)
    cells = ct.to_dict("records")

    def rep(column: str) -> dict[tuple[str, int], float]:
        return per_replicate(ct, column)

    r_total, r_drive = rep("r_total"), rep("r_drive_only")
    gain = {key: signed_r2(r_total[key]) - signed_r2(r_drive.get(key, float("nan"))) for key in r_total}
    c_gain = claim_by_group("dynamics.forces_predict_delta_s[gain]", "", "", per_group(gain),
                            "share of variance of ΔS", delta=DELTA_GAIN)
    within = {p: rep(f"r_total_{p}") for p in ("align", "opposing")}
    c_fp = claim_by_group(
        "dynamics.forces_predict_delta_s",
        f"In tiny world models, the force F_drive + F_rebound measured at the start of each {cfg.window_examples}-example "
        "window predicts the measured ΔS over that window: effect = Pearson r over the windows of both phases "
        "(align, then opposing) of each run, Fisher-averaged over the narrowness runs of a (world, seed). Because the "
        "phase alone fixes the sign of F_drive, the full force must also explain more of ΔS's variance than F_drive "
        "alone (part 2: r·|r| − r_d·|r_d|); both parts must hold. A test of direction and time course, not magnitude: "
        "the network's effective step η_eff is fitted, not predicted",
        "ΔS ≈ η(F_drive + F_rebound) for a softmax step (our formulation of P2, SPEC §5)",
        per_group(r_total), unit="Pearson r", delta=DELTA_R, correlation=True,
        r_within_align=per_group(within["align"]), r_within_opposing=per_group(within["opposing"]),
        cells=cells,
    )
    c_fp = with_parts(c_fp, {"gain_over_drive": c_gain})
    c_fp.statement += (f". Measured: variance explained beyond F_drive {_num(c_gain.effect)} [{_num(c_gain.ci_low)}, "
                       f"{_num(c_gain.ci_high)}], {c_gain.verdict}; within the align phase r = "
                       f"{_num(fisher_mean(list(within['align'].values())))}, within the opposing phase r = "
                       f"{_num(fisher_mean(list(within['opposing'].values())))} (Fisher means)")
    claims.append(c_fp)

    # Rebound pulls toward S = 0 during opposing fine-tuning: direction and consequence.
    pull, n_points = pull_shares(net)
    c_pull = claim_by_group("dynamics.rebound_pulls_to_zero[pull_share]", "", "", per_group(pull),
                            "share of opposing checkpoints", null=0.5, delta=DELTA_SHARE, resolution=1.0 / max(n_points, 1))
    c_r = claim_by_group(
        "dynamics.rebound_pulls_to_zero",
        "During opposing fine-tuning the measured ΔS per window moves with F_rebound (effect: Pearson r between "
        "F_rebound and measured ΔS within opposing runs, Fisher-averaged per (world, seed)) and F_rebound points "
        "toward S = 0 at most checkpoints (part 2: share with sign(F_rebound) = −sign(S), null 0.5); both must hold",
        "F_rebound = −C·tanh(S/2) for equal narrowness: a pull toward S = 0 (our formulation of P2, SPEC §5)",
        per_group(rep("r_rebound_opposing")), unit="Pearson r", delta=DELTA_R, correlation=True,
    )
    c_r = with_parts(c_r, {"pull_share": c_pull})
    c_r.statement += (f". Measured pull share: {_num(c_pull.effect)} [{_num(c_pull.ci_low)}, {_num(c_pull.ci_high)}], "
                      f"{c_pull.verdict}")
    claims.append(c_r)

    # (c) narrowness: examples to lose half the gain against log2(number of aligned templates).
    tab = half_gain_table(net) if len(net) else pd.DataFrame()
    slopes, speed_vs_ca = narrowness_slopes(tab)
    sm_half = softmax_half_gain(sm)
    claims.append(claim_by_group(
        "dynamics.narrow_rebounds_faster",
        "Alignment data with fewer distinct aligned templates (narrower, larger measured C_A) is undone by fewer "
        "opposing examples (effect: slope of the opposing examples needed to lose half the alignment gain against "
        "log2 of the number of aligned templates, per (world, seed); > 0 = narrow rebounds faster)",
        "Narrower aligned posteriors (e.g. one refusal template vs many) rebound harder (P2 abstract; SPEC §5 (b))",
        per_group(slopes), unit="opposing examples per doubling of templates", delta=DELTA_N_HALF,
        r_speed_vs_collision_A=per_group(speed_vs_ca), cells=tab.to_dict("records") if len(tab) else [],
        softmax_model_n_half=sm_half,
    ))
    return claims


# ----------------------------------------------------------------------------- figures


def figures(df: pd.DataFrame, cfg: DynamicsConfig) -> list:
    from ..report.forces import dynamics_forces_figure, rebound_speed_figure

    net = df[df.kind == "network"]
    out = [(f"dynamics_{world}_forces", dynamics_forces_figure(net[net.world == world], world, cfg.window_examples))
           for world in sorted(net.world.unique())]
    tab = half_gain_table(net) if len(net) else pd.DataFrame()
    if len(tab):
        out.append(("dynamics_rebound_speed_vs_collision", rebound_speed_figure(tab)))
    return out


EXPERIMENT = Experiment(
    name="dynamics",
    description="driving vs rebound force on S = log(π⁺/π⁻), exact in a softmax model, measured in tiny networks; narrowness (SPEC §5, our formulation of P2)",
    config_cls=DynamicsConfig,
    presets=PRESETS,
    cells=cells,
    claims=claims,
    figures=figures,
    check=check,
)
