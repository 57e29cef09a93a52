"""The Python API; the CLI is a thin layer over these functions.

    import springback
    run_dir = springback.run("rebound", preset="quick", sets=["seeds=[0]"])
    df = springback.load_results(run_dir)
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__, runtime
from .config import ConfigError, dump_yaml, load_yaml, resolve, stable_hash, to_dict
from .errors import SpringbackError
from .io import RecordLog, RunLock, atomic_write_json, atomic_write_text, check_writable

DEFAULT_OUT = "springback-runs"


def get_experiment(name: str):
    from .experiments import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}' (choose from: {', '.join(EXPERIMENTS)})")
    return EXPERIMENTS[name]


def resolve_config(
    experiment: str, preset: str | None = "quick", config: str | Path | None = None, sets: list[str] | None = None
) -> Any:
    """The validated config an experiment would run with (defaults <- preset <- file <- sets)."""
    exp = get_experiment(experiment)
    return resolve(exp.config_cls, exp.presets, preset, config, sets)


def run_dir_for(experiment: str, cfg: Any, out: str | Path = DEFAULT_OUT) -> Path:
    """Content-addressed run directory: ``OUT/EXPERIMENT-HASH`` of the resolved config."""
    return Path(out) / f"{experiment}-{stable_hash(cfg, 10)}"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"springback": __version__}
    for pkg in ("torch", "transformers", "accelerate", "tokenizers", "datasets", "peft", "numpy", "scipy", "pandas", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def git_hash() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except Exception:  # noqa: BLE001 - not a git checkout
        return None


def run(
    experiment: str,
    preset: str | None = "quick",
    config: str | Path | None = None,
    sets: list[str] | None = None,
    out: str | Path = DEFAULT_OUT,
    progress: bool = True,
) -> Path:
    """Run one experiment (resuming a finished or partial run of the same config); returns its directory."""
    exp = get_experiment(experiment)
    cfg = resolve(exp.config_cls, exp.presets, preset, config, sets)
    out = Path(out)
    check_writable(out)
    run_dir = run_dir_for(experiment, cfg, out)
    from .experiments.base import RunContext

    with RunLock(run_dir) if runtime.is_main_process() else _null():
        started = time.time()
        t0 = time.perf_counter()
        if runtime.is_main_process():
            atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
            RecordLog(run_dir / "records.jsonl").repair()
        runtime.wait_for_everyone()
        ctx = RunContext(run_dir, out / "_cache", progress=progress)
        exp.run(cfg, ctx)
        run_seconds = time.perf_counter() - t0
        if runtime.is_main_process():
            finalize(run_dir, exp, cfg, timings={"run_s": run_seconds, "cells_run": ctx.cells_run,
                                                   "cells_skipped": ctx.cells_skipped, "cell_s": ctx.timings},
                     started=started, preset=preset)
        runtime.wait_for_everyone()
    return run_dir


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return None


def finalize(run_dir: Path, exp: Any, cfg: Any, timings: dict, started: float, preset: str | None) -> dict:
    """Analyse records into claims, draw figures, write result.json."""
    t0 = time.perf_counter()
    df = load_results(run_dir)
    claims = exp.analyze(df, cfg) if len(df) else []
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures = [str(Path(p).relative_to(run_dir)) for p in exp.plot(df, cfg, fig_dir)] if len(df) else []
    timings = {**timings, "analysis_s": time.perf_counter() - t0}
    result = {
        "experiment": exp.name,
        "preset": preset,
        "config_hash": stable_hash(cfg, 10),
        "claims": [c.to_dict() for c in claims],
        "figures": figures,
        "n_records": int(len(df)),
        "versions": versions(),
        "git": git_hash(),
        "machine": runtime.describe(),
        "timings": timings,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    atomic_write_json(run_dir / "result.json", result)
    return result


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """All measurement rows of a run (completed cells only) as a DataFrame."""
    path = Path(run_dir) / "records.jsonl"
    if not Path(run_dir).is_dir():
        raise SpringbackError(f"run directory not found: {run_dir}")
    return pd.DataFrame(RecordLog(path).rows())


def load_result(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise SpringbackError(f"no result.json in {run_dir} (has the run finished?)")
    return json.loads(path.read_text())


def load_config(run_dir: str | Path) -> dict:
    return load_yaml(Path(run_dir) / "config.yaml")


def reproduce(preset: str = "quick", out: str | Path = DEFAULT_OUT, experiments: list[str] | None = None,
              progress: bool = True) -> Path:
    """Run every registered experiment with ``preset`` and write ``OUT/report.html`` and ``report.md``."""
    from .experiments import EXPERIMENTS
    from .report import write_report

    names = experiments or list(EXPERIMENTS)
    for name in names:
        get_experiment(name)  # fail on a bad name before any work
        if preset not in EXPERIMENTS[name].presets:
            raise ConfigError(f"experiment '{name}' has no preset '{preset}'")
    check_writable(out)
    run_dirs = []
    part_s = {}
    for name in names:
        t0 = time.perf_counter()
        run_dirs.append(run(name, preset=preset, out=out, progress=progress))
        part_s[name] = time.perf_counter() - t0
    if runtime.is_main_process():
        return write_report(run_dirs, Path(out), wall_s=part_s)
    return Path(out) / "report.html"
