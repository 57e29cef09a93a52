"""Internal factors: elasticity against model size and pre-training data (SPEC §3.3, P1 §5.3).

The rebound protocol (:mod:`.rebound`: align a base on n⁺ aligned examples, then fine-tune on
opposing examples, measuring after each n⁻ of a grid) repeated over two axes:

* **model size** — size presets (``nano`` / ``micro`` / ``mini`` span ~19× in parameters), or a
  list of real checkpoints (P1 used Qwen1.5-0.5B / 4B / 7B);
* **pre-training data** — intermediate checkpoints of ONE constant-lr pre-training run per
  size, taken after exactly b examples (or tokens) for each budget b (P1 used TinyLlama's
  2.0T / 2.5T / 3.0T checkpoints; its appendix adds 0.1T / 0.5T / 1.0T), or real checkpoints.

Every (size, budget) point has its own base level: the checkpoint's own pre-alignment score.
Per curve we measure elasticity five ways (see :data:`MEASURES`) and test, with intervals over
seeds, the trend of each against log parameters and log budget.

``grid: cross`` (the default) runs the paper's two axes — every size at the largest budget,
every budget at one size (``data_size``, default the largest) — and ``grid: full`` the whole
size × budget table. In ``cross`` only the data-axis size needs a checkpoint run; the others
use :func:`~.common.pretrained_base` directly, so with the default world their bases are the
very ones rebound (and others) train and cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from ..analysis import Claim, claim_by_group
from ..analysis.axes import (MEASURES, axis_references, budget_flattening, cell_table, learning_left, other_trends,
                             replicate_trends)
from ..analysis.trends import ratio_of_means, summary_by
from ..analysis.verdicts import per_group, with_parts
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig
from ..data import DataConfig
from ..errors import ConfigError
from ..models import PRESETS as SIZE_PRESETS
from ..models import preset_parameters
from ..pipeline import DEFAULT_PRETRAIN, Cell, MeasureSpec, build_source, pretrain_spec, source_name, uses_data
from ..pipeline.bases import corpus_size, examples_at_token_budgets, pretraining_token_counts
from .axes import CheckpointSpec, Point, checkpoint_points, p1_fraction_budgets, preset_points
from .base import Experiment, checkpoint_measure, sources
from .rebound import curve_cells

# The world's default pre-training corpus (WorldConfig: 20000 task + 8000 general examples).
_DEFAULT_CORPUS = WorldConfig().n_task_examples + WorldConfig().n_general_examples


@dataclasses.dataclass
class ScalingConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    sizes: list[str] = dataclasses.field(default_factory=lambda: ["nano", "micro", "mini"])
    # Pre-training budgets (in budget_unit); the largest is the whole corpus. All are multiples
    # of the pre-training batch (32), so the run repeats pretrained_base bit for bit and its last
    # checkpoint IS the cached base (common.shares_base). 128 examples = 4 updates: the model has
    # barely met the task, as P1's 0.1T TinyLlama checkpoint shows barely any elasticity (SPEC §3.3).
    budgets: list[float] = dataclasses.field(default_factory=lambda: [128, 1920, _DEFAULT_CORPUS])
    budget_unit: str = "examples"  # examples | tokens (tokens: the first example count reaching the budget)
    grid: str = "cross"  # cross: sizes at the largest budget + budgets at data_size (the paper's axes) | full
    data_size: str = ""  # size whose checkpoints form the data axis (default: the largest)
    checkpoints: list[CheckpointSpec] = dataclasses.field(default_factory=list)  # real models instead of presets
    n_pos: list[int] = dataclasses.field(default_factory=lambda: [500, 2000])
    n_neg: list[int] = dataclasses.field(default_factory=lambda: [0, 50, 100, 200, 400, 800])
    world: WorldConfig = dataclasses.field(default_factory=lambda: WorldConfig(n_eval_prompts=8))
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)  # preset ignored (sizes); dtype, LoRA used
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    opposing: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig)
    kl_epsilon: float = 0.1  # KL(model‖base) threshold in nats (rebound's; the paper used 0.01 on 7B models)
    # KL for n_neg_to_kl_eps, as rebound: kl_ref_to_base (exact, over the world's completions A ∪ N)
    # or kl_to_base (sequence KL estimated from samples; the only one on real data without A and N).
    kl_metric: str = "kl_ref_to_base"
    barely_fraction: float = 0.5  # "barely elastic": smallest budget's rebound below this share of the largest's
    # Real data instead of the worlds (data.aligned set; needs checkpoints): see springback.data.
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


# quick: a 40% corpus (8000 task + 3200 general examples), the data axis on micro and no
# sampling (every claim uses the exact S and the exact KL over A ∪ N) keep the run near 3.5
# minutes of one CPU core; its bases are therefore not rebound's quick bases. The defaults
# (and `full`) use the default world, whose micro bases ARE rebound's (same cache entry).
_QUICK_CORPUS = 11200
PRESETS = {
    "quick": {"world": {"n_task_examples": 8000, "n_general_examples": 3200},
              "budgets": p1_fraction_budgets(_QUICK_CORPUS), "data_size": "micro", "n_pos": [250, 1000],
              "measure": {"n_samples": 0}},
    # full: 8 seeds on the default world (its micro bases are rebound's), the paper's two axes
    # (cross grid) with the data axis at P1's checkpoint fractions of 28000 examples (docs/scaling.md).
    "full": {"seeds": list(range(8)), "n_pos": [500, 2000], "budgets": p1_fraction_budgets(_DEFAULT_CORPUS),
             "n_neg": [0, 50, 100, 200, 300, 400, 600, 800], "measure": {"n_samples": 0}},
}


# ----------------------------------------------------------------------------- the grid


def validate(cfg: ScalingConfig) -> None:
    """Bad input -> one clear ConfigError line."""
    if cfg.grid not in ("cross", "full"):
        raise ConfigError(f"grid must be 'cross' or 'full', got '{cfg.grid}'")
    if cfg.budget_unit not in ("examples", "tokens"):
        raise ConfigError(f"budget_unit must be 'examples' or 'tokens', got '{cfg.budget_unit}'")
    if cfg.kl_metric not in ("kl_ref_to_base", "kl_to_base"):
        raise ConfigError(f"kl_metric must be 'kl_ref_to_base' or 'kl_to_base', got '{cfg.kl_metric}'")
    if not cfg.seeds or not cfg.n_pos or not cfg.n_neg:
        raise ConfigError("seeds, n_pos and n_neg must be non-empty")
    if uses_data(cfg.data) and not cfg.checkpoints:
        raise ConfigError("data.aligned is set: also list real models under 'checkpoints' (tiny presets know only the worlds)")
    if cfg.checkpoints:
        for i, c in enumerate(cfg.checkpoints):
            if not c.path:
                raise ConfigError(f"checkpoints[{i}].path is empty")
        return
    if not cfg.sizes:
        raise ConfigError("sizes must list at least one size preset (or give checkpoints)")
    unknown = [s for s in cfg.sizes if s not in SIZE_PRESETS]
    if unknown:
        raise ConfigError(f"unknown size preset '{unknown[0]}' (choose from: {', '.join(SIZE_PRESETS)})")
    if cfg.model.path:
        raise ConfigError("scaling: model.path is not used; list real models under 'checkpoints' instead")
    if not cfg.budgets or any(b < 0 for b in cfg.budgets):
        raise ConfigError("budgets must be a non-empty list of numbers >= 0")
    if cfg.budget_unit == "examples" and any(not float(b).is_integer() for b in cfg.budgets):
        raise ConfigError("budgets in examples must be whole numbers")
    if cfg.data_size and cfg.data_size not in cfg.sizes:
        raise ConfigError(f"data_size '{cfg.data_size}' is not one of sizes {cfg.sizes} "
                          "(--set data_size=SIZE, or data_size= for the largest)")


# ----------------------------------------------------------------------------- cells


def cells(cfg: ScalingConfig) -> list[Cell]:
    out = []
    framing = dataclasses.replace(cfg.model, path=cfg.checkpoints[0].path) if cfg.checkpoints else cfg.model
    for spec in sources(cfg.worlds, cfg.world, cfg.data, framing):
        name = source_name(spec)
        vocab = len(build_source(spec).tokenizer()) if not cfg.checkpoints else 0
        points = checkpoint_points(cfg) if cfg.checkpoints else preset_points(cfg, vocab)
        for seed in cfg.seeds:
            # Budgets (in examples) each size's checkpoint run must snapshot.
            run_budgets: dict[str, list[float]] = {}
            for p in points:
                if p.preset:
                    run_budgets.setdefault(p.preset, []).append(p.budget_n)
            to_examples: dict[float, int] = {}
            if cfg.budget_unit == "tokens" and not cfg.checkpoints:
                counts = pretraining_token_counts(pretrain_spec(name, cfg.world, cfg.model, cfg.pretrain, seed))
                wanted = sorted(set(b for bs in run_budgets.values() for b in bs))
                to_examples = dict(zip(wanted, examples_at_token_budgets(counts, wanted)))
            for p in points:
                out += _point_cells(cfg, spec, name, seed, p, vocab,
                                    sorted(set(to_examples.get(b, int(b)) for b in run_budgets.get(p.preset, []))),
                                    to_examples)
    return out


def _point_cells(cfg: ScalingConfig, spec: dict, name: str, seed: int, p: Point, vocab: int, run_examples: list[int],
                 to_examples: dict[float, int]) -> list[Cell]:
    """The rebound cells of one (size, budget) point: its base (a snapshot of the size's
    pre-training run, or a real checkpoint) measured, then one curve per n⁺."""
    row = {"world": name, "model": p.size, "budget": p.budget, "budget_n": p.budget_n, "budget_unit": p.budget_unit}
    count = False
    if p.preset:
        mcfg = dataclasses.replace(cfg.model, preset=p.preset, path="", revision="")
        n_examples = to_examples.get(p.budget_n, int(p.budget_n))
        base = pretrain_spec(name, cfg.world, mcfg, cfg.pretrain, seed)
        if run_examples != [corpus_size(base)]:
            base = pretrain_spec(name, cfg.world, mcfg, cfg.pretrain, seed, snapshots=tuple(run_examples), at=n_examples)
        row.update(pretrain_examples=n_examples, n_params=float(preset_parameters(p.preset, vocab)))
    else:
        mcfg = dataclasses.replace(cfg.model, path=p.spec.path, revision=p.spec.revision)
        base = pretrain_spec(name, cfg.world, mcfg, cfg.pretrain, seed)
        if p.spec.n_params > 0:
            row["n_params"] = float(p.spec.n_params)
        else:
            count = True  # counted from the loaded model
    measure = MeasureSpec("checkpoint", checkpoint_measure(cfg.measure, cfg.world.n_eval_prompts, exact_kl=True,
                                                           count_params=count))
    return curve_cells("scaling", spec, base, row, cfg.n_pos, cfg.n_neg, cfg.align, cfg.opposing, measure, seed, mcfg,
                       f"{name} {p.size}@{p.budget}")


SUMMARY = list(MEASURES) + ["rebound_per100"]  # measures summarised per axis value in the claims' details


# Equivalence bands δ (docs/science.md, "Equivalence bands δ"; fixed before the runs).
DELTA_TREND = 0.1  # log-odds / 100 examples per decade: a quarter of P1's size effect in the same unit
DELTA_BARELY = 0.1  # ½·E(largest) − E(smallest), E = share of the initial fall rate lost at the base crossing
DELTA_FLATTENING = 0.2  # E(largest) > 0, rebound.fast_then_slow's δ


def _trend_claim(cid: str, statement: str, paper: str, table: pd.DataFrame, measure: str, x: str, sign: float,
                 unit: str, seeds: list[int] | None = None, **details: Any) -> Claim:
    """A claim whose replicate value is ``sign`` × the slope of ``measure`` against log10 ``x``, per (world, seed)
    (``seeds``: unused, kept for callers of the per-seed version)."""
    return claim_by_group(cid, statement, paper, per_group(replicate_trends(table, measure, x, sign)), unit,
                          delta=DELTA_TREND, **details)


def claims(df: pd.DataFrame, cfg: ScalingConfig) -> list[Claim]:
    """Five claims; one replicate per (world, seed), each world also reported as a group."""
    cells = cell_table(df, cfg.kl_epsilon, cfg.kl_metric)
    ref_budget, ref_size = axis_references(cells, cfg.data_size)
    size_cells = cells[cells.budget == ref_budget] if ref_budget is not None else cells.iloc[:0]
    data_cells = cells[(cells["model"] == ref_size) & cells.budget_n.notna()] if ref_size is not None else cells.iloc[:0]
    per_cell = cells.to_dict("records")

    size_paper = ("Qwen1.5-0.5B / 4B / 7B: score at 500 opposing examples ≈ 0.71–0.81 → 0.45–0.51 → 0.17–0.27; "
                  "larger models fall faster at first and slower after [P1 §5.3; SPEC §3.3]")
    data_paper = ("TinyLlama-1.1B at 2.0T / 2.5T / 3.0T tokens: score at 1000 opposing examples ≈ 0.77–0.83 → "
                  "0.41–0.63 → 0.11–0.18; more pre-training, faster first fall [P1 §5.3; SPEC §3.3]")
    size_details = {"reference_budget": ref_budget, "sizes": summary_by(size_cells, "model", SUMMARY, ("n_params", "budget_n")),
                    "other_measures": other_trends(size_cells, "n_params", MEASURES), "cells": per_cell}
    data_details = {"reference_size": ref_size, "budgets": summary_by(data_cells, "budget", SUMMARY, ("n_params", "budget_n")),
                    "other_measures": other_trends(data_cells, "budget_n", MEASURES),
                    "base_by_budget": learning_left(df, ref_size)}
    unit_p = "log-odds/100 ex per decade of parameters"
    unit_b = "log-odds/100 ex per decade of pre-training budget"

    c1 = _trend_claim(
        "scaling.size_faster_initial_fall",
        f"Initial fall rate of S (until the curve crosses its base's own level) rises with model size "
        f"(effect: slope against log10 parameters at budget {ref_budget}, per (world, seed))",
        size_paper, size_cells, "initial_fall_per_100", "n_params", +1.0, unit_p, **size_details)
    c2 = _trend_claim(
        "scaling.size_slower_late_fall",
        f"Late fall rate of S (after crossing the base level) falls with model size "
        f"(effect: minus the slope against log10 parameters at budget {ref_budget}, per (world, seed))",
        size_paper, size_cells, "late_fall_per_100", "n_params", -1.0, unit_p, reference_budget=ref_budget)
    c3 = _trend_claim(
        "scaling.data_faster_initial_fall",
        f"Initial fall rate of S rises with the pre-training budget (effect: slope against log10 budget, size "
        f"{ref_size}, per (world, seed))",
        data_paper, data_cells, "initial_fall_per_100", "budget_n", +1.0, unit_b, **data_details)
    c4 = _trend_claim(
        "scaling.data_slower_late_fall",
        f"Late fall rate of S falls with the pre-training budget (effect: minus the slope against log10 budget, "
        f"size {ref_size}, per (world, seed))",
        data_paper, data_cells, "late_fall_per_100", "budget_n", -1.0, unit_b, reference_size=ref_size)

    # 5. The smallest budget barely shows elasticity next to the largest. Elasticity E = the share of
    # the initial fall rate lost at the base crossing (rebound.fast_then_slow's effect, median over n⁺);
    # per (world, seed) the effect is f·E(largest) − E(smallest), f = barely_fraction [ours], and
    # E(largest) > 0 must hold too.
    flat, small, large, e_small, e_large = budget_flattening(df, ref_size)
    eff = {k: cfg.barely_fraction * e_large[k] - e_small[k] for k in e_small}
    budgets_n = sorted(flat.budget_n.unique()) if len(flat) else []
    c_large = claim_by_group("scaling.small_budget_barely_elastic[largest]", "", "", per_group(e_large),
                             "share of initial fall rate", delta=DELTA_FLATTENING)
    c5 = claim_by_group(
        "scaling.small_budget_barely_elastic",
        f"At the smallest pre-training budget the elasticity E (share of the initial fall rate of S lost where the "
        f"curve crosses its base level; segmented fit, as rebound.fast_then_slow) is under {cfg.barely_fraction:g}× the "
        f"largest budget's (effect: {cfg.barely_fraction:g}·E_largest − E_smallest per (world, seed); part 2: "
        f"E_largest > 0), size {ref_size}",
        "TinyLlama appendix: elasticity is barely visible after 0.1T tokens and clear by 0.5T [P1 §5.3; SPEC §3.3]",
        per_group(eff), "share of initial fall rate", delta=DELTA_BARELY, smallest_budget=small, largest_budget=large,
        flattening_smallest=per_group(e_small), flattening_largest=per_group(e_large),
        ratio_smallest_to_largest=ratio_of_means(list(e_small.values()), list(e_large.values())),
        flattening_by_budget={f"{b:g}": float(flat[flat.budget_n == b].flattening.median()) for b in budgets_n},
        changed="issue 14: elasticity is the segmented-fit flattening E (was: initial − late fall rate), "
                "the same measure as rebound.fast_then_slow",
    )
    c5 = with_parts(c5, {"largest_budget_elastic": c_large})
    return [c1, c2, c3, c4, c5]


# ----------------------------------------------------------------------------- figures


def figures(df: pd.DataFrame, cfg: ScalingConfig) -> list:
    from ..report.figures import axis_figures

    cells = cell_table(df, cfg.kl_epsilon, cfg.kl_metric)
    ref_budget, ref_size = axis_references(cells, cfg.data_size)
    return axis_figures(df, cells, ref_budget, ref_size, MEASURES)


EXPERIMENT = Experiment(
    name="scaling",
    description="rebound over model size and pre-training budget (intermediate checkpoints): bigger / longer-trained "
                "models fall faster first, slower after (P1 §5.3)",
    config_cls=ScalingConfig,
    presets=PRESETS,
    cells=cells,
    claims=claims,
    figures=figures,
    check=validate,
)
