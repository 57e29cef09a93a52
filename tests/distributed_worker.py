"""Worker for tests/test_distributed.py, started on 2 CPU processes by ``torchrun`` (gloo).

Usage: ``python -m torch.distributed.run --standalone --nproc_per_node 2 distributed_worker.py OUT MODEL TRAIN EVAL``.
Runs (1) the training loop on a global batch of 8 (4 per process) and saves the parameters,
and (2) the rebound experiment on a local model and data files; both are compared with the
same work done in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def train_params(model_dir: str, train_file: str) -> torch.Tensor:
    """Parameters at the start and after each of two training stages (a fresh optimizer each,
    as pipeline stages run); the same function runs in 1 and 2 processes. [3, n_params]"""
    from springback.config import TrainConfig
    from springback.data import load_examples
    from springback.models import load_model
    from springback.train import train

    model, tok = load_model(model_dir)
    examples = load_examples(train_file, "imdb", prefix_words=4)
    snaps = [torch.cat([p.detach().cpu().flatten() for p in model.parameters()])]
    for stage, chunk in enumerate((examples[:24], examples[24:48])):
        train(model, tok, chunk, TrainConfig(lr=1e-2, batch_size=8), seed=stage, stage=f"stage {stage}", progress=False)
        snaps.append(torch.cat([p.detach().cpu().flatten() for p in model.parameters()]))
    return torch.stack(snaps)


def rebound_sets(model_dir: str, train_file: str, eval_file: str) -> list[str]:
    return ["seeds=[0]", "n_pos=[16]", "n_neg=[0,8,16]", f"model.path={model_dir}", f"data.aligned={train_file}",
            f"data.eval={eval_file}", "data.prefix_words=4", "data.n_reference=4", "world.n_eval_prompts=4",
            "measure.n_samples=2", "measure.max_new_tokens=6", "align.batch_size=8", "opposing.batch_size=8"]


def main(out: str, model_dir: str, train_file: str, eval_file: str) -> None:
    import springback
    from springback import runtime

    assert runtime.num_processes() == 2, "run me with 2 processes"
    params = train_params(model_dir, train_file)
    run_dir = springback.run("rebound", sets=rebound_sets(model_dir, train_file, eval_file), out=out, progress=False)
    if runtime.is_main_process():
        torch.save(params, Path(out) / "params.pt")
        (Path(out) / "run_dir.txt").write_text(str(run_dir))


if __name__ == "__main__":
    main(*sys.argv[1:5])
