"""Executors: where a run's cells are computed (DESIGN §5, ``executor.map(run_cell)``).

One small interface, four implementations, chosen by :class:`ExecutorConfig` (``--executor``):

* ``serial`` — in this process, one cell after another (what ``accelerate launch`` multi-process
  runs use: every rank runs every cell, training is collective);
* ``local`` — a pool of worker processes on this machine: one per ``SPRINGBACK_NUM_THREADS``
  cores (each with that many torch threads), or one per GPU, each seeing only its own;
* ``slurm`` — submitit job arrays on a SLURM cluster;
* ``ray`` — ``ray.remote`` tasks with CPU / GPU resources, on a local instance or a cluster.

Executor settings change where cells run, never their rows: they are not part of the
experiment config, its hash or any cell key. The run directory on a (shared) file system is
the only coordination. A worker runs one :class:`CellTask` and stages its rows atomically in
``RUN_DIR/.staged/CELL.pkl``; the main process alone appends them to ``records.jsonl``, in cell
order (see :func:`springback.pipeline.runner.execute`), so the file is byte-identical whatever
the executor and the number of workers. A :class:`BaseTask` builds one cached pre-trained base
(every base a run needs is built first, in parallel, so no worker idles behind another's
build). A killed worker loses only its own cell, which the next run redoes.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import os
import pickle
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Protocol, Sequence

from .. import runtime
from ..config import resolve
from ..errors import ConfigError, DivergenceError, SpringbackError
from ..io import atomic_write_bytes
from .spec import BaseSpec, Cell

KINDS = ("auto", "serial", "local", "slurm", "ray")
STAGED = ".staged"  # folder of a run directory holding finished cells' rows not yet in records.jsonl


@dataclasses.dataclass
class ExecutorConfig:
    """Where cells run (``--executor KIND --set executor.KEY=VALUE``); changes no result."""

    kind: str = "auto"  # auto (= local, or serial under a multi-process `accelerate launch`) | serial | local | slurm | ray
    workers: int = 0  # local: processes (0 = one per SPRINGBACK_NUM_THREADS cores, or one per GPU); ray: tasks in flight (0 = what the cluster holds)
    cpus_per_task: int = 1  # slurm, ray
    gpus_per_task: int = 0  # slurm, ray
    mem_gb: float = 0.0  # slurm (0 = the partition's default)
    partition: str = ""  # slurm
    timeout_min: int = 240  # slurm: wall-time limit of one cell's job
    array_parallelism: int = 64  # slurm: jobs of one array running at once
    slurm: dict[str, Any] = dataclasses.field(default_factory=dict)  # more sbatch options, e.g. {account: X, qos: Y}
    cluster: str = "slurm"  # submitit back end: slurm | local | debug (the last two: testing without a cluster)
    folder: str = ""  # slurm: job scripts and logs (default OUT/_slurm)
    poll_s: float = 5.0  # slurm: seconds between job-state polls
    address: str = ""  # ray: "" = start a local instance; "auto" or "ray://HOST:10001" = join a running cluster


def executor_config(kind: str | None = None, sets: Sequence[str] = ()) -> ExecutorConfig:
    """An :class:`ExecutorConfig` from ``--executor KIND`` and ``--set executor.KEY=VALUE`` items
    (the ``executor.`` prefix is optional here); unknown keys and wrong types raise ConfigError.
    Without a kind from either, ``$SPRINGBACK_EXECUTOR`` (if set) picks it."""
    items = [s.split(".", 1)[1] if s.startswith("executor.") else s for s in sets]
    cfg = resolve(ExecutorConfig, sets=items)
    kind = kind or (None if any(i.startswith("kind=") for i in items) else os.environ.get("SPRINGBACK_EXECUTOR"))
    if kind:
        cfg = dataclasses.replace(cfg, kind=kind)
    if cfg.kind not in KINDS:
        raise ConfigError(f"unknown executor '{cfg.kind}' (choose from: {', '.join(KINDS)})")
    if cfg.workers < 0 or cfg.cpus_per_task < 1 or cfg.gpus_per_task < 0:
        raise ConfigError("executor.workers must be >= 0, cpus_per_task >= 1 and gpus_per_task >= 0")
    return cfg


def split_sets(sets: Sequence[str]) -> tuple[list[str], list[str]]:
    """(experiment ``--set`` items, ``executor.*`` items): executor settings never reach a config hash."""
    exp = [s for s in sets if not s.startswith("executor.")]
    return exp, [s for s in sets if s.startswith("executor.")]


# ----------------------------------------------------------------------------- tasks (run in a worker)


@dataclasses.dataclass(frozen=True)
class BaseTask:
    """Build (or find) the cached base ``spec`` names, under ``cache_dir``."""

    spec: BaseSpec
    run_dir: str
    cache_dir: str
    env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class CellTask:
    """Run ``cell`` (content address ``cell_id``) and stage its rows in ``run_dir``."""

    cell: Cell
    cell_id: str
    run_dir: str
    cache_dir: str
    env: tuple[tuple[str, str], ...] = ()
    # The run's experiment tracker (Tracker.spec()), opened in the worker: it logs the losses of
    # the training it watches, so it lives where the cell runs.
    tracker: tuple | None = None


@dataclasses.dataclass
class Outcome:
    """What a task sends back: its seconds, and on failure what went wrong (exceptions are
    flattened to plain data: they cross process and machine boundaries)."""

    seconds: float
    error: dict | None = None
    worker: str = ""  # host:pid of the process that ran it (the scheduler's affinity hint)


def staged_path(run_dir: str | Path, cell_id: str) -> Path:
    return Path(run_dir) / STAGED / f"{cell_id}.pkl"


def write_staged(run_dir: str | Path, cell_id: str, rows: list[dict]) -> None:
    atomic_write_bytes(staged_path(run_dir, cell_id), pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))


def read_staged(run_dir: str | Path, cell_id: str) -> list[dict]:
    return pickle.loads(staged_path(run_dir, cell_id).read_bytes())


_CONTEXTS: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()


def _worker_context(run_dir: str, cache_dir: str, keep: int = 2) -> Any:
    """A RunContext per run directory in a worker process, kept for the worker's next cells
    (its memo holds the bases it loaded); only the last ``keep`` stay, to bound memory."""
    from .context import RunContext

    key = (run_dir, cache_dir)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = RunContext(Path(run_dir), Path(cache_dir), progress=False)
    _CONTEXTS.move_to_end(key)
    while len(_CONTEXTS) > keep:
        _CONTEXTS.popitem(last=False)
    return _CONTEXTS[key]


def _setup(env: tuple[tuple[str, str], ...]) -> None:
    """Process set-up before a task: the launcher's thread count (a cell-key part), quiet HF."""
    os.environ.update(dict(env))
    runtime.accelerator()


def run_task(task: BaseTask | CellTask) -> Outcome:
    """Run one task in a worker (any executor but ``serial``)."""
    out = _run_task(task)
    out.worker = f"{socket.gethostname()}:{os.getpid()}"
    return out


def _run_task(task: BaseTask | CellTask) -> Outcome:
    t0 = time.perf_counter()
    try:
        _setup(task.env)
        ctx = _worker_context(task.run_dir, task.cache_dir)
        if isinstance(task, BaseTask):
            from .bases import base_path

            base_path(ctx, task.spec)
        else:
            from .records import check_rows
            from .stages import run_cell_logged
            from .trackers import Tracker

            ctx.tracker = Tracker(*task.tracker) if task.tracker else None
            rows = run_cell_logged(task.cell, task.cell_id, ctx)
            check_rows(rows)
            write_staged(task.run_dir, task.cell_id, rows)
    except DivergenceError as exc:
        return Outcome(time.perf_counter() - t0, {"kind": "divergence", "stage": exc.stage, "step": exc.step,
                                                  "loss": exc.loss, "message": str(exc)})
    except SpringbackError as exc:
        return Outcome(time.perf_counter() - t0, {"kind": "user", "message": str(exc)})
    except Exception as exc:  # noqa: BLE001 - a bug: its traceback goes back to the main process
        return Outcome(time.perf_counter() - t0, {"kind": "bug", "message": f"{type(exc).__name__}: {exc}",
                                                  "traceback": traceback.format_exc()})
    return Outcome(time.perf_counter() - t0)


def probe(env: tuple[tuple[str, str], ...] = ()) -> dict:
    """The runtime fingerprint of a worker (a cell-key part: results depend on the hardware)."""
    _setup(env)
    return runtime.fingerprint()


def task_env() -> tuple[tuple[str, str], ...]:
    """What every worker inherits from the launching process: its torch thread count."""
    return (("SPRINGBACK_NUM_THREADS", os.environ.get("SPRINGBACK_NUM_THREADS", "1")),
            ("TOKENIZERS_PARALLELISM", "false"))


# ----------------------------------------------------------------------------- the interface


class WorkerLost(SpringbackError):
    """A worker process or job ended without an answer (killed, out of memory, pre-empted)."""


class Executor(Protocol):
    """Runs tasks somewhere; :func:`springback.pipeline.runner.execute` schedules them."""

    name: str
    slots: int  # tasks worth keeping in flight

    def fingerprint(self) -> dict:
        """The workers' :func:`runtime.fingerprint` (a cell-key part)."""

    def submit(self, tasks: list[Any]) -> list[Any]:
        """Start ``tasks`` (one job array on SLURM); returns one handle per task."""

    def wait(self, handles: list[Any]) -> list[Any]:
        """Block until at least one handle is done; returns the done ones."""

    def outcome(self, handle: Any) -> Outcome:
        """A done task's :class:`Outcome`; raises :class:`WorkerLost` if its worker died."""

    def close(self, cancel: bool = False) -> None:
        """Release the workers (``cancel``: drop tasks not yet started)."""


class LocalExecutor:
    """A pool of spawned worker processes on this machine (one torch thread each by default).

    The pool outlives one run: later runs in the same process (a notebook, ``reproduce``, tests)
    reuse its warm workers, whose memo still holds the bases they loaded."""

    name = "local"

    def __init__(self, cfg: ExecutorConfig):
        envs = runtime.local_worker_envs(cfg.workers)
        self.slots = len(envs)
        self._pool = _shared_pool(envs)
        self._futures: list[cf.Future] = []

    def fingerprint(self) -> dict:
        return runtime.fingerprint()  # same machine, same thread count

    def warm(self) -> None:
        """Start the worker processes now (their imports overlap with the caller's planning)."""
        for _ in range(self.slots):
            self._pool.submit(probe, task_env())

    def submit(self, tasks: list[Any]) -> list[cf.Future]:
        try:
            futures = [self._pool.submit(run_task, t) for t in tasks]
        except cf.process.BrokenProcessPool:
            _drop_pool(self._pool)
            raise WorkerLost("a worker process died (killed, or out of memory)") from None
        self._futures += futures
        return futures

    def wait(self, handles: list[cf.Future]) -> list[cf.Future]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def outcome(self, handle: cf.Future) -> Outcome:
        try:
            return handle.result()
        except cf.process.BrokenProcessPool:
            _drop_pool(self._pool)
            raise WorkerLost("a worker process died (killed, or out of memory)") from None

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for f in self._futures:
                f.cancel()  # only tasks not yet started; running ones finish and stay staged
        cf.wait(self._futures)
        self._futures = []


_POOLS: dict[str, cf.ProcessPoolExecutor] = {}


def _shared_pool(envs: list[dict[str, str]]) -> cf.ProcessPoolExecutor:
    """The process-wide pool for these worker environments (started on first use)."""
    import atexit
    import json
    import multiprocessing as mp

    key = json.dumps(envs, sort_keys=True)
    if key in _POOLS and getattr(_POOLS[key], "_broken", False):
        # A worker died since the last run (killed while idle, out of memory): the pool cannot
        # take tasks any more, so this run starts a fresh one instead of failing at its first cell.
        _drop_pool(_POOLS[key])
    if key not in _POOLS:
        for old in list(_POOLS.values()):  # one pool at a time: the cores are the limit
            _drop_pool(old)
        ctx = mp.get_context("spawn")  # never fork a process that has started torch's threads
        slots = ctx.Queue()
        for env in envs:
            slots.put(env)
        _POOLS[key] = cf.ProcessPoolExecutor(len(envs), mp_context=ctx, initializer=_init_local_worker, initargs=(slots,))
        if len(_POOLS) == 1:
            atexit.register(_close_pools)
    return _POOLS[key]


def _drop_pool(pool: cf.ProcessPoolExecutor) -> None:
    for k, v in list(_POOLS.items()):
        if v is pool:
            del _POOLS[k]
    pool.shutdown(wait=False, cancel_futures=True)


def _close_pools() -> None:
    for pool in list(_POOLS.values()):
        _drop_pool(pool)


def _init_local_worker(slots: Any) -> None:
    """Each pool process takes one slot's environment (its GPU, its thread count) before torch
    starts, and exits when the main process dies (a SIGKILLed main would otherwise leave its
    workers blocked on the task queue forever)."""
    import multiprocessing as mp
    import threading

    os.environ.update(slots.get())
    parent = mp.parent_process()
    if parent is not None:
        def watch() -> None:
            parent.join()  # returns when the parent exits
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="springback-parent-watch").start()


class RayExecutor:
    """``ray.remote`` tasks with ``cpus_per_task`` / ``gpus_per_task`` resources."""

    name = "ray"

    def __init__(self, cfg: ExecutorConfig):
        ray = _optional("ray", "ray")
        self._ray = ray
        self._started = not ray.is_initialized()
        env = dict(task_env())
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]  # a source checkout stays importable in workers
        if self._started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "runtime_env": {"env_vars": env}}
            if cfg.address:
                kwargs["address"] = cfg.address
            elif cfg.workers:
                kwargs["num_cpus"] = cfg.workers * cfg.cpus_per_task
            ray.init(**kwargs)
        opts = {"num_cpus": cfg.cpus_per_task, "num_gpus": cfg.gpus_per_task, "max_retries": 0}
        self._run = ray.remote(**opts)(run_task)
        self._probe = ray.remote(**opts)(probe)
        res = ray.cluster_resources()
        fits = res.get("CPU", 1) // cfg.cpus_per_task
        if cfg.gpus_per_task:
            fits = min(fits, res.get("GPU", 0) // cfg.gpus_per_task)
        if fits < 1:
            raise SpringbackError(f"the Ray cluster has no room for one task ({cfg.cpus_per_task} CPUs, "
                                  f"{cfg.gpus_per_task} GPUs; it has {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs)")
        self.slots = cfg.workers or int(fits)

    def fingerprint(self) -> dict:
        return self._ray.get(self._probe.remote(task_env()))

    def submit(self, tasks: list[Any]) -> list[Any]:
        return [self._run.remote(t) for t in tasks]

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=1)
        return done

    def outcome(self, handle: Any) -> Outcome:
        try:
            return self._ray.get(handle)
        except self._ray.exceptions.RayError as exc:  # worker or node died
            raise WorkerLost(f"a Ray worker died ({type(exc).__name__})") from None

    def close(self, cancel: bool = False) -> None:
        return None  # the Ray instance stays up for later runs (ray shuts it down at exit)


class SlurmExecutor:
    """submitit jobs: each batch of tasks is one SLURM job array, one cell per array task."""

    name = "slurm"

    def __init__(self, cfg: ExecutorConfig, default_folder: Path):
        submitit = _optional("submitit", "slurm")
        if cfg.cluster not in ("slurm", "local", "debug"):
            raise ConfigError(f"executor.cluster must be slurm, local or debug, got '{cfg.cluster}'")
        if cfg.cluster == "slurm" and shutil.which("sbatch") is None:
            raise SpringbackError("executor slurm: no `sbatch` on this machine (run from a SLURM login node)")
        self._cfg = cfg
        self._ex = submitit.AutoExecutor(folder=cfg.folder or default_folder, cluster=cfg.cluster)
        params: dict[str, Any] = {"timeout_min": cfg.timeout_min, "cpus_per_task": cfg.cpus_per_task, "nodes": 1,
                                  "tasks_per_node": 1, "name": "springback"}
        if cfg.gpus_per_task:
            params["gpus_per_node"] = cfg.gpus_per_task
        if cfg.mem_gb:
            params["mem_gb"] = cfg.mem_gb
        if cfg.cluster == "slurm":
            params["slurm_array_parallelism"] = cfg.array_parallelism
            if cfg.partition:
                params["slurm_partition"] = cfg.partition
            if cfg.slurm:
                params["slurm_additional_parameters"] = dict(cfg.slurm)
        self._ex.update_parameters(**params)
        self.slots = 1 << 20  # the queue holds everything; SLURM decides what runs

    def fingerprint(self) -> dict:
        job = self._ex.submit(probe, task_env())
        try:
            return job.result()
        except Exception as exc:  # noqa: BLE001 - the job's own error, shown in one line
            raise SpringbackError(f"executor slurm: the probe job failed ({str(exc).strip().splitlines()[-1]}); "
                                  f"logs in {self._ex.folder}") from None

    def submit(self, tasks: list[Any]) -> list[Any]:
        with self._ex.batch():
            jobs = [self._ex.submit(run_task, t) for t in tasks]
        return jobs

    def wait(self, handles: list[Any]) -> list[Any]:
        while True:
            done = [j for j in handles if j.done()]
            if done:
                return done
            time.sleep(self._cfg.poll_s)

    def outcome(self, handle: Any) -> Outcome:
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 - submitit's UncompletedJobError / FailedJobError
            raise WorkerLost(f"SLURM job {handle.job_id} ended without a result "
                             f"({str(exc).strip().splitlines()[0][:200]}); logs in {self._ex.folder}") from None

    def close(self, cancel: bool = False) -> None:
        return None  # jobs belong to SLURM; finished ones left their rows in the run directory


def _optional(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpringbackError(f"executor {extra} needs the '{module}' package: pip install 'springback[{extra}]'") from None


def resolve_kind(cfg: ExecutorConfig) -> str:
    """``auto`` is ``local``, except under a multi-process ``accelerate launch`` (``serial``)."""
    multi = runtime.num_processes() > 1
    if cfg.kind == "auto":
        return "serial" if multi else "local"
    if multi and cfg.kind != "serial":
        raise ConfigError(f"executor '{cfg.kind}' cannot run under a multi-process `accelerate launch` "
                          "(the processes train together): use --executor serial")
    return cfg.kind


def start_early(cfg: ExecutorConfig) -> ExecutorConfig | Executor:
    """A local pool started now, with its workers importing while the caller plans the run
    (``reproduce``); any other kind is returned as is, to be started when the cells are known."""
    if resolve_kind(cfg) != "local":
        return cfg
    ex = LocalExecutor(cfg)
    ex.warm()
    return ex


def make_executor(cfg: ExecutorConfig, default_folder: Path) -> Executor | None:
    """The executor ``cfg`` names; ``None`` for ``serial`` (cells run in this process)."""
    kind = resolve_kind(cfg)
    if kind == "serial":
        return None
    if kind == "local":
        return LocalExecutor(cfg)
    if kind == "ray":
        return RayExecutor(cfg)
    return SlurmExecutor(cfg, default_folder)
