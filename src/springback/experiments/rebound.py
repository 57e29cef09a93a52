"""Rebound (SPEC §3.2, the paper's Figure 4 and Table 3).

Protocol per (source, seed): a base (pre-trained and cached, or ``model.path``); for each n⁺,
align a copy of the base on n⁺ aligned examples, then fine-tune on opposing examples,
measuring after each n⁻ in the grid. Because the learning rate is constant and opposing data
is a fixed stream, the model after n⁻ examples of one run equals a separate run on the first
n⁻ examples, so one run per n⁺ gives the whole curve.

Each stage trains by its ``algorithm`` (``align.algorithm``, ``opposing.algorithm``; SFT by
default, as the paper; DPO, IPO, KTO, SimPO, RLOO as its appendix, P1 Fig. 7 — see
docs/algorithms.md). ``direction: reversed`` runs the protocol the other way round (P1 Fig. 8):
the first stage aligns on the opposing side, the second pushes back with aligned data. Its rows
keep the true S; its claims (``rebound.reversed.*``) are the same statistics computed on the
scores seen from the side the first stage aligned to (S → −S, π⁺ → 1 − π⁺).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from ..analysis import Claim, claim_from_seed_values, combine_verdicts, slope
from ..analysis.curves import curve_table
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig
from ..data import DataConfig
from ..errors import ConfigError
from ..pipeline import (
    DEFAULT_PRETRAIN,
    BaseSpec,
    Cell,
    MeasureSpec,
    Stage,
    labels,
    pretrain_spec,
    source_name,
    stage_data,
    uses_data,
)
from .base import Experiment, checkpoint_measure, model_label, model_options, run_options, sources


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
    # forward (the paper's Fig. 4: aligned data first, then opposing) | reversed (P1 Fig. 8: opposing
    # data first, then aligned data pushes back).
    direction: str = "forward"


PRESETS = {
    # quick: 4 held-out prompts for the exact scores (they vary little across prompts) and a
    # 7-point n⁻ grid keep it near 4 minutes on 2 CPU cores; pre-training is most of the rest.
    "quick": {"n_neg": [0, 50, 100, 200, 400, 800, 1600], "world": {"n_eval_prompts": 4}, "measure": {"n_samples": 8}},
    "full": {"seeds": [0, 1, 2, 3, 4], "n_neg": [0, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600],
             "measure": {"n_samples": 8}},
}


def check(cfg: ReboundConfig) -> None:
    if uses_data(cfg.data) and not cfg.model.path:
        raise ConfigError("data.aligned is set: also set model.path (a checkpoint to start from)")
    if not cfg.seeds or not cfg.n_pos:
        raise ConfigError("seeds and n_pos must not be empty")
    if cfg.kl_metric not in ("kl_ref_to_base", "kl_to_base"):
        raise ConfigError(f"kl_metric must be 'kl_ref_to_base' or 'kl_to_base', got '{cfg.kl_metric}'")
    if cfg.direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {', '.join(DIRECTIONS)}, got '{cfg.direction}'")


DIRECTIONS = ("forward", "reversed")


def curve_cells(experiment: str, source: dict, base: BaseSpec, row: dict, n_pos: list[int], n_neg: list[int],
                align: TrainConfig, opposing: TrainConfig, measure: MeasureSpec, seed: int, model: ModelConfig,
                tag: str, direction: str = "forward", with_base: bool = True) -> list[Cell]:
    """The rebound protocol on one base: a cell measuring the base (``with_base``), and per n⁺ a
    cell that aligns a copy on n⁺ examples (training seed ``seed``) and then fine-tunes it on
    opposing examples (seed ``seed + 1``), measured after every n⁻. ``row``: labels of every row
    (world, model, …). Each stage's data are the items its algorithm trains on (pairs for DPO, …).
    ``direction="reversed"``: the first stage trains toward the opposing side, the second (still
    named ``opposing``: it pushes back) toward the aligned side; its rows are labelled with it."""
    n_neg = tuple(sorted(set([0] + list(n_neg))))
    first, second = ("aligned", "opposing") if direction == "forward" else ("opposing", "aligned")
    if direction != "forward":
        row = {**row, "direction": direction}
    common = dict(experiment=experiment, source=source, base=base, measure=measure,
                  model_options=model_options(model), options=run_options(model), seed=seed)
    out = [Cell(name=f"{tag} base s{seed}", labels=labels(**row, seed=seed, n_aligned=0), measure_base=True, **common)]
    out = out if with_base else []
    for n in n_pos:
        stages = (Stage("align", stage_data(first, n, seed, align), align, seed),
                  Stage("opposing", stage_data(second, max(n_neg), seed, opposing), opposing, seed + 1, measure_at=n_neg))
        out.append(Cell(name=f"{tag} n+={n} s{seed}", labels=labels(**row, seed=seed, n_aligned=n), stages=stages, **common))
    return out


def cells(cfg: ReboundConfig) -> list[Cell]:
    measure = MeasureSpec("checkpoint", checkpoint_measure(cfg.measure, cfg.world.n_eval_prompts, exact_kl=True))
    out = []
    for spec in sources(cfg.worlds, cfg.world, cfg.data, cfg.model):
        name = source_name(spec)
        for seed in cfg.seeds:
            base = pretrain_spec(name, cfg.world, cfg.model, cfg.pretrain, seed)
            out += curve_cells("rebound", spec, base, {"world": name, "model": model_label(cfg.model)}, cfg.n_pos,
                               cfg.n_neg, cfg.align, cfg.opposing, measure, seed, cfg.model, name, cfg.direction)
    return out


# ----------------------------------------------------------------------------- claims


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there are none: a seed with no defined cell)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def claims(df: pd.DataFrame, cfg: ReboundConfig) -> list[Claim]:
    seeds = sorted(df.seed.unique())
    keys = ["world", "seed", "n_aligned"]
    # 1. fast then slow, in log-odds S.
    tab = curve_table(df, keys, ["world", "seed"], "score_S", kl_metric=None)
    per_seed_cells: dict[int, list[float]] = {s: [] for s in seeds}
    cells_out = []
    for r in tab.itertuples():
        init, late = r.initial_fall_per_100, r.late_fall_per_100
        cells_out.append({"world": r.world, "seed": int(r.seed), "n_pos": int(r.n_aligned), "initial_rate_per100": init,
                          "late_rate_per100": late, "crossing_n_neg": r.n_base})
        if math.isfinite(init) and math.isfinite(late):
            per_seed_cells[r.seed].append(init - late)
    per_seed = [float(np.mean(v)) if v else float("nan") for v in per_seed_cells.values()]
    c1 = claim_from_seed_values(
        "rebound.fast_then_slow",
        "Per-example fall of the alignment score S (log-odds) before the curve crosses the base level "
        "exceeds the fall after it (effect: initial − late rate, per 100 opposing examples)",
        "Curves fall fast until they reach the base model's level, then flatten [P1 §5.2, Fig. 4]",
        per_seed, unit="log-odds / 100 examples",
        cells=cells_out, n_cells_defined=sum(len(v) for v in per_seed_cells.values()), n_cells=len(cells_out),
    )

    # 2. more alignment: starts higher and falls faster over the first opposing examples.
    opp = df[df.stage == "opposing"]
    early_grid = sorted(n for n in opp.n_opposing.unique() if 0 < n <= cfg.early_examples)
    early_n = early_grid[-1] if early_grid else None
    start_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    fall_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    for (world, seed), g in opp.groupby(["world", "seed"]):
        if early_n is None:
            continue
        pos = sorted(g.n_aligned.unique())
        start = [float(g[(g.n_aligned == p) & (g.n_opposing == 0)].score_S.iloc[0]) for p in pos]
        early = [float(g[(g.n_aligned == p) & (g.n_opposing == early_n)].score_S.iloc[0]) for p in pos]
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
    kl_col = cfg.kl_metric if cfg.kl_metric in df.columns else "kl_to_base"
    kl_cells = []
    kl_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    kl0_slopes: dict[int, list[float]] = {s: [] for s in seeds}
    if kl_col in df.columns:
        ktab = curve_table(df, keys, ["world", "seed"], "score_S", kl_metric=kl_col, kl_epsilon=cfg.kl_epsilon)
        for (world, seed), g in ktab.groupby(["world", "seed"]):
            xs, ys, x0, k0 = [], [], [], []
            for r in g.itertuples():
                kl_min = float(opp[(opp.world == world) & (opp.seed == seed) & (opp.n_aligned == r.n_aligned)][kl_col].min())
                kl_cells.append({"world": world, "seed": int(seed), "n_pos": int(r.n_aligned),
                                 "n_neg_to_kl_eps": r.n_kl_below_eps, "kl_at_0": r.kl_aligned, "kl_min": kl_min})
                x0.append(math.log2(r.n_aligned))
                k0.append(r.kl_aligned)
                if math.isfinite(r.n_kl_below_eps):
                    xs.append(math.log2(r.n_aligned))
                    ys.append(r.n_kl_below_eps)
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


def figures(df: pd.DataFrame, cfg: ReboundConfig) -> list:
    from ..report.figures import curve_figure

    out = []
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        for metric, label in METRIC_LABELS.items():
            if metric in sub.columns and not sub[metric].isna().all():
                out.append((f"rebound_{world}_{metric}", curve_figure(
                    sub, x="n_opposing", y=metric, hue="n_aligned", base_level=not metric.startswith("kl"),
                    title=f"rebound · {world}", xlabel="opposing examples n⁻", ylabel=label, hue_label="n⁺")))
    return out


# ----------------------------------------------------------------------------- claims of other protocols


def seen_from_first_side(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of a reversed run as seen from the side its first stage aligned to (the opposing one):
    S → −S, π⁺ → 1 − π⁺ and the sampled aligned rate → 1 − rate, so that the first stage raises
    the score and the second lowers it, as in the forward protocol. KL columns are unchanged."""
    out = df.copy()
    if "score_S" in out:
        out["score_S"] = -out["score_S"]
    for col in ("pi_pos", "sampled_rate"):
        if col in out:
            out[col] = 1.0 - out[col]
    return out


def renamed(claims_: list[Claim], prefix: str, note: str = "", paper: str = "") -> list[Claim]:
    """Rebound's claims under another id prefix (``rebound.X`` → ``PREFIX.X``), with ``note``
    prepended to each statement and ``paper`` (when given) replacing the paper's reference."""
    out = []
    for c in claims_:
        rest = c.id.split(".", 1)[1] if "." in c.id else c.id
        out.append(dataclasses.replace(c, id=f"{prefix}.{rest}", statement=f"{note}{c.statement}",
                                       paper=paper or c.paper))
    return out


def direction_claims(df: pd.DataFrame, cfg: ReboundConfig) -> list[Claim]:
    """Rebound's claims; a reversed run's come from the same statistics on
    :func:`seen_from_first_side` rows, under ``rebound.reversed.*``."""
    if cfg.direction == "forward":
        return claims(df, cfg)
    return renamed(claims(seen_from_first_side(df), cfg), "rebound.reversed",
                   "[reversed: opposing data first, then aligned data; scores seen from the opposing side, S → −S] ",
                   "The same ordering with the protocol reversed: negative data first, then positive "
                   "[P1 App. B.2, Fig. 8; SPEC §3.2, §6]")


EXPERIMENT = Experiment(
    name="rebound",
    description="align on n⁺ examples, fine-tune on n⁻ opposing ones: fast fall to the base level, then slow (P1 Fig. 4, Table 3)",
    config_cls=ReboundConfig,
    presets=PRESETS,
    cells=cells,
    claims=direction_claims,
    figures=figures,
    check=check,
)
