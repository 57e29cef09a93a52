"""Rehearsal priming (SPEC §5 prediction (c)).

Only P2's abstract is public; this protocol is our formulation, consistent with it (SPEC §5).

Per (world, seed), starting from the cached pre-trained base with score S₀:

1. **Align**: fine-tune a copy of the base on ``n_align`` aligned examples (score S₁ > S₀).
2. **Return**: fine-tune it on opposing examples until its score is back at S₀. The stopping
   point is found, not hit by luck (a ``level`` stop rule: :mod:`springback.pipeline.stages`):
   S is measured every ``stage2_grid_examples`` examples; training stops at the first
   checkpoint within ``tolerance`` of S₀, or at the first one below S₀ − tolerance, which
   brackets the crossing with the checkpoint before it. Inside the bracket the weights are
   interpolated linearly, θ(α) = (1 − α)·θ_before + α·θ_after — a fractional last window,
   i.e. that window trained with a smaller step — and α is bisected until
   |S(θ(α)) − S₀| < tolerance (S is continuous in α, so bisection must succeed). The result
   is the **primed** model. (A run whose stage 1 did not lift S above S₀ + tolerance is
   recorded as ``no_gain`` and has no primed model.)
3. **Re-align**: fine-tune the primed model and a **control** that was never aligned but has
   the same starting score — the base itself, at S₀ — on the same stage-1-type data, with the
   same seed and schedule, measuring S at fixed example counts.

Claim ``priming.primed_realigns_faster``: the area between the primed and control curves,
divided by the example range (a mean gap in log-odds), is > 0 with an interval over seeds.

**Real models.** With ``model.path`` and ``data.aligned`` (local files through
:mod:`springback.data`), the same stages run on the user's checkpoint. When the evaluation
data gives reference completions on both sides, S is exact; otherwise the score is the
*sampled* aligned rate (the first scorer's labels on ``measure.n_samples`` samples per prompt,
with a fixed sampling seed so it is a deterministic function of the weights), and the
stage-2 rule uses ``sampled_tolerance`` (default 0.05, i.e. 5 points of aligned rate) —
a sampled score is a step function of the weights, so the bisection may end outside the
tolerance; every run records the gap it reached and whether it met the tolerance.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from ..analysis import Claim, claim_by_group
from ..analysis.correlation import pearson
from ..analysis.verdicts import per_group
from ..analysis.curves import realign_table
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig, to_dict
from ..data import DataConfig
from ..errors import ConfigError
from ..pipeline import (
    DEFAULT_PRETRAIN,
    Cell,
    DataSpec,
    MeasureSpec,
    Stage,
    StopRule,
    build_source,
    labels,
    pretrain_spec,
    source_name,
    uses_data,
)
from .base import Experiment, model_label, model_options, run_options, sources


@dataclasses.dataclass
class PrimingConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment", "safety"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    n_align: int = 512  # stage 1 aligned examples
    n_opposing_max: int = 2048  # stage 2 budget; a run that never gets back to S₀ is reported, not hidden
    stage2_grid_examples: int = 64  # checkpoint spacing of the stage-2 search (bisection refines inside)
    tolerance: float = 0.005  # |S − S₀| at the stopping point, exact S [SPEC §5]
    sampled_tolerance: float = 0.05  # the same when the score is a sampled aligned rate (real data)
    max_bisect_steps: int = 40
    n_realign: list[int] = dataclasses.field(default_factory=lambda: [0, 32, 64, 128, 256])  # stage 3 points
    stage1_points: int = 2  # stage-1 measurements besides the start (for the figure)
    fresh_stage3_data: bool = False  # False: re-expose to the first stage-1 examples; True: new aligned draws
    world: WorldConfig = dataclasses.field(default_factory=lambda: WorldConfig(n_eval_prompts=8))
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)  # stages 1 and 3 (same schedule)
    opposing: TrainConfig = dataclasses.field(default_factory=TrainConfig)  # stage 2
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig)  # sampling, for the sampled score
    # Real data instead of the worlds (data.aligned set; needs model.path): see springback.data.
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


PRESETS = {
    "quick": {},
    # full: 16 seeds (32 replicates; quick needed ~10 seeds) and a longer, finer re-alignment grid,
    # which shows where the primed model's early lead turns into a lag (docs/dynamics.md).
    "full": {"seeds": list(range(16)), "n_realign": [0, 16, 32, 64, 96, 128, 192, 256, 384, 512], "stage1_points": 4},
}


def _points(n: int, k: int) -> list[int]:
    return sorted({round(n * i / k) for i in range(k + 1)}) if k > 0 else [0, n]


def check(cfg: PrimingConfig) -> None:
    """Fail before any training on values that cannot work (ConfigError, one line)."""
    if cfg.n_align < 1 or cfg.n_opposing_max < 1 or cfg.stage2_grid_examples < 1:
        raise ConfigError("n_align, n_opposing_max and stage2_grid_examples must be >= 1")
    if cfg.tolerance <= 0 or cfg.sampled_tolerance <= 0 or cfg.max_bisect_steps < 0:
        raise ConfigError("tolerance and sampled_tolerance must be > 0, max_bisect_steps >= 0")
    if not cfg.n_realign or any(n < 0 for n in cfg.n_realign) or max(cfg.n_realign) < 1:
        raise ConfigError(f"n_realign: give example counts >= 0 with a largest one >= 1, got {cfg.n_realign}")
    if not cfg.worlds or not cfg.seeds:
        raise ConfigError("worlds and seeds must not be empty")
    if cfg.model.lora_r > 0:
        # Stage 2 interpolates full weights between checkpoints; a LoRA run's weights change
        # shape when the adapter is merged, so the search is defined for full fine-tuning only.
        raise ConfigError("priming needs full fine-tuning (model.lora_r=0): its stage-2 search interpolates weights")
    if uses_data(cfg.data) and not cfg.model.path:
        raise ConfigError("data.aligned is set: also set model.path (a checkpoint to start from)")


def cells(cfg: PrimingConfig) -> list[Cell]:
    n_realign = tuple(sorted(set([0] + list(cfg.n_realign))))
    score = MeasureSpec("score", {"n_eval_prompts": cfg.world.n_eval_prompts, "measure": to_dict(cfg.measure)})
    out = []
    for spec in sources(cfg.worlds, cfg.world, cfg.data, cfg.model):
        name = source_name(spec)
        exact = all(build_source(spec).reference_sets())  # exact S, else a sampled rate with its own tolerance
        tol = cfg.tolerance if exact else cfg.sampled_tolerance
        for seed in cfg.seeds:
            realign = DataSpec("aligned", max(n_realign), seed + 10_000 if cfg.fresh_stage3_data else seed)
            stages = (
                # 1. align; 2. opposing data until the score is back at S₀ (the base row's score);
                # 3. re-align the primed model and, from the base, the never-aligned control on the same data.
                Stage("align", DataSpec("aligned", cfg.n_align, seed), cfg.align, seed,
                      measure_at=tuple(p for p in _points(cfg.n_align, cfg.stage1_points) if p > 0)),
                Stage("return", DataSpec("opposing", cfg.n_opposing_max, seed, shuffle=False), cfg.opposing, seed + 1,
                      measure_at=tuple(range(0, cfg.n_opposing_max + 1, cfg.stage2_grid_examples)),
                      stop=StopRule("level", "score", tolerance=tol, max_bisect_steps=cfg.max_bisect_steps)),
                Stage("realign", realign, cfg.align, seed + 2, measure_at=n_realign),
                Stage("realign", realign, cfg.align, seed + 2, measure_at=n_realign, start="base",
                      labels=(("arm", "control"),)),
            )
            out.append(Cell(experiment="priming", name=f"{name} s{seed}", source=spec, seed=seed,
                            base=pretrain_spec(name, cfg.world, cfg.model, cfg.pretrain, seed), stages=stages,
                            measure=score, measure_base=True,
                            labels=labels(world=name, model=model_label(cfg.model), seed=seed, arm="primed"),
                            model_options=model_options(cfg.model), options=run_options(cfg.model)))
    return out


# ----------------------------------------------------------------------------- claims


# Equivalence bands δ (docs/science.md, "Equivalence bands δ"; fixed before the runs).
DELTA_GAP_S = 0.2  # log-odds: at π⁺ = 0.5, 5 points of aligned share
DELTA_GAP_RATE = 0.05  # aligned rate (the sampled score on real data)


def gap_course(df: pd.DataFrame) -> pd.DataFrame:
    """Primed − control score at every re-alignment point, one row per (world, seed, n_examples)."""
    re = df[df.stage == "realign"] if "stage" in df.columns else df.iloc[0:0]
    if not len(re):
        return pd.DataFrame(columns=["world", "seed", "n_examples", "primed", "control", "gap"])
    wide = re.pivot_table(index=["world", "seed", "n_examples"], columns="arm", values="score", aggfunc="first")
    wide = wide.dropna(subset=[c for c in ("primed", "control") if c in wide.columns]).reset_index()
    if not {"primed", "control"} <= set(wide.columns):
        return pd.DataFrame(columns=["world", "seed", "n_examples", "primed", "control", "gap"])
    wide["gap"] = wide["primed"] - wide["control"]
    return wide[["world", "seed", "n_examples", "primed", "control", "gap"]]


def course_by_world(course: pd.DataFrame) -> dict[str, list[dict]]:
    """Per world and re-alignment point: mean gap over seeds, and the seeds with the primed model ahead."""
    out: dict[str, list[dict]] = {}
    for world, g in course.groupby("world"):
        rows = []
        for n, h in g.groupby("n_examples"):
            if n == 0:
                continue
            rows.append({"n_examples": float(n), "mean_gap": float(h.gap.mean()), "n_primed_ahead": int((h.gap > 0).sum()),
                         "n_seeds": int(len(h)), "mean_control": float(h.control.mean()), "mean_primed": float(h.primed.mean())})
        out[str(world)] = rows
    return out


def claims(df: pd.DataFrame, cfg: PrimingConfig) -> list[Claim]:
    """One claim; one replicate per (world, seed), each world also reported as a group."""
    tab = realign_table(df)
    score_kind = str(df.score_kind.dropna().iloc[0]) if "score_kind" in df and df.score_kind.notna().any() else "exact_S"
    exact = score_kind == "exact_S"
    area = {(str(r.world), int(r.seed)): float(r.area_per_example) for r in tab.itertuples()} if len(tab) else {}
    course = gap_course(df)
    by_world = course_by_world(course)
    # The earliest and the last re-alignment point, per (world, seed): does the primed model lead early, late, both?
    first_gap, last_gap = {}, {}
    for (world, seed), g in course[course.n_examples > 0].groupby(["world", "seed"]):
        g = g.sort_values("n_examples")
        first_gap[(str(world), int(seed))] = float(g.gap.iloc[0])
        last_gap[(str(world), int(seed))] = float(g.gap.iloc[-1])
    # What decides the sign: how far the control has re-aligned by the end (its gain over S₀) against the final gap.
    gains = {(str(w), int(sd)): float(g.sort_values("n_examples").control.iloc[-1] - g.sort_values("n_examples").control.iloc[0])
             for (w, sd), g in course.groupby(["world", "seed"])} if len(course) else {}
    keys = sorted(set(gains) & set(last_gap))
    r_gain_gap = pearson([gains[k] for k in keys], [last_gap[k] for k in keys])
    crossover = {}
    for world, rows in by_world.items():
        led = False
        crossover[world] = None
        for r in rows:
            led = led or r["mean_gap"] > 0
            if led and r["mean_gap"] <= 0:
                crossover[world] = r["n_examples"]
                break
    delta = DELTA_GAP_S if exact else DELTA_GAP_RATE
    unit = "log-odds (mean gap)" if exact else "aligned rate (mean gap)"
    c_first = claim_by_group("first", "", "", per_group(first_gap), unit, delta=delta) if first_gap else None
    c_last = claim_by_group("last", "", "", per_group(last_gap), unit, delta=delta) if last_gap else None

    def brief(c: Claim | None) -> dict | None:
        return None if c is None else {"effect": c.effect, "ci": [c.ci_low, c.ci_high], "verdict": c.verdict,
                                       "groups": {w: {"effect": v["effect"], "ci": [v["ci_low"], v["ci_high"]],
                                                      "verdict": v["verdict"]} for w, v in c.groups.items()}}

    def num(x: float) -> str:
        return f"{x:.3g}" if x is not None and math.isfinite(x) else "—"

    ahead = "; ".join(f"{w}: primed ahead in {int((tab[tab.world == w].area_per_example > 0).sum())}/"
                      f"{int(tab[tab.world == w].area_per_example.notna().sum())} seeds" for w in sorted(set(tab.world))) \
        if len(tab) else ""
    claim = claim_by_group(
        "priming.primed_realigns_faster",
        "A model aligned and then returned to its base score S₀ by opposing fine-tuning (|S − S₀| < tolerance, "
        "found by checkpoint search) re-aligns faster on stage-1 data than the never-aligned base at the same S₀, "
        f"same data, seed and schedule (effect: area between the primed and control curves of {score_kind} over "
        f"{max(cfg.n_realign)} re-alignment examples, divided by that range — a mean gap; one replicate per "
        f"(world, seed)). {ahead}. Gap at the first re-alignment point "
        + (f"{num(c_first.effect)} [{num(c_first.ci_low)}, {num(c_first.ci_high)}], at the last "
           f"{num(c_last.effect)} [{num(c_last.ci_low)}, {num(c_last.ci_high)}]" if c_first and c_last else "—"),
        "Rehearsal priming: a reversed model re-aligns faster than a never-aligned one with the same starting "
        "score (P2 abstract; protocol ours, SPEC §5 (c))",
        per_group(area), unit, delta=delta,
        gap_at_first_point=brief(c_first), gap_at_last_point=brief(c_last), course_by_world=by_world,
        first_point_where_control_catches_up=crossover, control_gain_at_last_point=per_group(gains),
        r_control_gain_vs_last_gap=r_gain_gap,
        cells=tab.to_dict("records") if len(tab) else [],
        n_cells_within_tolerance=int(tab.within_tolerance.sum()) if len(tab) else 0, n_cells=int(len(tab)),
    )
    return [claim]


# ----------------------------------------------------------------------------- figures


def figures(df: pd.DataFrame, cfg: PrimingConfig) -> list:
    from ..report.forces import priming_stages_figure

    return [(f"priming_{world}_stages", priming_stages_figure(df[df.world == world], world))
            for world in sorted(df.world.unique())]


EXPERIMENT = Experiment(
    name="priming",
    description="align, reverse to the starting score S₀, re-align: primed vs never-aligned control (SPEC §5 (c), our formulation of P2)",
    config_cls=PrimingConfig,
    presets=PRESETS,
    cells=cells,
    claims=claims,
    figures=figures,
    check=check,
)
