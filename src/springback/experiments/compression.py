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
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import Claim, claim_from_seed_values, slope
from ..config import ModelConfig, TrainConfig, WorldConfig, to_dict
from ..errors import ConfigError
from ..measure.compression import examples_code_length
from ..worlds import get_world
from .base import Experiment, RunContext
from .common import DEFAULT_PRETRAIN, base_key, clone, finetune, finetune_key, load, pretrained_base
from .theory import band_verdict, hooke_figure

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
    "full": {"worlds": ["sentiment", "safety"], "seeds": [0, 1, 2, 3, 4], "n_align": [5600, 2800, 1120, 280, 112, 28],
             "l_values": [0.0, 0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375, 0.5], "n_heldout": 512},
}


def n_pretrain(cfg: CompressionConfig) -> int:
    return cfg.world.n_task_examples + cfg.world.n_general_examples


def opposing_points(n_a: int, l_values: list[float]) -> list[int]:
    """Opposing-example counts n_t = round(l · n_a), distinct and sorted (0 included)."""
    return sorted({int(math.floor(l * n_a + 0.5)) for l in l_values} | {0})


def heldout_sets(world, cfg: CompressionConfig, seed: int) -> dict[str, list]:
    """Fixed held-out samples of D_p (same mix as pre-training), D_a and D_t for one seed.

    ``p_task`` and ``p_general`` split the D_p sample into its task examples and its plain
    sentences, so a change of γ_p can be traced to the task (what D_t resembles) or to
    forgetting of general text.
    """
    hs = seed + HELDOUT_SEED_OFFSET
    total = n_pretrain(cfg)
    n_task = round(cfg.n_heldout * cfg.world.n_task_examples / total)
    pre = world.pretrain_corpus(n_task, cfg.n_heldout - n_task, cfg.world.prior, hs)
    return {
        "p": pre,
        "a": world.aligned(cfg.n_heldout, hs),
        "t": world.opposing(cfg.n_heldout, hs),
        "p_task": [e for e in pre if e.prompt],
        "p_general": [e for e in pre if not e.prompt],
    }


def measure_rates(model, tok, sets: dict[str, list], part: str, batch_size: int) -> dict[str, float]:
    row = {}
    for name, examples in sets.items():
        if not examples:
            continue
        cl = examples_code_length(model, tok, examples, part=part, batch_size=batch_size)
        row[f"gamma_{name}"] = cl.gamma
        row[f"bits_per_token_{name}"] = cl.bits_per_token
    return row


def run(cfg: CompressionConfig, ctx: RunContext) -> None:
    if cfg.score_part not in ("response", "all"):
        raise ConfigError(f"score_part must be 'response' or 'all', got '{cfg.score_part}'")
    if any(n < 1 for n in cfg.n_align) or any(not 0 <= l for l in cfg.l_values):
        raise ConfigError("n_align must be >= 1 and l_values >= 0")
    for world_name in cfg.worlds:
        world = get_world(world_name, cfg.world.narrowness)
        for seed in cfg.seeds:
            bkey = base_key(world_name, cfg.world, cfg.model, cfg.pretrain, seed)
            sets = heldout_sets(world, cfg, seed)
            common = {"base": bkey, "n_heldout": cfg.n_heldout, "narrowness": cfg.world.narrowness,
                      "score_part": cfg.score_part}
            state: dict = {}

            def base_model():
                if "model" not in state:
                    path = pretrained_base(ctx, world_name, cfg.world, cfg.model, cfg.pretrain, seed)
                    state["model"], state["tok"] = load(path, cfg.model)
                return state["model"], state["tok"]

            def base_rows():
                model, tok = base_model()
                return [{"phase": "base", "world": world_name, "seed": seed, "n_align": 0, "k": float("nan"),
                         "n_pretrain": n_pretrain(cfg), "n_opposing": 0, "l": 0.0,
                         **measure_rates(model, tok, sets, cfg.score_part, cfg.measure_batch_size)}]

            ctx.run_cell({"kind": "compression/base", **common}, base_rows, name=f"{world_name} base s{seed}")
            for n_a in cfg.n_align:
                points = opposing_points(n_a, cfg.l_values)

                def curve_rows(n_a: int = n_a, points: list[int] = points):
                    base, tok = base_model()
                    model = clone(base)
                    finetune(model, tok, world.aligned(n_a, seed), cfg.align, cfg.model, seed=seed,
                             stage=f"align {world_name} n_a={n_a} s{seed}", progress=ctx.progress)
                    rows = []

                    def on_measure(n: int, m) -> None:
                        rows.append({"phase": "opposing", "world": world_name, "seed": seed, "n_align": n_a,
                                     "k": n_pretrain(cfg) / n_a, "n_pretrain": n_pretrain(cfg), "n_opposing": n,
                                     "l": n / n_a, **measure_rates(m, tok, sets, cfg.score_part, cfg.measure_batch_size)})

                    finetune(model, tok, world.opposing(max(points), seed), cfg.opposing, cfg.model, seed=seed + 1,
                             stage=f"opposing {world_name} n_a={n_a} s{seed}", measure_at=points, on_measure=on_measure,
                             progress=ctx.progress)
                    return rows

                key = {"kind": "compression/curve", **common, "n_align": n_a, "points": points,
                       "align": to_dict(cfg.align), "opposing": to_dict(cfg.opposing), **finetune_key(cfg.model)}
                ctx.run_cell(key, curve_rows, name=f"{world_name} n_a={n_a} s{seed}")


# ----------------------------------------------------------------------------- analysis


def derivative_table(df: pd.DataFrame, p_col: str = "gamma_p") -> pd.DataFrame:
    """One row per (world, seed, n_align): dγ/dl on D_p, D_a, D_t (least-squares slopes over the l grid),
    the ratio −(dγ_a/dl)/(dγ_p/dl), the changes Δγ over the whole grid and the Hooke ratio
    |D_p|·|Δγ_p| / (|D_a|·|Δγ_a|). ``p_col`` picks which D_p rate plays γ_p."""
    rows = []
    opp = df[df.phase == "opposing"]
    for (world, seed, n_a), g in opp.groupby(["world", "seed", "n_align"]):
        g = g.sort_values("l")
        d = {"p": slope(g.l, g[p_col]), "a": slope(g.l, g.gamma_a), "t": slope(g.l, g.gamma_t)}
        ratio = -d["a"] / d["p"] if d["p"] != 0 and math.isfinite(d["p"]) else float("nan")
        first, last = g.iloc[0], g.iloc[-1]
        delta_a, delta_p = float(last.gamma_a - first.gamma_a), float(last[p_col] - first[p_col])
        n_p = float(first.n_pretrain)
        rows.append({
            "world": world, "seed": int(seed), "n_align": int(n_a), "k": float(first.k), "n_pretrain": n_p,
            "dgamma_p_dl": d["p"], "dgamma_a_dl": d["a"], "dgamma_t_dl": d["t"], "ratio": ratio,
            # per opposing example: comparable across k (dγ/dn_t = dγ/dl / n_a)
            "dgamma_a_per_1000": 1000 * d["a"] / n_a, "dgamma_p_per_1000": 1000 * d["p"] / n_a,
            "l_max": float(last.l), "delta_gamma_a": delta_a, "delta_gamma_p": delta_p,
            "hooke_ratio": (n_p * abs(delta_p)) / (n_a * abs(delta_a)) if delta_a != 0 else float("nan"),
        })
    return pd.DataFrame(rows)


def _sign_values(tab: pd.DataFrame) -> tuple[list[float], list[float], list[float]]:
    """Per seed: mean dγ_a/dn_t, mean −dγ_p/dn_t (per 1000 opposing examples, over k) and the weaker of the two."""
    seeds = sorted(tab.seed.unique()) if len(tab) else []
    a_eff = [float(tab[tab.seed == s].dgamma_a_per_1000.mean()) for s in seeds]
    p_eff = [float(-tab[tab.seed == s].dgamma_p_per_1000.mean()) for s in seeds]
    return a_eff, p_eff, [min(a, p) for a, p in zip(a_eff, p_eff)]


def _slope_values(tab: pd.DataFrame) -> list[float]:
    """Per seed: log-log slope of the ratio against k over the cells where it is positive (NaN if < 2 such cells)."""
    out = []
    for s in sorted(tab.seed.unique()) if len(tab) else []:
        slopes = []
        for _, g in tab[tab.seed == s].groupby("world"):
            ok = g[np.isfinite(g.ratio) & (g.ratio > 0)]
            slopes.append(slope(np.log10(ok.k), np.log10(ok.ratio)))
        finite = [x for x in slopes if math.isfinite(x)]
        out.append(float(np.mean(finite)) if finite else float("nan"))
    return out


def _short(c: Claim) -> dict:
    return {"effect": c.effect, "ci": [c.ci_low, c.ci_high], "verdict": c.verdict, "n_seeds": c.n_seeds}


def analyze(df: pd.DataFrame, cfg: CompressionConfig) -> list[Claim]:
    tab = derivative_table(df)
    a_eff, p_eff, weaker = _sign_values(tab)
    # Decomposition (not the claim): γ_p on the task part of D_p only, i.e. without the
    # forgetting of general text that sequential fine-tuning adds and joint training has not.
    has_task = "gamma_p_task" in df.columns and df.gamma_p_task.notna().any()
    tab_task = derivative_table(df, "gamma_p_task") if has_task else tab.iloc[0:0]
    _, _, weaker_task = _sign_values(tab_task)

    def opposite(t: pd.DataFrame) -> float:
        return float(((t.dgamma_a_dl > 0) & (t.dgamma_p_dl < 0)).mean()) if len(t) else float("nan")

    c1 = claim_from_seed_values(
        "compression.opposite_signs",
        "While a world model is fine-tuned on opposing data, its compression rate γ on held-out D_a rises and on "
        "held-out D_p falls (effect: per seed, the weaker of mean dγ_a/dn_t and mean −dγ_p/dn_t over k, "
        "per 1000 opposing examples; > 0 iff both signs are right)",
        "dγ^{D_a/D}/dl > 0 and dγ^{D_p/D}/dl < 0 as the perturbation grows [P1 §4, elasticity theorem]",
        weaker, unit="γ per 1000 opposing examples",
        dgamma_a_per_1000=_short(claim_from_seed_values("a", "", "", a_eff)),
        minus_dgamma_p_per_1000=_short(claim_from_seed_values("p", "", "", p_eff)),
        share_cells_opposite_signs=opposite(tab),
        task_part_of_D_p=_short(claim_from_seed_values("task", "", "", weaker_task)) | {"share_cells_opposite_signs": opposite(tab_task)},
        cells=tab.to_dict("records"),
    )
    per_seed = _slope_values(tab)
    c2 = claim_from_seed_values(
        "compression.ratio_grows_with_k",
        "The ratio −(dγ_a/dl)/(dγ_p/dl) grows with k = |D_p|/|D_a| when k is varied through the alignment-set size "
        "(effect: log-log slope of the ratio against k over the cells where it is positive; > 0 means it grows)",
        "dγ^{D_a/D}/dl = Θ(−k · dγ^{D_p/D}/dl): log-log slope 1 [P1 §4]; measured on trained models [ours, SPEC §4]",
        per_seed, unit="log-log slope", expected_slope=1.0,
        n_cells_positive_ratio=int((tab.ratio > 0).sum()) if len(tab) else 0, n_cells=int(len(tab)),
        ratio_by_k={f"{k:g}": float(v) for k, v in tab.groupby("k").ratio.median().items()} if len(tab) else {},
        hooke_ratio_by_k={f"{k:g}": float(v) for k, v in tab.groupby("k").hooke_ratio.median().items()} if len(tab) else {},
        task_part_of_D_p=_short(claim_from_seed_values("task", "", "", _slope_values(tab_task))) | {
            "ratio_by_k": {f"{k:g}": float(v) for k, v in tab_task.groupby("k").ratio.median().items()} if len(tab_task) else {}},
    )
    c2.details["linear_in_k_verdict"] = band_verdict(c2.ci_low, c2.ci_high, tuple(cfg.slope_band))
    return [c1, c2]


# ----------------------------------------------------------------------------- figures


def plot(df: pd.DataFrame, cfg: CompressionConfig, fig_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from ..report import figures as _figures  # noqa: F401  (selects the Agg backend)

    paths: list[Path] = []
    opp = df[df.phase == "opposing"]
    if not len(opp):
        return paths
    for world in sorted(opp.world.unique()):
        sub = opp[opp.world == world]
        panels = [("gamma_a", "γ on held-out D_a (alignment)"), ("gamma_p", "γ on held-out D_p (pre-training)")]
        if "gamma_p_task" in sub.columns:
            panels += [("gamma_p_task", "γ on D_p's task examples"), ("gamma_p_general", "γ on D_p's general sentences")]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
        cmap = plt.get_cmap("viridis")
        ks = sorted(sub.k.unique())
        for ax, (name, label) in zip(axes, panels):
            for i, k in enumerate(ks):
                g = sub[sub.k == k].groupby("l")[name]
                color = cmap(0.1 + 0.8 * i / max(1, len(ks) - 1))
                ax.plot(g.mean().index, g.mean().values, "o-", ms=3, color=color, label=f"k = {k:g}")
                ax.fill_between(g.mean().index, (g.mean() - g.std().fillna(0)).values,
                                (g.mean() + g.std().fillna(0)).values, color=color, alpha=0.15, lw=0)
            ax.set_xlabel("l = |D_t| / |D_a|")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7, frameon=False)
        fig.suptitle(f"compression · {world}: γ while fine-tuning on opposing data", fontsize=10)
        fig.tight_layout()
        p = fig_dir / f"compression_{world}_gamma.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)

    tab = derivative_table(df)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for world, g in tab.groupby("world"):
        ok = g[np.isfinite(g.ratio) & (g.ratio > 0)]
        ax.plot(ok.k, ok.ratio, "o", alpha=0.5, ms=4, label=f"{world}: seeds")
        med = ok.groupby("k").ratio.median()
        ax.plot(med.index, med.values, "-", lw=1.5, label=f"{world}: median")
    ks = np.array(sorted(tab.k.unique()))
    if len(ks):
        ax.plot(ks, ks, "--", color="0.3", lw=1, label="theorem: ratio ∝ k (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k = |D_p| / |D_a|")
    ax.set_ylabel("−(dγ_a/dl) / (dγ_p/dl)")
    ax.set_title("compression · derivative ratio against k (trained models)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    p = fig_dir / "compression_ratio_vs_k.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)

    if len(tab):
        agg = tab.groupby("k")[["delta_gamma_a", "delta_gamma_p", "n_align", "n_pretrain"]].mean().reset_index()
        pts = pd.concat([
            pd.DataFrame({"k": agg.k, "dataset": "D_a", "size": agg.n_align, "delta": agg.delta_gamma_a.abs()}),
            pd.DataFrame({"k": agg.k, "dataset": "D_p", "size": agg.n_pretrain, "delta": agg.delta_gamma_p.abs()}),
        ])
        fig = hooke_figure(pts, f"compression · Hooke's law at l = {max(cfg.l_values):g} (trained models)", "|D_i| (examples)",
                           "|Δγ| from l = 0 (mean over seeds)")
        p = fig_dir / "compression_hooke.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths


EXPERIMENT = Experiment(
    name="compression",
    description="γ on D_p and D_a while fine-tuning on opposing data: opposite signs, ratio growing with k (P1 §4, measured)",
    config_cls=CompressionConfig,
    presets=PRESETS,
    run=run,
    analyze=analyze,
    plot=plot,
)
