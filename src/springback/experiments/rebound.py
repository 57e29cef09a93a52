"""Rebound (SPEC §3.2, the paper's Figure 4 and Table 3).

Protocol per (world, seed): pre-train a base (cached); for each n⁺, align a copy of the base
on n⁺ aligned examples, then fine-tune on opposing examples, measuring after each n⁻ in the
grid. Because the learning rate is constant and opposing data is a fixed stream, the model
after n⁻ examples of one run equals a separate run on the first n⁻ examples, so one run per
n⁺ gives the whole curve.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..measure import ReferenceBatches
from ..analysis import Claim, claim_from_seed_values, combine_verdicts, slope
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig, to_dict
from ..data import DataConfig, DataWorld
from ..errors import ConfigError
from ..worlds import get_world
from .base import Experiment, RunContext
from .common import DEFAULT_PRETRAIN, base_key, clone, finetune, finetune_key, load, measure_checkpoint, pretrained_base


@dataclasses.dataclass
class ReboundConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment", "safety"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    # The paper's n⁺ ∈ {1k, 2k, 5k, 10k} and n⁻ up to 2k [SPEC §3.2], scaled to tiny worlds.
    n_pos: list[int] = dataclasses.field(default_factory=lambda: [500, 1000, 2000, 4000])
    n_neg: list[int] = dataclasses.field(default_factory=lambda: [0, 25, 50, 100, 200, 400, 800, 1600])
    world: WorldConfig = dataclasses.field(default_factory=WorldConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    opposing: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    measure: MeasureConfig = dataclasses.field(default_factory=MeasureConfig)
    early_examples: int = 100  # window for "falls faster over the first opposing examples"
    kl_epsilon: float = 0.1  # KL(model‖base) threshold in nats; the paper used 0.01 on 7B models
    # KL used for the Table 3 protocol: kl_ref_to_base (exact, over the world's completions A ∪ N)
    # or kl_to_base (sequence KL estimated from samples; the only one on real data).
    kl_metric: str = "kl_ref_to_base"
    # Real data instead of the worlds (data.aligned set; needs model.path): see springback.data.
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


PRESETS = {
    # quick: 4 held-out prompts for the exact scores (they vary little across prompts) and a
    # 7-point n⁻ grid keep it near 4 minutes on 2 CPU cores; pre-training is most of the rest.
    "quick": {"n_neg": [0, 50, 100, 200, 400, 800, 1600], "world": {"n_eval_prompts": 4}, "measure": {"n_samples": 8}},
    "full": {"seeds": [0, 1, 2, 3, 4], "n_neg": [0, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600],
             "measure": {"n_samples": 8}},
}


def run(cfg: ReboundConfig, ctx: RunContext) -> None:
    if 0 not in cfg.n_neg:
        cfg = dataclasses.replace(cfg, n_neg=[0] + list(cfg.n_neg))
    n_neg = sorted(set(cfg.n_neg))
    data_world = None
    if cfg.data.aligned:  # a real data set replaces the synthetic worlds
        if not cfg.model.path:
            raise ConfigError("data.aligned is set: also set model.path (a checkpoint to start from)")
        data_world = DataWorld(cfg.data)
        data_world.scorers(), data_world.eval_prompts(cfg.world.n_eval_prompts)  # bad data / scorer: fail before training
    for world_name in ["data"] if data_world else cfg.worlds:
        world = data_world or get_world(world_name, cfg.world.narrowness)
        for seed in cfg.seeds:
            bkey = base_key(world_name, cfg.world, cfg.model, cfg.pretrain, seed)
            common = {"base": bkey, "measure": to_dict(cfg.measure), "n_eval_prompts": cfg.world.n_eval_prompts,
                      "narrowness": cfg.world.narrowness, **finetune_key(cfg.model)}
            if data_world:
                common["data"] = to_dict(cfg.data)
            state: dict = {}

            def base_model():
                if "model" not in state:
                    path = pretrained_base(ctx, world_name, cfg.world, cfg.model, cfg.pretrain, seed)
                    state["model"], state["tok"] = load(path, cfg.model)
                    a_set, n_set = world.reference_sets()
                    # Reference pairs tokenised once per (world, seed); the base's exact
                    # log-probabilities once, for the exact KL at every checkpoint.
                    batches = ReferenceBatches(state["tok"], world.eval_prompts(cfg.world.n_eval_prompts), a_set, n_set,
                                               cfg.measure.batch_size) if a_set and n_set else None
                    state["batches"] = batches
                    state["measure"] = batches.measure(state["model"]) if batches is not None else None
                return state["model"], state["tok"]

            def base_rows():
                model, tok = base_model()
                m = measure_checkpoint(model, tok, world, None, cfg.measure, cfg.world.n_eval_prompts, seed,
                                       reference_batches=state["batches"])
                return [{"phase": "base", "world": world_name, "seed": seed, "n_pos": 0, "n_neg": 0, **m}]

            ctx.run_cell({"kind": "rebound/base", **common}, base_rows, name=f"{world_name} base")
            for n_pos in cfg.n_pos:

                def curve_rows(n_pos: int = n_pos):
                    base, tok = base_model()
                    model = clone(base)
                    finetune(model, tok, world.aligned(n_pos, seed), cfg.align, cfg.model, seed=seed,
                             stage=f"align {world_name} n+={n_pos} s{seed}", progress=ctx.progress)
                    rows = []

                    def on_measure(n: int, m) -> None:
                        vals = measure_checkpoint(m, tok, world, base, cfg.measure, cfg.world.n_eval_prompts, seed,
                                                  reference_measure=state["measure"], reference_batches=state["batches"])
                        rows.append({"phase": "opposing", "world": world_name, "seed": seed, "n_pos": n_pos, "n_neg": n, **vals})

                    finetune(model, tok, world.opposing(max(n_neg), seed), cfg.opposing, cfg.model, seed=seed + 1,
                             stage=f"opposing {world_name} n+={n_pos} s{seed}", measure_at=n_neg, on_measure=on_measure,
                             progress=ctx.progress)
                    return rows

                key = {"kind": "rebound/curve", **common, "n_pos": n_pos, "n_neg": n_neg,
                       "align": to_dict(cfg.align), "opposing": to_dict(cfg.opposing)}
                ctx.run_cell(key, curve_rows, name=f"{world_name} n+={n_pos}")


# ----------------------------------------------------------------------------- analysis


def crossing(n: np.ndarray, s: np.ndarray, level: float) -> float:
    """First n where the decreasing curve s(n) reaches ``level`` (linear interpolation).

    NaN if it starts at or below the level or never reaches it."""
    if len(s) == 0 or s[0] <= level:
        return float("nan")
    for i in range(1, len(s)):
        if s[i] <= level:
            frac = (s[i - 1] - level) / (s[i - 1] - s[i])
            return float(n[i - 1] + frac * (n[i] - n[i - 1]))
    return float("nan")


def fall_rates(n: np.ndarray, s: np.ndarray, level: float) -> tuple[float, float, float]:
    """(initial rate, late rate, crossing n): mean fall per example before and after the
    curve crosses ``level``. Rates are NaN when the crossing is not inside the grid."""
    nc = crossing(n, s, level)
    if not math.isfinite(nc) or nc >= n[-1]:
        return float("nan"), float("nan"), nc
    initial = (s[0] - level) / (nc - n[0])
    late = (level - s[-1]) / (n[-1] - nc)
    return float(initial), float(late), nc


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there are none: a seed with no defined cell)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _curves(df: pd.DataFrame, metric: str):
    """Yield (world, seed, n_pos, n array, metric array, base level)."""
    base = df[df.phase == "base"].set_index(["world", "seed"])[metric]
    opp = df[df.phase == "opposing"].sort_values("n_neg")
    for (world, seed, n_pos), g in opp.groupby(["world", "seed", "n_pos"]):
        yield world, seed, n_pos, g.n_neg.to_numpy(float), g[metric].to_numpy(float), float(base.loc[(world, seed)])


def analyze(df: pd.DataFrame, cfg: ReboundConfig) -> list[Claim]:
    seeds = sorted(df.seed.unique())
    # 1. fast then slow, in log-odds S.
    per_seed_cells: dict[int, list[float]] = {s: [] for s in seeds}
    cells = []
    for world, seed, n_pos, n, s, level in _curves(df, "score_S"):
        init, late, nc = fall_rates(n, s, level)
        cells.append({"world": world, "seed": int(seed), "n_pos": int(n_pos), "initial_rate_per100": init * 100,
                      "late_rate_per100": late * 100, "crossing_n_neg": nc})
        if math.isfinite(init) and math.isfinite(late):
            per_seed_cells[seed].append((init - late) * 100)
    per_seed = [float(np.mean(v)) if v else float("nan") for v in per_seed_cells.values()]
    c1 = claim_from_seed_values(
        "rebound.fast_then_slow",
        "Per-example fall of the alignment score S (log-odds) before the curve crosses the base level "
        "exceeds the fall after it (effect: initial − late rate, per 100 opposing examples)",
        "Curves fall fast until they reach the base model's level, then flatten [P1 §5.2, Fig. 4]",
        per_seed, unit="log-odds / 100 examples",
        cells=cells, n_cells_defined=sum(len(v) for v in per_seed_cells.values()), n_cells=len(cells),
    )

    # 2. more alignment: starts higher and falls faster over the first opposing examples.
    early_grid = sorted(n for n in df[df.phase == "opposing"].n_neg.unique() if 0 < n <= cfg.early_examples)
    early_n = early_grid[-1] if early_grid else None
    start_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    fall_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    opp = df[df.phase == "opposing"]
    for (world, seed), g in opp.groupby(["world", "seed"]):
        if early_n is None:
            continue
        pos = sorted(g.n_pos.unique())
        start = [float(g[(g.n_pos == p) & (g.n_neg == 0)].score_S.iloc[0]) for p in pos]
        early = [float(g[(g.n_pos == p) & (g.n_neg == early_n)].score_S.iloc[0]) for p in pos]
        x = [math.log2(p) for p in pos]
        start_slopes[seed].append(slope(x, start))
        fall_slopes[seed].append(slope(x, [a - b for a, b in zip(start, early)]))
    fs = [_finite_mean(v) for v in fall_slopes.values()]
    ss = [_finite_mean(v) for v in start_slopes.values()]
    c_start = claim_from_seed_values("start", "", "", ss)
    c2 = claim_from_seed_values(
        "rebound.more_alignment_falls_faster",
        f"Larger n⁺ starts higher and falls faster over the first {early_n} opposing examples "
        "(effect: slope of the early fall in S against log2 n⁺; the start-level slope must also be > 0)",
        "More positive data gives a higher start and a faster initial fall [P1 §5.2, Fig. 4]",
        fs, unit="log-odds per doubling of n⁺", early_n_neg=early_n,
        start_slope=c_start.effect, start_slope_ci=[c_start.ci_low, c_start.ci_high], start_verdict=c_start.verdict,
    )
    c2.verdict = combine_verdicts([c2.verdict, c_start.verdict])

    # 3. KL return (Table 3 protocol): opposing examples to bring KL(model‖base) below ε.
    kl_cells = []
    kl_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    kl0_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    kl_col = cfg.kl_metric if cfg.kl_metric in df.columns else "kl_to_base"
    if kl_col in df.columns:
        for (world, seed), g in opp.groupby(["world", "seed"]):
            xs, ys, x0, k0 = [], [], [], []
            for n_pos, h in g.groupby("n_pos"):
                h = h.sort_values("n_neg")
                kl = h[kl_col].to_numpy(float)
                n_kl = crossing(h.n_neg.to_numpy(float), kl, cfg.kl_epsilon)
                kl_cells.append({"world": world, "seed": int(seed), "n_pos": int(n_pos), "n_neg_to_kl_eps": n_kl,
                                 "kl_at_0": float(kl[0]), "kl_min": float(np.nanmin(kl))})
                x0.append(math.log2(n_pos))
                k0.append(float(kl[0]))
                if math.isfinite(n_kl):
                    xs.append(math.log2(n_pos))
                    ys.append(n_kl)
            kl_slopes[seed].append(-slope(xs, ys))
            kl0_slopes[seed].append(slope(x0, k0))
    ks = [_finite_mean(v) for v in kl_slopes.values()]
    c3 = claim_from_seed_values(
        "rebound.kl_return",
        f"Opposing examples needed to bring KL(model‖base) below ε = {cfg.kl_epsilon} nats decrease with n⁺ "
        "(effect: minus the slope against log2 n⁺; cells that never get below ε are left out)",
        "Table 3: after 1k/2k/5k/10k safe examples, 961/844/801/729 unsafe examples return Llama2-7B "
        "to KL < 0.01 (Gemma-2B 923/853/709/598) [P1 §5.2, Table 3]",
        ks, unit="opposing examples per doubling of n⁺", cells=kl_cells, kl_metric=kl_col,
        kl_at_0_slope_per_seed=[_finite_mean(v) for v in kl0_slopes.values()],
        n_cells_reaching_eps=sum(1 for c in kl_cells if math.isfinite(c["n_neg_to_kl_eps"])), n_cells=len(kl_cells),
    )
    return [c1, c2, c3]


# ----------------------------------------------------------------------------- figures

METRIC_LABELS = {
    "score_S": "alignment score S = log(π⁺/π⁻)",
    "pi_pos": "exact π⁺ (aligned share of A ∪ N)",
    "sampled_rate": "sampled aligned rate (world labeller)",
    "vader": "VADER compound (samples)",
    "kl_to_base": "KL(model ‖ base), nats (sampled sequences)",
    "kl_ref_to_base": "KL(model ‖ base) over A ∪ N, nats (exact)",
    "score": "scorer mean on samples (first of data.scorers)",
}


def plot(df: pd.DataFrame, cfg: ReboundConfig, fig_dir: Path) -> list[Path]:
    from ..report.figures import curve_figure

    paths = []
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        for metric, label in METRIC_LABELS.items():
            if metric not in sub.columns or sub[metric].isna().all():
                continue
            fig = curve_figure(sub, x="n_neg", y=metric, hue="n_pos", base_level=not metric.startswith("kl"),
                               title=f"rebound · {world}", xlabel="opposing examples n⁻", ylabel=label, hue_label="n⁺")
            p = fig_dir / f"rebound_{world}_{metric}.png"
            fig.savefig(p, dpi=110, bbox_inches="tight")
            __import__("matplotlib.pyplot").pyplot.close(fig)
            paths.append(p)
    return paths


EXPERIMENT = Experiment(
    name="rebound",
    description="align on n⁺ examples, fine-tune on n⁻ opposing ones: fast fall to the base level, then slow (P1 Fig. 4, Table 3)",
    config_cls=ReboundConfig,
    presets=PRESETS,
    run=run,
    analyze=analyze,
    plot=plot,
)
