"""Running cells: one function executes any cell; :func:`execute` runs a run's cells in order.

A cell is a pure function of its key: :func:`cell_id` hashes the cell together with the
package version, the runtime (device kind, torch version, CPU thread count — floating-point
results depend on them) and content fingerprints of the local files it reads (model weights,
data files). A finished cell is never recomputed; a changed file, version or machine kind
gives new cells.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from .. import __version__, runtime
from ..errors import DivergenceError
from ..io import fingerprint
from .bases import base_path
from .source import build_source
from .spec import Cell, cell_id as _cell_id


def _local_paths(cell: Cell) -> list[str]:
    """Local files and directories whose content determines the cell's rows."""
    out = []
    if cell.base.path:
        out.append(cell.base.path)
    data = cell.source.get("data") or {}
    out += [data.get(k, "") for k in ("aligned", "opposing", "eval")]
    for spec in list(data.get("scorers") or []) + list(cell.source.get("scorers") or []):
        out.append(str(spec).partition(":")[2])
    ref = cell.measure.params.get("kl_reference", "")
    if ref not in ("", "base", "none"):
        out.append(ref)
    return [p for p in dict.fromkeys(out) if p and Path(p).expanduser().exists()]


def key_extras(cell: Cell) -> dict:
    """What besides the cell itself determines its rows (see the module docstring)."""
    from ..measure.sampling import SAMPLER_VERSION

    # The sampler's version: samples drawn by an older one are never reused (measure/sampling.py).
    return {"springback": __version__, "sampler": SAMPLER_VERSION, "runtime": runtime.fingerprint(),
            "files": {p: fingerprint(p) for p in _local_paths(cell)}}


def cell_id(cell: Cell) -> str:
    return _cell_id(cell, key_extras(cell))


def load_base(ctx: Any, cell: Cell) -> tuple[Any, Any, Any]:
    """(base model, tokenizer, source) of a cell; the model is loaded once per base (memo)."""
    from ..config import ModelConfig
    from ..models import load

    source = build_source(cell.source)
    spec = cell.base

    def build():
        path = base_path(ctx, spec)
        mc = ModelConfig(path=spec.path, revision=spec.revision, dtype=spec.dtype,
                         trust_remote_code=spec.trust_remote_code, allow_pickle=spec.allow_pickle)
        return load(path, mc)

    model, tok = ctx.memo({"base": spec.key()}, build)
    return model, tok, source


def resolve_runner(name: str) -> Callable[[Cell, Any], list[dict]]:
    """``"stages"`` or a ``"module:function"`` reference to a custom protocol's cell function."""
    if name == "stages":
        from .stages import run_stages

        return run_stages
    module, _, fn = name.partition(":")
    return getattr(importlib.import_module(module), fn)


def run_cell(cell: Cell, ctx: Any) -> list[dict]:
    """The rows of one cell (every row also carries ``experiment`` and ``seed``)."""
    rows = resolve_runner(cell.runner)(cell, ctx)
    return [{"experiment": cell.experiment, **r} for r in rows]


def execute(cells: Iterable[Cell], ctx: Any) -> None:
    """Run every cell not yet done, in order, committing each one's rows as it finishes."""
    cells = list(cells)
    ids = [cell_id(c) for c in cells]
    todo = [(c, i) for c, i in zip(cells, ids) if not ctx.is_done(i)]
    ctx.cells_skipped += len(cells) - len(todo)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", unit="cell",
               disable=not (ctx.progress and runtime.is_main_process()), leave=False)
    tracker = getattr(ctx, "tracker", None)  # an experiment tracker (pipeline.trackers): reads, never changes rows
    for cell, cid in todo:
        t0 = time.perf_counter()
        if tracker is not None:
            tracker.start_cell(cid, cell.name, cell.labels)
        try:
            rows = run_cell(cell, ctx)
        except DivergenceError as exc:
            # Mark the cell failed (never silently skipped), then stop the run.
            ctx.mark_failed(cid, cell.name, {"stage": exc.stage, "step": exc.step, "error": str(exc)})
            bar.close()
            raise DivergenceError(exc.stage, exc.step, exc.loss, cell=cell.name or cid) from None
        ctx.timings[cell.name or cid] = ctx.timings.get(cell.name or cid, 0.0) + time.perf_counter() - t0
        ctx.commit(cid, rows)
        if tracker is not None:
            tracker.log_rows(rows)
            tracker.end_cell()
        bar.update(1)
    bar.close()
