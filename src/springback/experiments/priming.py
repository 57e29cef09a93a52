"""Rehearsal priming (SPEC §5 prediction (c)).

Only P2's abstract is public; this protocol is our formulation, consistent with it (SPEC §5).

Per (world, seed), starting from the cached pre-trained base with score S₀:

1. **Align**: fine-tune a copy of the base on ``n_align`` aligned examples (score S₁ > S₀).
2. **Return**: fine-tune it on opposing examples until its score is back at S₀. The stopping
   point is found, not hit by luck (:func:`stage2_rule` and :func:`bisect_to_level`):
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
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..analysis import Claim, claim_from_seed_values
from ..config import MeasureConfig, ModelConfig, TrainConfig, WorldConfig, to_dict
from ..data import DataConfig, DataWorld
from ..errors import ConfigError
from ..measure.alignment import ReferenceBatches
from ..measure.sampling import sample
from ..measure.scorers import world_label_scorer
from ..worlds import get_world
from .base import Experiment, RunContext
from .common import DEFAULT_PRETRAIN, base_key, clone, finetune, finetune_key, load, pretrained_base


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
    "full": {"seeds": [0, 1, 2, 3, 4], "world": {"n_eval_prompts": 16}, "n_realign": [0, 16, 32, 64, 128, 256, 512],
             "stage2_grid_examples": 32, "stage1_points": 4},
}


# ----------------------------------------------------------------------------- the stage-2 stopping rule


def stage2_rule(trace: Sequence[tuple[float, float]], s0: float, tol: float) -> tuple[str, int, int]:
    """Where a decreasing stage-2 score trace first gets back to ``s0``.

    ``trace``: (examples, score) at successive checkpoints. Returns
    ``("hit", i, i)`` when checkpoint i is within ``tol`` of s0, ``("bracket", i − 1, i)`` when
    checkpoint i is the first below s0 − tol (the crossing lies between i − 1 and i),
    ``("start_below", 0, 0)`` when the trace starts below s0 − tol (stage 1 did not lift S),
    or ``("none", -1, -1)`` when no checkpoint has reached s0 yet.
    """
    for i, (_, s) in enumerate(trace):
        if abs(s - s0) < tol:
            return "hit", i, i
        if s < s0:
            return ("start_below", 0, 0) if i == 0 else ("bracket", i - 1, i)
    return "none", -1, -1


def bisect_to_level(
    f: Callable[[float], float], target: float, tol: float, f_lo: float, f_hi: float,
    lo: float = 0.0, hi: float = 1.0, max_steps: int = 40,
) -> tuple[float, float, int]:
    """x in [lo, hi] with |f(x) − target| < tol by bisection, given f(lo) and f(hi) on opposite
    sides of ``target`` (either orientation). Returns (x, f(x), evaluations); when ``max_steps``
    runs out, the evaluated point closest to the target (the latest one among ties)."""
    if (f_lo - target) * (f_hi - target) > 0:
        raise ValueError(f"f(lo) = {f_lo} and f(hi) = {f_hi} do not bracket {target}")
    best = (lo, f_lo) if abs(f_lo - target) <= abs(f_hi - target) else (hi, f_hi)
    if abs(best[1] - target) < tol:
        return best[0], best[1], 0
    for step in range(1, max_steps + 1):
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if abs(fm - target) <= abs(best[1] - target):  # ties: the later point, nearer the crossing
            best = (mid, fm)
        if abs(fm - target) < tol:
            return mid, fm, step
        if (fm - target) * (f_lo - target) > 0:
            lo, f_lo = mid, fm
        else:
            hi, f_hi = mid, fm
    return best[0], best[1], max_steps


def interpolate_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 − α)·a + α·b for floating-point tensors; other entries are taken from ``a``."""
    return {k: (a[k] + alpha * (b[k] - a[k])) if a[k].is_floating_point() else a[k] for k in a}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def return_to_level(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Any],
    train_cfg: TrainConfig,
    model_cfg: ModelConfig,
    score_fn: Callable[[torch.nn.Module], float],
    s0: float,
    tol: float,
    *,
    seed: int,
    grid_examples: int,
    max_bisect_steps: int = 40,
    stage: str = "return",
    progress: bool = False,
) -> tuple[dict, list[dict]]:
    """Stage 2: fine-tune ``model`` in place on ``examples`` until its score is back at ``s0``.

    Returns (summary, trace rows). On success ``model`` holds the stopping-point weights.
    The summary has ``status`` (hit / bracket / start_below / none), ``n_stop`` (examples,
    fractional inside a bracket), ``alpha``, ``score_stop``, ``gap`` = score − s0,
    ``within_tolerance`` and ``n_bisect`` (score evaluations of the bisection).
    """
    if grid_examples < 1:
        raise ConfigError(f"stage2_grid_examples must be >= 1, got {grid_examples}")
    grid = list(range(0, len(examples) + 1, grid_examples))
    trace: list[tuple[float, float]] = []
    states: list[dict[str, torch.Tensor]] = []  # the last two checkpoints' weights
    rows: list[dict] = []
    verdict: dict = {"status": "none"}

    def on_measure(n: int, m: torch.nn.Module) -> bool:
        s = score_fn(m)
        trace.append((n, s))
        rows.append({"stage": "return", "n_examples": float(n), "score": s, "bisect": False})
        states.append(_state(m))
        del states[:-2]
        status, i, j = stage2_rule(trace, s0, tol)
        if status != "none":
            verdict.update(status=status, i=i, j=j)
            return True
        return False

    finetune(model, tokenizer, examples, train_cfg, model_cfg, seed=seed, stage=stage, measure_at=grid,
             on_measure=on_measure, shuffle=False, progress=progress)
    status = verdict["status"]
    summary = {"status": status, "n_stop": float("nan"), "alpha": float("nan"), "score_stop": float("nan"),
               "gap": float("nan"), "within_tolerance": False, "n_bisect": 0, "n_trained": trace[-1][0] if trace else 0}
    if status == "hit":
        n, s = trace[-1]
        summary.update(n_stop=float(n), alpha=0.0, score_stop=s)
    elif status == "bracket":
        (n_a, s_a), (n_b, s_b) = trace[-2], trace[-1]
        before, after = states
        probe = model  # reuse the trained module as the scratch model for interpolated weights

        def f(alpha: float) -> float:
            probe.load_state_dict(interpolate_state(before, after, alpha))
            s = score_fn(probe)
            rows.append({"stage": "return", "n_examples": n_a + alpha * (n_b - n_a), "score": s, "bisect": True})
            return s

        alpha, s, evals = bisect_to_level(f, s0, tol, s_a, s_b, max_steps=max_bisect_steps)
        model.load_state_dict(interpolate_state(before, after, alpha))
        summary.update(n_stop=n_a + alpha * (n_b - n_a), alpha=alpha, score_stop=s, n_bisect=evals)
    if math.isfinite(summary["score_stop"]):
        summary["gap"] = summary["score_stop"] - s0
        summary["within_tolerance"] = bool(abs(summary["gap"]) < tol)
    return summary, rows


# ----------------------------------------------------------------------------- scoring


def make_score_fn(world: Any, prompts: Sequence[str], measure: MeasureConfig, seed: int,
                  tokenizer: Any) -> tuple[Callable[[torch.nn.Module], float], str]:
    """The stage score: exact S when the world has reference completions on both sides, else
    the sampled aligned rate under the world's labeller (fixed sampling seed). Returns (fn, kind)."""
    a_set, n_set = world.reference_sets()
    if a_set and n_set:
        batches = ReferenceBatches(tokenizer, prompts, a_set, n_set, measure.batch_size)  # tokenised once

        def exact(m: torch.nn.Module) -> float:
            return float(batches.measure(m).score.mean())

        return exact, "exact_S"
    if measure.n_samples < 1:
        raise ConfigError("no reference completions on both sides: the sampled score needs measure.n_samples >= 1")
    labeller = world_label_scorer(world)

    def sampled(m: torch.nn.Module) -> float:
        texts, _, pidx = sample(m, tokenizer, prompts, measure.n_samples, seed=seed, temperature=measure.temperature,
                                top_p=measure.top_p, max_new_tokens=measure.max_new_tokens)
        labels = labeller(texts, [prompts[i] for i in pidx])
        return float(sum(labels) / len(labels))

    return sampled, "sampled_rate"


# ----------------------------------------------------------------------------- run


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


def run(cfg: PrimingConfig, ctx: RunContext) -> None:
    check(cfg)
    if cfg.model.lora_r > 0:
        # Stage 2 interpolates full weights between checkpoints; a LoRA run's weights change
        # shape when the adapter is merged, so the search is defined for full fine-tuning only.
        raise ConfigError("priming needs full fine-tuning (model.lora_r=0): its stage-2 search interpolates weights")
    data_world = None
    if cfg.data.aligned:  # a real data set replaces the synthetic worlds
        if not cfg.model.path:
            raise ConfigError("data.aligned is set: also set model.path (a checkpoint to start from)")
        data_world = DataWorld(cfg.data)
    n_realign = sorted(set([0] + list(cfg.n_realign)))
    for world_name in ["data"] if data_world else cfg.worlds:
        world = data_world or get_world(world_name, cfg.world.narrowness)
        prompts = world.eval_prompts(cfg.world.n_eval_prompts)
        for seed in cfg.seeds:
            bkey = base_key(world_name, cfg.world, cfg.model, cfg.pretrain, seed)

            def cell_rows(seed: int = seed) -> list[dict]:
                path = pretrained_base(ctx, world_name, cfg.world, cfg.model, cfg.pretrain, seed)
                base, tok = load(path, cfg.model)
                score_fn, score_kind = make_score_fn(world, prompts, cfg.measure, seed, tok)
                tol = cfg.tolerance if score_kind == "exact_S" else cfg.sampled_tolerance
                tag = {"world": world_name, "seed": seed, "score_kind": score_kind}
                rows: list[dict] = []
                s0 = score_fn(base)
                rows.append({**tag, "stage": "base", "arm": "primed", "n_examples": 0.0, "score": s0})

                # Stage 1: align.
                model = clone(base)
                stage1 = world.aligned(cfg.n_align, seed)

                def on_align(n: int, m: torch.nn.Module) -> None:
                    if n > 0:
                        rows.append({**tag, "stage": "align", "arm": "primed", "n_examples": float(n), "score": score_fn(m)})

                finetune(model, tok, stage1, cfg.align, cfg.model, seed=seed, stage=f"align {world_name} s{seed}",
                         measure_at=_points(cfg.n_align, cfg.stage1_points), on_measure=on_align, progress=ctx.progress)
                s1 = rows[-1]["score"]
                if not s1 > s0 + tol:  # stage 1 did not lift the score: there is nothing to return from
                    rows.append({**tag, "stage": "stop", "arm": "primed", "n_examples": float("nan"), "score": float("nan"),
                                 "S0": s0, "S1": s1, "tolerance": tol, "status": "no_gain", "gap": float("nan"),
                                 "within_tolerance": False, "n_bisect": 0})
                    return rows

                # Stage 2: opposing data until the score is back at S₀.
                summary, trace = return_to_level(
                    model, tok, world.opposing(cfg.n_opposing_max, seed), cfg.opposing, cfg.model, score_fn, s0, tol,
                    seed=seed + 1, grid_examples=cfg.stage2_grid_examples, max_bisect_steps=cfg.max_bisect_steps,
                    stage=f"return {world_name} s{seed}", progress=ctx.progress)
                rows += [{**tag, "arm": "primed", **r} for r in trace]
                rows.append({**tag, "stage": "stop", "arm": "primed", "n_examples": summary["n_stop"],
                             "score": summary["score_stop"], "S0": s0, "S1": s1, "tolerance": tol,
                             **{k: v for k, v in summary.items() if k not in ("n_stop", "score_stop")}})
                if not (summary["status"] in ("hit", "bracket")):
                    return rows  # no primed model: reported as such, the claim leaves this cell out

                # Stage 3: primed and control re-align on the same data, seed and schedule.
                stage3 = (world.aligned(max(n_realign), seed + 10_000) if cfg.fresh_stage3_data
                          else world.aligned(max(n_realign), seed))
                for arm, start in (("primed", model), ("control", clone(base))):
                    def on_realign(n: int, m: torch.nn.Module, arm: str = arm) -> None:
                        rows.append({**tag, "stage": "realign", "arm": arm, "n_examples": float(n), "score": score_fn(m)})

                    finetune(start, tok, stage3, cfg.align, cfg.model, seed=seed + 2, stage=f"realign {arm} {world_name} s{seed}",
                             measure_at=n_realign, on_measure=on_realign, progress=ctx.progress)
                return rows

            key = {"kind": "priming/cell", "base": bkey, "n_eval_prompts": cfg.world.n_eval_prompts,
                   "narrowness": cfg.world.narrowness, "n_align": cfg.n_align, "n_opposing_max": cfg.n_opposing_max,
                   "grid": cfg.stage2_grid_examples, "tolerance": cfg.tolerance, "sampled_tolerance": cfg.sampled_tolerance,
                   "max_bisect": cfg.max_bisect_steps, "n_realign": n_realign, "stage1_points": cfg.stage1_points,
                   "fresh": cfg.fresh_stage3_data, "align": to_dict(cfg.align), "opposing": to_dict(cfg.opposing),
                   **finetune_key(cfg.model)}
            if data_world:
                key["data"] = to_dict(cfg.data)
                key["measure"] = to_dict(cfg.measure)
            ctx.run_cell(key, cell_rows, name=f"{world_name} s{seed}")


# ----------------------------------------------------------------------------- analysis


def area_between(n: Sequence[float], primed: Sequence[float], control: Sequence[float]) -> float:
    """Trapezoid area of (primed − control) over n, divided by the n range: a mean gap."""
    n_arr = np.asarray(n, float)
    gap = np.asarray(primed, float) - np.asarray(control, float)
    if len(n_arr) < 2 or n_arr[-1] <= n_arr[0] or not np.isfinite(gap).all():
        return float("nan")
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(n_arr)) / (n_arr[-1] - n_arr[0]))


def realign_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (world, seed): stopping point, start gap and the area between curves."""
    out = []
    for (world, seed), g in df.groupby(["world", "seed"]):
        stop = g[g.stage == "stop"]
        if stop.empty:
            continue
        st = stop.iloc[0]
        re = g[g.stage == "realign"]
        p = re[re.arm == "primed"].set_index("n_examples").score.sort_index()
        c = re[re.arm == "control"].set_index("n_examples").score.sort_index()
        common = p.index.intersection(c.index)
        area = area_between(common, p.loc[common], c.loc[common]) if len(common) > 1 else float("nan")
        out.append({"world": world, "seed": int(seed), "status": st.status, "S0": st.S0, "S1": st.S1,
                    "n_stop": st.n_examples, "start_gap": st.gap, "within_tolerance": bool(st.within_tolerance),
                    "n_bisect": int(st.n_bisect), "area_per_example": area,
                    "final_gap": float(p.loc[common].iloc[-1] - c.loc[common].iloc[-1]) if len(common) else float("nan")})
    return pd.DataFrame(out)


def analyze(df: pd.DataFrame, cfg: PrimingConfig) -> list[Claim]:
    tab = realign_table(df)
    seeds = sorted(df.seed.unique())
    per_seed = []
    for s in seeds:
        v = tab[(tab.seed == s)].area_per_example.to_numpy(float) if len(tab) else np.array([])
        v = v[np.isfinite(v)]
        per_seed.append(float(v.mean()) if len(v) else float("nan"))
    per_world = {}
    for world, g in (tab.groupby("world") if len(tab) else []):
        c = claim_from_seed_values("w", "", "", g.area_per_example.tolist())
        per_world[world] = {"effect": c.effect, "ci": [c.ci_low, c.ci_high], "verdict": c.verdict}
    score_kind = str(df.score_kind.iloc[0]) if "score_kind" in df and len(df) else "exact_S"

    def num(x: float) -> str:
        return f"{x:.3g}" if x is not None and math.isfinite(x) else "—"

    per_world_text = "; ".join(
        f"{w} {num(v['effect'])} [{num(v['ci'][0])}, {num(v['ci'][1])}], primed ahead in "
        f"{int((tab[tab.world == w].area_per_example > 0).sum())}/{int(tab[tab.world == w].area_per_example.notna().sum())} seeds"
        for w, v in sorted(per_world.items()))
    claim = claim_from_seed_values(
        "priming.primed_realigns_faster",
        "A model aligned and then returned to its base score S₀ by opposing fine-tuning (|S − S₀| < tolerance, "
        "found by checkpoint search) re-aligns faster on stage-1 data than the never-aligned base at the same S₀, "
        f"same data, seed and schedule (effect: area between the primed and control curves of {score_kind} over "
        f"{max(cfg.n_realign)} re-alignment examples, divided by that range — a mean gap; mean over worlds). "
        f"Per world: {per_world_text}",
        "Rehearsal priming: a reversed model re-aligns faster than a never-aligned one with the same starting "
        "score (P2 abstract; protocol ours, SPEC §5 (c))",
        per_seed, unit="log-odds (mean gap)" if score_kind == "exact_S" else "aligned rate (mean gap)",
        per_world=per_world, cells=tab.to_dict("records") if len(tab) else [],
        n_cells_within_tolerance=int(tab.within_tolerance.sum()) if len(tab) else 0, n_cells=int(len(tab)),
    )
    return [claim]


# ----------------------------------------------------------------------------- figures


def plot(df: pd.DataFrame, cfg: PrimingConfig, fig_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    for world in sorted(df.world.unique()):
        sub = df[df.world == world]
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        cmap = plt.get_cmap("tab10")
        for i, (seed, g) in enumerate(sub.groupby("seed")):
            color = cmap(i % 10)
            s1 = g[g.stage.isin(["base", "align"])].sort_values("n_examples")
            n1 = float(s1.n_examples.max())
            s2 = g[(g.stage == "return") & (~g.bisect.astype(bool))].sort_values("n_examples") if "bisect" in g else g.iloc[0:0]
            stop = g[g.stage == "stop"]
            n_stop = float(stop.n_examples.iloc[0]) if len(stop) and math.isfinite(stop.n_examples.iloc[0]) else float("nan")
            x2 = list(n1 + s2.n_examples) + ([n1 + n_stop] if math.isfinite(n_stop) else [])
            y2 = list(s2.score) + ([float(stop.score.iloc[0])] if math.isfinite(n_stop) else [])
            ax.plot(s1.n_examples, s1.score, color=color, lw=1.2, label=f"seed {seed}: primed (stages 1–3)")
            ax.plot(x2, y2, color=color, lw=1.2)
            if math.isfinite(n_stop):
                x3 = n1 + n_stop
                re = g[g.stage == "realign"].sort_values("n_examples")
                p, c = re[re.arm == "primed"], re[re.arm == "control"]
                ax.plot(x3 + p.n_examples, p.score, color=color, lw=1.2)
                ax.plot(x3 + c.n_examples, c.score, color=color, lw=1.2, ls="--",
                        label=f"seed {seed}: control (base, stage 3)")
                ax.axvline(x3, color=color, lw=0.5, ls=":")
            ax.axvline(n1, color="0.6", lw=0.5, ls=":")
        base = sub[sub.stage == "base"].score.mean()
        ax.axhline(base, color="0.3", ls="--", lw=0.8, label="base S₀ (mean)")
        kind = str(sub.score_kind.iloc[0]) if "score_kind" in sub else "score"
        ylabel = {"exact_S": "S = log(π⁺/π⁻) (exact)", "sampled_rate": "sampled aligned rate"}.get(kind, kind)
        ax.set(xlabel="examples: align | opposing (to S₀) | re-align", ylabel=ylabel, title=f"rehearsal priming · {world}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False, ncol=2)
        fig.tight_layout()
        p = fig_dir / f"priming_{world}_stages.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths


EXPERIMENT = Experiment(
    name="priming",
    description="align, reverse to the starting score S₀, re-align: primed vs never-aligned control (SPEC §5 (c), our formulation of P2)",
    config_cls=PrimingConfig,
    presets=PRESETS,
    run=run,
    analyze=analyze,
    plot=plot,
)
