"""Rebound with the alignment stage done by preference optimisation and RL (P1 App. B.2, Fig. 7).

P1 repeats its rebound on Llama2-7B / IMDb with the alignment step done by PPO (RLHF), DPO, KTO
and SimPO, and shows heatmaps over n⁺ × n⁻ with the same ordering as SFT [SPEC §6]. Here the
rebound protocol (:func:`.rebound.curve_cells`: align a copy of the base on n⁺ examples, then
fine-tune it on opposing examples by SFT, measured after every n⁻) runs once per method in
``methods``: the alignment stage trains by that method (``align.algorithm`` with its name set),
on that method's items — an "example" is one preference pair for DPO / IPO / SimPO, one
labelled example for KTO, one prompt with its k samples for RLOO (docs/algorithms.md). RLOO
stands in for PPO (see :mod:`springback.losses` for why). Every method of a seed starts from the
same base and meets the same opposing stream, so methods are compared paired by seed.

Claims, per method m:

* ``algorithms.m.fast_then_slow`` and ``algorithms.m.more_alignment_falls_faster`` — rebound's
  own claims (:func:`.rebound.claims`, the same code and statistics) on m's rows;
* ``algorithms.m.less_elastic_than_sft`` (m ≠ sft, when sft runs) — is m measurably less elastic
  than SFT? Per (world, seed): 1 − (m's initial fall rate) / (SFT's), the initial fall rate being
  the mean fall of S per 100 opposing examples before the curve reaches the base level
  (:data:`springback.analysis.curves.MEASURES`), averaged over the n⁺ where both curves define it.
  > 0: m falls more slowly than SFT; an interval inside ±δ: as elastic as SFT.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from ..analysis import Claim, claim_by_group
from ..analysis.curves import curve_table
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig
from ..data import DataConfig
from ..errors import ConfigError
from ..pipeline import DEFAULT_PRETRAIN, Cell, MeasureSpec, pretrain_spec, source_name, uses_data
from .base import Experiment, checkpoint_measure, model_label, sources
from ..analysis.verdicts import renamed
from ..report.figures import METRIC_LABELS
from .rebound import ReboundConfig, curve_cells
from .rebound import claims as rebound_claims

METHODS = ["sft", "dpo", "ipo", "kto", "simpo", "rloo"]  # springback.losses.ALGORITHMS, the paper's SFT first

# Equivalence band of `less_elastic_than_sft`, in its unit (share of SFT's initial fall rate), fixed
# before any run (docs/algorithms.md): the same share rebound.fast_then_slow calls negligible.
DELTA_VS_SFT = 0.2


@dataclasses.dataclass
class AlgorithmsConfig:
    methods: list[str] = dataclasses.field(default_factory=lambda: list(METHODS))
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment"])  # P1 Fig. 7 is IMDb only
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    # Rebound's grid (P1 §5.2's n⁺ ∈ {1k, 2k, 5k, 10k}, n⁻ up to 2k, scaled to tiny worlds) [SPEC §3.2].
    n_pos: list[int] = dataclasses.field(default_factory=lambda: [500, 1000, 2000, 4000])
    n_neg: list[int] = dataclasses.field(default_factory=lambda: [0, 25, 50, 100, 200, 400, 800, 1600])
    world: WorldConfig = dataclasses.field(default_factory=WorldConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    # The alignment stage of every method: lr, batch, … and the methods' hyper-parameters
    # (align.algorithm.beta, …; its name is set per method, leave it unset).
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    lr: dict[str, float] = dataclasses.field(default_factory=dict)  # per-method alignment lr, e.g. {dpo: 1e-4}
    opposing: TrainConfig = dataclasses.field(default_factory=TrainConfig)  # SFT, as P1's appendix
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig)
    early_examples: int = 100  # rebound's window for "falls faster over the first opposing examples"
    kl_epsilon: float = 0.1  # rebound's (its kl_return claim is not repeated here)
    kl_metric: str = "kl_ref_to_base"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # real data (needs model.path)


PRESETS = {
    # quick: sentiment only, two n⁺ up to 1000 (DPO-aligned curves must still reach the base level
    # within the n⁻ grid), the exact S and KL only (no sampling) and 4 evaluation prompts; five seeds,
    # because the tiny bases differ much in how far one seed's alignment goes. All six methods fit
    # in 6 minutes on 2 CPU cores (measured: docs/algorithms.md); seeds 0-2 reuse rebound's bases.
    "quick": {"seeds": [0, 1, 2, 3, 4], "n_pos": [250, 1000], "n_neg": [0, 25, 50, 100, 200, 400, 800, 1600],
              "world": {"n_eval_prompts": 4}, "measure": {"n_samples": 0}},
    # full: quick's design with the 8 seeds every full claim gets (docs/science.md "Seeds and time");
    # a finer or larger grid would not fit reproduce --preset full in 45 minutes on 2 cores.
    "full": {"seeds": list(range(8)), "n_pos": [250, 1000], "n_neg": [0, 25, 50, 100, 200, 400, 800, 1600],
             "world": {"n_eval_prompts": 4}, "measure": {"n_samples": 0}},
}


def check(cfg: AlgorithmsConfig) -> None:
    from ..losses import ALGORITHMS

    if not cfg.methods or not cfg.seeds or not cfg.n_pos:
        raise ConfigError("methods, seeds and n_pos must not be empty")
    bad = [m for m in cfg.methods if m not in ALGORITHMS]
    if bad:
        raise ConfigError(f"methods: unknown algorithm '{bad[0]}' (choose from: {', '.join(ALGORITHMS)})")
    if len(set(cfg.methods)) < len(cfg.methods):
        raise ConfigError("methods: each method once")
    extra = sorted(set(cfg.lr) - set(cfg.methods))
    if extra:
        raise ConfigError(f"lr: '{extra[0]}' is not in methods ({', '.join(cfg.methods)})")
    if cfg.align.algorithm.name != "sft":
        raise ConfigError("align.algorithm names no method here: list them in 'methods' (align.algorithm.* sets "
                          "their hyper-parameters)")
    if uses_data(cfg.data) and not cfg.model.path:
        raise ConfigError("data.aligned is set: also set model.path (a checkpoint to start from)")
    if cfg.kl_metric not in ("kl_ref_to_base", "kl_to_base"):
        raise ConfigError(f"kl_metric must be 'kl_ref_to_base' or 'kl_to_base', got '{cfg.kl_metric}'")


def align_config(cfg: AlgorithmsConfig, method: str) -> TrainConfig:
    """The alignment stage's training config for ``method``: ``align`` with the method's name and lr."""
    return dataclasses.replace(cfg.align, lr=cfg.lr.get(method, cfg.align.lr),
                               algorithm=dataclasses.replace(cfg.align.algorithm, name=method))


def cells(cfg: AlgorithmsConfig) -> list[Cell]:
    measure = MeasureSpec("checkpoint", checkpoint_measure(cfg.measure, cfg.world.n_eval_prompts, exact_kl=True))
    out = []
    for spec in sources(cfg.worlds, cfg.world, cfg.data, cfg.model):
        name = source_name(spec)
        for seed in cfg.seeds:
            base = pretrain_spec(name, cfg.world, cfg.model, cfg.pretrain, seed)
            row = {"world": name, "model": model_label(cfg.model)}
            # One base row per (source, seed), shared by every method's curves (no algorithm label).
            out += curve_cells("algorithms", spec, base, row, [], cfg.n_neg, cfg.align, cfg.opposing, measure, seed,
                               cfg.model, name)
            for m in cfg.methods:
                out += curve_cells("algorithms", spec, base, {**row, "algorithm": m}, cfg.n_pos, cfg.n_neg,
                                   align_config(cfg, m), cfg.opposing, measure, seed, cfg.model, f"{name} {m}",
                                   with_base=False)
    return out


# ----------------------------------------------------------------------------- claims


def method_rows(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """``method``'s curves with the base rows they return to."""
    algo = df["algorithm"] if "algorithm" in df.columns else pd.Series(index=df.index, dtype=object)
    return df[(algo == method) | (df.stage == "base")]


def _rebound_cfg(cfg: AlgorithmsConfig) -> ReboundConfig:
    return ReboundConfig(early_examples=cfg.early_examples, kl_epsilon=cfg.kl_epsilon, kl_metric=cfg.kl_metric)


def _initial_rates(df: pd.DataFrame, metric: str = "score_S") -> pd.DataFrame:
    """Per (world, seed, n⁺) curve of ``metric``: the initial fall rate (per 100 opposing
    examples), the examples to reach the base level and the aligned start level."""
    tab = curve_table(df, ["world", "seed", "n_aligned"], ["world", "seed"], metric, kl_metric=None)
    return tab[["world", "seed", "n_aligned", "initial_fall_per_100", "n_base", "score_aligned", "score_base"]]


def _paired(df: pd.DataFrame, method: str, metric: str, column: str, value) -> tuple[dict, list, pd.DataFrame]:
    """Per (world, seed): ``value(mean over n⁺ of column for method, same for sft)``, over the n⁺
    where both curves define ``column``. Returns ({world: [per-seed values]}, per-seed cells, curves)."""
    keys = ["world", "seed", "n_aligned"]
    both = _initial_rates(method_rows(df, method), metric).merge(_initial_rates(method_rows(df, "sft"), metric),
                                                                 on=keys, suffixes=("_m", "_sft"))
    per_group: dict[str, list[float]] = {}
    cells_out = []
    for (world, seed), g in both.groupby(["world", "seed"]):
        ok = g[np.isfinite(g[f"{column}_m"]) & np.isfinite(g[f"{column}_sft"])]
        a, b = float(ok[f"{column}_m"].mean()), float(ok[f"{column}_sft"].mean())
        v = value(a, b) if len(ok) else float("nan")
        per_group.setdefault(str(world), []).append(v)
        cells_out.append({"world": str(world), "seed": int(seed), "n_curves_both_defined": int(len(ok)),
                          column: a, f"{column}_sft": b, "value": v})
    return per_group, cells_out, both


def _brief(c: Claim) -> dict:
    return {"effect": c.effect, "ci": [c.ci_low, c.ci_high], "verdict": c.verdict, "n_replicates": c.n_seeds}


def less_elastic_claim(df: pd.DataFrame, method: str) -> Claim:
    """``algorithms.<method>.less_elastic_than_sft`` (module docstring), paired by (world, seed).

    The fall rate grows with how far a curve starts above its base (P1's "the more deeply aligned,
    the faster it falls"), and methods align to different depths at equal n⁺ (DPO's S runs far
    beyond SFT's), so the details repeat the comparison in π⁺ (bounded, like P1's score share) and
    in the examples to return to the base level — the confound reported, not hidden (SPEC §7)."""
    one_minus_ratio = lambda a, b: 1.0 - a / b if b > 0 else float("nan")  # noqa: E731
    per_group, cells_out, both = _paired(df, method, "score_S", "initial_fall_per_100", one_minus_ratio)
    extra = {}
    if "pi_pos" in df.columns and df.pi_pos.notna().any():
        g_pi, c_pi, _ = _paired(df, method, "pi_pos", "initial_fall_per_100", one_minus_ratio)
        extra["in_pi_pos"] = {**_brief(claim_by_group("pi", "", "", g_pi, delta=DELTA_VS_SFT)), "per_seed_cells": c_pi}
    # n_base ratio − 1: > 0 = the method's curves take longer to return to the base level than SFT's.
    g_nb, c_nb, _ = _paired(df, method, "score_S", "n_base", lambda a, b: a / b - 1.0 if b > 0 else float("nan"))
    extra["n_base_ratio_minus_1"] = {**_brief(claim_by_group("nb", "", "", g_nb, delta=DELTA_VS_SFT)),
                                     "per_seed_cells": c_nb}
    curves = both[["world", "seed", "n_aligned", "initial_fall_per_100_m", "initial_fall_per_100_sft",
                   "n_base_m", "n_base_sft", "score_aligned_m", "score_aligned_sft"]]
    return claim_by_group(
        f"algorithms.{method}.less_elastic_than_sft",
        f"A model aligned by {method} falls back more slowly than one aligned by SFT on the same data amount: "
        f"effect 1 − (initial fall rate of S under {method}) / (that under SFT), per (world, seed), the rates "
        "averaged over the n⁺ where both curves reach the base level (initial rate: mean fall per 100 opposing "
        "examples before the base level). > 0 = less elastic than SFT; inside ±δ = as elastic. The same in π⁺ "
        "and the ratio of examples to return to the base level are in the details (alignment depth differs "
        "between methods)",
        "P1 shows elasticity under every method with the same ordering as SFT [P1 App. B.2, Fig. 7; SPEC §6]; "
        "it does not compare the rates across methods",
        per_group, "share of SFT's initial fall rate", delta=DELTA_VS_SFT, per_seed_cells=cells_out,
        curves=curves.to_dict("records"), **extra,
    )


def claims(df: pd.DataFrame, cfg: AlgorithmsConfig) -> list[Claim]:
    rcfg = _rebound_cfg(cfg)
    keep = ("fast_then_slow", "more_alignment_falls_faster")
    out: list[Claim] = []
    present = set(df["algorithm"].dropna()) if "algorithm" in df.columns else set()
    for m in cfg.methods:
        if m not in present:
            continue
        paper = (f"Rebound with the alignment step done by {m.upper()}: the same ordering as SFT "
                 "[P1 App. B.2, Fig. 7; SPEC §6]" if m != "sft" else "")
        mine = [c for c in rebound_claims(method_rows(df, m), rcfg) if c.id.split(".", 1)[1] in keep]
        out += renamed(mine, f"algorithms.{m}", f"[alignment by {m}] ", paper)
    if "sft" in present:
        out += [less_elastic_claim(df, m) for m in cfg.methods if m != "sft" and m in present]
    return out


# ----------------------------------------------------------------------------- figures


def figures(df: pd.DataFrame, cfg: AlgorithmsConfig) -> list:
    from ..report.figures import curve_figure
    from ..report.heatmaps import rebound_grid_heatmap

    out = []
    present = [m for m in cfg.methods if "algorithm" in df.columns and (df.algorithm == m).any()]
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        for metric in ("pi_pos", "score_S"):
            if metric in sub.columns and sub[metric].notna().any():
                out.append((f"algorithms_{world}_{metric}_heatmap", rebound_grid_heatmap(
                    sub, metric, "algorithm", panels=present, label=METRIC_LABELS[metric],
                    title=f"algorithms · {world}: {metric} after n⁺ aligned (by each method), then n⁻ opposing (SFT)")))
        for m in present:
            rows = method_rows(sub, m)
            out.append((f"algorithms_{world}_{m}_score_S", curve_figure(
                rows, x="n_opposing", y="score_S", hue="n_aligned", title=f"algorithms · {world} · aligned by {m}",
                xlabel="opposing examples n⁻ (SFT)", ylabel=METRIC_LABELS["score_S"], hue_label="n⁺")))
    return out


def summary(df: pd.DataFrame, cfg: AlgorithmsConfig) -> dict:
    """``result.json`` extras: each method's mean S right after alignment (n⁻ = 0) and at the end of
    the n⁻ grid, and the base models' mean S (the per-cell wall times are in ``timings``)."""
    out = {}
    for m in cfg.methods:
        rows = method_rows(df, m)
        opp = rows[rows.stage == "opposing"]
        if opp.empty:
            continue
        start = opp[opp.n_opposing == 0].score_S.mean()
        end = opp[opp.n_opposing == opp.n_opposing.max()].score_S.mean()
        out[m] = {"score_S_aligned": float(start), "score_S_final": float(end)}
    base = df[df.stage == "base"].score_S.mean() if "score_S" in df.columns else math.nan
    return {"methods": out, "score_S_base": float(base)}


EXPERIMENT = Experiment(
    name="algorithms",
    description="rebound with the alignment stage done by SFT, DPO, IPO, KTO, SimPO or RLOO (P1 App. B.2, Fig. 7)",
    config_cls=AlgorithmsConfig,
    presets=PRESETS,
    cells=cells,
    claims=claims,
    figures=figures,
    check=check,
    summary=summary,
)

__all__ = ["EXPERIMENT", "AlgorithmsConfig", "METHODS", "align_config", "less_elastic_claim", "method_rows"]
