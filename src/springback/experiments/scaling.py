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

from ..analysis import Claim, claim_by_group, t_interval
from ..analysis.shape import flattening
from ..analysis.verdicts import per_group, with_parts
from ..analysis.curves import curve_table
from ..analysis.trends import ratio_of_means, summary_by, trend_slopes
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig
from ..data import DataConfig
from ..errors import ConfigError
from ..models import PRESETS as SIZE_PRESETS
from ..models import preset_parameters
from ..pipeline import DEFAULT_PRETRAIN, Cell, MeasureSpec, build_source, pretrain_spec, source_name, uses_data
from ..pipeline.bases import corpus_size, examples_at_token_budgets, pretraining_token_counts
from .base import Experiment, checkpoint_measure, sources
from .rebound import curve_cells

# The world's default pre-training corpus (WorldConfig: 20000 task + 8000 general examples).
_DEFAULT_CORPUS = WorldConfig().n_task_examples + WorldConfig().n_general_examples


@dataclasses.dataclass
class CheckpointSpec:
    """One real checkpoint on the size or data axis (replaces the presets when listed)."""

    path: str  # local directory or hub id
    revision: str = ""  # hub revision / branch, e.g. Pythia "step1000", OLMo "stepX-tokensYB"
    size: str = ""  # size label, e.g. "0.5B" (default: the path); checkpoints sharing it form the data axis
    budget: str = ""  # budget label, e.g. "2.0T" (default: the revision, else "final"); sharing it forms the size axis
    n_params: float = 0  # parameters; 0 = counted from the loaded model
    train_tokens: float = 0  # pre-training tokens of this checkpoint; 0 = unknown (no data-axis trend)


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


# The data axis (docs/scaling.md, "Pre-training budgets"): checkpoints at the same fractions of the
# final budget as P1's TinyLlama checkpoints — 0.1T, 0.5T, 1T, 2T, 3T of 3T [SPEC §3.3] = 1/30, 1/6,
# 1/3, 2/3, 1 — rounded to multiples of the pre-training batch (32) so the last one is the shared base.
# Over this range the checkpoints still change: the preference S is set within ~1000 examples, but
# the mass on the world's own responses (coverage) keeps growing to the end (result.json,
# base_by_budget). Before issue 14 the axis was 128 / 1280 / all: one barely-trained model and two
# whose S had converged.
P1_TINYLLAMA_TOKENS_T = (0.1, 0.5, 1.0, 2.0, 3.0)  # SPEC §3.3 (appendix adds 0.1T, 0.5T, 1.0T to 2T–3T)


def p1_fraction_budgets(corpus: int, batch: int = 32) -> list[int]:
    """Budgets at P1's checkpoint fractions of ``corpus`` examples, rounded to whole batches (last = corpus)."""
    out = [max(batch, int(round(corpus * t / P1_TINYLLAMA_TOKENS_T[-1] / batch)) * batch) for t in P1_TINYLLAMA_TOKENS_T]
    out[-1] = corpus
    return sorted(set(out))


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


@dataclasses.dataclass
class Point:
    """One (size, budget) point: where its base comes from and how it is labelled in the rows."""

    size: str
    budget: str
    budget_n: float  # in budget_unit (NaN if unknown)
    budget_unit: str
    preset: str = ""  # tiny preset, or "" for a real checkpoint
    spec: CheckpointSpec | None = None


def _label(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


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


def preset_points(cfg: ScalingConfig, vocab_size: int) -> list[Point]:
    """The (size, budget) points of a preset run, sizes ordered by parameter count."""
    sizes = sorted(dict.fromkeys(cfg.sizes), key=lambda s: preset_parameters(s, vocab_size))
    budgets = sorted(set(float(b) for b in cfg.budgets))
    data_size = cfg.data_size or sizes[-1]
    pairs = [(s, b) for s in sizes for b in budgets] if cfg.grid == "full" else (
        [(s, budgets[-1]) for s in sizes] + [(data_size, b) for b in budgets[:-1]])
    return [Point(s, _label(b), b, cfg.budget_unit, preset=s) for s, b in dict.fromkeys(pairs)]


def checkpoint_points(cfg: ScalingConfig) -> list[Point]:
    """One point per listed real checkpoint, labelled by its size and budget labels."""
    pts = []
    for c in cfg.checkpoints:
        pts.append(Point(size=c.size or c.path, budget=c.budget or c.revision or "final",
                         budget_n=float(c.train_tokens) if c.train_tokens > 0 else float("nan"),
                         budget_unit="tokens", spec=c))
    return pts


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


# ----------------------------------------------------------------------------- measures

# Per-curve elasticity measures in the trend tables and figure: column -> (label, unit).
MEASURES: dict[str, tuple[str, str]] = {
    "initial_fall_per_100": ("initial fall rate (until the base level)", "log-odds / 100 opposing examples"),
    "late_fall_per_100": ("late fall rate (after the base level)", "log-odds / 100 opposing examples"),
    "n_base": ("opposing examples to cross the base level", "examples"),
    "n_kl_below_eps": ("opposing examples to KL(model‖base) < ε", "examples"),
    "area_above_base": ("area between aligned curve and base level", "log-odds × 100 examples"),
}


def cell_table(df: pd.DataFrame, kl_epsilon: float, kl_metric: str = "kl_ref_to_base") -> pd.DataFrame:
    """One row per curve (world, seed, model, budget, n⁺) with its axes and elasticity measures."""
    keys = ["world", "seed", "model", "budget"]
    tab = curve_table(df, keys + ["n_aligned"], keys, "score_S", kl_metric=kl_metric, kl_epsilon=kl_epsilon)
    base = df[df.stage == "base"].drop_duplicates(keys).set_index(keys)
    axes = base.loc[[tuple(r) for r in tab[keys].itertuples(index=False)], ["n_params", "budget_n"]].reset_index(drop=True)
    tab = pd.concat([tab.reset_index(drop=True), axes.astype(float)], axis=1)
    tab["rebound_per100"] = tab.initial_fall_per_100 - tab.late_fall_per_100
    return tab


def _axis_subsets(cells: pd.DataFrame, cfg: ScalingConfig) -> tuple[str | None, str | None]:
    """(reference budget for the size axis, reference size for the data axis)."""
    if cells.empty:
        return None, None
    per_budget = cells.groupby("budget").agg(n=("model", "nunique"), bn=("budget_n", "max"))
    ref_budget = per_budget.assign(bn=per_budget.bn.fillna(-1)).sort_values(["n", "bn"]).index[-1]
    per_size = cells.groupby("model").agg(n=("budget", "nunique"), p=("n_params", "max"))
    ref_size = cfg.data_size if cfg.data_size in per_size.index else per_size.sort_values(["n", "p"]).index[-1]
    return ref_budget, ref_size


SUMMARY = list(MEASURES) + ["rebound_per100"]


# Equivalence bands δ (docs/science.md, "Equivalence bands δ"; fixed before the runs).
DELTA_TREND = 0.1  # log-odds / 100 examples per decade: a quarter of P1's size effect in the same unit
DELTA_BARELY = 0.1  # ½·E(largest) − E(smallest), E = share of the initial fall rate lost at the base crossing
DELTA_FLATTENING = 0.2  # E(largest) > 0, rebound.fast_then_slow's δ


def replicate_trends(table: pd.DataFrame, measure: str, x: str, sign: float) -> dict[tuple[str, int], float]:
    """{(world, seed): sign × slope of ``measure`` (averaged over n⁺ at each x) against log10 ``x``}."""
    out = {}
    groups = table.groupby("world") if "world" in table.columns else [("all", table)]
    for world, g in groups:
        for seed, v in trend_slopes(g, measure, x).items():
            out[(str(world), int(seed))] = sign * v
    return out


def _trend_claim(cid: str, statement: str, paper: str, table: pd.DataFrame, measure: str, x: str, sign: float,
                 unit: str, seeds: list[int] | None = None, **details: Any) -> Claim:
    """A claim whose replicate value is ``sign`` × the slope of ``measure`` against log10 ``x``, per (world, seed)
    (``seeds``: unused, kept for callers of the per-seed version)."""
    return claim_by_group(cid, statement, paper, per_group(replicate_trends(table, measure, x, sign)), unit,
                          delta=DELTA_TREND, **details)


def flattening_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Per curve (world, seed, model, budget, n⁺): the segmented-fit flattening E of S at its base crossing."""
    keys = ["world", "seed", "model", "budget"]
    base = df[df.stage == "base"].drop_duplicates(keys).set_index(keys)
    rows = []
    for key, g in df[df.stage == "opposing"].sort_values("n_opposing").groupby(keys + ["n_aligned"]):
        level = float(base.loc[key[:4], "score_S"]) if key[:4] in base.index else float("nan")
        f = flattening(g.n_opposing.to_numpy(float), g.score_S.to_numpy(float), level)
        budget_n = pd.to_numeric(g.budget_n, errors="coerce").iloc[0]  # null (unknown) for real checkpoints
        rows.append({**dict(zip(keys + ["n_aligned"], key)), "budget_n": float(budget_n), **f})
    return pd.DataFrame(rows)


def learning_left(df: pd.DataFrame, ref_size: str | None) -> list[dict]:
    """Per budget of the data axis: the base checkpoint's S, π⁺ and coverage (mass on the world's
    responses A ∪ N), mean over seeds — how much the checkpoints still differ (docs/scaling.md)."""
    base = df[(df.stage == "base") & (df["model"] == ref_size)] if ref_size is not None else df.iloc[0:0]
    out = []
    for b, g in base.groupby("budget_n"):
        out.append({"budget_n": float(b), "score_S": float(g.score_S.mean()), "pi_pos": float(g.pi_pos.mean()),
                    "coverage": float(g.coverage.mean()) if "coverage" in g else float("nan"), "n_seeds": int(len(g))})
    return out


def claims(df: pd.DataFrame, cfg: ScalingConfig) -> list[Claim]:
    """Five claims; one replicate per (world, seed), each world also reported as a group."""
    cells = cell_table(df, cfg.kl_epsilon, cfg.kl_metric)
    ref_budget, ref_size = _axis_subsets(cells, cfg)
    size_cells = cells[cells.budget == ref_budget] if ref_budget is not None else cells.iloc[:0]
    data_cells = cells[(cells["model"] == ref_size) & cells.budget_n.notna()] if ref_size is not None else cells.iloc[:0]
    per_cell = cells.to_dict("records")

    # Other measures' trends, for the record (not claims): slope per decade, interval over seeds.
    def other_trends(sub: pd.DataFrame, x: str) -> dict:
        out = {}
        for m in MEASURES:
            s = trend_slopes(sub, m, x)
            mean, lo, hi = t_interval(list(s.values()))
            out[m] = {"slope_per_decade": mean, "ci": [lo, hi], "per_seed": list(s.values())}
        return out

    size_paper = ("Qwen1.5-0.5B / 4B / 7B: score at 500 opposing examples ≈ 0.71–0.81 → 0.45–0.51 → 0.17–0.27; "
                  "larger models fall faster at first and slower after [P1 §5.3; SPEC §3.3]")
    data_paper = ("TinyLlama-1.1B at 2.0T / 2.5T / 3.0T tokens: score at 1000 opposing examples ≈ 0.77–0.83 → "
                  "0.41–0.63 → 0.11–0.18; more pre-training, faster first fall [P1 §5.3; SPEC §3.3]")
    size_details = {"reference_budget": ref_budget, "sizes": summary_by(size_cells, "model", SUMMARY, ("n_params", "budget_n")),
                    "other_measures": other_trends(size_cells, "n_params"), "cells": per_cell}
    data_details = {"reference_size": ref_size, "budgets": summary_by(data_cells, "budget", SUMMARY, ("n_params", "budget_n")),
                    "other_measures": other_trends(data_cells, "budget_n"),
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
    flat = flattening_cells(df[df["model"] == ref_size]) if ref_size is not None else pd.DataFrame()
    flat = flat[flat.budget_n.notna()] if len(flat) else flat
    budgets_n = sorted(flat.budget_n.unique()) if len(flat) else []
    small, large = (budgets_n[0], budgets_n[-1]) if len(budgets_n) >= 2 else (None, None)
    e_small, e_large, eff = {}, {}, {}
    for (world, seed), g in (flat.groupby(["world", "seed"]) if len(flat) else []):
        key = (str(world), int(seed))
        es = g[g.budget_n == small].flattening.median() if small is not None else float("nan")
        el = g[g.budget_n == large].flattening.median() if large is not None else float("nan")
        e_small[key], e_large[key] = float(es), float(el)
        eff[key] = cfg.barely_fraction * float(el) - float(es)
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

CURVE_METRICS = {
    "score_S": "alignment score S = log(π⁺/π⁻)",
    "pi_pos": "exact π⁺ (aligned share of A ∪ N)",
}


def figures(df: pd.DataFrame, cfg: ScalingConfig) -> list:
    from ..report.figures import panel_curves_figure, trend_figure

    out: list = []
    cells = cell_table(df, cfg.kl_epsilon, cfg.kl_metric)
    ref_budget, ref_size = _axis_subsets(cells, cfg)
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        axes = [("size", sub[sub.budget == ref_budget], "model", f"budget {ref_budget}"),
                ("data", sub[sub["model"] == ref_size], "budget", f"size {ref_size}")]
        for axis, part, panel, where in axes:
            if part.empty or part[panel].nunique() < 1:
                continue
            order = (part.groupby(panel).n_params.max() if panel == "model" else part.groupby(panel).budget_n.max())
            panels = list(order.sort_values().index)
            for metric, label in CURVE_METRICS.items():
                if metric not in part.columns or part[metric].isna().all():
                    continue
                out.append((f"scaling_{world}_{axis}_{metric}", panel_curves_figure(
                    part, panel=panel, panels=panels, x="n_opposing", y=metric, hue="n_aligned",
                    title=f"scaling · {world} · {where}", xlabel="opposing examples n⁻", ylabel=label, hue_label="n⁺",
                    panel_label="size" if panel == "model" else "budget")))
        wc = cells[cells.world == world]
        rows = [("size", wc[wc.budget == ref_budget], "n_params"),
                ("data", wc[(wc["model"] == ref_size) & wc.budget_n.notna()], "budget_n")]
        out.append((f"scaling_{world}_summary", trend_figure(
            rows, MEASURES, title=f"scaling · {world}: elasticity measures (mean, 95% CI over seeds)", hue="n_aligned")))
    return out


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
