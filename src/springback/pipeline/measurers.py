"""What a cell measures at each measurement point (its :class:`~.spec.MeasureSpec`).

A measurer is built once per cell — reference sets tokenised once, the reference model's
exact measure computed once — and called at every point with the model and where it is
(:class:`Point`). Kinds:

* ``checkpoint`` — exact π⁺ / S over the reference sets A and N, samples (sampled aligned
  rate, VADER on sentiment-like sources, the configured scorers) and KL to a reference model
  (sampled sequence KL; the exact KL over A ∪ N when ``exact_kl``). [SPEC §3.2]
* ``rates`` — compression rate γ of held-out samples of D_p, D_a and D_t. [SPEC §4]
* ``forces`` — S and the driving / rebound forces for the stage's training distribution;
  after the stage, each row gets the measured ΔS of the window that starts at it. [SPEC §5]
* ``score`` — one scalar: exact S when the source has both reference sides, else the
  sampled aligned rate under the source's labeller (fixed sampling seed).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import torch

from ..config import MeasureConfig
from ..errors import ConfigError
from ..measure import (
    ReferenceBatches,
    examples_code_length,
    forces,
    reference_kl,
    sample,
    sequence_kl,
    training_distribution,
    vader_scorer,
    world_label_scorer,
)
from ..models import count_parameters
from .spec import Cell, Stage


@dataclasses.dataclass
class Point:
    """Where a measurement is taken: the stage (None = the base row), examples seen in it, and
    the stage's examples in training order."""

    stage: Stage | None
    n: int
    examples: Sequence[Any] = ()


class Measurer:
    """Base class: ``__call__(model, point) -> row values``; ``finish(stage, rows)`` post-processes
    a stage's rows (default: unchanged)."""

    def __call__(self, model: torch.nn.Module, point: Point) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self, stage: Stage, rows: list[dict]) -> list[dict]:
        return rows


class NoMeasure(Measurer):
    def __call__(self, model: torch.nn.Module, point: Point) -> dict[str, Any]:
        return {}


@dataclasses.dataclass
class Env:
    """What every measurer may use: the source, tokenizer, base model, a memo and the cell."""

    cell: Cell
    source: Any
    tokenizer: Any
    base: torch.nn.Module
    memo: Callable[[Any, Callable[[], Any]], Any]
    load_reference: Callable[[str], torch.nn.Module]
    samples: list[dict] = dataclasses.field(default_factory=list)  # per-sample rows (real data), saved with the cell


def reference_batches(env: Env, prompts: Sequence[str], cfg: MeasureConfig) -> ReferenceBatches | None:
    """The prompts × (A ∪ N) pairs tokenised once per (base, source, prompts); None without both sides."""
    a_set, n_set = env.source.reference_sets()
    if not (a_set and n_set):
        return None
    chat = env.cell.model_options.get("chat_template", "none")
    key = {"batches": env.cell.base.key(), "source": env.cell.source, "prompts": list(prompts), "bs": cfg.batch_size,
           "max_length": cfg.max_length, "chat_template": chat}
    return env.memo(key, lambda: ReferenceBatches(env.tokenizer, prompts, a_set, n_set, cfg.batch_size, cfg.max_length,
                                                  chat))


class CheckpointMeasure(Measurer):
    """Exact S over A and N, samples and their scores, KL to the reference model (module doc)."""

    def __init__(self, env: Env, params: dict):
        self.env = env
        self.cfg = MeasureConfig(**params["measure"])
        self.prompts = env.source.eval_prompts(params["n_eval_prompts"])
        self.seed = env.cell.seed
        self.batches = reference_batches(env, self.prompts, self.cfg)
        ref = params.get("kl_reference", "base")  # "base" | "none" | a model path
        self.reference = None if ref == "none" else env.base if ref == "base" else env.load_reference(ref)
        self.reference_measure = None
        if params.get("exact_kl") and self.batches is not None and self.reference is not None:
            key = {"reference_measure": env.cell.base.key() if ref == "base" else ref, "source": env.cell.source,
                   "prompts": self.prompts}
            self.reference_measure = env.memo(key, lambda: self.batches.measure(self.reference))
        self.count_params = bool(params.get("count_params"))

    def __call__(self, model: torch.nn.Module, point: Point) -> dict[str, Any]:
        # The base row is the reference itself: no KL to measure.
        reference = self.reference if point.stage is not None else None
        row: dict[str, Any] = {}
        if self.count_params:
            row["n_params"] = float(count_parameters(self.env.base))
        if self.batches is not None:  # a real data set may lack one side: then there is no exact S
            am = self.batches.measure(model)
            row.update(am.summary())
            if reference is not None and self.reference_measure is not None:
                row["kl_ref_to_base"] = float(reference_kl(am, self.reference_measure).mean())
        c = self.cfg
        if c.n_samples > 0:
            source, tok, prompts = self.env.source, self.env.tokenizer, self.prompts
            chat = self.env.cell.model_options.get("chat_template", "none")
            texts, ids, pidx = sample(model, tok, prompts, c.n_samples, seed=self.seed, temperature=c.temperature,
                                      top_p=c.top_p, max_new_tokens=c.max_new_tokens, chat_template=chat)
            labels = world_label_scorer(source)(texts)
            row["sampled_rate"] = sum(labels) / len(labels)
            if c.vader and source.sentiment_like:
                v = vader_scorer()(texts)
                row["vader"] = sum(v) / len(v)
            kl = (sequence_kl(model, reference, tok, prompts, ids, pidx, chat_template=chat)
                  if c.kl and reference is not None else None)
            if kl is not None:
                row["kl_to_base"] = float(kl.mean())
            sample_prompts = [prompts[i] for i in pidx]
            each = source.score_each(texts, sample_prompts)
            row.update(source.score_samples(texts, sample_prompts, each))
            if not source.is_world:  # real data: keep every sample with its scores, to audit the scorer
                for j, (text, p) in enumerate(zip(texts, pidx)):
                    self.env.samples.append({
                        "stage": point.stage.name if point.stage else "base", "n_examples": point.n,
                        "seed": self.seed, "prompt_index": int(p), "prompt": prompts[p], "completion": text,
                        "aligned": labels[j], "kl_to_base": float(kl[j]) if kl is not None else None,
                        **{f"score_{name}": float(v[j]) for name, v in each.items()}})
        return row


class RatesMeasure(Measurer):
    """γ = bits / (8 · bytes) on fixed held-out samples (``params["sets"]`` builds them)."""

    def __init__(self, env: Env, params: dict):
        self.env = env
        self.part = params["score_part"]
        self.batch_size = params["batch_size"]
        self.sets = heldout_sets(env.source, params)

    def __call__(self, model: torch.nn.Module, point: Point) -> dict[str, Any]:
        row = {}
        for name, examples in self.sets.items():
            if not examples:
                continue
            cl = examples_code_length(model, self.env.tokenizer, examples, part=self.part, batch_size=self.batch_size)
            row[f"gamma_{name}"] = cl.gamma
            row[f"bits_per_token_{name}"] = cl.bits_per_token
        return row


def heldout_sets(source: Any, params: dict) -> dict[str, list]:
    """Fixed held-out samples of D_p (the pre-training mix), D_a and D_t, drawn with a seed apart
    from every training set; ``p_task`` / ``p_general`` split D_p into its task examples and its
    plain sentences, so a change of γ_p can be traced to the task or to forgetting general text."""
    hs = params["heldout_seed"]
    n = params["n_heldout"]
    n_task = round(n * params["n_task_examples"] / (params["n_task_examples"] + params["n_general_examples"]))
    pre = source.pretrain_corpus(n_task, n - n_task, params["prior"], hs)
    return {"p": pre, "a": source.aligned(n, hs), "t": source.opposing(n, hs),
            "p_task": [e for e in pre if e.prompt], "p_general": [e for e in pre if not e.prompt]}


class ForcesMeasure(Measurer):
    """S and the force decomposition for the stage's training distribution q (SPEC §5)."""

    def __init__(self, env: Env, params: dict):
        self.env = env
        self.window = params["window_examples"]
        self.prompts = env.source.eval_prompts(params["n_eval_prompts"])
        self.a_set, self.n_set = env.source.reference_sets()
        # One tokenisation per cell, shared by its stages (not memoised across cells).
        self.batches = ReferenceBatches(env.tokenizer, self.prompts, self.a_set, self.n_set, params["batch_size"],
                                        params.get("max_length", 128), env.cell.model_options.get("chat_template", "none"))
        self._q: dict[int, Any] = {}

    def __call__(self, model: torch.nn.Module, point: Point) -> dict[str, Any]:
        examples = point.examples
        qkey = id(point.stage)
        if qkey not in self._q:  # q of the whole stage budget
            self._q[qkey] = training_distribution([e.response for e in examples], self.a_set, self.n_set)
        qa, qn, share = self._q[qkey]
        am = self.batches.measure(model)
        row = {**forces(am, qa, qn).summary(), "coverage": float(am.coverage.mean()), "q_share_in_reference": share}
        window_resp = [e.response for e in examples[point.n : point.n + self.window]]
        if window_resp:  # the forces for the q of exactly the examples the next window trains on
            qa_w, qn_w, _ = training_distribution(window_resp, self.a_set, self.n_set)
            row["f_drive_window"] = float(forces(am, qa_w, qn_w).f_drive.mean())
        return row

    def finish(self, stage: Stage, rows: list[dict]) -> list[dict]:
        """Each row gets the measured ΔS of the window that starts at it (NaN for the last)."""
        for row, nxt in zip(rows, rows[1:]):
            row["delta_S"] = nxt["score_S"] - row["score_S"]
            row["window_n"] = nxt["n_examples"] - row["n_examples"]
        if rows:
            rows[-1]["delta_S"] = float("nan")
            rows[-1]["window_n"] = 0
        return rows


class ScoreMeasure(Measurer):
    """One scalar ``score`` (exact S, or the sampled aligned rate) and which it is (``score_kind``)."""

    def __init__(self, env: Env, params: dict):
        self.prompts = env.source.eval_prompts(params["n_eval_prompts"])
        cfg = MeasureConfig(**params["measure"])
        self.batches = reference_batches(env, self.prompts, cfg)
        if self.batches is not None:
            self.kind = "exact_S"
            self.fn = lambda m: float(self.batches.measure(m).score.mean())
        else:
            if cfg.n_samples < 1:
                raise ConfigError("no reference completions on both sides: the sampled score needs measure.n_samples >= 1")
            self.kind = "sampled_rate"
            labeller = world_label_scorer(env.source)
            tok, prompts, seed = env.tokenizer, self.prompts, env.cell.seed
            chat = env.cell.model_options.get("chat_template", "none")

            def sampled(m: torch.nn.Module) -> float:
                texts, _, pidx = sample(m, tok, prompts, cfg.n_samples, seed=seed, temperature=cfg.temperature,
                                        top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, chat_template=chat)
                labels = labeller(texts, [prompts[i] for i in pidx])
                return float(sum(labels) / len(labels))

            self.fn = sampled

    def __call__(self, model: torch.nn.Module, point: Point) -> dict[str, Any]:
        return {"score_kind": self.kind, "score": self.fn(model)}


KINDS: dict[str, Callable[[Env, dict], Measurer]] = {
    "none": lambda env, params: NoMeasure(),
    "checkpoint": CheckpointMeasure,
    "rates": RatesMeasure,
    "forces": ForcesMeasure,
    "score": ScoreMeasure,
}


def build_measurer(env: Env) -> Measurer:
    spec = env.cell.measure
    if spec.kind not in KINDS:
        raise ValueError(f"unknown measurement kind {spec.kind!r} (known: {', '.join(KINDS)})")
    return KINDS[spec.kind](env, spec.params)


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
