"""Executing a cell's stages: load the base, train each stage, measure at its points.

:func:`run_stages` is the one implementation of "base → align → opposing (→ …), measured
along the way" that every stage-based experiment uses. Each stage starts from the previous
stage's weights (or, with ``start="base"``, from a fresh copy of the base) with a fresh
optimizer [SPEC §3.2]; its data is the first ``n`` examples of a seeded stream of the source;
the model is measured after exactly n examples for every n in ``measure_at`` (the loop cuts a
batch at a measurement point). Stop rules (:class:`~.spec.StopRule`) can end a stage early.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
from typing import Any, Callable, Sequence

import torch

from ..config import ModelConfig, TrainConfig
from ..errors import ConfigError
from .measurers import Env, Point, build_measurer
from .spec import BASE, OPPOSING, Cell, DataSpec, Stage, StopRule


def clone(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model)


def finetune(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Any], train_cfg: TrainConfig,
             options: dict | ModelConfig | None = None, *, seed: int, **kwargs: Any):
    """One fine-tuning stage honouring LoRA and gradient checkpointing (``options``: a
    :class:`~springback.config.ModelConfig` or a dict with ``lora_r``, ``lora_alpha``,
    ``gradient_checkpointing``): prepare → :func:`~springback.train.train` → merge.

    ``model`` is updated in place (a LoRA adapter is merged back into it), so later stages and
    measurements see plain weights. ``kwargs`` go to ``train`` (stage, measure_at, on_measure, …)."""
    from ..models import finish_training, prepare_for_training
    from ..train import train

    o = options if isinstance(options, dict) else dataclasses.asdict(options) if options is not None else {}
    mc = ModelConfig(lora_r=o.get("lora_r", 0), lora_alpha=o.get("lora_alpha", 16),
                     gradient_checkpointing=o.get("gradient_checkpointing", False))
    wrapped = prepare_for_training(model, mc, seed=seed)
    try:
        return train(wrapped, tokenizer, list(examples), train_cfg, seed=seed, **kwargs)
    finally:
        finish_training(wrapped)


# ----------------------------------------------------------------------------- encoding a stage's data


def stage_encoder(tokenizer: Any, cell: Cell, train_cfg: TrainConfig) -> Any:
    """The :class:`~springback.tokens.Encoder` of a training stage: the cell's chat template, the
    stage's ``max_length`` and ``truncation``."""
    from ..tokens import Encoder

    return Encoder(tokenizer, cell.model_options.get("chat_template", "none"), train_cfg.max_length, train_cfg.truncation)


def encode_stream(source: Any, data: DataSpec, encoder: Any, loss_on: str = "response") -> tuple[list, list, Any]:
    """(examples, encodings, report) of a stage: the first ``data.n_examples`` items (of
    ``data.kind``: examples, pairs, labelled examples, prompts) of the seeded stream that survive
    encoding. Items dropped by ``truncation="drop"`` are replaced by the next ones of the same
    stream (the report counts them), so a stage always trains on n."""
    from ..errors import SpringbackError
    from ..objectives import encode_items

    want, n = data.n_examples, data.n_examples
    while True:
        examples = source.stream(dataclasses.replace(data, n_examples=n))
        encoded, report = encode_items(data.kind, examples, encoder, loss_on)
        if len(encoded) >= want or len(examples) < n:
            break
        missing = want - len(encoded)
        try:
            source.stream(dataclasses.replace(data, n_examples=n + 2 * missing))
        except SpringbackError as exc:
            raise SpringbackError(f"{report.n_dropped} of the first {n} {data.side} examples are longer than "
                                  f"max_length={encoder.max_length} (truncation='drop') and the data has too few left "
                                  f"to replace them: {exc}") from None
        n += 2 * missing
    keep = report.kept[:want]
    report.n_dropped = keep[-1] + 1 - want if keep else report.n_dropped  # dropped before the last kept example
    return [examples[i] for i in keep], encoded[:want], report


def check_stage_algorithm(stage_name: str, train_cfg: TrainConfig, data: DataSpec) -> None:
    """A valid algorithm whose item kind is the stage's data kind, else one ConfigError line."""
    from ..losses import validate
    from ..objectives import ITEM_KINDS

    validate(train_cfg.algorithm)
    want = ITEM_KINDS[train_cfg.algorithm.name]
    if data.kind != want:
        raise ConfigError(f"stage '{stage_name}' trains by {train_cfg.algorithm.name}, which needs {want}, but its data "
                          f"are {data.kind}: this experiment's stages train by SFT only (preference and RL methods: "
                          "rebound, scaling, algorithms, springback align)")


def stage_objective(train_cfg: TrainConfig, data: DataSpec, encoded: Sequence[Any], tokenizer: Any, source: Any,
                    chat_template: str, seed: int) -> Any:
    """The :class:`~springback.objectives.Objective` a stage trains with: its algorithm on its
    encoded items; RLOO samples with the stage's model through the cell's chat template and is
    rewarded by the source toward the stage's side (:meth:`~.source.Source.reward`)."""
    from ..measure import sample
    from ..objectives import build_objective
    from ..tokens import pad_id

    alg = train_cfg.algorithm
    sampler = reward = None
    if alg.name == "rloo":
        def sampler(model: torch.nn.Module, prompts: Sequence[str], n: int, s: int) -> tuple:
            return sample(model, tokenizer, prompts, n, seed=s, temperature=alg.temperature,
                          max_new_tokens=alg.max_new_tokens, chat_template=chat_template)

        reward = source.reward(data.side)
    return build_objective(alg, encoded, pad_id(tokenizer), max_length=train_cfg.max_length, sampler=sampler,
                           reward=reward, seed=seed)


# ----------------------------------------------------------------------------- returning to a level


def level_rule(trace: Sequence[tuple[float, float]], level: float, tol: float) -> tuple[str, int, int]:
    """Where a decreasing score trace first gets back to ``level``.

    ``trace``: (examples, score) at successive checkpoints. Returns ``("hit", i, i)`` when
    checkpoint i is within ``tol`` of the level, ``("bracket", i − 1, i)`` when checkpoint i is the
    first below level − tol (the crossing lies between i − 1 and i), ``("start_below", 0, 0)`` when
    the trace starts below it, or ``("none", -1, -1)`` when no checkpoint has reached it yet.
    """
    for i, (_, s) in enumerate(trace):
        if abs(s - level) < tol:
            return "hit", i, i
        if s < level:
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


class _LevelStop:
    """Stage-2 search of SPEC §5 (c): train until the score is back at the base level.

    S is measured at the stage's grid; training stops at the first checkpoint within the
    tolerance of the level, or at the first one below it, which brackets the crossing with the
    checkpoint before. Inside the bracket the weights are interpolated linearly,
    θ(α) = (1 − α)·θ_before + α·θ_after — a fractional last window, i.e. that window trained
    with a smaller step — and α is bisected until |S(θ(α)) − level| < tolerance.
    """

    def __init__(self, rule: StopRule, level: float):
        self.rule, self.level = rule, level
        self.trace: list[tuple[float, float]] = []
        self.states: list[dict[str, torch.Tensor]] = []  # the last two checkpoints' weights
        self.status, self.i, self.j = "none", -1, -1

    def after(self, n: int, model: torch.nn.Module, values: dict) -> bool:
        self.trace.append((n, values[self.rule.metric]))
        self.states.append(_state(model))
        del self.states[:-2]
        self.status, self.i, self.j = level_rule(self.trace, self.level, self.rule.tolerance)
        return self.status != "none"

    def settle(self, model: torch.nn.Module, score: Callable[[torch.nn.Module], dict], rows: list[dict],
               row: Callable[[float, dict], dict]) -> dict:
        """Finish the search on ``model`` (bisection inside a bracket); append bisection rows;
        return the summary (status, n_stop, alpha, score_stop, gap, within_tolerance, n_bisect, n_trained)."""
        tol, metric = self.rule.tolerance, self.rule.metric
        summary = {"status": self.status, "n_stop": float("nan"), "alpha": float("nan"), "score_stop": float("nan"),
                   "gap": float("nan"), "within_tolerance": False, "n_bisect": 0,
                   "n_trained": self.trace[-1][0] if self.trace else 0}
        if self.status == "hit":
            n, s = self.trace[-1]
            summary.update(n_stop=float(n), alpha=0.0, score_stop=s)
        elif self.status == "bracket":
            (n_a, s_a), (n_b, s_b) = self.trace[-2], self.trace[-1]
            before, after = self.states

            def f(alpha: float) -> float:
                model.load_state_dict(interpolate_state(before, after, alpha))
                values = score(model)
                rows.append(row(n_a + alpha * (n_b - n_a), {**values, "bisect": True}))
                return values[metric]

            alpha, s, evals = bisect_to_level(f, self.level, tol, s_a, s_b, max_steps=self.rule.max_bisect_steps)
            model.load_state_dict(interpolate_state(before, after, alpha))
            summary.update(n_stop=n_a + alpha * (n_b - n_a), alpha=alpha, score_stop=s, n_bisect=evals)
        if math.isfinite(summary["score_stop"]):
            summary["gap"] = summary["score_stop"] - self.level
            summary["within_tolerance"] = bool(abs(summary["gap"]) < tol)
        return summary


# ----------------------------------------------------------------------------- the one stage runner


def run_stages(cell: Cell, ctx: Any) -> list[dict]:
    """Rows of a stage-based cell: the base row (if asked), then each stage's measurements.

    Every row carries the cell's labels, ``stage``, the stage's own labels, ``n_examples`` (in
    that stage) and the measured values; rows of a stage on the opposing side also carry
    ``n_opposing`` = ``n_examples``.
    """
    from .bases import load_base

    base, tok, source = load_base(ctx, cell)
    env = Env(cell, source, tok, base, ctx.memo, lambda path: load_reference(ctx, cell, path))
    measurer = build_measurer(env)
    labels = dict(cell.labels)
    rows: list[dict] = []

    def make_row(stage: Stage | None, n: float, values: dict) -> dict:
        r = {**labels, "stage": stage.name if stage else BASE, **dict(stage.labels if stage else ())}
        r["n_examples"] = n
        if stage is None:
            r["n_opposing"] = 0  # the base has seen no opposing data
        elif stage.data.side == "opposing" or stage.name == OPPOSING:
            r["n_opposing"] = n  # a stage named "opposing" pushes back, whichever side (rebound reversed)
        if stage is not None and stage.name in reports:
            r.update(reports[stage.name])
        r.update(values)
        return r

    reports: dict[str, dict] = {}  # what truncation did to each stage's data (on its rows when not zero)
    base_values: dict = {}
    if cell.measure_base:
        base_values = measurer(base, Point(None, 0))
        rows.append(make_row(None, 0, base_values))
    model: torch.nn.Module | None = None
    for k, stage in enumerate(cell.stages):
        if model is None or stage.start == "base":
            model = clone(base)
        check_stage_algorithm(stage.name, stage.train, stage.data)
        examples, encoded, report = encode_stream(source, stage.data, stage_encoder(tok, cell, stage.train))
        stage_rows: list[dict] = []
        if report.n_truncated or report.n_dropped:
            reports[stage.name] = {"n_truncated": report.n_truncated, "n_dropped": report.n_dropped}
        stop = stage.stop
        level, start_score = None, float("nan")
        if stop is not None and stop.kind == "level":
            if stop.metric not in base_values:
                raise ConfigError(f"stage '{stage.name}': a 'level' stop needs the base row's {stop.metric}")
            start_score = rows[-1].get(stop.metric, float("nan"))  # where the previous stage left the score
            if not start_score > base_values[stop.metric] + stop.tolerance:  # nothing to return from
                rows.append(_stop_row(labels, stage, base_values[stop.metric], start_score, stop, {"status": "no_gain"},
                                      rows[-1]))
                break
            level = _LevelStop(stop, base_values[stop.metric])

        def on_measure(n: int, m: torch.nn.Module, stage: Stage = stage) -> bool:
            values = measurer(m, Point(stage, n, examples))
            if level is not None:
                values = {**values, "bisect": False}
            stage_rows.append(make_row(stage, n, values))
            if stop is None:
                return False
            if stop.kind == "gain":
                return stop.value > 0 and values[stop.metric] >= stage_rows[0][stop.metric] + stop.value
            return level.after(n, m, values)

        tracker = getattr(ctx, "tracker", None)  # an experiment tracker (pipeline.trackers), if the run logs to one
        objective = stage_objective(stage.train, stage.data, encoded, tok, source,
                                    cell.model_options.get("chat_template", "none"), stage.seed)
        finetune(model, tok, encoded, stage.train, {**cell.model_options, **cell.options}, seed=stage.seed, measure_at=stage.measure_at,
                 on_measure=on_measure, shuffle=stage.data.shuffle, progress=ctx.progress,
                 stage=f"{stage.name} {cell.name}", on_step=tracker.loss_logger(stage.name) if tracker else None,
                 objective=objective)
        rows += measurer.finish(stage, stage_rows)
        if level is not None:
            summary = level.settle(model, lambda m, st=stage: measurer(m, Point(st, 0, examples)), rows,
                                   lambda n, values, st=stage: make_row(st, n, values))
            rows.append(_stop_row(labels, stage, level.level, start_score, stop, summary, rows[-1]))
            if summary["status"] not in ("hit", "bracket"):
                break  # never got back: the later stages have no start
    if env.samples:
        _save_samples(ctx, cell, labels, env.samples)
    return rows


def _save_samples(ctx: Any, cell: Cell, labels: dict, samples: list[dict]) -> None:
    """The cell's sampled completions with their scores, one Parquet row per sample:
    ``RUN_DIR/samples/<cell id>.parquet`` (written atomically before the cell's rows are committed)."""
    import os
    import tempfile

    import pandas as pd

    from .keys import cell_id

    path = ctx.run_dir / "samples" / f"{cell_id(cell)}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{**labels, **s} for s in samples])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stop_row(labels: dict, stage: Stage, level: float, start: float, rule: StopRule, summary: dict, last: dict) -> dict:
    """The row that says how a ``level`` stage ended (status, where, how close); it keeps the
    ``score_kind`` of the measurements it summarises (``last``: the latest row)."""
    kind = {"score_kind": last["score_kind"]} if "score_kind" in last else {}
    out = {**labels, **kind, "stage": "stop", **dict(stage.labels), "n_examples": summary.get("n_stop", float("nan")),
           rule.metric: summary.get("score_stop", float("nan")), "S0": level, "S1": start, "tolerance": rule.tolerance}
    rest = {k: v for k, v in summary.items() if k not in ("n_stop", "score_stop")}
    if rest.get("status") == "no_gain":
        rest.update(gap=float("nan"), within_tolerance=False, n_bisect=0)
    out.update(rest)
    return out


def load_reference(ctx: Any, cell: Cell, path: str) -> torch.nn.Module:
    """A second model a measurement compares against (e.g. elasticity's base), loaded once."""
    from ..models import load

    return ctx.memo({"reference": path, "dtype": cell.base.dtype}, lambda: load(path, ModelConfig(
        path=path, dtype=cell.base.dtype, trust_remote_code=cell.base.trust_remote_code,
        allow_pickle=cell.base.allow_pickle))[0])


# ----------------------------------------------------------------------------- any cell

def resolve_runner(name: str) -> Callable[[Cell, Any], list[dict]]:
    """``"stages"`` or a ``"module:function"`` reference to a custom protocol's cell function."""
    if name == "stages":
        return run_stages
    module, _, fn = name.partition(":")
    return getattr(importlib.import_module(module), fn)


def run_cell(cell: Cell, ctx: Any) -> list[dict]:
    """The rows of one cell (every row also carries ``experiment`` and ``seed``)."""
    rows = resolve_runner(cell.runner)(cell, ctx)
    return [{"experiment": cell.experiment, **r} for r in rows]


def run_cell_logged(cell: Cell, cid: str, ctx: Any) -> list[dict]:
    """:func:`run_cell`, watched by the run's experiment tracker if it has one (pipeline.trackers):
    one tracker run per cell, named by its key; the tracker only reads, never changes a row."""
    tracker = getattr(ctx, "tracker", None)
    if tracker is None:
        return run_cell(cell, ctx)
    tracker.start_cell(cid, cell.name, cell.labels)
    try:
        rows = run_cell(cell, ctx)
        tracker.log_rows(rows)
    finally:
        tracker.end_cell()
    return rows
