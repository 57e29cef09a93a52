"""The experiment protocol and the context a running experiment writes through.

An :class:`Experiment` is plain data: a config schema, presets, and three functions —
``run`` (train and measure, writing rows cell by cell through :class:`RunContext`),
``analyze`` (rows -> claims) and ``plot`` (rows -> figures). The runner in
:mod:`springback.api` glues them together; experiments never touch result files directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .. import runtime
from ..config import stable_hash
from ..errors import DivergenceError
from ..io import RecordLog, RunLock


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config_cls: type
    presets: dict[str, dict]
    run: Callable[[Any, "RunContext"], None]
    analyze: Callable[[pd.DataFrame, Any], list]  # -> list[Claim]
    plot: Callable[[pd.DataFrame, Any, Path], list[Path]]


class RunContext:
    """Where an experiment's cells, records and cached models go.

    ``run_dir`` holds this run's ``records.jsonl``; ``cache_dir`` (shared by every run under
    the same ``--out``) holds pre-trained bases and other reusable models, content-addressed.
    """

    def __init__(self, run_dir: Path, cache_dir: Path, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.cache_dir = Path(cache_dir)
        self.records = RecordLog(self.run_dir / "records.jsonl")
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._done = self.records.done_cells()
        self.cells_skipped = 0
        self.cells_run = 0

    # ---------------------------------------------------------------- cells
    @staticmethod
    def cell_id(key: dict) -> str:
        """Content address of a cell: the hash of everything that determines its rows."""
        return stable_hash(key, 12)

    def is_done(self, cell_id: str) -> bool:
        return cell_id in self._done

    def commit(self, cell_id: str, rows: list[dict]) -> None:
        """Append a finished cell's rows (main process only) and mark it done."""
        if runtime.is_main_process():
            self.records.append_cell(cell_id, rows)
        self._done.add(cell_id)
        self.cells_run += 1

    def run_cell(self, key: dict, compute: Callable[[], list[dict]], name: str = "") -> str:
        """Run ``compute`` unless the cell with this key is already done; returns its id."""
        cid = self.cell_id(key)
        if self.is_done(cid):
            self.cells_skipped += 1
            return cid
        t0 = time.perf_counter()
        try:
            rows = compute()
        except DivergenceError as exc:
            # Mark the cell failed (never silently skipped), then stop the run.
            if runtime.is_main_process():
                with open(self.run_dir / "failed_cells.jsonl", "a") as fh:
                    fh.write(json.dumps({"cell": cid, "name": name, "stage": exc.stage, "step": exc.step,
                                         "error": str(exc)}) + "\n")
            raise DivergenceError(exc.stage, exc.step, exc.loss, cell=name or cid) from None
        self.timings[name or cid] = self.timings.get(name or cid, 0.0) + time.perf_counter() - t0
        self.commit(cid, rows)
        return cid

    # ---------------------------------------------------------------- cached artefacts
    def cached_dir(self, kind: str, key: dict, build: Callable[[Path], None]) -> Path:
        """A directory built once per content ``key`` and reused by later runs.

        ``build(tmp_dir)`` fills a temporary directory, renamed into place only when complete,
        so an interrupted build is redone rather than half-read. Under several processes every
        rank calls ``build`` (training is collective) and the main process keeps its copy.
        """
        final = self.cache_dir / kind / stable_hash(key, 12)
        if (final / ".complete").exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        main = runtime.is_main_process()
        lock = RunLock(final.parent / f".{final.name}", wait=True) if main else contextlib.nullcontext()
        with lock:
            if main and (final / ".complete").exists():  # built by a concurrent run meanwhile
                return final
            tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            build(tmp)
            if main:
                (tmp / "key.json").write_text(json.dumps(key, sort_keys=True, indent=1, default=str))
                (tmp / ".complete").write_text("ok")
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        runtime.wait_for_everyone()
        return final
