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

from ..analysis import Claim, claim_by_group
from ..analysis.curves import (curve_table, examples_to_reach, kl_by_n_pos, replicate_medians, seen_from_first_side,
                               slopes_vs_log2)
from ..analysis.shape import flattening_table
from ..analysis.verdicts import brief, per_group, renamed, with_parts
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


QUICK_N_NEG = [0, 50, 100, 200, 300, 400, 600, 800, 1200, 1600]
PRESETS = {
    # quick: 4 held-out prompts for the exact scores (they vary little across prompts) and a
    # 7-point n⁻ grid keep it near 4 minutes on 2 CPU cores; pre-training is most of the rest.
    # The n⁻ grid has 10 points (7 before issue 14): KL(model‖base) dips near the base crossing, and
    # with points at 400 and 800 only the dip fell between them (changed after seeing it; disclosed
    # in rebound.kl_return's details). Extra points cost measurements only, not training.
    "quick": {"n_neg": QUICK_N_NEG, "world": {"n_eval_prompts": 4}, "measure": {"n_samples": 8}},
    # full: 8 seeds = 16 (world, seed) replicates; the quick run's claims need at most 5 seeds
    # (seeds_needed, docs/science.md "Seeds"). Time: docs/science.md.
    "full": {"seeds": list(range(8)), "n_neg": [0, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1200, 1600],
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

# Equivalence bands δ, in each claim's unit (docs/science.md, "Equivalence bands δ"; fixed before the runs).
DELTA_FLATTENING = 0.2  # share of the initial fall rate lost at the base crossing
DELTA_PER_DOUBLING = 0.1  # log-odds per doubling of n⁺ (early fall, start level)
DELTA_KL_RETURN = 20.0  # opposing examples per doubling of n⁺
KL_EPSILONS = (0.03, 0.1, 0.3, 1.0)  # ε ladder of the KL-return investigation (nats), besides cfg.kl_epsilon


def _num(x: float) -> str:
    return f"{x:.3g}" if x is not None and math.isfinite(x) else "—"


def claims(df: pd.DataFrame, cfg: ReboundConfig) -> list[Claim]:
    """Three claims; one replicate per (world, seed), each world also reported as a group."""
    # 1. fast then slow: the segmented-fit signature at the base crossing, in S (the claim) and π⁺.
    flat_s = flattening_table(df, "score_S")
    flat_p = flattening_table(df, "pi_pos") if "pi_pos" in df.columns else flat_s.iloc[0:0]
    e_s = replicate_medians(flat_s, "flattening")
    e_p = replicate_medians(flat_p, "flattening") if len(flat_p) else {}
    c_pi = claim_by_group("rebound.fast_then_slow[pi_pos]", "", "", per_group(e_p), "share of initial rate",
                          delta=DELTA_FLATTENING) if e_p else None
    pi_text = (f"; in π⁺ E = {_num(c_pi.effect)} [{_num(c_pi.ci_low)}, {_num(c_pi.ci_high)}], {c_pi.verdict}"
               if c_pi is not None else "")
    best_s = float(flat_s.best_break_minus_base.median()) if len(flat_s) else float("nan")
    best_p = float(flat_p.best_break_minus_base.median()) if len(flat_p) else float("nan")
    c1 = claim_by_group(
        "rebound.fast_then_slow",
        "The fall of the alignment score S (log-odds) slows where the curve crosses the base model's level: "
        "a segmented line with its break at the crossing, against one line (effect E = 1 − slope after / slope "
        "before, the share of the initial fall rate lost; median over n⁺ per (world, seed))" + pi_text +
        f". Best single break (least squares over candidate breaks; median over curves): {_num(best_s)} log-odds "
        f"above the base level in S, {_num(best_p)} above it in π⁺",
        "Curves fall fast until they reach the base model's level, then flatten [P1 §5.2, Fig. 4]",
        per_group(e_s), "share of initial fall rate", delta=DELTA_FLATTENING,
        pi_pos=brief(c_pi) if c_pi is not None else None,
        best_break_minus_base_S=best_s, best_break_minus_base_pi_pos=best_p,
        best_break_over_crossing_S=float(flat_s.best_break_over_cross.median()) if len(flat_s) else None,
        median_p_value_one_line_S=float(flat_s.p_value.median()) if len(flat_s) else None,
        cells_S=flat_s.to_dict("records"), cells_pi_pos=flat_p.to_dict("records"),
        n_cells_defined=int(np.isfinite(flat_s.flattening.to_numpy(float)).sum()) if len(flat_s) else 0,
        n_cells=int(len(flat_s)), aggregation="median over n⁺ curves per (world, seed)",
        changed_after_seeing_results="the median (not the mean) over n⁺ curves: one π⁺ curve pinned at its ceiling "
                                     "until late had a near-zero initial slope and E = −84",
    )

    # 2. more alignment: starts higher and falls faster over the first opposing examples.
    opp = df[df.stage == "opposing"]
    early_grid = sorted(n for n in opp.n_opposing.unique() if 0 < n <= cfg.early_examples)
    early_n = early_grid[-1] if early_grid else None
    start_rows = []
    for (world, seed, n_pos), g in opp.groupby(["world", "seed", "n_aligned"]):
        at = g.set_index("n_opposing").score_S
        start = float(at.get(0, float("nan")))
        early = float(at.get(early_n, float("nan"))) if early_n is not None else float("nan")
        start_rows.append({"world": world, "seed": int(seed), "n_aligned": int(n_pos), "start": start,
                           "early_fall": start - early})
    st = pd.DataFrame(start_rows, columns=["world", "seed", "n_aligned", "start", "early_fall"])
    c_start = claim_by_group("rebound.more_alignment_falls_faster[start]", "", "",
                             per_group(slopes_vs_log2(st, "start")), "log-odds per doubling of n⁺",
                             delta=DELTA_PER_DOUBLING)
    c2 = claim_by_group(
        "rebound.more_alignment_falls_faster",
        f"Larger n⁺ starts higher and falls faster over the first {early_n} opposing examples "
        "(effect: slope of the early fall in S against log2 n⁺; part 2: the start level's slope against log2 n⁺ "
        f"= {_num(c_start.effect)} [{_num(c_start.ci_low)}, {_num(c_start.ci_high)}], {c_start.verdict}; both must hold)",
        "More positive data gives a higher start and a faster initial fall [P1 §5.2, Fig. 4]",
        per_group(slopes_vs_log2(st, "early_fall")), "log-odds per doubling of n⁺", delta=DELTA_PER_DOUBLING,
        early_n_neg=early_n, cells=st.to_dict("records"),
    )
    c2 = with_parts(c2, {"start_level": c_start})

    # 3. KL return (Table 3 protocol): opposing examples to bring KL(model‖base) below ε.
    kl_col = cfg.kl_metric if cfg.kl_metric in df.columns else "kl_to_base"
    keys = ["world", "seed", "n_aligned"]
    base_s = curve_table(df, keys, ["world", "seed"], "score_S", kl_metric=None)
    ret = base_s[keys + ["n_base", "score_aligned", "score_base"]].copy()
    kl_cells = []
    for (world, seed, n_pos), g in opp.sort_values("n_opposing").groupby(keys):
        n = g.n_opposing.to_numpy(float)
        cell = {"world": world, "seed": int(seed), "n_aligned": int(n_pos)}
        for col in ("kl_ref_to_base", "kl_to_base"):
            if col in g.columns and g[col].notna().all():
                kl = g[col].to_numpy(float)
                cell[f"{col}_at_0"], cell[f"{col}_min"] = float(kl[0]), float(kl.min())
                cell[f"{col}_argmin"] = float(n[int(np.argmin(kl))])
                for eps in sorted({*KL_EPSILONS, cfg.kl_epsilon}):
                    cell[f"{col}_to_{eps:g}"] = examples_to_reach(n, kl, eps)
        kl_cells.append(cell)
    kt = pd.DataFrame(kl_cells).merge(ret, on=keys, how="left") if kl_cells else pd.DataFrame(columns=keys)
    target = f"{kl_col}_to_{cfg.kl_epsilon:g}"
    per_rep = slopes_vs_log2(kt, target, -1.0) if target in kt.columns else {}

    def ladder(col: str) -> dict:
        out = {}
        for eps in sorted({*KL_EPSILONS, cfg.kl_epsilon}):
            name = f"{col}_to_{eps:g}"
            if name in kt.columns:
                c = claim_by_group("x", "", "", per_group(slopes_vs_log2(kt, name, -1.0)), delta=DELTA_KL_RETURN)
                out[f"{eps:g}"] = {**brief(c), "n_cells_reaching": int(np.isfinite(kt[name].to_numpy(float)).sum())}
        return out

    c_nbase = claim_by_group("x", "", "", per_group(slopes_vs_log2(kt, "n_base", -1.0)), delta=DELTA_KL_RETURN) \
        if "n_base" in kt.columns else None
    c3 = claim_by_group(
        "rebound.kl_return",
        f"Opposing examples needed to bring KL(model‖base) below ε = {cfg.kl_epsilon} nats ({kl_col}) decrease with "
        "n⁺ (effect: minus the slope against log2 n⁺ per (world, seed); curves that never get below ε in the grid "
        "are left out)" + (f". Without ε: minus the slope of the examples to cross the base level in S = "
                            f"{_num(c_nbase.effect)} [{_num(c_nbase.ci_low)}, {_num(c_nbase.ci_high)}], {c_nbase.verdict}"
                            if c_nbase is not None else ""),
        "Table 3: after 1k/2k/5k/10k safe examples, 961/844/801/729 unsafe examples return Llama2-7B "
        "to KL < 0.01 (Gemma-2B 923/853/709/598) [P1 §5.2, Table 3]",
        per_group(per_rep), "opposing examples per doubling of n⁺", delta=DELTA_KL_RETURN, kl_metric=kl_col,
        epsilon_ladder_exact=ladder("kl_ref_to_base"), epsilon_ladder_sampled=ladder("kl_to_base"),
        crossing_base_level_S=brief(c_nbase) if c_nbase is not None else None,
        n_cells_reaching_eps=int(np.isfinite(kt[target].to_numpy(float)).sum()) if target in kt.columns else 0,
        by_n_pos=kl_by_n_pos(kt, kl_col, target),
        n_cells=int(len(kt)), cells=kt.to_dict("records"),
        changed_after_seeing_results="quick n⁻ grid refined from 7 to 10 points (300, 600, 1200 added): KL(model‖base) "
                                     "dips near the base crossing and the dip fell between the points at 400 and 800",
    )
    return [c1, c2, c3]


# ----------------------------------------------------------------------------- figures


def figures(df: pd.DataFrame, cfg: ReboundConfig) -> list:
    from ..report.figures import rebound_figures

    return rebound_figures(df, "rebound")


# ----------------------------------------------------------------------------- claims of other protocols


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
