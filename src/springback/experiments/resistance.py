"""Resistance: forward vs inverse alignment (SPEC §3.1, P1 §5.1 Table 1), with an entropy control.

Per (source, size, seed): one epoch of SFT with checkpoints θ1, θ2, θ3 (default 0.25 / 0.5 / 0.75
of it, as the authors' code [SPEC §3.1]); every checkpoint answers the same held-out prompts
(temperature 0.05, top-p 0.95); for every pair i < j, **inverse** = a copy of θj fine-tuned on θi's
answers, **forward** = θi on θj's, with the same prompts, examples, updates, seed and
hyper-parameters. Raw training loss (mean and final), the **excess** loss over the writer's own
loss on its answers (the control: forward and inverse train on targets of different entropy),
the exact target entropy on the worlds, and the KL change are compared. Details of every
metric and its reduction: ``docs/resistance.md``. The cell is a custom protocol
(:func:`pair_cell`): stages cannot express "fine-tune θi on θj's answers".
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Sequence

import pandas as pd
import torch

from ..analysis import Claim, t_interval
from ..analysis.paired import FORWARD, INVERSE, paired, paired_claim, sub_claim
from ..analysis.stats import REPRODUCED
from ..config import ModelConfig, TrainConfig, WorldConfig, to_dict
from ..data import DataConfig
from ..errors import ConfigError
from ..measure.answers import answer_examples, dataset_loss, exact_answer_stats, mean_kl
from ..models import PRESETS as SIZE_PRESETS
from ..models.training import finish_training
from ..pipeline import DEFAULT_PRETRAIN, Cell, clone, finetune, labels, pretrain_spec, source_name, uses_data
from ..pipeline.runner import load_base
from ..tokens import Encoder
from ..worlds.base import ALIGNED, Example
from .base import Experiment, model_label, model_options, run_options, sources


@dataclasses.dataclass
class AnswerConfig:
    """How each checkpoint answers the shared held-out prompts."""

    n_answers: int = 2  # answers per prompt per checkpoint
    temperature: float = 0.05  # the authors' sampling [SPEC §3.1]
    top_p: float = 0.95
    max_new_tokens: int = 20
    n_kl_samples: int = 4  # samples per prompt (temperature 1) for the KL estimates; 0 = no KL


@dataclasses.dataclass
class ResistanceConfig:
    worlds: list[str] = dataclasses.field(default_factory=lambda: ["sentiment", "safety", "truthful"])
    # Size presets; ignored when model.path is set. micro bases are shared with rebound.
    sizes: list[str] = dataclasses.field(default_factory=lambda: ["nano", "micro"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    n_align_examples: int = 1000  # the SFT epoch (real data: 0 = every aligned example not held out)
    checkpoint_fractions: list[float] = dataclasses.field(default_factory=lambda: [0.25, 0.5, 0.75])
    answers: AnswerConfig = dataclasses.field(default_factory=AnswerConfig)
    world: WorldConfig = dataclasses.field(default_factory=WorldConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: dataclasses.replace(DEFAULT_PRETRAIN))
    align: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    # forward / inverse fine-tunes: both directions use exactly this (epochs = passes over the answers)
    finetune: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(epochs=4))
    # Real data instead of the worlds (data.aligned: an Alpaca / TruthfulQA / BeaverTails / … file; needs model.path).
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    n_heldout_prompts: int = 16  # real data: distinct prompts held out from SFT (the worlds use world.n_eval_prompts)


# quick = the embedded default grid (3 worlds × nano, micro × 3 seeds). Its cost is mostly the 18
# pre-trained bases; under `springback reproduce` the micro sentiment / safety ones are rebound's
# and the nano sentiment ones scaling's, so only safety / truthful nano and truthful micro are new.
PRESETS = {
    "quick": {},
    # full: 12 seeds (36 replicates; inverse_lower_loss needed 11 seeds at quick), KL on 8 samples per prompt.
    "full": {"seeds": list(range(12)), "answers": {"n_kl_samples": 8}},
}


# ----------------------------------------------------------------------------- cells


def checkpoint_points(n_examples: int, fractions: Sequence[float]) -> list[int]:
    """Example counts of the checkpoints; distinct, inside the epoch."""
    points = [int(round(f * n_examples)) for f in fractions]
    if len(points) < 2 or any(not 0 < p <= n_examples for p in points) or len(set(points)) != len(points) or points != sorted(points):
        raise ConfigError(f"checkpoint_fractions {list(fractions)} of {n_examples} examples must give >= 2 distinct, "
                          "increasing points inside the epoch")
    return points


def check(cfg: ResistanceConfig) -> None:
    if uses_data(cfg.data) and not cfg.model.path:
        raise ConfigError("data.aligned is set: also set model.path (a tiny preset has no tokenizer for real text)")
    checkpoint_points(max(cfg.n_align_examples, 100), cfg.checkpoint_fractions)
    if not cfg.seeds:
        raise ConfigError("seeds must list at least one seed")
    if not cfg.model.path:
        unknown = [s for s in cfg.sizes if s not in SIZE_PRESETS]
        if unknown or not cfg.sizes:
            raise ConfigError(f"unknown size preset '{unknown[0] if unknown else ''}' (choose from: {', '.join(SIZE_PRESETS)})")
    if not uses_data(cfg.data) and cfg.n_align_examples < 1:
        raise ConfigError("n_align_examples must be >= 1 for the synthetic worlds")
    if cfg.answers.n_answers < 1:
        raise ConfigError("answers.n_answers must be >= 1")


def cells(cfg: ResistanceConfig) -> list[Cell]:
    """One cell per (source, size, seed), computed by :func:`pair_cell` (SFT with checkpoints, their
    answers, then every checkpoint pair in both directions)."""
    sizes = [cfg.model.path] if cfg.model.path else list(cfg.sizes)
    n_prompts = cfg.n_heldout_prompts if uses_data(cfg.data) else cfg.world.n_eval_prompts
    params = {"n_align_examples": cfg.n_align_examples, "checkpoint_fractions": list(cfg.checkpoint_fractions),
              "answers": to_dict(cfg.answers), "align": to_dict(cfg.align), "finetune": to_dict(cfg.finetune),
              "n_prompts": n_prompts}
    out = []
    for spec in sources(cfg.worlds, cfg.world, cfg.data, cfg.model):
        name = source_name(spec)
        for size in sizes:
            mc = cfg.model if cfg.model.path else dataclasses.replace(cfg.model, preset=size)
            for seed in cfg.seeds:
                out.append(Cell(experiment="resistance", name=f"{name} {model_label(mc)} s{seed}", source=spec, seed=seed,
                                base=pretrain_spec(name, cfg.world, mc, cfg.pretrain, seed),
                                labels=labels(world=name, model=model_label(mc), seed=seed), params=params,
                                model_options=model_options(mc), options=run_options(mc),
                                runner="springback.experiments.resistance:pair_cell"))
    return out


def pair_cell(cell: Cell, ctx: Any) -> list[dict]:
    """SFT with checkpoints θ1..θk, their answers, then every pair in both directions."""
    base, tok, source = load_base(ctx, cell)
    p, seed = cell.params, cell.seed
    opts = {**cell.model_options, **cell.options}
    chat = opts.get("chat_template", "none")
    align, ft, a = TrainConfig(**p["align"]), TrainConfig(**p["finetune"]), AnswerConfig(**p["answers"])
    sft, prompts = source.sft_data(p["n_align_examples"], seed, p["n_prompts"])
    sft, _ = Encoder(tok, chat, align.max_length, align.truncation).encode_all(sft)
    points = checkpoint_points(len(sft), p["checkpoint_fractions"])
    model = clone(base)
    checkpoints: list[torch.nn.Module] = []
    # A snapshot is a plain model: under LoRA the copy's adapter is merged into its weights.
    finetune(model, tok, sft, align, opts, seed=seed, stage=f"align {cell.name}", measure_at=points,
             on_measure=lambda n, m: checkpoints.append(finish_training(clone(m))), progress=ctx.progress)
    del model
    answers = [answer_examples(m, tok, prompts, a.n_answers, seed, temperature=a.temperature, top_p=a.top_p,
                               max_new_tokens=a.max_new_tokens, chat_template=chat) for m in checkpoints]
    gen_losses = [dataset_loss(m, tok, ans, ft.max_length, chat_template=chat) for m, ans in zip(checkpoints, answers)]
    a_set, n_set = source.reference_sets() if source.is_world else ([], [])
    rows = []
    for k, (m, ans) in enumerate(zip(checkpoints, answers)):
        row = {"stage": "checkpoint", "checkpoint": k + 1, "n_align_seen": points[k], "generator_loss": gen_losses[k],
               "n_distinct_answers": len({(e.prompt, e.response) for e in ans}), "n_answers": len(ans)}
        if source.is_world:
            row["answer_aligned_rate"] = sum(source.label(e.response) == ALIGNED for e in ans) / len(ans)
            row.update(exact_answer_stats(m, tok, prompts, a_set, n_set, a.temperature, a.top_p, chat_template=chat))
            known = set(a_set) | set(n_set)
            row["answer_in_sets_rate"] = sum(e.response in known for e in ans) / len(ans)
        rows.append(row)
    rows += pair_rows(checkpoints, answers, gen_losses, tok, a, ft, opts, prompts, seed=seed, label=cell.name,
                      progress=ctx.progress)
    # Each direction's target entropy is its writer's (worlds only).
    by_ckpt = {r["checkpoint"]: r for r in rows if r["stage"] == "checkpoint"}
    for r in rows:
        if r["stage"] == "finetune" and "target_entropy" in by_ckpt[r["writer"]]:
            r["target_entropy"] = by_ckpt[r["writer"]]["target_entropy"]
            r["target_coverage"] = by_ckpt[r["writer"]]["target_coverage"]
            r["excess_over_entropy_mean_loss"] = r["mean_loss"] - r["target_entropy"]
    return [{**dict(cell.labels), **r} for r in rows]


def pair_rows(checkpoints: Sequence[torch.nn.Module], answers: Sequence[Sequence[Example]], gen_losses: Sequence[float],
              tokenizer: Any, a: AnswerConfig, ft: TrainConfig, opts: dict, prompts: Sequence[str], *, seed: int,
              label: str = "", progress: bool = False) -> list[dict]:
    """Forward and inverse runs for every pair i < j of checkpoints (1-based in the rows)."""
    rows = []
    for i, j in itertools.combinations(range(len(checkpoints)), 2):
        pair = f"{i + 1}-{j + 1}"
        # inverse: the later θj learns the earlier θi's answers; forward: θi learns θj's.
        for direction, learner, writer in ((INVERSE, j, i), (FORWARD, i, j)):
            row = direction_run(checkpoints[learner], checkpoints[writer], tokenizer, answers[writer],
                                gen_losses[writer], a, ft, opts, prompts, seed=seed,
                                stage=f"{direction} {pair} {label}".strip(), progress=progress)
            rows.append({"stage": "finetune", "pair": pair, "i": i + 1, "j": j + 1, "direction": direction,
                         "learner": learner + 1, "writer": writer + 1, **row})
    return rows


def direction_run(learner_start: torch.nn.Module, target: torch.nn.Module, tokenizer: Any, targets: Sequence[Example],
                  generator_loss: float, a: AnswerConfig, ft: TrainConfig, opts: dict, prompts: Sequence[str], *,
                  seed: int, stage: str = "finetune", progress: bool = False) -> dict:
    """Fine-tune a copy of ``learner_start`` on ``targets`` (written by ``target``); one row."""
    model = clone(learner_start)
    chat = opts.get("chat_template", "none")
    row: dict[str, Any] = {}
    kl_on = a.n_kl_samples > 0
    if kl_on:
        row["kl_before"] = mean_kl(model, target, tokenizer, prompts, a.n_kl_samples, seed + 7, a.max_new_tokens, chat)
    row["start_loss"] = dataset_loss(model, tokenizer, targets, ft.max_length, chat_template=chat)
    encoded, _ = Encoder(tokenizer, chat, ft.max_length, ft.truncation).encode_all(list(targets))
    result = finetune(model, tokenizer, encoded, ft, opts, seed=seed, stage=stage, progress=progress)
    row["end_loss"] = dataset_loss(model, tokenizer, targets, ft.max_length, chat_template=chat)
    if kl_on:
        row["kl_after"] = mean_kl(model, target, tokenizer, prompts, a.n_kl_samples, seed + 7, a.max_new_tokens, chat)
        row["kl_change"] = row["kl_before"] - row["kl_after"]
    row.update(
        n_examples=result.n_examples[-1], n_updates=len(result.loss), mean_loss=result.mean_loss,
        final_loss=result.final_loss, generator_loss=generator_loss,
        excess_mean_loss=result.mean_loss - generator_loss, excess_final_loss=result.final_loss - generator_loss,
        excess_end_loss=row["end_loss"] - generator_loss,
        curve_n_examples=list(result.n_examples), curve_loss=[float(x) for x in result.loss],
    )
    return row


# ----------------------------------------------------------------------------- claims


PAPER_TABLE1 = ("Inverse alignment (θj trained on θi's answers) reaches a lower training loss than forward "
                "alignment (θi on θj's answers) in all 27 cells (Llama2-7B/13B, Llama3-8B × Alpaca, TruthfulQA, "
                "BeaverTails × pairs 1-2, 2-3, 1-3); gaps 0.0002–0.0961 [P1 §5.1, Table 1; SPEC §3.1]")


# Equivalence bands δ (docs/science.md, "Equivalence bands δ"; fixed before the runs).
DELTA_LOSS = 0.005  # nats per token: half a percent of perplexity
DELTA_KL = 0.02  # nats per answer: a tenth of P1's appendix example gap (0.4568 − 0.2796)


def claims(df: pd.DataFrame, cfg: ResistanceConfig) -> list[Claim]:
    """Three claims; one replicate per (world, seed) (mean over sizes and pairs), each world a group."""
    ft = df[df.stage == "finetune"] if "stage" in df.columns else df.iloc[0:0]
    n_pairs = ft.groupby(["world", "model", "seed", "pair"]).ngroups if len(ft) else 0
    # 1. raw loss (mean over the run, as the authors' code; final loss, as the text, in details)
    final = paired_claim(df, "final_loss", "final", "", "", "", delta=DELTA_LOSS)
    end = paired_claim(df, "end_loss", "end", "", "", "", delta=DELTA_LOSS)
    c1 = paired_claim(
        df, "mean_loss", "resistance.inverse_lower_loss",
        "Inverse alignment has a lower mean training loss than forward alignment with the same prompts, "
        "examples, updates and hyper-parameters (effect: forward − inverse, mean over cells, interval over seeds)",
        PAPER_TABLE1, "nats per token", delta=DELTA_LOSS, final_loss=sub_claim(final), end_loss_full_set=sub_claim(end), n_pair_runs=n_pairs,
    )
    # 2. the entropy control
    c2 = paired_claim(
        df, "excess_mean_loss", "resistance.inverse_lower_excess_loss",
        "Inverse alignment has a lower excess loss (training loss − the writer checkpoint's own loss on its "
        "answers) than forward alignment (effect: forward − inverse)",
        PAPER_TABLE1 + "; the excess-loss control is ours [SPEC §3.1]", "nats per token", delta=DELTA_LOSS,
        excess_final_loss=sub_claim(paired_claim(df, "excess_final_loss", "x", "", "", "", delta=DELTA_LOSS)),
    )
    def seed_gap(frame: pd.DataFrame, meaning: str) -> dict:
        m, lo, hi = t_interval([float(g["diff"].mean()) for _, g in frame.groupby(["world", "seed"], sort=True)])
        return {"effect": m, "ci": [lo, hi], "meaning": meaning}

    gen = paired(df, "generator_loss")
    if len(gen):
        c2.details["writer_loss_gap"] = seed_gap(gen, "forward writer's own loss − inverse writer's own loss "
                                                 "(θj's − θi's), mean over cells")
    ent = paired(df, "target_entropy")
    if len(ent):
        c2.details["exact_target_entropy_gap"] = seed_gap(ent, "entropy of θj's sampling distribution − θi's "
                                                          "(forward targets − inverse targets), exact over A ∪ N")
        c2.details["excess_over_exact_entropy"] = sub_claim(paired_claim(df, "excess_over_entropy_mean_loss", "e", "", "", "",
                                                                         delta=DELTA_LOSS))
    if c1.verdict == REPRODUCED and c2.verdict != REPRODUCED:
        c2.statement += (". Raw loss favours inverse alignment but excess loss does not: the raw result is "
                         "explained by the different entropy (predictability) of the two directions' targets")
        c2.details["raw_explained_by_target_entropy"] = True
    elif c1.verdict == REPRODUCED and c2.verdict == REPRODUCED:
        c2.statement += ". The raw result survives the control"
        c2.details["raw_explained_by_target_entropy"] = False
    # 3. KL variant
    c3 = paired_claim(
        df, "kl_change", "resistance.inverse_smaller_kl_change",
        "Fine-tuning moves the learner less toward its target checkpoint inverse than forward: "
        "kl_change = KL(learner‖target) before − after, on held-out prompts (effect: forward − inverse)",
        "With finer checkpoints the KL change is larger forward than inverse in 7 of 7 pairs "
        "(e.g. 0.4568 vs 0.2796) [P1 appendix; SPEC §3.1]; which KL the paper differences is not stated — our reading",
        "nats per answer", delta=DELTA_KL,
        kl_after=sub_claim(paired_claim(df, "kl_after", "k", "", "", "", delta=DELTA_KL)),
        kl_before=sub_claim(paired_claim(df, "kl_before", "k", "", "", "", delta=DELTA_KL)),
    )
    if "kl_change" in ft.columns and ft["kl_change"].notna().any():
        means = {d: float(ft[ft.direction == d]["kl_change"].mean()) for d in (FORWARD, INVERSE)}
        c3.details["mean_kl_change"] = means
        if all(v < 0 for v in means.values()):
            # Targets written at a low temperature are sharper than the writer's own distribution:
            # fitting them can carry the learner past the target checkpoint, so KL to it grows.
            c3.statement += (f". On average fine-tuning moved the learner away from its target checkpoint in both "
                             f"directions (mean kl_change forward {means[FORWARD]:.3f}, inverse {means[INVERSE]:.3f} "
                             "nats): a positive effect here means the inverse run's divergence grew more")
    return [c1, c2, c3]


# ----------------------------------------------------------------------------- figures

def figures(df: pd.DataFrame, cfg: ResistanceConfig) -> list:
    from ..report.heatmaps import resistance_figures

    return resistance_figures(df, [] if cfg.model.path else list(cfg.sizes))


EXPERIMENT = Experiment(
    name="resistance",
    description="forward vs inverse alignment between SFT checkpoints, raw and excess loss, KL (P1 Table 1)",
    config_cls=ResistanceConfig,
    presets=PRESETS,
    cells=cells,
    claims=claims,
    figures=figures,
    check=check,
)
