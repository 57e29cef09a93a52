"""Executors (serial, local pool, SLURM via submitit, Ray): same records, byte for byte.

The cheap tests use "fake" cells whose custom runner (:func:`fake_rows`, in this module) only
sleeps and writes a row, so they exercise the scheduling, ordering, staging and resume logic
without training. The slow ones run a tiny real experiment through each executor.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from springback.errors import ConfigError, SpringbackError
from springback.pipeline import BaseSpec, Cell, RunContext, execute
from springback.pipeline.executors import (BaseTask, CellTask, ExecutorConfig, Outcome, WorkerLost, executor_config,
                                           resolve_kind, split_sets, staged_path, write_staged)
from springback.pipeline.runner import cell_id, execute_runs

from conftest import TINY_REBOUND

# A rebound run small enough for three executors in one test: 2 seeds = 2 bases, 4 cells.
TINY = [s for s in TINY_REBOUND if not s.startswith(("n_neg", "world.n_task", "world.n_general"))] + [
    "n_neg=[0,20]", "world.n_task_examples=600", "world.n_general_examples=200"]


# ----------------------------------------------------------------------------- fake cells


def fake_rows(cell: Cell, ctx) -> list[dict]:
    """A cell that sleeps ``sleep`` seconds and writes one row; with ``kill`` (a marker path) it
    SIGKILLs its own worker the first time, as the OOM killer would."""
    p = cell.params
    if p.get("kill") and not Path(p["kill"]).exists():
        Path(p["kill"]).write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    if p.get("count"):
        with open(p["count"], "a") as fh:  # one line per time the cell was computed
            fh.write(f"{cell.name}\n")
    time.sleep(p.get("sleep", 0.0))
    return [{"stage": "finetune", "n_examples": float(p["i"]), "score": p["i"] / 10}]


def fake_cells(n: int, sleeps: list[float] | None = None, **params) -> list[Cell]:
    return [Cell(experiment="fake", name=f"c{i}", source={}, base=BaseSpec(), runner="test_executors:fake_rows",
                 params={"i": i, "sleep": (sleeps or [0.0] * n)[i], **params}, seed=i) for i in range(n)]


def records(run_dir: Path) -> bytes:
    return (Path(run_dir) / "records.jsonl").read_bytes()


def run_fake(tmp: Path, cells: list[Cell], executor) -> Path:
    ctx = RunContext(tmp / "run", tmp / "_cache", progress=False)
    execute(cells, ctx, executor)
    return tmp / "run"


# ----------------------------------------------------------------------------- configuration


def test_executor_config_parses_its_own_sets_and_rejects_bad_ones():
    cfg = executor_config("slurm", ["executor.partition=gpu", "executor.gpus_per_task=1", "slurm={account: lab}"])
    assert (cfg.kind, cfg.partition, cfg.gpus_per_task, cfg.slurm) == ("slurm", "gpu", 1, {"account": "lab"})
    assert split_sets(["seeds=[0]", "executor.workers=2", "align.lr=1e-4"]) == (["seeds=[0]", "align.lr=1e-4"],
                                                                                 ["executor.workers=2"])
    with pytest.raises(ConfigError, match="unknown config key 'partitio'"):
        executor_config("slurm", ["executor.partitio=gpu"])
    with pytest.raises(ConfigError, match="unknown executor 'mpi'"):
        executor_config("mpi")
    with pytest.raises(ConfigError, match="workers must be >= 0"):
        executor_config("local", ["executor.workers=-1"])


def test_environment_variable_picks_the_default_kind(monkeypatch):
    monkeypatch.setenv("SPRINGBACK_EXECUTOR", "serial")
    assert executor_config().kind == "serial"
    assert executor_config("ray").kind == "ray"  # --executor wins
    assert executor_config(None, ["executor.kind=local"]).kind == "local"  # so does an explicit set


def test_executor_settings_never_change_the_run_directory(capsys):
    from springback.cli import main

    assert main(["run", "rebound", "--dry-run"]) == 0
    plain = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["run", "rebound", "--dry-run", "--executor", "slurm", "--set", "executor.partition=gpu",
                 "--set", "executor.gpus_per_task=1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == plain
    assert main(["run", "rebound", "--dry-run", "--set", "executor.bogus=1"]) == 2
    assert "unknown config key 'bogus'" in capsys.readouterr().err


def test_multi_process_launch_runs_serially(monkeypatch):
    from springback import runtime

    monkeypatch.setattr(runtime, "num_processes", lambda: 2)
    assert resolve_kind(ExecutorConfig(kind="auto")) == "serial"
    with pytest.raises(ConfigError, match="--executor serial"):
        resolve_kind(ExecutorConfig(kind="local"))
    monkeypatch.setattr(runtime, "num_processes", lambda: 1)
    assert resolve_kind(ExecutorConfig(kind="auto")) == "local"


@pytest.mark.parametrize("kind,module", [("ray", "ray"), ("slurm", "submitit")])
def test_missing_optional_package_is_one_clear_line(monkeypatch, tmp_path, kind, module):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(SpringbackError, match=rf"pip install 'springback\[{kind}\]'"):
        run_fake(tmp_path, fake_cells(2), ExecutorConfig(kind=kind, cluster="debug"))


def test_worker_envs_use_every_core_with_one_thread_each(monkeypatch):
    from springback import runtime

    monkeypatch.setenv("SPRINGBACK_NUM_THREADS", "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: False)
    envs = runtime.local_worker_envs()
    assert len(envs) == 4 and all(e["SPRINGBACK_NUM_THREADS"] == "1" for e in envs)
    monkeypatch.setenv("SPRINGBACK_NUM_THREADS", "2")
    assert len(runtime.local_worker_envs()) == 2 and len(runtime.local_worker_envs(3)) == 3


# ----------------------------------------------------------------------------- scheduling (in-process fake executor)


class Handle:
    def __init__(self, task):
        self.task = task


class RecordingExecutor:
    """Runs nothing: remembers what was submitted when, answers in submission order (or the
    reverse), stages a fake row for each cell."""

    name = "recording"

    def __init__(self, slots: int, reverse: bool = False):
        self.slots, self.reverse = slots, reverse
        self.batches: list[list] = []
        self.max_in_flight = 0
        self._live: list = []

    def fingerprint(self) -> dict:
        from springback import runtime

        return runtime.fingerprint()

    def submit(self, tasks: list) -> list:
        self.batches.append(list(tasks))
        handles = [Handle(t) for t in tasks]
        self._live += handles
        self.max_in_flight = max(self.max_in_flight, len(self._live))
        return handles

    def wait(self, handles: list) -> list:
        return [handles[-1] if self.reverse else handles[0]]

    def outcome(self, handle) -> Outcome:
        self._live.remove(handle)
        task = handle.task
        if isinstance(task, CellTask):
            write_staged(task.run_dir, task.cell_id, [{"stage": "finetune", "n_examples": float(task.cell.seed)}])
        return Outcome(0.0)

    def close(self, cancel: bool = False) -> None:
        pass


def _pretrained_cells(seeds: list[int], per_seed: int) -> list[Cell]:
    """Cells on pre-trained bases (never built here: the recording executor runs nothing)."""
    from springback.config import ModelConfig, TrainConfig, WorldConfig
    from springback.pipeline import pretrain_spec

    out = []
    for s in seeds:
        base = pretrain_spec("sentiment", WorldConfig(), ModelConfig(preset="nano"), TrainConfig(), s)
        out += [Cell(experiment="fake", name=f"s{s}c{j}", source={}, base=base, seed=10 * s + j) for j in range(per_seed)]
    return out


def test_bases_are_built_first_once_each_and_cells_wait_for_theirs(tmp_path):
    cells = _pretrained_cells([0, 1, 2], per_seed=3)
    # Two snapshots of one pre-training run: one build, which must name a snapshot it saves.
    snap = dataclasses.replace(cells[0].base, snapshots=(64, 128))
    cells += [dataclasses.replace(cells[0], name=f"snap{b}", base=dataclasses.replace(snap, at=b), seed=100 + b)
              for b in (64, 128)]
    ex = RecordingExecutor(slots=2)
    ctx = RunContext(tmp_path / "run", tmp_path / "_cache", progress=False)
    execute(cells, ctx, ex)
    submitted = [t for b in ex.batches for t in b]
    kinds = ["base" if isinstance(t, BaseTask) else "cell" for t in submitted]
    assert kinds.count("base") == 4 and kinds[:2] == ["base", "base"]  # both slots start on bases
    built: set = set()
    for t in submitted:
        if isinstance(t, BaseTask):
            assert not t.spec.snapshots or t.spec.at in t.spec.snapshots
            built.add((t.spec.pretrain["seed"], t.spec.snapshots))
        else:
            assert (t.cell.base.pretrain["seed"], t.cell.base.snapshots) in built  # never before its base
    assert ex.max_in_flight <= 2
    # Rows are committed in cell order even when the executor answers in reverse.
    ex2 = RecordingExecutor(slots=4, reverse=True)
    ctx2 = RunContext(tmp_path / "run2", tmp_path / "_cache2", progress=False)
    execute(cells, ctx2, ex2)
    assert records(tmp_path / "run") == records(tmp_path / "run2")
    seeds = [r["n_examples"] for r in ctx2.records.rows()]
    assert seeds == [float(c.seed) for c in cells]


def test_each_run_is_reported_done_once_with_all_its_rows(tmp_path):
    runs = [(RunContext(tmp_path / f"run{i}", tmp_path / "_cache", progress=False), fake_cells(n))
            for i, n in enumerate([3, 0, 2])]
    seen = []
    execute_runs(runs, RecordingExecutor(slots=2, reverse=True),
                 on_done=lambda i: seen.append((i, len(runs[i][0].records.rows()))))
    assert sorted(seen) == [(0, 3), (1, 0), (2, 2)]


def test_a_diverging_base_fails_the_first_cell_that_needs_it(tmp_path):
    from springback.errors import DivergenceError

    class Diverging(RecordingExecutor):
        def outcome(self, handle) -> Outcome:
            if isinstance(handle.task, BaseTask) and handle.task.spec.pretrain["seed"] == 1:
                self._live.remove(handle)
                return Outcome(0.0, {"kind": "divergence", "stage": "pretrain sentiment/nano/s1", "step": 2,
                                     "loss": float("nan"), "message": "diverged"})
            return super().outcome(handle)

    cells = _pretrained_cells([0, 1], per_seed=2)
    (tmp_path / "run").mkdir()  # as api.run makes it
    ctx = RunContext(tmp_path / "run", tmp_path / "_cache", progress=False)
    with pytest.raises(DivergenceError, match="stage 'pretrain sentiment/nano/s1' at step 2.*'s1c0' marked failed"):
        execute(cells, ctx, Diverging(slots=1))
    failed = (ctx.run_dir / "failed_cells.jsonl").read_text().splitlines()
    assert len(failed) == 1 and '"name": "s1c0"' in failed[0] and '"stage": "pretrain sentiment/nano/s1"' in failed[0]


def test_a_cached_base_is_not_rebuilt(tmp_path):
    from springback.config import stable_hash
    from springback.pipeline.context import cache_entry

    cells = _pretrained_cells([0, 1], per_seed=1)
    entry = cache_entry(tmp_path / "_cache", "bases", cells[0].base.key())
    entry.mkdir(parents=True)
    (entry / ".complete").write_text("ok")
    ex = RecordingExecutor(slots=2)
    execute(cells, RunContext(tmp_path / "run", tmp_path / "_cache", progress=False), ex)
    bases = [t for b in ex.batches for t in b if isinstance(t, BaseTask)]
    assert [t.spec.pretrain["seed"] for t in bases] == [1]
    assert stable_hash(cells[0].base.key(), 12) == entry.name


# ----------------------------------------------------------------------------- the local pool


@pytest.mark.slow
def test_local_pool_commits_in_cell_order_and_matches_serial(tmp_path):
    sleeps = [1.0, 0.0, 0.0, 0.0]  # cell 0 finishes last
    serial = run_fake(tmp_path / "serial", fake_cells(4, sleeps), None)
    pooled = run_fake(tmp_path / "local", fake_cells(4, sleeps), ExecutorConfig(kind="local", workers=2))
    assert records(pooled) == records(serial)
    assert not any((pooled / ".staged").glob("*.pkl"))


def test_a_pool_whose_worker_died_between_runs_is_replaced(tmp_path):
    from springback.pipeline import executors

    run_fake(tmp_path / "a", fake_cells(2), ExecutorConfig(kind="local", workers=2))
    (pool,) = executors._POOLS.values()
    os.kill(next(iter(pool._processes)), signal.SIGKILL)  # an idle worker dies (the OOM killer, a user)
    deadline = time.time() + 30
    while not pool._broken and time.time() < deadline:
        time.sleep(0.05)
    assert pool._broken  # the pool noticed: it cannot take tasks any more
    # The next run starts a fresh pool instead of failing at its first cell.
    pooled = run_fake(tmp_path / "b", fake_cells(3), ExecutorConfig(kind="local", workers=2))
    assert records(pooled) == records(run_fake(tmp_path / "serial", fake_cells(3), None))
    assert list(executors._POOLS.values()) != [pool]


@pytest.mark.slow
def test_killed_worker_fails_the_run_and_the_next_run_redoes_only_its_cell(tmp_path):
    count = tmp_path / "computed.txt"
    cells = fake_cells(4, [0.0, 0.5, 0.0, 0.0], kill=str(tmp_path / "killed"), count=str(count))
    cells[2:] = [dataclasses.replace(c, params={**c.params, "kill": ""}) for c in cells[2:]]
    cells[0] = dataclasses.replace(cells[0], params={**cells[0].params, "kill": ""})
    ctx = RunContext(tmp_path / "run", tmp_path / "_cache", progress=False)
    with pytest.raises(WorkerLost, match="worker process died"):
        execute(cells, ctx, ExecutorConfig(kind="local", workers=2))
    first = count.read_text().split() if count.exists() else []
    assert "c1" not in first  # c1 killed its worker before computing
    ctx = RunContext(tmp_path / "run", tmp_path / "_cache", progress=False)
    execute(cells, ctx, ExecutorConfig(kind="local", workers=2))
    second = count.read_text().split()[len(first):]
    assert "c1" in second and not set(first) & set(second)  # nothing finished is computed twice
    serial = run_fake(tmp_path / "serial", cells, None)  # same cells: the kill marker is there now
    assert records(tmp_path / "run") == records(serial)


@pytest.mark.slow
def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "main.py"
    script.write_text(
        "import time\n"
        "from springback.pipeline.executors import ExecutorConfig, LocalExecutor, probe\n"
        "if __name__ == '__main__':\n"
        "    ex = LocalExecutor(ExecutorConfig(kind='local', workers=2))\n"
        "    ex.warm()\n"
        "    ex._pool.submit(time.sleep, 60)\n"
        "    time.sleep(5)\n"
        "    print(*ex._pool._processes, flush=True)\n"
        "    time.sleep(60)\n")
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in main.stdout.readline().split()]
    assert len(pids) == 2
    main.kill()
    main.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{p}").exists() for p in pids)


def test_staged_rows_of_an_interrupted_run_are_committed_not_recomputed(tmp_path):
    cells = fake_cells(3)
    ctx = RunContext(tmp_path / "run", tmp_path / "_cache", progress=False)
    cid = cell_id(cells[1])
    write_staged(ctx.run_dir, cid, [{"stage": "finetune", "n_examples": 1.0, "score": 0.1}])
    ex = RecordingExecutor(slots=2)
    execute(cells, ctx, ex)
    assert sorted(t.cell.name for b in ex.batches for t in b) == ["c0", "c2"]
    assert not staged_path(ctx.run_dir, cid).exists()
    assert [r["cell"] for r in ctx.records.rows()] == [cell_id(c) for c in cells]


# ----------------------------------------------------------------------------- SLURM through submitit


def test_slurm_debug_executor_matches_serial(tmp_path):
    pytest.importorskip("submitit")
    serial = run_fake(tmp_path / "serial", fake_cells(3), None)
    cfg = ExecutorConfig(kind="slurm", cluster="debug", folder=str(tmp_path / "jobs"), poll_s=0.01)
    assert records(run_fake(tmp_path / "slurm", fake_cells(3), cfg)) == records(serial)


@pytest.mark.slow
def test_slurm_local_executor_runs_job_processes(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    here = str(Path(__file__).parent)  # job processes import this module for fake_rows
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    serial = run_fake(tmp_path / "serial", fake_cells(2), None)
    cfg = ExecutorConfig(kind="slurm", cluster="local", folder=str(tmp_path / "jobs"), poll_s=0.2, timeout_min=5)
    assert records(run_fake(tmp_path / "slurm", fake_cells(2), cfg)) == records(serial)
    assert list((tmp_path / "jobs").glob("*_log.out"))  # real job processes left their logs


def test_slurm_without_sbatch_is_one_clear_line(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpringbackError, match="no `sbatch`"):
        run_fake(tmp_path, fake_cells(2), ExecutorConfig(kind="slurm", cluster="slurm"))


# ----------------------------------------------------------------------------- a real experiment, three executors


@pytest.fixture(scope="module")
def serial_tiny(tmp_path_factory) -> bytes:
    from springback import run

    return records(run("rebound", sets=TINY, out=tmp_path_factory.mktemp("serial"), progress=False, executor="serial"))


@pytest.mark.slow
def test_records_identical_serial_vs_two_local_workers(serial_tiny, tmp_path):
    from springback import run

    run_dir = run("rebound", sets=TINY + ["executor.workers=2"], out=tmp_path, progress=False, executor="local")
    assert records(run_dir) == serial_tiny
    assert len([d for d in (tmp_path / "_cache" / "bases").iterdir() if not d.name.startswith(".")]) == 2


@pytest.mark.slow
def test_records_identical_serial_vs_ray(serial_tiny, tmp_path):
    ray = pytest.importorskip("ray")
    from springback import run

    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - e.g. no shared memory in a container
        pytest.skip(f"a local Ray instance cannot start here: {exc}")
    try:
        run_dir = run("rebound", sets=TINY, out=tmp_path, progress=False, executor="ray")
    finally:
        ray.shutdown()
    assert records(run_dir) == serial_tiny


def test_reproduce_shares_one_executor_across_experiments(tmp_path, monkeypatch):
    """Every experiment's cells reach the executor in one call, and each experiment is analysed
    as soon as its cells are in (here: a stand-in that reports each run done at once)."""
    import springback.pipeline.runner as runner
    import springback.report as report
    from springback import reproduce

    calls = []

    def fake(runs, ex, on_done):
        calls.append((len(runs), ex.kind))
        for i in range(len(runs)):
            on_done(i)

    monkeypatch.setattr(runner, "execute_runs", fake)
    monkeypatch.setattr(report, "write_report", lambda *a, **k: tmp_path / "report.html")
    reproduce(out=tmp_path, experiments=["theory", "dynamics"], sets=["executor.workers=2"], progress=False,
              executor="serial")
    assert calls == [(2, "serial")]
    assert len(list(tmp_path.glob("*/result.json"))) == 2
