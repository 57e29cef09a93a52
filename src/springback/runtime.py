"""Hardware, precision, seeds and the accelerate setup.

This is the only module that knows which device is used; everything else asks it.
"""

from __future__ import annotations

import os
import random
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ConfigError(f"unknown dtype '{name}' (choose from: {', '.join(_DTYPES)})")
    return _DTYPES[name]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism() -> None:
    """Bit-for-bit repeatable runs on CPU: deterministic kernels, fixed thread count.

    On CPU, torch uses ``SPRINGBACK_NUM_THREADS`` intra-op threads (default 1). The tiny
    world models are far too small to gain from splitting a matmul, and spinning worker
    threads slow everything down badly when the cores are shared; set the variable to the
    core count for large Hugging Face models on a CPU.
    """
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ.get("SPRINGBACK_NUM_THREADS", "1")))


@lru_cache(maxsize=1)
def accelerator() -> Any:
    """The process-wide :class:`accelerate.Accelerator` (CPU when no GPU is visible).

    Under ``accelerate launch`` it picks up DDP / FSDP / DeepSpeed from the launch config;
    under plain ``python`` it is a single process.
    """
    from accelerate import Accelerator

    quiet_hf()
    configure_determinism()
    return Accelerator(cpu=not torch.cuda.is_available())


def quiet_hf() -> None:
    """Silence Hugging Face's own per-file progress bars and advisory warnings; ours stay."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - datasets is a dependency, but keep runtime importable
        pass


def device() -> torch.device:
    return accelerator().device


def is_main_process() -> bool:
    return accelerator().is_main_process


def num_processes() -> int:
    return accelerator().num_processes


def process_index() -> int:
    return accelerator().process_index


def wait_for_everyone() -> None:
    accelerator().wait_for_everyone()


def autocast_dtype() -> torch.dtype | None:
    return None


def fingerprint() -> dict:
    """What of the machine changes floating-point results: device kind, torch version and, on
    CPU, the intra-op thread count (a cache key part: cells computed elsewhere are not reused)."""
    if torch.cuda.is_available():
        return {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    return {"device": "cpu", "torch": torch.__version__, "threads": int(os.environ.get("SPRINGBACK_NUM_THREADS", "1"))}


def local_worker_envs(workers: int = 0) -> list[dict[str, str]]:
    """Environment of each process of a local worker pool (``--executor local``): one per GPU
    when CUDA is visible (each sees only its own), else one per ``SPRINGBACK_NUM_THREADS`` cores
    (each with that many torch threads, as the cell keys say). ``workers`` > 0 sets the count."""
    threads = int(os.environ.get("SPRINGBACK_NUM_THREADS", "1"))
    base = {"SPRINGBACK_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        ids = [d.strip() for d in visible.split(",") if d.strip()] or [str(i) for i in range(torch.cuda.device_count())]
        return [{**base, "CUDA_VISIBLE_DEVICES": ids[i % len(ids)]} for i in range(workers or len(ids))]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return [dict(base) for _ in range(workers or max(1, cores // max(1, threads)))]


def describe() -> dict:
    """Machine facts for result.json."""
    import platform

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info
