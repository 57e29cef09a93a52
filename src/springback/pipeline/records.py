"""The records schema: one vocabulary of columns for every experiment.

Every row of ``records.jsonl`` uses only the columns listed here (checked when a cell's rows
are committed), so one :func:`springback.load_results` DataFrame can hold several
experiments and one figure function can draw any of them. ``docs/records.md`` is generated
from :data:`COLUMNS` (a test keeps it in step). Values may be missing (NaN / null) in any
column a row does not measure.
"""

from __future__ import annotations

import math
import re
from typing import Any

# name -> (allowed Python types, meaning)
_S, _I, _F, _B, _L = (str,), (int,), (int, float), (bool,), (list,)

COLUMNS: dict[str, tuple[tuple[type, ...], str]] = {
    # --- identity and position (every experiment)
    "experiment": (_S, "experiment that wrote the row"),
    "cell": (_S, "content address of the cell that wrote the row"),
    "world": (_S, "data source: a synthetic world's name, or 'data' / 'data:NAME' for a real data set"),
    "model": (_S, "model label: a size preset (nano … base) or a checkpoint's directory name"),
    "seed": (_I, "the cell's seed (data streams, training order, sampling)"),
    "stage": (_S, "where the row was measured: base | align | opposing | realign | return | stop | checkpoint | finetune"),
    "n_examples": (_F, "examples the model had seen in its current stage when measured"),
    "n_aligned": (_I, "size of the cell's alignment stage (P1's n⁺); 0 for a base row"),
    "n_opposing": (_F, "opposing examples seen (P1's n⁻); set on rows of opposing stages"),
    "kind": (_S, "row type where an experiment writes several (theory: sweep | huffman | robustness; dynamics: softmax | network)"),
    "arm": (_S, "priming: primed (aligned, then returned) or control (never aligned)"),
    "algorithm": (_S, "algorithms: how the alignment stage trained (sft | dpo | ipo | kto | simpo | rloo); "
                      "absent on base rows"),
    "n_truncated": (_I, "examples of the row's stage cut to max_length (prompt from the left); absent when none"),
    "n_dropped": (_I, "examples of the row's stage dropped as too long and replaced from the stream; absent when none"),
    # --- exact alignment measures (SPEC §5)
    "pi_pos": (_F, "exact π⁺: aligned share of the reference completions A ∪ N, prompt mean"),
    "score_S": (_F, "alignment score S = log(π⁺/π⁻), exact over A and N, prompt mean"),
    "coverage": (_F, "model probability mass on A ∪ N, prompt mean"),
    "kl_ref_to_base": (_F, "KL(model ‖ base) over A ∪ N renormalised, exact, nats, prompt mean"),
    "kl_to_base": (_F, "sequence KL(model ‖ base) from the model's samples, nats per sample"),
    # --- samples and scorers
    "sampled_rate": (_F, "share of sampled completions the source's labeller calls aligned"),
    "vader": (_F, "mean VADER compound score of the samples (sentiment-like sources)"),
    "score": (_F, "priming: the stage score (exact S or sampled aligned rate); real data: the first scorer's mean"),
    "score_kind": (_S, "what 'score' is: exact_S | sampled_rate"),
    # --- scaling
    "budget": (_S, "pre-training budget label (e.g. '1280', '2.0T')"),
    "budget_n": (_F, "pre-training budget in budget_unit (NaN if unknown)"),
    "budget_unit": (_S, "examples | tokens"),
    "pretrain_examples": (_I, "pre-training examples the base had seen"),
    "n_params": (_F, "parameters of the base model (tied embeddings counted once)"),
    # --- compression (SPEC §4)
    "k": (_F, "|D_p| / |D_a|"),
    "l": (_F, "|D_t| / |D_a|: opposing examples over alignment examples"),
    "n_pretrain": (_I, "pre-training corpus size in examples"),
    # --- dynamics (SPEC §5, our formulation of P2)
    "narrowness": (_I, "distinct aligned templates in the alignment data (0 = all)"),
    "n_templates": (_I, "distinct aligned templates actually used"),
    "step": (_I, "softmax model: gradient step within the phase"),
    "collision_A": (_F, "collision probability C_A of π(·|A), prompt mean"),
    "collision_N": (_F, "collision probability C_N of π(·|N), prompt mean"),
    "f_drive": (_F, "driving force ⟨q, π(·|A)⟩ − ⟨q, π(·|N)⟩, prompt mean"),
    "f_rebound": (_F, "rebound force −(π⁺C_A − π⁻C_N), prompt mean"),
    "f_total": (_F, "F_drive + F_rebound"),
    "f_drive_window": (_F, "F_drive for the q of the next window's examples"),
    "predicted_delta_S": (_F, "softmax model: η·(F_drive + F_rebound)"),
    "delta_S": (_F, "measured change of S over the step / window that starts at the row"),
    "window_n": (_I, "examples in the window that starts at the row"),
    "q_share_in_reference": (_F, "share of the stage's training responses inside A ∪ N"),
    # --- priming (SPEC §5 (c))
    "bisect": (_B, "the row is an evaluation of the stage-2 bisection"),
    "S0": (_F, "the level a 'level' stage returns to (the base score S₀)"),
    "S1": (_F, "the score at the start of the 'level' stage"),
    "tolerance": (_F, "|score − S₀| accepted as 'back at the level'"),
    "status": (_S, "how a 'level' stage ended: hit | bracket | start_below | none | no_gain"),
    "alpha": (_F, "interpolation weight of the stopping point inside the bracket"),
    "gap": (_F, "score − S₀ at the stopping point"),
    "within_tolerance": (_B, "|gap| < tolerance"),
    "n_bisect": (_I, "score evaluations of the bisection"),
    "n_trained": (_F, "examples trained in the 'level' stage up to its last checkpoint"),
    # --- resistance (P1 Table 1)
    "checkpoint": (_I, "SFT checkpoint number (1-based)"),
    "n_align_seen": (_I, "SFT examples seen by the checkpoint"),
    "generator_loss": (_F, "the writing checkpoint's own loss on its answers, nats/token"),
    "n_distinct_answers": (_I, "distinct (prompt, answer) pairs among a checkpoint's answers"),
    "n_answers": (_I, "answers a checkpoint wrote"),
    "answer_aligned_rate": (_F, "share of a checkpoint's answers the labeller calls aligned"),
    "answer_in_sets_rate": (_F, "share of a checkpoint's answers inside A ∪ N"),
    "target_entropy": (_F, "exact entropy of the writer's sampling distribution over A ∪ N, nats/token"),
    "target_coverage": (_F, "the writer's sampling mass on A ∪ N"),
    "pair": (_S, "checkpoint pair 'i-j'"),
    "i": (_I, "earlier checkpoint of the pair"),
    "j": (_I, "later checkpoint of the pair"),
    "direction": (_S, "resistance: forward (θi learns θj's answers) | inverse (θj learns θi's); "
                      "rebound: reversed (opposing data first, then aligned; absent = forward)"),
    "learner": (_I, "checkpoint that is fine-tuned"),
    "writer": (_I, "checkpoint whose answers are the targets"),
    "kl_before": (_F, "KL(learner ‖ writer) before fine-tuning, nats per answer"),
    "kl_after": (_F, "KL(learner ‖ writer) after fine-tuning, nats per answer"),
    "kl_change": (_F, "kl_before − kl_after"),
    "start_loss": (_F, "learner's loss on the targets before fine-tuning"),
    "end_loss": (_F, "learner's loss on the targets after fine-tuning"),
    "n_updates": (_I, "optimizer updates of the fine-tune"),
    "mean_loss": (_F, "mean training loss over the run (the authors' code)"),
    "final_loss": (_F, "the last update's training loss (the paper's text)"),
    "excess_mean_loss": (_F, "mean_loss − generator_loss"),
    "excess_final_loss": (_F, "final_loss − generator_loss"),
    "excess_end_loss": (_F, "end_loss − generator_loss"),
    "excess_over_entropy_mean_loss": (_F, "mean_loss − target_entropy"),
    "curve_n_examples": (_L, "examples seen after each update"),
    "curve_loss": (_L, "training loss of each update"),
    # --- theory (SPEC §2)
    "chi2_t_p": (_F, "χ²(p_t ‖ p_p) of the scenario"),
    "n_leaves": (_I, "leaves of the pruned token tree"),
    "s_p": (_F, "Zipf exponent of D_p"), "s_a": (_F, "Zipf exponent of D_a"), "s_t": (_F, "Zipf exponent of D_t"),
    "t_rank_noise": (_F, "how much D_t's ranking of D_p's responses is shuffled"),
    "n_responses_p": (_I, "distinct responses of D_p in the scenario"),
    "n_responses_a": (_I, "distinct responses of D_a in the scenario"),
    "max_len": (_I, "longest response in binary tokens"),
    "norm_gamma_p": (_F, "normalised rate of D_p"), "norm_gamma_a": (_F, "normalised rate of D_a"),
    "norm_gamma_t": (_F, "normalised rate of D_t"),
    "huffman_gamma_p": (_F, "Huffman-code rate of D_p"), "huffman_gamma_a": (_F, "Huffman-code rate of D_a"),
    "huffman_gamma_t": (_F, "Huffman-code rate of D_t"),
    "dgamma_p_dl": (_F, "exact dγ_p/dl"), "dgamma_a_dl": (_F, "exact dγ_a/dl"),
    "ratio": (_F, "|dγ_a/dl| / |dγ_p/dl|"),
    "opposite_signs": (_B, "dγ_a/dl > 0 > dγ_p/dl"),
    "closed_dgamma_p_dl": (_F, "SPEC §2 closed form of dγ_p/dl"), "closed_dgamma_a_dl": (_F, "closed form of dγ_a/dl"),
    "delta_norm_gamma_p": (_F, "change of the normalised D_p rate from l = 0"),
    "delta_norm_gamma_a": (_F, "change of the normalised D_a rate from l = 0"),
    "hooke_p": (_F, "|D_p|·|Δγ_p|"), "hooke_a": (_F, "|D_a|·|Δγ_a|"), "hooke_ratio": (_F, "hooke_p / hooke_a"),
    "n_symbols": (_I, "symbols of the Huffman code"), "kraft_sum": (_F, "Kraft sum of the Huffman code"),
    "entropy_bits": (_F, "entropy of the joint model, bits"), "mean_length_bits": (_F, "mean Huffman code length, bits"),
    "share_opposite_signs": (_F, "share of grid points with opposite signs"),
    "share_sign_predicted": (_F, "share of grid points whose dγ_p/dl sign the large-k condition predicts"),
}

# Families of columns named after something (a scorer, a held-out set): regex -> meaning.
PATTERNS: dict[str, tuple[tuple[type, ...], str]] = {
    r"score_[A-Za-z0-9_.\-]+": (_F, "mean score of the samples under one scorer (score_<scorer>)"),
    r"aligned_rate_[A-Za-z0-9_.\-]+": (_F, "share of samples one scorer calls aligned"),
    r"agree_[A-Za-z0-9_.\-]+~[A-Za-z0-9_.\-]+": (_F, "agreement rate of two scorers' aligned calls"),
    r"kappa_[A-Za-z0-9_.\-]+~[A-Za-z0-9_.\-]+": (_F, "Cohen's κ of two scorers' aligned calls"),
    r"gamma_(p|a|t|p_task|p_general)": (_F, "compression rate γ = bits/(8·bytes) on a held-out set (p, a, t, p_task, p_general)"),
    r"bits_per_token_(p|a|t|p_task|p_general)": (_F, "bits per scored token on a held-out set"),
}
_PATTERNS = [(re.compile(p), t) for p, (t, _) in PATTERNS.items()]


def column_type(name: str) -> tuple[type, ...] | None:
    if name in COLUMNS:
        return COLUMNS[name][0]
    for rx, types in _PATTERNS:
        if rx.fullmatch(name):
            return types
    return None


def check_rows(rows: list[dict[str, Any]]) -> None:
    """Raise ValueError on a column outside the schema or a value of the wrong type (a bug in
    the code that wrote the row, not user input). None / NaN are allowed anywhere."""
    for row in rows:
        for name, value in row.items():
            types = column_type(name)
            if types is None:
                raise ValueError(f"records column '{name}' is not in the schema (springback.pipeline.records)")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if hasattr(value, "item") and not isinstance(value, (list, str)):
                value = value.item()
            ok = isinstance(value, types) and not (bool not in types and isinstance(value, bool))
            if not ok:
                raise ValueError(f"records column '{name}' expects {'/'.join(t.__name__ for t in types)}, "
                                 f"got {type(value).__name__} {value!r}")


def markdown() -> str:
    """docs/records.md's table, generated from the schema."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for name, (types, meaning) in COLUMNS.items():
        lines.append(f"| `{name}` | {'/'.join(t.__name__ for t in types)} | {meaning} |")
    for pat, (types, meaning) in PATTERNS.items():
        lines.append(f"| `{pat}` (pattern) | {'/'.join(t.__name__ for t in types)} | {meaning} |")
    return "\n".join(lines) + "\n"
