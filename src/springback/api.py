"""The Python API; the CLI is a thin layer over these functions.

    import springback
    run_dir = springback.run("rebound", preset="quick", sets=["seeds=[0]"])
    df = springback.load_results(run_dir)
"""

from __future__ import annotations

import dataclasses
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
    (dotted keys, e.g. CLI flags; empty values are skipped) ← ``--set`` overrides
    (``executor.*`` items are executor options: checked, not part of the config)."""
    from .pipeline.executors import executor_config, split_sets

    exp = get_experiment(experiment)
    sets, ex_sets = split_sets(sets or [])
    executor_config(None, ex_sets)  # executor options: checked here, never part of the config
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
    executor: str | Any | None = None,
    log_with: str | None = None,
) -> Path:
    """Run one experiment (resuming a finished or partial run of the same config); returns its directory.

    ``fields``: config values by dotted key (applied after ``config``, before ``sets``).
    ``executor``: where the cells run — ``"local"`` (a process per core; the default), ``"serial"``,
    ``"slurm"``, ``"ray"``, or an :class:`~springback.pipeline.executors.ExecutorConfig`;
    ``executor.KEY=VALUE`` items in ``sets`` set its options.
    ``log_with``: also log training losses and measurements to ``tensorboard``, ``wandb`` or
    ``mlflow`` (see :mod:`springback.pipeline.trackers`). None of these changes any result or key."""
    from .pipeline.runner import execute_runs
    from .pipeline.trackers import check_tracker

    check_tracker(log_with)  # a missing package: one line, before any work
    sets, ex_cfg = _split_executor(sets, executor)
    job = _plan(experiment, preset, config, sets, fields, out)
    with RunLock(job.run_dir) if runtime.is_main_process() else _null():
        ctx = _open(job, progress, log_with)
        t0 = time.perf_counter()
        try:
            execute_runs([(ctx, job.cells)], ex_cfg)
        finally:
            _close_tracker(ctx)
        _finish(job, ctx, time.perf_counter() - t0, ex_cfg)
    return job.run_dir


def _split_executor(sets: list[str] | None, executor: str | Any | None) -> tuple[list[str], Any]:
    """(experiment ``--set`` items, executor config): ``executor.*`` items never reach a config hash."""
    import multiprocessing

    from .pipeline.executors import ExecutorConfig, executor_config, split_sets

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A worker process is starting and re-imports the user's script (multiprocessing's spawn).
        raise SpringbackError("springback was called while a worker process started: put the script's "
                              "top-level code under `if __name__ == \"__main__\":` (or use executor='serial')")
    exp_sets, ex_sets = split_sets(sets or [])
    if isinstance(executor, ExecutorConfig):
        if ex_sets:
            raise ConfigError("give executor options either in the ExecutorConfig or as executor.* sets, not both")
        return exp_sets, executor
    return exp_sets, executor_config(executor, ex_sets)


@dataclasses.dataclass
class _Job:
    """One experiment's resolved run: config, cells and run directory."""

    exp: Any
    cfg: Any
    cells: list
    run_dir: Path
    out: Path
    preset: str | None
    started: float = 0.0


def _plan(experiment: str, preset: str | None, config: str | Path | None, sets: list[str] | None,
          fields: dict[str, Any] | None, out: str | Path) -> _Job:
    """Resolve and check everything before any work: config, cells, their data, the output folder."""
    exp = get_experiment(experiment)
    cfg = resolve_config(experiment, preset, config, sets, fields)
    exp.check(cfg)
    cells = exp.cells(cfg)
    from .pipeline.checks import check_cells

    check_cells(cells)  # bad data: one line, before any training and before the run directory exists
    out = Path(out)
    check_writable(out)
    return _Job(exp, cfg, cells, run_dir_for(experiment, cfg, out), out, preset)


def _open(job: _Job, progress: bool, log_with: str | None = None) -> Any:
    """Write the run's config, repair its records after a crash; the run's context (lock held),
    with its experiment tracker when ``log_with`` names one."""
    from .pipeline import RunContext
    from .pipeline.trackers import Tracker

    job.started = time.time()
    if runtime.is_main_process():
        atomic_write_text(job.run_dir / "config.yaml", dump_yaml(job.cfg))
        RecordLog(job.run_dir / "records.jsonl").repair()
    runtime.wait_for_everyone()
    ctx = RunContext(job.run_dir, job.out / "_cache", progress=progress)
    if log_with:
        ctx.tracker = Tracker(log_with, job.run_dir, f"springback-{job.exp.name}",
                              {"experiment": job.exp.name, "config_hash": stable_hash(job.cfg, 10)})
    return ctx


def _close_tracker(ctx: Any) -> None:
    if getattr(ctx, "tracker", None) is not None:
        ctx.tracker.close()


def _finish(job: _Job, ctx: Any, run_seconds: float, ex_cfg: Any, shared: list[str] | None = None) -> None:
    if runtime.is_main_process():
        timings = {"run_s": run_seconds, "cells_run": ctx.cells_run, "cells_skipped": ctx.cells_skipped,
                   "cell_s": ctx.timings, "executor": ex_cfg.kind}
        if shared:
            # One executor ran these experiments' cells together: run_s is when this one's last
            # cell was in, counted from the shared start; cell_s are each cell's own seconds.
            timings["run_s_shared_with"] = shared
        finalize(job.run_dir, job.exp, job.cfg, timings=timings, started=job.started, preset=job.preset)
    runtime.wait_for_everyone()


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
              progress: bool = True, sets: list[str] | None = None, executor: str | Any | None = None,
              log_with: str | None = None) -> Path:
    """Run every registered experiment with ``preset`` and write ``OUT/report.html`` and ``report.md``.

    ``sets`` are ``EXPERIMENT:key=value`` overrides for one experiment each (and ``executor.KEY=VALUE``
    items for the executor). All experiments' cells go through one executor, so the workers stay
    busy across experiments and a base that several experiments share is built once, first.
    ``log_with`` as in :func:`run`.
    """
    import contextlib

    from .experiments import EXPERIMENTS
    from .pipeline.runner import execute_runs
    from .pipeline.trackers import check_tracker
    from .report import write_report

    check_tracker(log_with)
    sets, ex_cfg = _split_executor(sets, executor)
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
    from .pipeline.executors import start_early

    executor = start_early(ex_cfg)  # a local pool's workers start while the runs are planned
    jobs = [_plan(name, preset, None, per_exp[name], None, out) for name in names]
    part_s: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        if runtime.is_main_process():
            for job in jobs:
                stack.enter_context(RunLock(job.run_dir))
        ctxs = [_open(job, progress, log_with) for job in jobs]
        for ctx in ctxs:
            stack.callback(_close_tracker, ctx)
        t0 = time.perf_counter()

        def analyse(i: int) -> None:
            """An experiment whose cells are all in: analysed now, while the workers run the others'."""
            job, ctx = jobs[i], ctxs[i]
            t1 = time.perf_counter()
            _finish(job, ctx, t1 - t0, ex_cfg, shared=names if len(names) > 1 else None)
            part_s[job.exp.name] = t1 - t0  # when its last cell was in (the pool is shared)
            part_s[f"{job.exp.name} analysis"] = time.perf_counter() - t1

        execute_runs([(ctx, job.cells) for ctx, job in zip(ctxs, jobs)], executor, on_done=analyse)
        part_s["total"] = time.perf_counter() - t0
    if runtime.is_main_process():
        return write_report([job.run_dir for job in jobs], Path(out), wall_s=part_s)
    return Path(out) / "report.html"


def compress(
    model_path: str,
    data_path: str | Path,
    arith: bool = False,
    max_bytes: int | None = None,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 32,
    add_eos: bool = False,
    windows: str = "sliding",
) -> dict[str, Any]:
    """Everything ``springback compress`` prints, as a dict.

    The model (a world-model directory or any local Hugging Face causal LM) scores the texts
    of ``data_path``; gzip, bz2 and xz compress the same bytes (the texts joined by newlines);
    with ``arith`` the texts are really arithmetic-coded and decoded back. The encoder *is*
    the scoring pass (it codes the very log-probs it scores, :func:`springback.measure.coder.encode`),
    so with ``arith`` the rate and the coded size come from one forward per window.
    """
    from .data.loading import read_texts
    from .measure.compression import (baseline_sizes, code_length_from_bits, code_length_of_ids, pad_token,
                                      resolve_windows, tokenize_texts)
    from .models import load

    texts = read_texts(data_path, max_bytes)
    model, tok = load(model_path)
    window, stride = resolve_windows(model, tok, windows, window, stride)
    seqs = tokenize_texts(tok, texts, add_eos)
    n_bytes = [len(t.encode("utf-8")) for t in texts]
    t0 = time.perf_counter()
    if arith:
        from .measure.coder import decode, encode

        blob, stats = encode(model, seqs, window=window, stride=stride, batch_size=batch_size, pad_id=pad_token(tok))
        cl = code_length_from_bits(stats.token_bits, n_bytes)
    else:
        cl = code_length_of_ids(model, seqs, n_bytes, None, window, stride, batch_size, pad_token(tok))
    seconds = {"encode" if arith else "score": time.perf_counter() - t0}
    joined = "\n".join(texts).encode("utf-8")
    result: dict[str, Any] = {
        "model": str(model_path),
        "data": str(data_path),
        "vocab_size": int(model.config.vocab_size),
        "windows": windows,
        "window": window,
        "stride": stride,
        "model_rate": cl.summary(),
        "baselines": {
            name: {"bytes": size, "raw_bytes": len(joined), "bits_per_byte": 8 * size / len(joined), "gamma": size / len(joined)}
            for name, size in baseline_sizes(joined).items()
        },
        "seconds": seconds,
    }
    if arith:
        t0 = time.perf_counter()
        decoded = decode(model, blob)
        seconds["decode"] = time.perf_counter() - t0
        tokens_ok = decoded == seqs
        texts_back = [tok.decode(s[1 : len(s) - (1 if add_eos else 0)], skip_special_tokens=False) for s in decoded]
        n_differ = sum(a != b for a, b in zip(texts_back, texts))
        result["arith"] = {
            **stats.summary(),
            "roundtrip_tokens_exact": bool(tokens_ok),
            "roundtrip_text_exact": bool(tokens_ok and n_differ == 0),
            "roundtrip_texts_differ": int(n_differ),
            "bits_per_byte_payload": 8 * stats.payload_bytes / cl.total_bytes,
            "bits_per_byte_coded": 8 * len(blob) / cl.total_bytes,
        }
    return result


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
