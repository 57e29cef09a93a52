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
from .config import ConfigError, dump_yaml, load_yaml, resolve, stable_hash
from .errors import SpringbackError
from .io import RecordLog, RunLock, atomic_write_json, atomic_write_text, check_writable

DEFAULT_OUT = "springback-runs"


def get_experiment(name: str):
    from .experiments import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}' (choose from: {', '.join(EXPERIMENTS)})")
    return EXPERIMENTS[name]


def resolve_config(
    experiment: str, preset: str | None = "quick", config: str | Path | None = None, sets: list[str] | None = None,
    fields: dict[str, Any] | None = None,
) -> Any:
    """The validated config an experiment would run with: defaults ← preset ← file ← ``fields``
    (dotted keys, e.g. CLI flags; empty values are skipped) ← ``--set`` overrides."""
    exp = get_experiment(experiment)
    cfg = resolve(exp.config_cls, exp.presets, preset, config, sets, fields)
    validate_names(cfg)
    return cfg


def validate_names(cfg: Any, where: str = "") -> None:
    """Check registry names anywhere in a config (worlds, size presets, scorers) before work starts."""
    import dataclasses

    from .config import AlgorithmConfig, ModelConfig
    from .losses import validate
    from .models import PRESETS
    from .worlds import WORLDS

    if not dataclasses.is_dataclass(cfg):
        return
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{where}{f.name}"
        if f.name in ("worlds", "world_names") and isinstance(value, list):
            for w in value:
                if w not in WORLDS:
                    raise ConfigError(f"{key}: unknown world '{w}' (choose from: {', '.join(WORLDS)})")
        elif f.name in ("world_name",) and isinstance(value, str) and value and value not in WORLDS:
            raise ConfigError(f"{key}: unknown world '{value}' (choose from: {', '.join(WORLDS)})")
        elif f.name in ("presets", "sizes") and isinstance(value, list) and all(isinstance(v, str) for v in value):
            for p in value:
                if p not in PRESETS and not ("/" in p or p.startswith(".")):
                    raise ConfigError(f"{key}: unknown size preset '{p}' (choose from: {', '.join(PRESETS)})")
        elif isinstance(value, ModelConfig) and not value.path and value.preset not in PRESETS:
            raise ConfigError(f"{key}.preset: unknown size preset '{value.preset}' (choose from: {', '.join(PRESETS)})")
        elif isinstance(value, AlgorithmConfig):
            try:
                validate(value)
            except ConfigError as exc:
                raise ConfigError(f"{key}: {exc}") from None
        elif dataclasses.is_dataclass(value):
            validate_names(value, f"{key}.")


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
    fields: dict[str, Any] | None = None,
    log_with: str | None = None,
) -> Path:
    """Run one experiment (resuming a finished or partial run of the same config); returns its directory.

    ``fields``: config values by dotted key (applied after ``config``, before ``sets``).
    ``log_with``: also log training losses and measurements to ``tensorboard``, ``wandb`` or
    ``mlflow`` (see :mod:`springback.pipeline.trackers`); it changes no result and no key."""
    from .pipeline import RunContext, execute
    from .pipeline.checks import check_cells
    from .pipeline.trackers import Tracker, check_tracker

    check_tracker(log_with)  # a missing package: one line, before any work
    exp = get_experiment(experiment)
    cfg = resolve_config(experiment, preset, config, sets, fields)
    exp.check(cfg)
    cells = exp.cells(cfg)
    check_cells(cells)  # bad data: one line, before any training and before the run directory exists
    out = Path(out)
    check_writable(out)
    run_dir = run_dir_for(experiment, cfg, out)
    with RunLock(run_dir) if runtime.is_main_process() else _null():
        started = time.time()
        t0 = time.perf_counter()
        if runtime.is_main_process():
            atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
            RecordLog(run_dir / "records.jsonl").repair()
        runtime.wait_for_everyone()
        ctx = RunContext(run_dir, out / "_cache", progress=progress)
        if log_with:
            ctx.tracker = Tracker(log_with, run_dir, f"springback-{experiment}", {"experiment": experiment,
                                                                                  "config_hash": stable_hash(cfg, 10)})
        try:
            execute(cells, ctx)
        finally:
            if log_with:
                ctx.tracker.close()
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


def save_figures(figures: list, fig_dir: Path) -> list[Path]:
    """Write each (file stem, matplotlib Figure) as ``fig_dir/STEM.png`` and close it."""
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in figures:
        path = fig_dir / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def finalize(run_dir: Path, exp: Any, cfg: Any, timings: dict, started: float, preset: str | None) -> dict:
    """Analyse records into claims, draw figures, write result.json."""
    t0 = time.perf_counter()
    df = load_results(run_dir)
    claims = exp.claims(df, cfg) if len(df) else []
    figures = save_figures(exp.figures(df, cfg), run_dir / "figures") if len(df) else []
    extra = exp.summary(df, cfg) if (exp.summary is not None and len(df)) else {}
    timings = {**timings, "analysis_s": time.perf_counter() - t0}
    result = {
        "experiment": exp.name,
        "preset": preset,
        "config_hash": stable_hash(cfg, 10),
        "claims": [c.to_dict() for c in claims],
        "figures": [str(p.relative_to(run_dir)) for p in figures],
        "n_records": int(len(df)),
        "versions": versions(),
        "git": git_hash(),
        "machine": runtime.describe(),
        "timings": timings,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        **extra,
    }
    atomic_write_json(run_dir / "result.json", result)
    return result


def load_results(run_dirs: str | Path | list[str | Path]) -> pd.DataFrame:
    """All measurement rows of one or several runs (completed cells only) as one DataFrame;
    every row names its ``experiment`` (see docs/records.md for the columns)."""
    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    rows: list[dict] = []
    for d in dirs:
        if not Path(d).is_dir():
            raise SpringbackError(f"run directory not found: {d}")
        rows += RecordLog(Path(d) / "records.jsonl").rows()
    return pd.DataFrame(rows)


def load_result(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise SpringbackError(f"no result.json in {run_dir} (has the run finished?)")
    return json.loads(path.read_text())


def load_config(run_dir: str | Path) -> dict:
    return load_yaml(Path(run_dir) / "config.yaml")


def reproduce(preset: str = "quick", out: str | Path = DEFAULT_OUT, experiments: list[str] | None = None,
              progress: bool = True, sets: list[str] | None = None, log_with: str | None = None) -> Path:
    """Run every registered experiment with ``preset`` and write ``OUT/report.html`` and ``report.md``.

    ``sets`` are ``EXPERIMENT:key=value`` overrides for one experiment each; ``log_with`` as in :func:`run`.
    """
    from .experiments import EXPERIMENTS
    from .pipeline.trackers import check_tracker
    from .report import write_report

    check_tracker(log_with)

    names = experiments or [n for n, e in EXPERIMENTS.items() if e.in_reproduce]
    for name in names:
        get_experiment(name)  # fail on a bad name before any work
        if preset not in EXPERIMENTS[name].presets:
            raise ConfigError(f"experiment '{name}' has no preset '{preset}'")
    per_exp: dict[str, list[str]] = {n: [] for n in names}
    for item in sets or []:
        exp_name, sep, kv = item.partition(":")
        if not sep or exp_name not in per_exp:
            raise ConfigError(f"reproduce --set expects EXPERIMENT:key=value with one of {', '.join(names)}, got '{item}'")
        per_exp[exp_name].append(kv)
    for name in names:  # validate every config before any work starts
        resolve_config(name, preset, None, per_exp[name])
    check_writable(out)
    run_dirs = []
    part_s = {}
    for name in names:
        t0 = time.perf_counter()
        run_dirs.append(run(name, preset=preset, sets=per_exp[name], out=out, progress=progress, log_with=log_with))
        part_s[name] = time.perf_counter() - t0
    if runtime.is_main_process():
        return write_report(run_dirs, Path(out), wall_s=part_s)
    return Path(out) / "report.html"


def elasticity(
    model: str = "",
    base: str = "",
    data: str = "",
    eval: str = "",  # noqa: A002 - the CLI flag's name
    world: str = "",
    scorers: list[str] | tuple = (),
    label_map: str = "",
    config: str | Path | None = None,
    sets: list[str] | None = None,
    preset: str | None = "quick",
    out: str | Path = DEFAULT_OUT,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark how little opposing data undoes ``model``'s alignment: the ``elasticity``
    experiment with its main keys as arguments (``data`` = opposing data, ``eval`` = held-out
    prompts / references, or ``world`` = a synthetic world). Returns ``result.json`` plus ``run_dir``."""
    fields = {"model.path": model, "base": base, "data.opposing": data, "data.eval": eval, "world": world,
              "scorers": list(scorers), "label_map": label_map}
    run_dir = run("elasticity", preset=preset, config=config, sets=sets, out=out, progress=progress, fields=fields)
    return {**load_result(run_dir), "run_dir": str(run_dir)}


def align(
    model: str = "",
    data: str = "",
    out: str | Path = "",
    config: str | Path | None = None,
    sets: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``model`` on the aligned examples of ``data`` and save a Hugging Face checkpoint in
    ``out`` (see :mod:`springback.pipeline.align`); returns its ``springback_align.json``."""
    from .pipeline.align import AlignConfig
    from .pipeline.align import align as _align

    if not out:
        raise ConfigError("give the output directory: --out DIR")
    cfg = resolve(AlignConfig, None, None, config, sets, {"model.path": model, "data.aligned": data})
    validate_names(cfg)
    return _align(cfg, out, progress=progress)


def compare(
    run_dirs: str | Path | list[str | Path],
    out: str | Path | None = None,
    metric: str = "auto",
    sort_by: str = "n_half",
    by: list[str] | tuple[str, ...] = (),
    kl_epsilon: float | None = None,
) -> dict[str, Any]:
    """Compare finished runs of one experiment (``elasticity`` or ``rebound``): one row per
    model / checkpoint / run with the alignment gain, n½, the fall rates before and after the
    base crossing and the examples to KL < ε, each a mean with a 95% interval over seeds, sorted
    by ``sort_by``, with each row's difference to the best row (see
    :mod:`springback.analysis.compare`). Writes ``compare.html`` (self-contained), ``compare.md``,
    ``compare.csv`` and ``compare.png`` into ``out`` (default: ``compare-HASH`` beside the first
    run). Returns the comparison (``rows``, ``labels``, …) plus ``summary`` (one line per row),
    ``files`` and ``out``."""
    from .analysis.compare import RunRecords, compare_runs
    from .report.compare import describe, write_compare

    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if len({d.resolve() for d in dirs}) < len(dirs):
        raise SpringbackError("a run directory is given twice")
    for d in dirs:
        if not d.is_dir():
            raise SpringbackError(f"run directory not found: {d}")
        if not (d / "config.yaml").is_file() or not (d / "records.jsonl").is_file():
            raise SpringbackError(f"{d} is not a springback run directory (no config.yaml / records.jsonl)")
    names = [d.name for d in dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    runs = [RunRecords(name, load_results(d), load_config(d),
                       json.loads((d / "result.json").read_text()) if (d / "result.json").is_file() else {})
            for name, d in zip(names, dirs)]
    cmp = compare_runs(runs, metric=metric, sort_by=sort_by, by=tuple(by), kl_epsilon=kl_epsilon)
    if out is None:
        key = {"runs": sorted(str(d.resolve()) for d in dirs), "metric": cmp.metric, "sort_by": sort_by,
               "by": list(by), "kl_epsilon": cmp.kl_epsilon}
        out = dirs[0].parent / f"compare-{stable_hash(key, 10)}"
    check_writable(out)
    files = write_compare(cmp, out)
    return {**cmp.to_dict(), "summary": describe(cmp), "files": {k: str(v) for k, v in files.items()}, "out": str(out)}
