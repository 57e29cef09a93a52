"""Experiment trackers (TensorBoard, Weights & Biases, MLflow) through ``accelerate.tracking``.

``springback run … --log-with tensorboard`` logs, per cell, one tracker run named by the cell's
key (its content address): every training update's loss as ``loss/<stage>`` at step = examples
seen in that stage, and every measurement row as ``<stage>/<column>`` at step = the row's
``n_examples`` when the cell's rows are written to ``records.jsonl``. A tracker only reads what
the run computed — it is not part of any config or cell key — so it changes no result.

Off by default; each backend is an optional extra (``pip install 'springback[tensorboard]'``)
and a missing package is one clear line before any work. Offline-safe: TensorBoard writes
event files under the run directory; W&B runs in offline mode when ``WANDB_MODE`` is unset and
its server cannot be reached; MLflow logs to a local ``file:`` store under the run directory
unless ``MLFLOW_TRACKING_URI`` is set. A cell is logged by the process that computes it (an
executor's worker, or the main process; of an ``accelerate launch``, only rank 0): the losses
exist only there.
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import runtime
from ..errors import SpringbackError

# CLI name -> (Python package it needs, the extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}
# Columns that place a row rather than measure it: never logged as metrics.
PLACE_COLUMNS = {"seed", "n_examples", "n_opposing", "n_aligned"}
# Label columns that tell apart rows of one stage (they prefix the metric names).
SPLIT_COLUMNS = ("arm", "direction", "pair", "kind")
WANDB_HOST = ("api.wandb.ai", 443)


def check_tracker(kind: str | None) -> None:
    """Raise a one-line :class:`SpringbackError` for an unknown tracker or a missing package."""
    if not kind:
        return
    if kind not in TRACKERS:
        raise SpringbackError(f"unknown tracker '{kind}' (choose from: {', '.join(TRACKERS)})")
    package, extra = TRACKERS[kind]
    if importlib.util.find_spec(package) is None:
        raise SpringbackError(f"--log-with {kind} needs the '{package}' package: pip install 'springback[{extra}]'")


def wandb_mode(host: tuple[str, int] = WANDB_HOST, timeout_s: float = 2.0) -> str:
    """``WANDB_MODE`` when set; else "online" if the W&B server answers, "offline" if not."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    try:
        socket.create_connection(host, timeout=timeout_s).close()
        return "online"
    except OSError:
        return "offline"


def _number(value: Any) -> float | int | None:
    """A loggable scalar (bools as 0/1), or None for text, lists and NaN."""
    if hasattr(value, "item") and not isinstance(value, (list, str)):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def row_metrics(row: dict) -> tuple[str, int, dict[str, float | int]]:
    """(prefix, step, {name: value}) of one records row: ``prefix`` is its stage (plus the labels
    of :data:`SPLIT_COLUMNS` it carries), ``step`` its ``n_examples`` rounded to an integer."""
    parts = [str(row.get("stage", "row"))] + [str(row[k]) for k in SPLIT_COLUMNS if isinstance(row.get(k), str)]
    prefix = "/".join(parts)
    n = _number(row.get("n_examples"))
    step = int(round(n)) if n is not None else 0
    metrics = {}
    for k, v in row.items():
        if k in PLACE_COLUMNS or k in SPLIT_COLUMNS:
            continue
        x = _number(v)
        if x is not None:
            metrics[f"{prefix}/{k}"] = x
    return prefix, step, metrics


class Tracker:
    """One tracker backend for one run: a tracker run per cell (:meth:`start_cell` … :meth:`end_cell`)."""

    def __init__(self, kind: str, run_dir: str | Path, project: str, config: dict | None = None):
        check_tracker(kind)
        self.kind, self.run_dir, self.project = kind, Path(run_dir), project
        self.config = {k: v for k, v in (config or {}).items() if isinstance(v, (str, int, float, bool))}
        self.active = runtime.is_main_process()
        self._run: Any = None
        self._axes: set[str] = set()  # W&B metrics already bound to their x axis
        if kind == "mlflow" and self.active and not os.environ.get("MLFLOW_TRACKING_URI"):
            import mlflow

            # A local file: store (offline). MLflow 3 keeps it in maintenance mode and refuses it unless
            # opted in; a user who wants its database store sets MLFLOW_TRACKING_URI=sqlite:///….
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((self.run_dir / "mlruns").resolve().as_uri())

    def spec(self) -> tuple:
        """The arguments that make this tracker again (in a worker process, for the cells it runs)."""
        return (self.kind, str(self.run_dir), self.project, dict(self.config))

    @property
    def log_dir(self) -> Path:
        """Where the backend writes under the run directory."""
        return self.run_dir / {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlruns"}[self.kind]  # W&B names its own

    def _make(self, key: str, name: str) -> Any:
        from accelerate import tracking

        if self.kind == "tensorboard":
            return tracking.TensorBoardTracker(key, str(self.log_dir))
        if self.kind == "wandb":
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # accelerate's run_name is W&B's project; the cell key names the W&B run (files: RUN_DIR/wandb/).
            return tracking.WandBTracker(self.project, name=key, notes=name, dir=str(self.run_dir), mode=wandb_mode())
        return tracking.MLflowTracker(experiment_name=self.project, logging_dir=str(self.log_dir), run_name=key,
                                      description=name)

    def _log(self, values: dict[str, float | int], step: int, axis: str) -> None:
        """Log ``values`` at ``step`` on the x axis named ``axis`` (e.g. examples seen in a stage).

        W&B keeps one step counter per run that must only grow, while a cell's stages each count
        examples from 0; so for W&B every axis is its own metric (``axis``), declared as the step
        metric of the values logged on it. TensorBoard and MLflow take the step as given."""
        if self.kind != "wandb":
            self._run.log(values, step=step)
            return
        run = self._run.tracker
        for k in values:
            if k not in self._axes:
                run.define_metric(axis, hidden=True)
                run.define_metric(k, step_metric=axis)
                self._axes.add(k)
        self._run.log({**values, axis: step})

    def start_cell(self, key: str, name: str, labels: Iterable[tuple[str, Any]] = ()) -> None:
        """Open the tracker run of one cell (named by its key)."""
        if not self.active:
            return
        self.end_cell()
        self._axes: set[str] = set()
        self._run = self._make(key, name)
        self._run.start()
        values = {**self.config, "cell": name, "cell_key": key}
        values.update({k: v for k, v in labels if isinstance(v, (str, int, float, bool))})
        self._run.store_init_configuration(values)

    def log_loss(self, stage: str, n_examples: int, loss: float) -> None:
        """One training update's loss, at step = examples seen in the stage."""
        if self._run is not None:
            self._log({f"loss/{stage}": float(loss)}, int(n_examples), f"examples/{stage}")

    def loss_logger(self, stage: str) -> Callable[[int, float], None]:
        """``train``'s ``on_step`` callback for one stage."""
        return lambda n_examples, loss: self.log_loss(stage, n_examples, loss)

    def log_rows(self, rows: Iterable[dict]) -> None:
        """Every numeric value of the measurement rows, at step = the row's n_examples."""
        if self._run is None:
            return
        for row in rows:
            prefix, step, metrics = row_metrics(row)
            if metrics:
                self._log(metrics, step, f"examples/{prefix}")

    def end_cell(self) -> None:
        """Close the current cell's tracker run (flushes its files)."""
        if self._run is not None:
            run, self._run = self._run, None
            run.finish()

    def close(self) -> None:
        self.end_cell()
