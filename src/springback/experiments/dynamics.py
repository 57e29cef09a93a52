"""Alignment dynamics: driving force vs rebound force (SPEC §5).

Only P2's abstract is public. The force decomposition tested here is our formulation,
consistent with that abstract (SPEC §5, :mod:`springback.measure.forces`), not the paper's.

Three parts:

(a) **Pure softmax model** (one free logit per completion of A ∪ N, sizes as in each world).
    A step Δz = η (q − π) changes S by η (F_drive + F_rebound) to first order; the run
    records, step by step, the prediction η·F and the exact ΔS along an align phase (q on
    ``narrowness`` aligned templates) and an opposing phase (q uniform on N).

(b) **Tiny world models.** Per (world, seed, narrowness): align a copy of the cached
    pre-trained base, then fine-tune it on opposing data, measuring S and the forces exactly
    (teacher forcing over A and N on held-out prompts) every ``window_examples`` examples.
    *What "predicted" means here:* in a network the completion logits share parameters, so
    one optimizer step moves S by ∇S·Δθ, not by η(q − π)·∂S/∂z; and AdamW's step size is not
    the identity's η. We therefore test the decomposition as a **predictor of direction and
    time course**: the force F = F_drive + F_rebound measured at the start of each window is
    correlated with the measured ΔS over that window (Pearson r over the windows of both
    phases of a run), and must beat F_drive alone, whose sign the phase already fixes.
    Within-phase correlations are reported too. A per-phase least-squares slope ΔS ≈ η_eff·F
    (through the origin) is reported as the effective step size, a fitted number, not a
    prediction.
    q is the empirical distribution of the phase's training responses over A ∪ N. With q
    uniform over a side, ⟨q, π(·|·)⟩ hardly varies, so within a phase most of the predicted
    variation comes from F_rebound.

(c) **Narrowness.** The same runs, with the alignment data restricted to k distinct aligned
    templates (``WorldConfig.narrowness``; k = 0 means all). Rebound speed = opposing examples
    needed to lose half of the alignment gain (S₁ − S₀), set against the measured C_A after
    alignment. SPEC §5's prediction (b): narrower aligned posteriors rebound harder. The
    align phase stops at a fixed gain (``align_gain``) so that every k loses the same gain.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..analysis import Claim, claim_from_seed_values, combine_verdicts, slope
from ..config import ModelConfig, TrainConfig, WorldConfig, to_dict
from ..errors import ConfigError
from ..measure.alignment import ReferenceBatches
from ..measure.forces import (
    SoftmaxCompletionModel,
    forces,
    forces_from_logps,
    training_distribution,
    uniform_q,
)
from ..worlds import get_world
from .base import Experiment, RunContext
from .common import DEFAULT_PRETRAIN, base_key, clone, finetune, finetune_key, load, pretrained_base


@dataclasses.dataclass
class DynamicsConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment", "safety"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    # Distinct aligned templates in the alignment data (0 = all of them); the 1, 2, 4, 16.
    narrowness: list[int] = dataclasses.field(default_factory=lambda: [1, 4, 16])
    n_align: int = 1024  # budget of aligned examples in the align phase
    # The align phase stops once S has gained this much over the base (log-odds; 0 = use the whole
    # budget). Matching the gain across narrowness keeps "lose half the gain" comparable: with a fixed
    # example count, narrow alignment gains less, and a smaller gain is lost in fewer examples.
    align_gain: float = 2.5
    n_opposing: int = 384  # opposing examples after it
    window_examples: int = 64  # examples between force measurements (a multiple of the batch keeps batches whole)
    # world.narrowness is not used: the `narrowness` list above sets it per run.
    world: WorldConfig = dataclasses.field(default_factory=lambda: WorldConfig(n_eval_prompts=4))
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    opposing: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    measure_batch_size: int = 256  # sequences per teacher-forcing pass (results do not depend on it)
    # Pure softmax model (part a): step size η and steps per phase.
    softmax_lr: float = 0.5  # per-completion probabilities are ~1/|A|, so η ~ 1 moves S by ~0.01 per step
    softmax_steps: int = 2000  # cap per phase (the align phase stops at align_gain)


PRESETS = {
    "quick": {},
    "full": {"seeds": [0, 1, 2, 3, 4], "narrowness": [1, 2, 4, 16, 0], "n_align": 2048, "n_opposing": 512,
             "world": {"n_eval_prompts": 8}, "window_examples": 32},
}


# ----------------------------------------------------------------------------- (a) pure softmax model


def softmax_trace(n_aligned: int, n_opposing: int, narrowness: int, seed: int, lr: float, n_steps: int,
                  start_score: float, gain: float = 0.0, max_rows: int = 100) -> list[dict]:
    """Align then opposing phase of a :class:`SoftmaxCompletionModel` with exact full-batch steps.

    Each row: the state at a step, the forces for that step's q, the first-order prediction
    lr·(F_drive + F_rebound) and the exact ΔS of the step. The align phase ends after
    ``n_steps`` or, with ``gain`` > 0, once S has risen by ``gain`` (as in the network runs);
    the opposing phase after ``n_steps`` or once S is back at its starting level.
    At most ``max_rows`` evenly spaced steps per phase are kept (every step is simulated).
    """
    model = SoftmaxCompletionModel.random(n_aligned, n_opposing, seed=seed, scale=0.5)
    model.logits[:n_aligned] += start_score - model.score()  # start at the world's base level
    z = model.logits.numpy().copy()
    rows: list[dict] = []

    def score(v: np.ndarray) -> float:
        a, o = v[:n_aligned], v[n_aligned:]
        return float(a.max() + np.log(np.exp(a - a.max()).sum()) - o.max() - np.log(np.exp(o - o.max()).sum()))

    s_base = score(z)
    for phase, q in (("align", uniform_q(n_aligned, n_opposing, "aligned", subset=narrowness)),
                     ("opposing", uniform_q(n_aligned, n_opposing, "opposing"))):
        qn = q.numpy()
        states = [z]
        s_start = score(z)
        for _ in range(n_steps):
            s = score(z)
            if phase == "align" and gain > 0 and s >= s_start + gain:
                break
            if phase == "opposing" and s <= s_base:  # back at the base level: the rebound is over
                break
            p = np.exp(z - z.max())
            z = z + lr * (qn - p / p.sum())  # the exact gradient step on E_q[log π]
            states.append(z)
        zs = torch.from_numpy(np.stack(states))  # [T + 1, K]
        f = forces_from_logps(zs[:, :n_aligned], zs[:, n_aligned:], q[:n_aligned], q[n_aligned:])  # every state at once
        scores = f.score
        n_done = len(states) - 1
        keep = sorted(set(np.linspace(0, n_done - 1, min(max_rows, n_done)).round().astype(int).tolist())) if n_done else []
        for t in keep:
            rows.append({"phase": phase, "step": t, "pi_pos": float(f.pi_pos[t]), "score_S": float(scores[t]),
                         "collision_A": float(f.collision_aligned[t]), "collision_N": float(f.collision_opposing[t]),
                         "f_drive": float(f.f_drive[t]), "f_rebound": float(f.f_rebound[t]), "f_total": float(f.f_total[t]),
                         "predicted_delta_S": lr * float(f.f_total[t]), "delta_S": float(scores[t + 1] - scores[t])})
        rows.append({"phase": phase, "step": n_done, "score_S": float(scores[-1]), "f_rebound": float(f.f_rebound[-1]),
                     "collision_A": float(f.collision_aligned[-1]), "predicted_delta_S": float("nan"), "delta_S": float("nan")})
    return rows


# ----------------------------------------------------------------------------- (b) tiny world models


def measurement_grid(n_examples: int, window: int) -> list[int]:
    """0, window, 2·window, ... and always ``n_examples`` itself."""
    if window < 1:
        raise ValueError(f"window_examples must be >= 1, got {window}")
    grid = list(range(0, n_examples + 1, window))
    if grid[-1] != n_examples:
        grid.append(n_examples)
    return grid


def trace_phase(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Any],
    train_cfg: TrainConfig,
    model_cfg: ModelConfig,
    *,
    seed: int,
    phase: str,
    window: int,
    prompts: Sequence[str],
    aligned: Sequence[str],
    opposing: Sequence[str],
    batch_size: int = 256,
    stop_gain: float = 0.0,
    batches: ReferenceBatches | None = None,
    stage: str = "",
    progress: bool = False,
) -> list[dict]:
    """Fine-tune ``model`` in place on ``examples`` (in their given order), measuring S and the
    forces every ``window`` examples. Each row carries the measured ΔS of the window that
    starts at it (NaN for the last row). With ``stop_gain`` > 0, training stops at the first
    measurement where S has risen by at least ``stop_gain`` over its value at the start.
    ``batches``: the pre-tokenised reference pairs (built here when not given)."""
    qa, qn, share = training_distribution([e.response for e in examples], aligned, opposing)
    batches = batches or ReferenceBatches(tokenizer, prompts, aligned, opposing, batch_size)
    rows: list[dict] = []

    def on_measure(n: int, m: torch.nn.Module) -> bool:
        am = batches.measure(m)
        row = {"phase": phase, "n_examples": n, **forces(am, qa, qn).summary(),
               "coverage": float(am.coverage.mean()), "q_share_in_reference": share}
        window_resp = [e.response for e in examples[n : n + window]]
        if window_resp:  # the forces for the q of exactly the examples the next window trains on
            qa_w, qn_w, _ = training_distribution(window_resp, aligned, opposing)
            row["f_drive_window"] = float(forces(am, qa_w, qn_w).f_drive.mean())
        rows.append(row)
        return stop_gain > 0 and row["score_S"] >= rows[0]["score_S"] + stop_gain

    finetune(model, tokenizer, examples, train_cfg, model_cfg, seed=seed, stage=stage or phase,
             measure_at=measurement_grid(len(examples), window), on_measure=on_measure, shuffle=False, progress=progress)
    for row, nxt in zip(rows, rows[1:]):
        row["delta_S"] = nxt["score_S"] - row["score_S"]
        row["window_n"] = nxt["n_examples"] - row["n_examples"]
    rows[-1]["delta_S"] = float("nan")
    rows[-1]["window_n"] = 0
    return rows


@functools.lru_cache(maxsize=None)
def n_templates(world_name: str, k: int) -> int:
    """Distinct aligned templates in the alignment data for narrowness ``k`` (0 = all)."""
    return len(get_world(world_name, k).aligned_templates())


def check(cfg: DynamicsConfig) -> None:
    """Fail before any training on values that cannot work (ConfigError, one line)."""
    if cfg.window_examples < 1 or cfg.n_align < 1 or cfg.n_opposing < 1:
        raise ConfigError("window_examples, n_align and n_opposing must be >= 1")
    if not cfg.narrowness or any(k < 0 for k in cfg.narrowness):
        raise ConfigError(f"narrowness: give one or more template counts >= 0 (0 = all), got {cfg.narrowness}")
    if cfg.align_gain < 0 or cfg.softmax_lr <= 0 or cfg.softmax_steps < 1:
        raise ConfigError("align_gain must be >= 0, softmax_lr > 0 and softmax_steps >= 1")
    if not cfg.worlds or not cfg.seeds:
        raise ConfigError("worlds and seeds must not be empty")


def run(cfg: DynamicsConfig, ctx: RunContext) -> None:
    check(cfg)
    ks = list(dict.fromkeys(cfg.narrowness))
    for world_name in cfg.worlds:
        world = get_world(world_name)
        a_set, n_set = world.reference_sets()
        prompts = world.eval_prompts(cfg.world.n_eval_prompts)
        # Base level of S in the softmax model: the world's pre-training prior log(p/(1 − p)).
        prior = min(max(cfg.world.prior, 1e-3), 1 - 1e-3)
        for seed in cfg.seeds:

            def softmax_rows(seed: int = seed) -> list[dict]:
                rows = []
                for k in ks:
                    for r in softmax_trace(len(a_set), len(n_set), k, seed, cfg.softmax_lr, cfg.softmax_steps,
                                           math.log(prior / (1 - prior)), cfg.align_gain):
                        rows.append({"kind": "softmax", "world": world_name, "seed": seed, "narrowness": k,
                                     "n_templates": n_templates(world_name, k), **r})
                return rows

            ctx.run_cell({"kind": "dynamics/softmax", "world": world_name, "seed": seed, "ks": ks, "prior": cfg.world.prior,
                          "lr": cfg.softmax_lr, "steps": cfg.softmax_steps, "gain": cfg.align_gain}, softmax_rows, name=f"{world_name} softmax s{seed}")

            bkey = base_key(world_name, cfg.world, cfg.model, cfg.pretrain, seed)
            state: dict = {}

            def base_model(seed: int = seed):
                if "model" not in state:
                    path = pretrained_base(ctx, world_name, cfg.world, cfg.model, cfg.pretrain, seed)
                    state["model"], state["tok"] = load(path, cfg.model)
                return state["model"], state["tok"]

            for k in ks:

                def cell_rows(k: int = k, seed: int = seed) -> list[dict]:
                    base, tok = base_model()
                    model = clone(base)
                    wk = world.with_narrowness(k)
                    batches = ReferenceBatches(tok, prompts, a_set, n_set, cfg.measure_batch_size)
                    rows = []
                    for phase, data, tcfg, stage_seed, gain in (
                            ("align", wk.aligned(cfg.n_align, seed), cfg.align, seed, cfg.align_gain),
                            ("opposing", wk.opposing(cfg.n_opposing, seed), cfg.opposing, seed + 1, 0.0)):
                        rows += trace_phase(model, tok, data, tcfg, cfg.model, seed=stage_seed, phase=phase,
                                            window=cfg.window_examples, prompts=prompts, aligned=a_set, opposing=n_set,
                                            batch_size=cfg.measure_batch_size, stop_gain=gain, batches=batches,
                                            progress=ctx.progress,
                                            stage=f"{phase} {world_name} k={k} s{seed}")
                    return [{"kind": "network", "world": world_name, "seed": seed, "narrowness": k,
                             "n_templates": n_templates(world_name, k), **r} for r in rows]

                key = {"kind": "dynamics/network", "base": bkey, "narrowness": k, "n_align": cfg.n_align, "gain": cfg.align_gain,
                       "n_opposing": cfg.n_opposing, "window": cfg.window_examples, "prompts": prompts,
                       "align": to_dict(cfg.align), "opposing": to_dict(cfg.opposing), **finetune_key(cfg.model)}
                ctx.run_cell(key, cell_rows, name=f"{world_name} k={k} s{seed}")


# ----------------------------------------------------------------------------- analysis


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson r over pairs where both are finite; NaN with < 3 pairs or a constant side."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    if len(xa) < 3 or xa.std() == 0 or ya.std() == 0:
        return float("nan")
    return float(np.corrcoef(xa, ya)[0, 1])


def slope_through_origin(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares b in y ≈ b·x (the effective step size η_eff when x = F and y = ΔS)."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(xa) & np.isfinite(ya)
    den = float((xa[ok] ** 2).sum())
    return float((xa[ok] * ya[ok]).sum() / den) if den > 0 else float("nan")


def half_gain_examples(n: Sequence[float], s: Sequence[float], s0: float) -> float:
    """Opposing examples until S has lost half of its gain over the base level ``s0``.

    ``s[0]`` is the aligned model's score S₁; the level is s0 + (S₁ − s0)/2, found by linear
    interpolation between measurements. NaN when there was no gain or the level is never reached.
    """
    n_arr, s_arr = np.asarray(n, float), np.asarray(s, float)
    if len(s_arr) == 0 or not s_arr[0] > s0:
        return float("nan")
    level = s0 + (s_arr[0] - s0) / 2
    for i in range(1, len(s_arr)):
        if s_arr[i] <= level:
            frac = (s_arr[i - 1] - level) / (s_arr[i - 1] - s_arr[i])
            return float(n_arr[i - 1] + frac * (n_arr[i] - n_arr[i - 1]))
    return float("nan")


def _num(x: float) -> str:
    """A number for claim text (3 significant digits, '—' when undefined)."""
    return f"{x:.3g}" if x is not None and math.isfinite(x) else "—"


def _fisher_mean(rs: Sequence[float]) -> float:
    """Mean of correlations via Fisher's z (NaN-safe)."""
    z = [math.atanh(max(min(r, 0.999999), -0.999999)) for r in rs if math.isfinite(r)]
    return float(math.tanh(sum(z) / len(z))) if z else float("nan")


def rebound_table(net: pd.DataFrame) -> pd.DataFrame:
    """One row per (world, seed, narrowness): S₀, S₁, C_A after alignment, half-gain examples."""
    out = []
    for (world, seed, k), g in net.groupby(["world", "seed", "narrowness"]):
        al = g[g.phase == "align"].sort_values("n_examples")
        op = g[g.phase == "opposing"].sort_values("n_examples")
        if al.empty or op.empty:
            continue
        s0 = float(al.score_S.iloc[0])
        n_half = half_gain_examples(op.n_examples.to_numpy(float), op.score_S.to_numpy(float), s0)
        out.append({"world": world, "seed": int(seed), "narrowness": int(k), "n_templates": int(g.n_templates.iloc[0]),
                    "S0": s0, "S1": float(op.score_S.iloc[0]), "collision_A_aligned": float(op.collision_A.iloc[0]),
                    "n_half": n_half, "rebound_speed_per100": 100.0 / n_half if n_half and math.isfinite(n_half) else float("nan")})
    return pd.DataFrame(out)


def analyze(df: pd.DataFrame, cfg: DynamicsConfig) -> list[Claim]:
    seeds = sorted(df.seed.unique())
    claims: list[Claim] = []

    # (a) the identity in the pure softmax model.
    sm = df[df.kind == "softmax"]
    r_sm, err_sm = [], []
    for seed in seeds:
        g = sm[sm.seed == seed]
        r_sm.append(pearson(g.predicted_delta_S, g.delta_S))
        rel = (g.delta_S - g.predicted_delta_S).abs() / g.delta_S.abs().clip(lower=1e-12)
        err_sm.append(float(rel.median()) if len(rel) else float("nan"))
    claims.append(claim_from_seed_values(
        "dynamics.softmax_identity",
        f"In a pure softmax model over the worlds' completion sets (one logit per completion), the exact "
        f"ΔS of each step η(q − π) (η = {cfg.softmax_lr}) matches η(F_drive + F_rebound): effect = Pearson r "
        "over all steps of the align and opposing phases; reproduced when the interval lies above 0.99",
        "Our formulation of P2's force decomposition (SPEC §5; only P2's abstract is public)",
        r_sm, unit="Pearson r", null=0.99, median_relative_error_per_seed=err_sm,
    ))

    # (b) predicted direction / time course vs measured ΔS in tiny networks, per run over both phases.
    net = df[df.kind == "network"].copy() if "kind" in df else df.iloc[0:0]
    win = net[np.isfinite(net.delta_S.astype(float))] if len(net) else net
    r_total: dict[int, list[float]] = {s: [] for s in seeds}
    r_drive: dict[int, list[float]] = {s: [] for s in seeds}
    rebound_r: dict[int, list[float]] = {s: [] for s in seeds}
    cells = []
    for (world, seed, k), g in win.groupby(["world", "seed", "narrowness"]):
        rt, rd = pearson(g.f_total, g.delta_S), pearson(g.f_drive, g.delta_S)
        r_total[seed].append(rt)
        r_drive[seed].append(rd)
        cell = {"world": world, "seed": int(seed), "narrowness": int(k), "n_windows": int(len(g)), "r_total": rt,
                "r_drive_only": rd, "sign_agreement": float((np.sign(g.f_total) == np.sign(g.delta_S)).mean())}
        for phase, h in g.groupby("phase"):
            cell[f"r_total_{phase}"] = pearson(h.f_total, h.delta_S)
            cell[f"r_rebound_{phase}"] = pearson(h.f_rebound, h.delta_S)
            cell[f"eta_eff_{phase}"] = slope_through_origin(h.f_total, h.delta_S)
            if phase == "opposing":
                rebound_r[seed].append(cell["r_rebound_opposing"])
        cells.append(cell)
    per_seed_total = [_fisher_mean(r_total[s]) for s in seeds]
    per_seed_gain = [_fisher_mean(r_total[s]) - _fisher_mean(r_drive[s]) for s in seeds]
    c_gain = claim_from_seed_values("gain", "", "", per_seed_gain)
    within = {f"r_total_{p}_per_seed": [_fisher_mean([c[f"r_total_{p}"] for c in cells if c["seed"] == s and f"r_total_{p}" in c])
                                        for s in seeds] for p in ("align", "opposing")}
    c_fp = claim_from_seed_values(
        "dynamics.forces_predict_delta_s",
        f"In tiny world models, the force F_drive + F_rebound measured at the start of each {cfg.window_examples}-example "
        "window predicts the measured ΔS over that window: effect = Pearson r over the windows of both phases "
        "(align, then opposing) of each run, Fisher-averaged over runs. Because the phase alone fixes the sign of "
        "F_drive, the full force must also beat F_drive alone (r_total − r_drive_only > 0); both parts must hold. "
        "A test of direction and time course, not magnitude: the network's effective step η_eff is fitted, not predicted",
        "ΔS ≈ η(F_drive + F_rebound) for a softmax step (our formulation of P2, SPEC §5)",
        per_seed_total, unit="Pearson r",
        r_minus_drive_only_per_seed=per_seed_gain, r_minus_drive_only=c_gain.effect,
        r_minus_drive_only_ci=[c_gain.ci_low, c_gain.ci_high], r_minus_drive_only_verdict=c_gain.verdict,
        **within, cells=cells,
    )
    c_fp.verdict = combine_verdicts([c_fp.verdict, c_gain.verdict])
    c_fp.statement += (f". Measured: r − r_drive_only = {_num(c_gain.effect)} [{_num(c_gain.ci_low)}, {_num(c_gain.ci_high)}]; "
                       f"within the align phase r = {_num(np.nanmean(within['r_total_align_per_seed']))}, within the "
                       f"opposing phase r = {_num(np.nanmean(within['r_total_opposing_per_seed']))} (means over seeds)")
    claims.append(c_fp)

    # Rebound pulls toward S = 0 during opposing fine-tuning: direction and consequence.
    opp = net[net.phase == "opposing"]
    pull_share = []
    for s in seeds:
        g = opp[(opp.seed == s) & (opp.score_S.abs() > 1e-9)]
        pull_share.append(float((np.sign(g.f_rebound) == -np.sign(g.score_S)).mean()) if len(g) else float("nan"))
    c_pull = claim_from_seed_values("pull", "", "", pull_share, null=0.5)
    c_r = claim_from_seed_values(
        "dynamics.rebound_pulls_to_zero",
        "During opposing fine-tuning, F_rebound points toward S = 0 at most checkpoints (share with "
        "sign(F_rebound) = −sign(S) > 0.5) and the measured ΔS per window moves with it (effect: Fisher-mean "
        "Pearson r between F_rebound and measured ΔS within opposing runs; both parts must hold)",
        "F_rebound = −C·tanh(S/2) for equal narrowness: a pull toward S = 0 (our formulation of P2, SPEC §5)",
        [_fisher_mean(rebound_r[s]) for s in seeds], unit="Pearson r",
        pull_share_per_seed=pull_share, pull_share_mean=c_pull.effect, pull_share_ci=[c_pull.ci_low, c_pull.ci_high],
        pull_share_verdict=c_pull.verdict,
    )
    c_r.verdict = combine_verdicts([c_r.verdict, c_pull.verdict])
    c_r.statement += f". Measured pull share: {_num(c_pull.effect)} [{_num(c_pull.ci_low)}, {_num(c_pull.ci_high)}]"
    claims.append(c_r)

    # (c) narrowness: examples to lose half the gain against log2(number of aligned templates).
    tab = rebound_table(net) if len(net) else pd.DataFrame()
    per_seed_slope = []
    speed_vs_ca = []
    per_world_slope: dict[str, list[float]] = {}
    for (world, s), g in (tab.groupby(["world", "seed"]) if len(tab) else []):
        per_world_slope.setdefault(world, []).append(slope(np.log2(g.n_templates.to_numpy(float)), g.n_half.to_numpy(float)))
    per_world = {}
    for world, vals in per_world_slope.items():
        c = claim_from_seed_values("w", "", "", vals)
        per_world[world] = {"effect": c.effect, "ci": [c.ci_low, c.ci_high], "verdict": c.verdict, "per_seed": vals}
    for s in seeds:
        sl, rc = [], []
        for _, g in (tab[tab.seed == s].groupby("world") if len(tab) else []):
            sl.append(slope(np.log2(g.n_templates.to_numpy(float)), g.n_half.to_numpy(float)))
            rc.append(pearson(g.collision_A_aligned, g.rebound_speed_per100))
        fin = [v for v in sl if math.isfinite(v)]
        per_seed_slope.append(float(np.mean(fin)) if fin else float("nan"))
        speed_vs_ca.append(_fisher_mean(rc))
    sm_half = []
    for (world, seed, k), g in sm.groupby(["world", "seed", "narrowness"]):
        al, op = g[g.phase == "align"], g[g.phase == "opposing"]
        sm_half.append({"world": world, "seed": int(seed), "narrowness": int(k), "C_A_aligned": float(op.collision_A.iloc[0]),
                        "n_half_steps": half_gain_examples(op.step.to_numpy(float), op.score_S.to_numpy(float),
                                                           float(al.score_S.iloc[0]))})
    per_world_text = "; ".join(f"{w} {_num(v['effect'])} [{_num(v['ci'][0])}, {_num(v['ci'][1])}]"
                               for w, v in sorted(per_world.items()))
    claims.append(claim_from_seed_values(
        "dynamics.narrow_rebounds_faster",
        "Alignment data with fewer distinct aligned templates (narrower, larger measured C_A) is undone by fewer "
        "opposing examples (effect: slope of the opposing examples needed to lose half the alignment gain against "
        f"log2 of the number of aligned templates; > 0 = narrow rebounds faster). Per world: {per_world_text}",
        "Narrower aligned posteriors (e.g. one refusal template vs many) rebound harder (P2 abstract; SPEC §5 (b))",
        per_seed_slope, unit="opposing examples per doubling of templates", per_world=per_world,
        r_speed_vs_collision_A_per_seed=speed_vs_ca, cells=tab.to_dict("records") if len(tab) else [],
        softmax_model_n_half=sm_half,
    ))
    return claims


# ----------------------------------------------------------------------------- figures


def plot(df: pd.DataFrame, cfg: DynamicsConfig, fig_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    net = df[df.kind == "network"]
    cmap = plt.get_cmap("viridis")
    for world in sorted(net.world.unique()):
        sub = net[net.world == world]
        ks = sorted(sub.narrowness.unique(), key=lambda k: (k == 0, k))
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for i, k in enumerate(ks):
            color = cmap(0.1 + 0.75 * i / max(1, len(ks) - 1))
            label = f"k = {k or 'all'} templates"
            # One thin line per seed: the align phase stops at a different example count in each.
            for j, (seed, g) in enumerate(sub[sub.narrowness == k].groupby("seed")):
                g = g.sort_values(["phase", "n_examples"])
                al, op = g[g.phase == "align"], g[g.phase == "opposing"]
                n_al = float(al.n_examples.max())
                axes[0].plot(list(al.n_examples) + list(op.n_examples + n_al), list(al.score_S) + list(op.score_S),
                             color=color, lw=1, alpha=0.8, label=label if j == 0 else None)
                axes[0].plot([n_al], [float(op.score_S.iloc[0])], marker="|", color=color, ms=8)
                axes[1].plot(op.n_examples, op.f_rebound, color=color, lw=1, alpha=0.8,
                             label=f"F_rebound, {label}" if j == 0 else None)
                axes[1].plot(op.n_examples, op.f_drive, color=color, ls=":", lw=0.8)
        axes[0].axhline(0, color="0.7", lw=0.6)
        axes[0].set(xlabel="examples (align | opposing; tick = switch)", ylabel="S = log(π⁺/π⁻)",
                    title=f"dynamics · {world}: S (one line per seed)")
        axes[1].axhline(0, color="0.7", lw=0.6)
        axes[1].set(xlabel="opposing examples", ylabel="force (per unit η)",
                    title="forces during opposing fine-tuning\n(solid F_rebound, dotted F_drive)")
        w = sub[np.isfinite(sub.delta_S.astype(float))]
        for phase, marker in (("align", "o"), ("opposing", "s")):
            h = w[w.phase == phase]
            axes[2].scatter(h.f_total, h.delta_S, s=8, marker=marker, alpha=0.6, label=phase)
        axes[2].axhline(0, color="0.7", lw=0.6)
        axes[2].axvline(0, color="0.7", lw=0.6)
        axes[2].set(xlabel="F_drive + F_rebound at window start", ylabel=f"measured ΔS over {cfg.window_examples} examples",
                    title="predicted direction vs measured ΔS")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, frameon=False)
        fig.tight_layout()
        p = fig_dir / f"dynamics_{world}_forces.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    tab = rebound_table(net) if len(net) else pd.DataFrame()
    if len(tab):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for world, marker in zip(sorted(tab.world.unique()), "os^v"):
            g = tab[tab.world == world]
            sc = ax.scatter(g.collision_A_aligned, g.rebound_speed_per100, c=np.log2(g.n_templates), cmap="viridis",
                            marker=marker, label=world)
        fig.colorbar(sc, ax=ax, label="log2 aligned templates")
        ax.set_xscale("log")
        ax.set(xlabel="C_A after alignment (collision probability)", ylabel="rebound speed (100 / examples to lose half the gain)",
               title="narrowness vs rebound speed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        p = fig_dir / "dynamics_rebound_speed_vs_collision.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths


EXPERIMENT = Experiment(
    name="dynamics",
    description="driving vs rebound force on S = log(π⁺/π⁻), exact in a softmax model, measured in tiny networks; narrowness (SPEC §5, our formulation of P2)",
    config_cls=DynamicsConfig,
    presets=PRESETS,
    run=run,
    analyze=analyze,
    plot=plot,
)
