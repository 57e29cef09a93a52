"""Cell keys: what a cell's rows depend on, hashed into its id.

A cell is a pure function of its key: :func:`cell_id` hashes the cell (:mod:`.spec`) together
with the package version, the sampler's version, the runtime (device kind, torch version, CPU
thread count — floating-point results depend on them) and content fingerprints of the local files
it reads (model weights, data files). A finished cell is never recomputed; a changed file,
version or machine kind gives new cells.
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__, runtime
from ..io import fingerprint
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


def key_extras(cell: Cell, machine: dict | None = None) -> dict:
    """What besides the cell itself determines its rows (see the module docstring); ``machine``:
    the runtime fingerprint of the workers that compute it (default: this process's)."""
    from ..measure.sampling import SAMPLER_VERSION

    # The sampler's version: samples drawn by an older one are never reused (measure/sampling.py).
    return {"springback": __version__, "sampler": SAMPLER_VERSION, "runtime": machine or runtime.fingerprint(),
            "files": {p: fingerprint(p) for p in _local_paths(cell)}}


def cell_id(cell: Cell, machine: dict | None = None) -> str:
    return _cell_id(cell, key_extras(cell, machine))
