"""Cells and stages as plain data (DESIGN §5).

A run of an experiment is a list of :class:`Cell`. A cell is a base model plus a sequence of
:class:`Stage` (align, opposing, re-align, …); each stage names its data, training config,
seed and measurement points. One function (:func:`springback.pipeline.runner.run_cell`)
executes any cell, and the cell's key is the hash of the cell itself (:func:`cell_key`), so
it always holds everything that determines its rows — seeds, data, model, measurement — and
two cells can share a key only if they would write the same rows.

Everything here is frozen dataclasses of plain values, so a cell pickles to a worker process
or a cluster job unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import TrainConfig, stable_hash, to_dict

# Stage names used in records (column ``stage``); experiments may use others.
BASE, ALIGN, OPPOSING = "base", "align", "opposing"


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which examples a stage trains on: the first ``n_examples`` of a source's seeded stream.

    ``kind`` is what one example is, as the stage's algorithm needs it (:func:`stage_data` sets it
    from the training config; see :data:`springback.objectives.ITEM_KINDS`): ``examples``
    (prompt, response) for SFT; ``pairs`` (prompt, chosen, rejected) for DPO / IPO / SimPO;
    ``labelled`` (prompt, response, desirable) for KTO; ``prompts`` for RLOO. ``side`` is the side
    the stage trains toward: the chosen / desirable side of pairs and labelled examples."""

    side: str  # "aligned" | "opposing"
    n_examples: int
    seed: int  # which stream (the first m examples of a longer stream equal those of a shorter one)
    narrowness: int = 0  # distinct aligned templates (synthetic worlds only; 0 = all)
    shuffle: bool = True  # False: train in stream order (stages whose windows must see known examples)
    kind: str = "examples"  # examples | pairs | labelled | prompts


@dataclasses.dataclass(frozen=True)
class StopRule:
    """When a stage ends before its data runs out.

    * ``gain`` — at the first measurement where ``metric`` has risen by ``value`` over the
      stage's first measurement (dynamics: align to a fixed gain).
    * ``level`` — when ``metric`` is back within ``tolerance`` of the cell's base-row value,
      found by bisection on weights interpolated between the bracketing checkpoints
      (priming: return exactly to S₀). A stage whose start is not above the level by more
      than ``tolerance`` does not run, and the cell ends (status ``no_gain``); a stage that
      never reaches the level ends the cell too (its status is recorded).
    """

    kind: str  # "gain" | "level"
    metric: str = "score_S"
    value: float = 0.0  # gain: the rise to stop at
    tolerance: float = 0.0  # level: |metric − level| at the stopping point
    max_bisect_steps: int = 40


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage of a cell."""

    name: str  # records' ``stage`` value: align | opposing | realign | return | …
    data: DataSpec
    train: TrainConfig
    seed: int  # training seed: data order, LoRA initialisation
    measure_at: tuple[int, ...] = ()  # example counts at which the model is measured (0 = before training)
    stop: StopRule | None = None
    start: str = "previous"  # "previous": continue from the last stage's weights | "base": restart from the base
    labels: tuple[tuple[str, Any], ...] = ()  # extra row labels for this stage's rows (e.g. ("arm", "control"))
    # How the stage trains is ``train.algorithm`` (SFT by default); ``data.kind`` must match it.


@dataclasses.dataclass(frozen=True)
class BaseSpec:
    """The model a cell starts from: a checkpoint, or a tiny preset pre-trained on a world (cached).

    ``pretrain`` (a dict: world, world config, preset, pre-training config, seed) names a cached
    pre-trained base; with ``snapshots`` it names one snapshot (``at`` examples) of a single
    pre-training run saved at every budget in ``snapshots``.
    """

    path: str = ""
    revision: str = ""
    dtype: str = "float32"
    trust_remote_code: bool = False
    allow_pickle: bool = False  # may its weights be pickled (*.bin)? see models.load_model
    pretrain: dict = dataclasses.field(default_factory=dict)
    snapshots: tuple[int, ...] = ()
    at: int = 0

    def key(self) -> dict:
        """What determines the base's weights (the cache key of a pre-trained base)."""
        if self.path:
            return {"model_path": self.path, "revision": self.revision, "dtype": self.dtype}
        out = dict(self.pretrain)
        if self.snapshots:
            out = {**out, "checkpoints_at": sorted(set(self.snapshots)), "at": self.at}
        return out


@dataclasses.dataclass(frozen=True)
class MeasureSpec:
    """What is measured at each measurement point (see :mod:`springback.pipeline.measurers`)."""

    kind: str  # "checkpoint" | "rates" | "forces" | "score" | "none"
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Cell:
    """A base model, its stages and how it is measured; ``labels`` go on every row it writes."""

    experiment: str
    name: str  # for progress bars and failed_cells.jsonl; not part of the key
    source: dict  # the data source's config (see pipeline.source.build_source)
    base: BaseSpec
    stages: tuple[Stage, ...] = ()
    measure: MeasureSpec = MeasureSpec("none")
    labels: tuple[tuple[str, Any], ...] = ()
    measure_base: bool = False  # write a row for the base model (stage "base") before the stages
    model_options: dict = dataclasses.field(default_factory=dict)  # LoRA rank/scale, chat template: they change results
    runner: str = "stages"  # "stages", or "module:function" for a protocol the stages cannot express
    params: dict = dataclasses.field(default_factory=dict)  # a custom runner's parameters
    seed: int = 0  # the cell's seed (sampling during measurement; custom runners)
    options: dict = dataclasses.field(default_factory=dict)  # execution options that change no result
    #                                                        (gradient checkpointing); not part of the key


def stage_data(side: str, n_examples: int, seed: int, train: TrainConfig, **kw: Any) -> DataSpec:
    """The :class:`DataSpec` of a stage trained with ``train``: its item kind is what
    ``train.algorithm`` trains on (pairs for DPO, prompts for RLOO, …)."""
    from ..objectives import ITEM_KINDS

    return DataSpec(side, n_examples, seed, kind=ITEM_KINDS.get(train.algorithm.name, "examples"), **kw)


def cell_key(cell: Cell, extra: dict | None = None) -> dict:
    """Everything that determines a cell's rows: the cell (minus its display name) plus ``extra``
    (package version, runtime and file fingerprints, added by the runner)."""
    body = to_dict(cell)
    body.pop("name", None)
    body.pop("options", None)
    return {**body, **(extra or {})}


def cell_id(cell: Cell, extra: dict | None = None) -> str:
    """Content address of a cell: a 12-character hash of :func:`cell_key`."""
    return stable_hash(cell_key(cell, extra), 12)


def labels(**kw: Any) -> tuple[tuple[str, Any], ...]:
    """Row labels as a hashable tuple, in the order given."""
    return tuple(kw.items())
