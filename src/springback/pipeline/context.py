"""Where a run's cells, records and cached models go.

``run_dir`` holds the run's ``records.jsonl``; ``cache_dir`` (shared by every run under the same
``--out``) holds pre-trained bases and other reusable models, content-addressed. The run
directory on a (shared) file system is the only coordination between processes: finished
cells are committed atomically, and a cached model is built under a lock by exactly one
process while the others wait and then reuse it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from .. import runtime
from ..config import stable_hash
from ..io import RecordLog, RunLock, dumps
from .records import check_rows


def cache_entry(cache_dir: Path, kind: str, key: dict) -> Path:
    """Where :meth:`RunContext.cached_dir` keeps the entry ``key`` of ``kind``."""
    return Path(cache_dir) / kind / stable_hash(key, 12)


class RunContext:
    """A run directory, the shared model cache, and a small in-process memo of loaded models."""

    def __init__(self, run_dir: Path, cache_dir: Path, progress: bool = True, memo_size: int = 4):
        self.run_dir = Path(run_dir)
        self.cache_dir = Path(cache_dir)
        self.records = RecordLog(self.run_dir / "records.jsonl")
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._done = self.records.done_cells()
        self.cells_skipped = 0
        self.cells_run = 0
        self._memo: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._memo_size = memo_size

    # ---------------------------------------------------------------- cells
    def is_done(self, cell_id: str) -> bool:
        return cell_id in self._done

    def commit(self, cell_id: str, rows: list[dict]) -> None:
        """Append a finished cell's rows (main process only) and mark it done."""
        check_rows(rows)
        if runtime.is_main_process():
            self.records.append_cell(cell_id, rows)
        self._done.add(cell_id)
        self.cells_run += 1

    def mark_failed(self, cell_id: str, name: str, info: dict) -> None:
        """Record a cell that could not finish (never silently skipped)."""
        if runtime.is_main_process():
            with open(self.run_dir / "failed_cells.jsonl", "a") as fh:
                fh.write(dumps({"cell": cell_id, "name": name, **info}) + "\n")

    # ---------------------------------------------------------------- in-process memo
    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """``build()`` once per ``key`` while it stays among the last ``memo_size`` keys used
        (bases loaded from disk, tokenised reference sets, the base's exact measure)."""
        k = stable_hash(key, 16)
        if k in self._memo:
            self._memo.move_to_end(k)
            return self._memo[k]
        value = build()
        self._memo[k] = value
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return value

    # ---------------------------------------------------------------- cached artefacts
    def cached_dir(self, kind: str, key: dict, build: Callable[[Path], None]) -> Path:
        """A directory built once per content ``key`` and reused by later runs.

        ``build(tmp_dir)`` fills a temporary directory, renamed into place only when complete,
        so an interrupted build is redone rather than half-read. A lock on the entry makes a
        second process that needs the same entry wait and reuse it. Under ``accelerate launch``
        every rank calls ``build`` (training is collective) and the main process keeps its copy.
        """
        final = cache_entry(self.cache_dir, kind, key)
        if (final / ".complete").exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        main = runtime.is_main_process()
        lock = RunLock(final.parent / f".{final.name}", wait=True) if main else contextlib.nullcontext()
        with lock:
            if main and (final / ".complete").exists():  # built by a concurrent process meanwhile
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
