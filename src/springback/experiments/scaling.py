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
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import Claim, claim_from_seed_values, combine_verdicts, slope, t_interval
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig, to_dict
from ..data import DataConfig, DataWorld, data_key
from ..errors import ConfigError
from ..measure import alignment_measure
from ..models import PRESETS as SIZE_PRESETS
from ..models import count_parameters, preset_parameters
from ..worlds import get_world
from .base import Experiment, RunContext
from .common import (
    DEFAULT_PRETRAIN,
    base_key,
    checkpoints_key,
    clone,
    examples_at_token_budgets,
    finetune,
    finetune_key,
    load,
    measure_checkpoint,
    pretrained_checkpoints,
    pretraining_token_counts,
)
from .rebound import crossing, fall_rates

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


# quick: a 40% corpus (8000 task + 3200 general examples), the data axis on micro and no
# sampling (every claim uses the exact S and the exact KL over A ∪ N) keep the run near 3.5
# minutes of one CPU core; its bases are therefore not rebound's quick bases. The defaults
# (and `full`) use the default world, whose micro bases ARE rebound's (same cache entry).
_QUICK_CORPUS = 11200
PRESETS = {
    "quick": {"world": {"n_task_examples": 8000, "n_general_examples": 3200},
              "budgets": [128, 1280, _QUICK_CORPUS], "data_size": "micro", "n_pos": [250, 1000],
              "measure": {"n_samples": 0}},
    "full": {"seeds": [0, 1, 2, 3, 4], "grid": "full", "n_pos": [500, 1000, 2000, 4000],
             "budgets": [128, 640, 3200, _DEFAULT_CORPUS],
             "n_neg": [0, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600],
             "world": {"n_eval_prompts": 16}, "measure": {"n_samples": 8}},
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
    if cfg.data.aligned and not cfg.checkpoints:
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


# ----------------------------------------------------------------------------- run


def rebound_curve(base, tok, world, cfg: Any, model_cfg: ModelConfig, n_pos: int, n_neg: list[int], seed: int, row: dict,
                  progress: bool, tag: str, reference_measure: Any = None) -> list[dict]:
    """Rebound's flow on one base: align a copy on n⁺ examples, then opposing examples,
    measuring after every n⁻ (constant lr and a fixed opposing stream make one run give the
    whole curve, as in :mod:`.rebound`; same seeds: ``seed`` to align, ``seed + 1`` to oppose)."""
    model = clone(base)
    finetune(model, tok, world.aligned(n_pos, seed), cfg.align, model_cfg, seed=seed,
              stage=f"align {tag} n+={n_pos} s{seed}", progress=progress)
    rows: list[dict] = []

    def on_measure(n: int, m) -> None:
        vals = measure_checkpoint(m, tok, world, base, cfg.measure, cfg.world.n_eval_prompts, seed,
                                  reference_measure=reference_measure)
        rows.append({"phase": "opposing", **row, "n_pos": n_pos, "n_neg": n, **vals})

    finetune(model, tok, world.opposing(max(n_neg), seed), cfg.opposing, model_cfg, seed=seed + 1,
              stage=f"opposing {tag} n+={n_pos} s{seed}", measure_at=n_neg, on_measure=on_measure, progress=progress)
    del model
    return rows


def run(cfg: ScalingConfig, ctx: RunContext) -> None:
    validate(cfg)
    n_neg = sorted(set([0] + list(cfg.n_neg)))
    data_world = DataWorld(cfg.data) if cfg.data.aligned else None  # real data replaces the worlds
    if data_world:
        data_world.scorers(), data_world.eval_prompts(cfg.world.n_eval_prompts)  # bad data / scorer: fail before training
    for world_name in ["data"] if data_world else cfg.worlds:
        world = data_world or get_world(world_name, cfg.world.narrowness)
        points = checkpoint_points(cfg) if cfg.checkpoints else preset_points(cfg, len(world.tokenizer()))
        for seed in cfg.seeds:
            # Budgets (in examples) each size's checkpoint run must snapshot.
            run_budgets: dict[str, list[float]] = {}
            for p in points:
                if p.preset:
                    run_budgets.setdefault(p.preset, []).append(p.budget_n)
            to_examples: dict[float, int] = {}
            if cfg.budget_unit == "tokens" and not cfg.checkpoints:
                counts = pretraining_token_counts(world_name, cfg.world, cfg.pretrain, seed)
                wanted = sorted(set(b for bs in run_budgets.values() for b in bs))
                to_examples = dict(zip(wanted, examples_at_token_budgets(counts, wanted)))
            for p in points:
                _run_point(ctx, cfg, world_name, world, seed, p, n_neg,
                           [to_examples.get(b, int(b)) for b in run_budgets.get(p.preset, [])], to_examples)


def _run_point(ctx: RunContext, cfg: ScalingConfig, world_name: str, world, seed: int, p: Point, n_neg: list[int],
               run_examples: list[int], to_examples: dict[float, int]) -> None:
    """Base measurement and one rebound curve per n⁺ for one (size, budget) point."""
    state: dict = {}
    if p.preset:
        mcfg = dataclasses.replace(cfg.model, preset=p.preset, path="", revision="")
        n_examples = to_examples.get(p.budget_n, int(p.budget_n))
        run_examples = sorted(set(run_examples))
        total = cfg.world.n_task_examples + cfg.world.n_general_examples
        if run_examples == [total * cfg.pretrain.epochs]:
            ident = base_key(world_name, cfg.world, mcfg, cfg.pretrain, seed)
        else:
            ident = {**checkpoints_key(world_name, cfg.world, mcfg, cfg.pretrain, seed, run_examples), "at": n_examples}

        def path() -> str:
            return pretrained_checkpoints(ctx, world_name, cfg.world, mcfg, cfg.pretrain, seed, run_examples)[n_examples]

        n_params = float(preset_parameters(p.preset, len(world.tokenizer())))
        extra = {"pretrain_examples": n_examples}
    else:
        spec = p.spec
        assert spec is not None
        mcfg = dataclasses.replace(cfg.model, path=spec.path, revision=spec.revision)
        ident = base_key(world_name, cfg.world, mcfg, cfg.pretrain, seed)

        def path() -> str:
            return spec.path

        n_params = float(spec.n_params) if spec.n_params > 0 else float("nan")
        extra = {}

    def base_model():
        if "model" not in state:
            state["model"], state["tok"] = load(path(), mcfg)
            a_set, n_set = world.reference_sets()
            # The base's exact log-probabilities, once, for the exact KL at every checkpoint (as rebound).
            state["measure"] = alignment_measure(state["model"], state["tok"], world.eval_prompts(cfg.world.n_eval_prompts),
                                                 a_set, n_set, cfg.measure.batch_size) if a_set and n_set else None
        return state["model"], state["tok"]

    def counted_params() -> float:
        if math.isfinite(n_params):
            return n_params
        return float(count_parameters(base_model()[0]))

    label = {"world": world_name, "seed": seed, "size": p.size, "budget": p.budget, "budget_n": p.budget_n,
             "budget_unit": p.budget_unit, **extra}
    common = {"kind": "scaling", "base": ident, "measure": to_dict(cfg.measure), "n_eval_prompts": cfg.world.n_eval_prompts,
              "narrowness": cfg.world.narrowness, "labels": {k: v for k, v in label.items() if k != "seed"},
              **finetune_key(mcfg)}
    if isinstance(world, DataWorld):
        common["data"] = data_key(cfg.data)
    tag = f"{world_name} {p.size}@{p.budget}"

    def base_rows():
        model, tok = base_model()
        m = measure_checkpoint(model, tok, world, None, cfg.measure, cfg.world.n_eval_prompts, seed)
        return [{"phase": "base", **label, "n_params": counted_params(), "n_pos": 0, "n_neg": 0, **m}]

    ctx.run_cell({**common, "part": "base"}, base_rows, name=f"{tag} base")
    for n_pos in cfg.n_pos:

        def curve_rows(n_pos: int = n_pos):
            base, tok = base_model()
            row = {**label, "n_params": counted_params()}
            return rebound_curve(base, tok, world, cfg, mcfg, n_pos, n_neg, seed, row, ctx.progress, tag,
                                 reference_measure=state["measure"])

        key = {**common, "part": "curve", "n_pos": n_pos, "n_neg": n_neg, "align": to_dict(cfg.align),
               "opposing": to_dict(cfg.opposing)}
        ctx.run_cell(key, curve_rows, name=f"{tag} n+={n_pos}")
    state.clear()


# ----------------------------------------------------------------------------- measures


# Per-curve elasticity measures (columns of cell_table): column -> (label, unit).
MEASURES: dict[str, tuple[str, str]] = {
    "initial_rate_per100": ("initial fall rate (until the base level)", "log-odds / 100 opposing examples"),
    "late_rate_per100": ("late fall rate (after the base level)", "log-odds / 100 opposing examples"),
    "n_neg_to_base": ("opposing examples to cross the base level", "examples"),
    "n_neg_to_kl_eps": ("opposing examples to KL(model‖base) < ε", "examples"),
    "area_above_base": ("area between aligned curve and base level", "log-odds × 100 examples"),
}


def area_above(n: np.ndarray, s: np.ndarray, level: float) -> float:
    """∫ max(s(n) − level, 0) dn over the grid, piecewise linear (exact at crossings)."""
    total = 0.0
    for i in range(1, len(n)):
        a, b = s[i - 1] - level, s[i] - level
        w = n[i] - n[i - 1]
        if a >= 0 and b >= 0:
            total += 0.5 * (a + b) * w
        elif a > 0 > b or b > 0 > a:
            pos, neg = (a, b) if a > 0 else (b, a)
            total += 0.5 * pos * w * pos / (pos - neg)
    return float(total)


def curve_measures(n: np.ndarray, s: np.ndarray, level: float, kl: np.ndarray | None, kl_epsilon: float) -> dict[str, float]:
    """The five elasticity measures of one curve (S in log-odds against opposing examples n)."""
    init, late, nc = fall_rates(n, s, level)
    return {
        "initial_rate_per100": init * 100,
        "late_rate_per100": late * 100,
        "n_neg_to_base": nc,
        "n_neg_to_kl_eps": crossing(n, kl, kl_epsilon) if kl is not None else float("nan"),
        "area_above_base": area_above(n, s, level) / 100,
        "start_above_base": float(s[0] - level) if len(s) else float("nan"),
    }


def _num(v: Any) -> float:
    """A records value as float (records store NaN as null)."""
    return float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else float("nan")


def cell_table(df: pd.DataFrame, kl_epsilon: float, kl_metric: str = "kl_ref_to_base") -> pd.DataFrame:
    """One row per curve (world, seed, size, budget, n⁺) with its axes and elasticity measures."""
    base = df[df.phase == "base"].set_index(["world", "seed", "size", "budget"])
    opp = df[df.phase == "opposing"].sort_values("n_neg")
    rows = []
    for (world, seed, size, budget, n_pos), g in opp.groupby(["world", "seed", "size", "budget", "n_pos"], sort=False):
        b = base.loc[(world, seed, size, budget)]
        level = float(b["score_S"])
        kl_col = kl_metric if kl_metric in g.columns and g[kl_metric].notna().all() else "kl_to_base"
        kl = g[kl_col].to_numpy(float) if kl_col in g.columns and g[kl_col].notna().all() else None
        m = curve_measures(g.n_neg.to_numpy(float), g.score_S.to_numpy(float), level, kl, kl_epsilon)
        m["rebound_per100"] = m["initial_rate_per100"] - m["late_rate_per100"]
        rows.append({"world": world, "seed": int(seed), "size": size, "budget": budget, "n_pos": int(n_pos),
                     "n_params": _num(b["n_params"]), "budget_n": _num(b["budget_n"]), "base_S": level, **m})
    cols = ["world", "seed", "size", "budget", "n_pos", "n_params", "budget_n", "base_S", *MEASURES, "rebound_per100"]
    return pd.DataFrame(rows, columns=cols + [c for c in (rows[0] if rows else {}) if c not in cols])


def trend_slopes(cells: pd.DataFrame, measure: str, x: str, log10: bool = True) -> dict[int, float]:
    """Per seed: least-squares slope of ``measure`` against log10(``x``) (or ``x``), after
    averaging the measure over everything else (n⁺, worlds) at each x. NaN cells are left out."""
    out: dict[int, float] = {}
    for seed, g in cells.groupby("seed"):
        means = g.groupby(x)[measure].mean()  # mean skips NaN
        xs = [math.log10(v) if log10 and v > 0 else (float("nan") if log10 else v) for v in means.index]
        out[int(seed)] = slope(xs, list(means.values))
    return out


def _axis_subsets(cells: pd.DataFrame, cfg: ScalingConfig) -> tuple[str | None, str | None]:
    """(reference budget for the size axis, reference size for the data axis)."""
    if cells.empty:
        return None, None
    per_budget = cells.groupby("budget").agg(n=("size", "nunique"), bn=("budget_n", "max"))
    ref_budget = per_budget.assign(bn=per_budget.bn.fillna(-1)).sort_values(["n", "bn"]).index[-1]
    per_size = cells.groupby("size").agg(n=("budget", "nunique"), p=("n_params", "max"))
    ref_size = cfg.data_size if cfg.data_size in per_size.index else per_size.sort_values(["n", "p"]).index[-1]
    return ref_budget, ref_size


def _trend_claim(cid: str, statement: str, paper: str, table: pd.DataFrame, measure: str, x: str, sign: float,
                 unit: str, seeds: list[int], **details: Any) -> Claim:
    """A claim whose per-seed value is ``sign`` × the slope of ``measure`` against log10 ``x``."""
    slopes = trend_slopes(table, measure, x)
    per_seed = [sign * slopes.get(s, float("nan")) for s in seeds]
    return claim_from_seed_values(cid, statement, paper, per_seed, unit=unit, **details)


def _summary_by(cells: pd.DataFrame, by: str) -> list[dict]:
    """Mean and 95% interval over seeds of every measure at each value of ``by``."""
    out = []
    for key, g in cells.groupby(by):
        per_seed = g.groupby("seed")[list(MEASURES) + ["rebound_per100"]].mean()
        entry = {by: key, "n_params": float(g.n_params.max()), "budget_n": float(g.budget_n.max())}
        for m in per_seed.columns:
            mean, lo, hi = t_interval(list(per_seed[m].values))
            entry[m] = [mean, lo, hi]
        out.append(entry)
    return out


def _ratio(num: list[float], den: list[float]) -> float:
    """mean(num) / mean(den) over finite values; NaN when either is undefined or den is 0."""
    a = [v for v in num if math.isfinite(v)]
    b = [v for v in den if math.isfinite(v)]
    if not a or not b or np.mean(b) == 0:
        return float("nan")
    return float(np.mean(a) / np.mean(b))


def analyze(df: pd.DataFrame, cfg: ScalingConfig) -> list[Claim]:
    cells = cell_table(df, cfg.kl_epsilon, cfg.kl_metric)
    seeds = sorted(int(s) for s in df.seed.unique())
    ref_budget, ref_size = _axis_subsets(cells, cfg)
    size_cells = cells[cells.budget == ref_budget] if ref_budget is not None else cells.iloc[:0]
    data_cells = cells[(cells["size"] == ref_size) & cells.budget_n.notna()] if ref_size is not None else cells.iloc[:0]
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
    size_details = {"reference_budget": ref_budget, "sizes": _summary_by(size_cells, "size"),
                    "other_measures": other_trends(size_cells, "n_params"), "cells": per_cell}
    data_details = {"reference_size": ref_size, "budgets": _summary_by(data_cells, "budget"),
                    "other_measures": other_trends(data_cells, "budget_n")}
    unit_p = "log-odds/100 ex per decade of parameters"
    unit_b = "log-odds/100 ex per decade of pre-training budget"

    c1 = _trend_claim(
        "scaling.size_faster_initial_fall",
        f"Initial fall rate of S (until the curve crosses its base's own level) rises with model size "
        f"(effect: slope against log10 parameters at budget {ref_budget})",
        size_paper, size_cells, "initial_rate_per100", "n_params", +1.0, unit_p, seeds, **size_details)
    c2 = _trend_claim(
        "scaling.size_slower_late_fall",
        f"Late fall rate of S (after crossing the base level) falls with model size "
        f"(effect: minus the slope against log10 parameters at budget {ref_budget})",
        size_paper, size_cells, "late_rate_per100", "n_params", -1.0, unit_p, seeds, reference_budget=ref_budget)
    c3 = _trend_claim(
        "scaling.data_faster_initial_fall",
        f"Initial fall rate of S rises with the pre-training budget (effect: slope against log10 budget, size {ref_size})",
        data_paper, data_cells, "initial_rate_per100", "budget_n", +1.0, unit_b, seeds, **data_details)
    c4 = _trend_claim(
        "scaling.data_slower_late_fall",
        f"Late fall rate of S falls with the pre-training budget (effect: minus the slope against log10 budget, "
        f"size {ref_size})",
        data_paper, data_cells, "late_rate_per100", "budget_n", -1.0, unit_b, seeds, reference_size=ref_size)

    # 5. The smallest budget barely shows elasticity next to the largest. Rebound strength R =
    # initial − late fall rate (rebound.fast_then_slow's effect); per seed the effect is
    # f·R(largest) − R(smallest) with f = barely_fraction [ours], and R(largest) > 0 must hold too.
    budgets_n = sorted(data_cells.budget_n.unique()) if not data_cells.empty else []
    small, large = (budgets_n[0], budgets_n[-1]) if len(budgets_n) >= 2 else (None, None)
    r_small, r_large, eff = [], [], []
    for s in seeds:
        g = data_cells[data_cells.seed == s]
        rs = float(g[g.budget_n == small].rebound_per100.mean()) if small is not None else float("nan")
        rl = float(g[g.budget_n == large].rebound_per100.mean()) if large is not None else float("nan")
        r_small.append(rs)
        r_large.append(rl)
        eff.append(cfg.barely_fraction * rl - rs)
    c_large = claim_from_seed_values("large", "", "", r_large)
    c5 = claim_from_seed_values(
        "scaling.small_budget_barely_elastic",
        f"At the smallest pre-training budget the rebound (initial − late fall rate of S) is under "
        f"{cfg.barely_fraction:g}× the largest budget's (effect: {cfg.barely_fraction:g}·R_largest − R_smallest; "
        f"R_largest > 0 must hold too), size {ref_size}",
        "TinyLlama appendix: elasticity is barely visible after 0.1T tokens and clear by 0.5T [P1 §5.3; SPEC §3.3]",
        eff, unit="log-odds / 100 examples", smallest_budget=small, largest_budget=large,
        rebound_smallest_per_seed=r_small, rebound_largest_per_seed=r_large,
        rebound_largest=c_large.effect, rebound_largest_ci=[c_large.ci_low, c_large.ci_high],
        rebound_largest_verdict=c_large.verdict,
        ratio_smallest_to_largest=_ratio(r_small, r_large),
    )
    c5.verdict = combine_verdicts([c5.verdict, c_large.verdict])
    return [c1, c2, c3, c4, c5]


# ----------------------------------------------------------------------------- figures

CURVE_METRICS = {
    "score_S": "alignment score S = log(π⁺/π⁻)",
    "pi_pos": "exact π⁺ (aligned share of A ∪ N)",
}


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot(df: pd.DataFrame, cfg: ScalingConfig, fig_dir: Path) -> list[Path]:
    from ..report.figures import panel_curves_figure, trend_figure

    paths: list[Path] = []
    cells = cell_table(df, cfg.kl_epsilon, cfg.kl_metric)
    ref_budget, ref_size = _axis_subsets(cells, cfg)
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        axes = [("size", sub[sub.budget == ref_budget], "size", f"budget {ref_budget}"),
                ("data", sub[sub["size"] == ref_size], "budget", f"size {ref_size}")]
        for axis, part, panel, where in axes:
            if part.empty or part[panel].nunique() < 1:
                continue
            order = (part.groupby(panel).n_params.max() if panel == "size" else part.groupby(panel).budget_n.max())
            panels = list(order.sort_values().index)
            for metric, label in CURVE_METRICS.items():
                if metric not in part.columns or part[metric].isna().all():
                    continue
                fig = panel_curves_figure(part, panel=panel, panels=panels, x="n_neg", y=metric, hue="n_pos",
                                          title=f"scaling · {world} · {where}", xlabel="opposing examples n⁻",
                                          ylabel=label, hue_label="n⁺",
                                          panel_label="size" if panel == "size" else "budget")
                paths.append(_save(fig, fig_dir / f"scaling_{world}_{axis}_{metric}.png"))
        wc = cells[cells.world == world]
        rows = []
        for axis, part, x in (("size", wc[wc.budget == ref_budget], "n_params"),
                              ("data", wc[(wc["size"] == ref_size) & wc.budget_n.notna()], "budget_n")):
            rows.append((axis, part, x))
        fig = trend_figure(rows, MEASURES, title=f"scaling · {world}: elasticity measures (mean, 95% CI over seeds)")
        paths.append(_save(fig, fig_dir / f"scaling_{world}_summary.png"))
    return paths


EXPERIMENT = Experiment(
    name="scaling",
    description="rebound over model size and pre-training budget (intermediate checkpoints): bigger / longer-trained "
                "models fall faster first, slower after (P1 §5.3)",
    config_cls=ScalingConfig,
    presets=PRESETS,
    run=run,
    analyze=analyze,
    plot=plot,
)
