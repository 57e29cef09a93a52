"""Compression: the elasticity theorem measured on trained models [P1 §4; SPEC §4].

P1's theorem is about compression rates: as opposing data D_t is added (l = |D_t|/|D_a| grows),
the model's rate on the alignment set D_a should degrade about k = |D_p|/|D_a| times faster
than its rate on the pre-training corpus D_p improves. No published tool measures this on a
model; here it is measured directly.

Protocol per (world, seed): pre-train a base on the world's corpus D_p (cached and shared with
``rebound``: same world, size and pre-training config). For each alignment-set size n_a
(k = |D_p| / n_a, so k varies against a fixed pre-training corpus), align a copy of the base on
n_a aligned examples, then fine-tune it on opposing examples, and at n_t = l·n_a opposing
examples for each l in the grid measure the compression rate γ = bits / (8 · bytes)
(:mod:`springback.measure.compression`) on fixed held-out samples of D_p, D_a and D_t.
dγ/dl is the least-squares slope of γ against the realised l = n_t / n_a.

γ counts response tokens (and EOS) given the prompt — what fine-tuning learns; plain
pre-training sentences are all response. The D_p sample is also split into its task part and
its general sentences (``gamma_p_task``, ``gamma_p_general``): fine-tuning on D_t can only
help D_p through the task part (D_t resembles it), while response-only fine-tuning makes the
model forget general text, which pushes γ_p the other way.

Note the difference from the theorem's setting: the theorem's model is the size-weighted
mixture of joint training, while here D_t arrives by sequential fine-tuning (as in P1's
experiments and in practice), with no term that weighs it against |D_p|. Whether the trained
models follow the theorem is the question; the claims report what they do.

Claims
------
* ``compression.opposite_signs`` — dγ_a/dl > 0 and dγ_p/dl < 0. Per seed, the weaker of the
  two mean effects over k, in γ per 1000 opposing examples; > 0 iff both signs are right.
* ``compression.ratio_grows_with_k`` — slope of log10(−(dγ_a/dl)/(dγ_p/dl)) against log10 k,
  > 0 if the ratio grows with k (the theorem predicts a slope of 1; the details say whether
  the interval is within ±0.25 of it).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from ..analysis import Claim, claim_by_group, slope
from ..analysis.derivatives import derivative_table, share_opposite_signs, with_l
from ..analysis.verdicts import band_verdict, per_group
from ..config import ModelConfig, TrainConfig, WorldConfig
from ..errors import ConfigError
from ..pipeline import DEFAULT_PRETRAIN, Cell, DataSpec, MeasureSpec, Stage, labels, pretrain_spec, world_spec
from .base import Experiment, model_options, model_label, run_options

HELDOUT_SEED_OFFSET = 7919  # held-out samples are fresh draws, seeded apart from every training set


@dataclasses.dataclass
class CompressionConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    # k = |D_p| / n_a with |D_p| = 28000 pre-training examples by default: k = 10, 100, 1000.
    n_align: list[int] = dataclasses.field(default_factory=lambda: [2800, 280, 28])
    l_values: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.125, 0.25, 0.375, 0.5])  # SPEC §2: l ∈ (0, 0.5]
    n_heldout: int = 256  # held-out examples in each measured sample of D_p, D_a, D_t
    # Which tokens γ counts: "response" (and EOS) given the prompt — what fine-tuning learns and
    # what the theorem's token trees describe — or "all" (prompts too, which response-only
    # fine-tuning never trains, so their drift would blur every rate).
    score_part: str = "response"
    world: WorldConfig = dataclasses.field(default_factory=WorldConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    # Fine-tuning lr 1e-4 = 1/20 of the pre-training lr (2e-3), close to P1's ratio: SFT at 1e-5
    # [SPEC §3.2] on Llama-2 models pre-trained at a peak lr of 3e-4 (Touvron et al. 2023, Table 1),
    # i.e. 1/30. At the rebound default 3e-4 (1/7) response-only fine-tuning makes the tiny models
    # forget general text so fast that it swamps γ_p (rows gamma_p_general show it).
    align: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(lr=1e-4))
    opposing: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(lr=1e-4))
    measure_batch_size: int = 256
    slope_band: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.25])  # "≈ 1" for the details


PRESETS = {
    "quick": {},
    # full: both worlds × 10 seeds (20 replicates; quick, one world, needed 8 seeds); five k from 10 to 1000.
    "full": {"worlds": ["sentiment", "safety"], "seeds": list(range(10)), "n_align": [2800, 1120, 280, 112, 28],
             "l_values": [0.0, 0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375, 0.5]},
}


def n_pretrain(cfg: CompressionConfig) -> int:
    return cfg.world.n_task_examples + cfg.world.n_general_examples


def opposing_points(n_a: int, l_values: list[float]) -> list[int]:
    """Opposing-example counts n_t = round(l · n_a), distinct and sorted (0 included)."""
    return sorted({int(math.floor(l * n_a + 0.5)) for l in l_values} | {0})


def check(cfg: CompressionConfig) -> None:
    if cfg.model.path:
        # k = |D_p| / |D_a| needs the model's pre-training corpus D_p: the world's, for a preset trained on it.
        raise ConfigError("compression measures a model pre-trained on a world's corpus D_p: model.path is not used "
                          "(for a checkpoint's compression rate on text, use `springback compress`)")
    if cfg.score_part not in ("response", "all"):
        raise ConfigError(f"score_part must be 'response' or 'all', got '{cfg.score_part}'")
    if any(n < 1 for n in cfg.n_align) or any(not 0 <= l for l in cfg.l_values):
        raise ConfigError("n_align must be >= 1 and l_values >= 0")


def cells(cfg: CompressionConfig) -> list[Cell]:
    out = []
    for world in cfg.worlds:
        spec = world_spec(world, cfg.world.narrowness)
        for seed in cfg.seeds:
            # γ on fixed held-out samples of D_p (the pre-training mix), D_a and D_t, drawn with a seed
            # apart from every training set (see springback.pipeline.measurers.heldout_sets).
            rates = {"n_heldout": cfg.n_heldout, "score_part": cfg.score_part, "batch_size": cfg.measure_batch_size,
                     "heldout_seed": seed + HELDOUT_SEED_OFFSET, "prior": cfg.world.prior,
                     "n_task_examples": cfg.world.n_task_examples, "n_general_examples": cfg.world.n_general_examples}
            common = dict(experiment="compression", source=spec, measure=MeasureSpec("rates", rates),
                          base=pretrain_spec(world, cfg.world, cfg.model, cfg.pretrain, seed), seed=seed,
                          model_options=model_options(cfg.model), options=run_options(cfg.model))
            row = {"world": world, "model": model_label(cfg.model), "seed": seed, "n_pretrain": n_pretrain(cfg)}
            out.append(Cell(name=f"{world} base s{seed}", labels=labels(**row, n_aligned=0), measure_base=True,
                            **common))
            for n_a in cfg.n_align:
                points = tuple(opposing_points(n_a, cfg.l_values))
                stages = (Stage("align", DataSpec("aligned", n_a, seed), cfg.align, seed),
                          Stage("opposing", DataSpec("opposing", max(points), seed), cfg.opposing, seed + 1,
                                measure_at=points))
                out.append(Cell(name=f"{world} n_a={n_a} s{seed}", stages=stages,
                                labels=labels(**row, n_aligned=n_a, k=n_pretrain(cfg) / n_a), **common))
    return out


# ----------------------------------------------------------------------------- analysis


# Equivalence bands δ (docs/science.md, "Equivalence bands δ"; fixed before the runs).
DELTA_GAMMA_PER_1000 = 1e-4  # γ per 1000 opposing examples: 0.0008 bits/byte, ~0.1% of the worlds' rates
DELTA_SLOPE = 0.1  # log-log slope of the ratio against k (as theory.ratio_linear_in_k)


def _short(c: Claim) -> dict:
    return {"effect": c.effect, "ci": [c.ci_low, c.ci_high], "verdict": c.verdict, "n_seeds": c.n_seeds,
            "groups": {w: {"effect": g["effect"], "verdict": g["verdict"]} for w, g in c.groups.items()}}


def replicate_signs(tab: pd.DataFrame) -> tuple[dict, dict, dict]:
    """Per (world, seed): mean dγ_a/dn_t, mean −dγ_p/dn_t (per 1000 opposing examples, over k) and the weaker."""
    a, p, weaker = {}, {}, {}
    for (world, seed), g in (tab.groupby(["world", "seed"]) if len(tab) else []):
        key = (str(world), int(seed))
        a[key] = float(g.dgamma_a_per_1000.mean())
        p[key] = float(-g.dgamma_p_per_1000.mean())
        weaker[key] = min(a[key], p[key])
    return a, p, weaker


def replicate_ratio_slopes(tab: pd.DataFrame) -> dict[tuple[str, int], float]:
    """Per (world, seed): log-log slope of the ratio against k over the cells where it is positive (NaN if < 2)."""
    out = {}
    for (world, seed), g in (tab.groupby(["world", "seed"]) if len(tab) else []):
        ok = g[np.isfinite(g.ratio) & (g.ratio > 0)]
        out[(str(world), int(seed))] = slope(np.log10(ok.k), np.log10(ok.ratio))
    return out


def claims(df: pd.DataFrame, cfg: CompressionConfig) -> list[Claim]:
    """Two claims; one replicate per (world, seed), each world also reported as a group."""
    tab = derivative_table(df)
    a_eff, p_eff, weaker = replicate_signs(tab)
    # Decomposition (not the claim): γ_p on the task part of D_p only, i.e. without the
    # forgetting of general text that sequential fine-tuning adds and joint training has not.
    has_task = "gamma_p_task" in df.columns and df.gamma_p_task.notna().any()
    tab_task = derivative_table(df, "gamma_p_task") if has_task else tab.iloc[0:0]
    _, _, weaker_task = replicate_signs(tab_task)
    opposite = share_opposite_signs

    def part(values: dict) -> Claim:
        return claim_by_group("part", "", "", per_group(values), "γ per 1000 opposing examples", delta=DELTA_GAMMA_PER_1000)

    c1 = claim_by_group(
        "compression.opposite_signs",
        "While a world model is fine-tuned on opposing data, its compression rate γ on held-out D_a rises and on "
        "held-out D_p falls (effect: per (world, seed), the weaker of mean dγ_a/dn_t and mean −dγ_p/dn_t over k, "
        "per 1000 opposing examples; > 0 iff both signs are right)",
        "dγ^{D_a/D}/dl > 0 and dγ^{D_p/D}/dl < 0 as the perturbation grows [P1 §4, elasticity theorem]",
        per_group(weaker), "γ per 1000 opposing examples", delta=DELTA_GAMMA_PER_1000,
        dgamma_a_per_1000=_short(part(a_eff)), minus_dgamma_p_per_1000=_short(part(p_eff)),
        share_cells_opposite_signs=opposite(tab),
        task_part_of_D_p=_short(part(weaker_task)) | {"share_cells_opposite_signs": opposite(tab_task)}
        if weaker_task else None,
        cells=tab.to_dict("records"),
    )
    per_rep = replicate_ratio_slopes(tab)
    c2 = claim_by_group(
        "compression.ratio_grows_with_k",
        "The ratio −(dγ_a/dl)/(dγ_p/dl) grows with k = |D_p|/|D_a| when k is varied through the alignment-set size "
        "(effect: per (world, seed), log-log slope of the ratio against k over the cells where it is positive; "
        "> 0 means it grows)",
        "dγ^{D_a/D}/dl = Θ(−k · dγ^{D_p/D}/dl): log-log slope 1 [P1 §4]; measured on trained models [ours, SPEC §4]",
        per_group(per_rep), "log-log slope", delta=DELTA_SLOPE, expected_slope=1.0,
        n_cells_positive_ratio=int((tab.ratio > 0).sum()) if len(tab) else 0, n_cells=int(len(tab)),
        ratio_by_k={f"{k:g}": float(v) for k, v in tab.groupby("k").ratio.median().items()} if len(tab) else {},
        hooke_ratio_by_k={f"{k:g}": float(v) for k, v in tab.groupby("k").hooke_ratio.median().items()} if len(tab) else {},
        task_part_of_D_p=_short(claim_by_group("task", "", "", per_group(replicate_ratio_slopes(tab_task)),
                                               delta=DELTA_SLOPE)) | {
            "ratio_by_k": {f"{k:g}": float(v) for k, v in tab_task.groupby("k").ratio.median().items()}}
        if len(tab_task) else None,
    )
    c2.details["linear_in_k_verdict"] = band_verdict(c2.ci_low, c2.ci_high, tuple(cfg.slope_band))
    return [c1, c2]


# ----------------------------------------------------------------------------- figures


def figures(df: pd.DataFrame, cfg: CompressionConfig) -> list:
    from ..report.compression import gamma_panels_figure, hooke_figure, ratio_vs_k_figure

    opp = with_l(df)
    if not len(opp):
        return []
    out = [(f"compression_{world}_gamma", gamma_panels_figure(opp[opp.world == world], world))
           for world in sorted(opp.world.unique())]
    tab = derivative_table(df)
    out.append(("compression_ratio_vs_k", ratio_vs_k_figure(tab)))
    if len(tab):
        agg = tab.groupby("k")[["delta_gamma_a", "delta_gamma_p", "n_aligned", "n_pretrain"]].mean().reset_index()
        pts = pd.concat([
            pd.DataFrame({"k": agg.k, "dataset": "D_a", "size": agg.n_aligned, "delta": agg.delta_gamma_a.abs()}),
            pd.DataFrame({"k": agg.k, "dataset": "D_p", "size": agg.n_pretrain, "delta": agg.delta_gamma_p.abs()}),
        ])
        out.append(("compression_hooke", hooke_figure(
            pts, f"compression · Hooke's law at l = {max(cfg.l_values):g} (trained models)", "|D_i| (examples)",
            "|Δγ| from l = 0 (mean over seeds)")))
    return out


EXPERIMENT = Experiment(
    name="compression",
    description="γ on D_p and D_a while fine-tuning on opposing data: opposite signs, ratio growing with k (P1 §4, measured)",
    config_cls=CompressionConfig,
    presets=PRESETS,
    cells=cells,
    claims=claims,
    figures=figures,
    check=check,
)
