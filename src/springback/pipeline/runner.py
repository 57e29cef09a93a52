"""Running a run's cells: :func:`execute` runs them on an executor (:mod:`.executors`: in
process, a local pool, SLURM, Ray) and commits each cell's rows in cell order.

One function computes any cell (:func:`.stages.run_cell`); a cell's id is its key
(:func:`.keys.cell_id`), so a finished cell is never recomputed. Both are re-exported here.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from .. import runtime
from ..config import stable_hash
from ..errors import DivergenceError, SpringbackError
from .bases import base_path, load_base
from .context import cache_entry
from .executors import (STAGED, BaseTask, CellTask, Executor, ExecutorConfig, WorkerLost, make_executor, read_staged, resolve_kind,
                        staged_path, task_env)
from .keys import cell_id, key_extras
from .spec import BaseSpec, Cell
from .stages import resolve_runner, run_cell, run_cell_logged

__all__ = ["execute", "execute_runs", "cell_id", "key_extras", "load_base", "resolve_runner", "run_cell", "run_cell_logged"]


def execute(cells: Iterable[Cell], ctx: Any, executor: ExecutorConfig | Executor | None = None) -> None:
    """Run every cell not yet done, committing each one's rows to ``ctx`` in cell order.

    ``executor``: an :class:`ExecutorConfig` (``kind`` serial | local | slurm | ray | auto) or an
    executor object; ``None`` runs the cells here, one after another."""
    execute_runs([(ctx, cells)], executor)


def execute_runs(runs: Sequence[tuple[Any, Iterable[Cell]]], executor: ExecutorConfig | Executor | None = None,
                 on_done: Callable[[int], None] | None = None) -> None:
    """:func:`execute` for several runs through one executor (``springback reproduce``: the
    experiments' cells share workers and pre-trained bases). Each run's rows are committed to its
    own context in its own cell order, so every ``records.jsonl`` is the same as a serial run's.
    ``on_done(i)`` is called (main process) as soon as run i's cells are all committed, e.g. to
    analyse it while the workers compute the other runs."""
    runs = [(ctx, list(cells)) for ctx, cells in runs]
    on_done = on_done or (lambda i: None)
    if executor is None or isinstance(executor, ExecutorConfig):
        cfg = executor or ExecutorConfig(kind="serial")
        kind = resolve_kind(cfg)
        if kind == "local" and cfg.kind == "auto" and _n_todo(runs, runtime.fingerprint()) <= 1:
            kind = "serial"  # one cell: starting worker processes would only cost time
        if kind == "serial":
            _execute_serial(runs, on_done)
            return
        ex = make_executor(dataclasses.replace(cfg, kind=kind), Path(runs[0][0].cache_dir).parent / "_slurm")
    else:
        ex = executor
    _Scheduler(runs, ex, on_done).run()


def _n_todo(runs: list[tuple[Any, list[Cell]]], fp: dict) -> int:
    return sum(not ctx.is_done(cell_id(c, fp)) for ctx, cells in runs for c in cells)


def _progress_bar(runs: list, total: int, initial: int) -> Any:
    show = any(ctx.progress for ctx, _ in runs) and runtime.is_main_process()
    return tqdm(total=total, initial=initial, desc="cells", unit="cell", disable=not show, leave=False)


def _execute_serial(runs: list[tuple[Any, list[Cell]]], on_done: Callable[[int], None]) -> None:
    """Every cell in this process, in order (every rank of an ``accelerate launch`` runs each one)."""
    plan = [(ctx, [(c, cell_id(c)) for c in cells]) for ctx, cells in runs]
    todo = [(ctx, [(c, i) for c, i in cells if not ctx.is_done(i)]) for ctx, cells in plan]
    total = sum(len(cells) for _, cells in plan)
    for (ctx, cells), (_, left) in zip(plan, todo):
        ctx.cells_skipped += len(cells) - len(left)
    bar = _progress_bar(runs, total, total - sum(len(left) for _, left in todo))
    try:
        for r, (ctx, left) in enumerate(todo):
            for cell, cid in left:
                if ctx.is_done(cid):  # the same cell listed twice: its rows are written once
                    bar.update(1)
                    continue
                t0 = time.perf_counter()
                try:
                    rows = run_cell_logged(cell, cid, ctx)
                except DivergenceError as exc:
                    # Mark the cell failed (never silently skipped), then stop the run.
                    ctx.mark_failed(cid, cell.name, {"stage": exc.stage, "step": exc.step, "error": str(exc)})
                    raise DivergenceError(exc.stage, exc.step, exc.loss, cell=cell.name or cid) from None
                ctx.timings[cell.name or cid] = ctx.timings.get(cell.name or cid, 0.0) + time.perf_counter() - t0
                ctx.commit(cid, rows)
                bar.update(1)
            on_done(r)
    finally:
        bar.close()


class _Missing(Exception):
    pass


class _CacheProbe:
    """Stands in for a RunContext so that :func:`~.bases.base_path` says whether a base is
    cached (returns its path) or must be built (raises :class:`_Missing`), building nothing."""

    progress = False

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)

    def cached_dir(self, kind: str, key: dict, build: Callable[[Path], None]) -> Path:
        final = cache_entry(self.cache_dir, kind, key)
        if (final / ".complete").exists():
            return final
        raise _Missing


def _base_build(cell: Cell) -> BaseSpec | None:
    """The pre-training run a cell's base comes from (one per distinct run), or None."""
    if not cell.base.pretrain:
        return None
    return dataclasses.replace(cell.base, at=0) if cell.base.snapshots else cell.base


class _Scheduler:
    """Feeds an executor: every missing pre-trained base first (they unblock the most cells),
    then each cell as soon as its base is cached, in cell order, except that a worker that just
    finished gets, if one is ready, a cell on the same base (still in its memo: no reload);
    commits rows in cell order whatever order they arrive in."""

    def __init__(self, runs: list[tuple[Any, list[Cell]]], ex: Executor, on_done: Callable[[int], None]):
        self.ex, self.env, self.on_done = ex, task_env(), on_done
        self.reported: set[int] = set()
        self.failed = False
        fp = ex.fingerprint()
        self.runs = []  # per run: (ctx, [(cell, cid)] not yet committed, in order)
        total = skipped = 0
        for ctx, cells in runs:
            seen: set[str] = set()
            left = []
            for c in cells:
                cid = cell_id(c, fp)
                if ctx.is_done(cid) or cid in seen:
                    continue
                seen.add(cid)
                left.append((c, cid))
            ctx.cells_skipped += len(cells) - len(left)
            total, skipped = total + len(cells), skipped + len(cells) - len(left)
            self.runs.append((ctx, left))
            _clean_staged(ctx.run_dir, {cid for _, cid in left})
        self.received = self._staged()  # (run, cell id) whose rows wait in the run directory
        self.bar = _progress_bar(runs, total, skipped + len(self.received))
        self.pos = [0] * len(self.runs)

    # -------------------------------------------------------------- plan
    def _tasks(self) -> tuple[list[tuple[str, BaseTask]], list[tuple[int, Cell, str, str | None, str | None]]]:
        """(missing base builds by key; cells to run with the key of the base they wait for
        (None when cached or none) and the key of their base (None when none))."""
        bases: dict[str, BaseTask] = {}
        cells = []
        for r, (ctx, left) in enumerate(self.runs):
            probe_ctx = _CacheProbe(ctx.cache_dir)
            for cell, cid in left:
                if (r, cid) in self.received:
                    continue
                need = group = None
                build = _base_build(cell)
                if build is not None:
                    group = stable_hash(build, 16)
                    if group in bases:
                        need = group
                    else:
                        try:
                            base_path(probe_ctx, cell.base)
                        except _Missing:
                            need = group
                            # The cell's own spec: building one snapshot of a run builds them all.
                            bases[group] = BaseTask(cell.base, str(ctx.run_dir), str(ctx.cache_dir), self.env)
                cells.append((r, cell, cid, need, group))
        return list(bases.items()), cells

    # -------------------------------------------------------------- run
    def run(self) -> None:
        bases, cells = self._tasks()
        self.cells = cells  # not yet submitted (read by _failed)
        n_bases = len(bases)
        if n_bases:
            self.bar.set_postfix_str(f"bases 0/{n_bases}")
        built: set[str] = set()
        in_flight: dict[Any, tuple[str, Any]] = {}  # handle -> ("base", key) | ("cell", cells item)
        last_group: dict[str, str | None] = {}  # worker -> base key of its last task
        freed: list[str] = []  # workers that just finished a task, in order
        failure: BaseException | None = None
        self.failed = False
        self._flush()
        try:
            while bases or cells or in_flight:
                free = self.ex.slots - len(in_flight)
                batch: list[tuple[str, Any, Any]] = []
                while bases and free > len(batch):
                    key, task = bases.pop(0)
                    batch.append(("base", key, task))
                ready = [c for c in cells if c[3] is None or c[3] in built]
                picks: list = []
                for worker in freed:  # a freed worker takes a cell on the base it has loaded, if any
                    if len(batch) + len(picks) >= free:
                        break
                    same = [c for c in ready if c[4] is not None and c[4] == last_group.get(worker) and c not in picks]
                    if same:
                        picks.append(same[0])
                picks += [c for c in ready if c not in picks][: max(0, free - len(batch) - len(picks))]
                picks.sort(key=cells.index)
                freed = []
                for item in picks:
                    cells.remove(item)
                    r, cell, cid = item[:3]
                    ctx = self.runs[r][0]
                    tracker = getattr(ctx, "tracker", None)
                    batch.append(("cell", item, CellTask(cell, cid, str(ctx.run_dir), str(ctx.cache_dir), self.env,
                                                         tracker.spec() if tracker is not None else None)))
                if batch:
                    for (kind, what, _), h in zip(batch, self.ex.submit([t for _, _, t in batch])):
                        in_flight[h] = (kind, what)
                if not in_flight:
                    raise RuntimeError("cells wait for bases that no task builds")  # a scheduler bug
                for h in self.ex.wait(list(in_flight)):
                    kind, what = in_flight.pop(h)
                    try:
                        out = self.ex.outcome(h)
                    except WorkerLost as exc:
                        name = "pre-training a base" if kind == "base" else (what[1].name or what[2])
                        raise WorkerLost(f"{name}: {exc}; finished cells are saved, run the same command again "
                                         "to redo the rest") from None
                    if out.error is not None:
                        raise self._failed(kind, what, out.error)
                    last_group[out.worker] = what if kind == "base" else what[4]
                    freed.append(out.worker)
                    if kind == "base":
                        built.add(what)
                        self.bar.set_postfix_str(f"bases {len(built)}/{n_bases}")
                    else:
                        r, cell, cid = what[:3]
                        ctx = self.runs[r][0]
                        name = cell.name or cid
                        ctx.timings[name] = ctx.timings.get(name, 0.0) + out.seconds
                        self.received.add((r, cid))
                        self.bar.update(1)
                        self._flush()
        except BaseException as exc:
            failure, self.failed = exc, True
            raise
        finally:
            self.ex.close(cancel=failure is not None)
            if failure is not None:  # keep what finished meanwhile (staged cells are not redone)
                self.received |= self._staged()
                self._flush()
            self.bar.close()

    def _staged(self) -> set[tuple[int, str]]:
        return {(r, cid) for r, (ctx, left) in enumerate(self.runs) for _, cid in left
                if staged_path(ctx.run_dir, cid).exists()}

    def _flush(self) -> None:
        """Commit, per run, the longest prefix of cells whose rows have arrived (cell order);
        report each run whose cells are all committed."""
        for r, (ctx, left) in enumerate(self.runs):
            while self.pos[r] < len(left) and (r, left[self.pos[r]][1]) in self.received:
                cid = left[self.pos[r]][1]
                ctx.commit(cid, read_staged(ctx.run_dir, cid))
                staged_path(ctx.run_dir, cid).unlink(missing_ok=True)
                self.pos[r] += 1
        for r, (ctx, left) in enumerate(self.runs):
            if self.pos[r] == len(left) and r not in self.reported and not self.failed:
                self.reported.add(r)
                self.on_done(r)

    def _failed(self, kind: str, what: Any, error: dict) -> BaseException:
        """The exception to raise in the main process for a task's error. A base that cannot be
        built fails the first cell waiting for it, as it would in a serial run."""
        if kind == "base":
            waiting = [c for c in self.cells if c[3] == what]
            if not waiting:  # cannot happen: a base is built only for a cell that needs it
                return SpringbackError(f"pre-training a base: {error['message']}")
            what = waiting[0]
        r, cell, cid = what[:3]
        name = cell.name or cid
        if error["kind"] == "divergence":
            self.runs[r][0].mark_failed(cid, cell.name, {"stage": error["stage"], "step": error["step"],
                                                         "error": error["message"]})
            return DivergenceError(error["stage"], error["step"], error["loss"], cell=name)
        if error["kind"] == "user":
            return SpringbackError(f"{name}: {error['message']}")
        return RuntimeError(f"{name} failed in a {self.ex.name} worker:\n{error['traceback']}")


def _clean_staged(run_dir: Path, keep: set[str]) -> None:
    """Drop staged rows of cells already committed and temporary files of killed writers."""
    folder = Path(run_dir) / STAGED
    if not folder.is_dir():
        return
    for f in folder.iterdir():
        if f.name.startswith(".") or (f.suffix == ".pkl" and f.stem not in keep):
            f.unlink(missing_ok=True)
