"""Training throughput: the springback loop against a bare PyTorch loop and Hugging Face's
``Trainer``, same model, data, batch size, optimizer and learning rate.

Run by hand (not a test):  python bench/train_throughput.py [--preset micro] [--n-examples 2048]
Prints learned tokens/s of each loop and the ratios springback / bare and springback / Trainer;
all are measured in the same process, interleaved, best of ``--repeats``, so the ratios hold on
any machine. The bare loop is the floor: one forward/backward/step per batch with the same
per-example loss and no bookkeeping. The Trainer runs with everything optional off (no
evaluation, saving, logging integrations or progress bar; ``dataloader_num_workers=0``) and
its own loss (token mean over the batch; the same update size on equal-length examples).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

from springback import runtime
from springback.config import TrainConfig
from springback.models import build_model, count_parameters
from springback.teacher import per_example_loss
from springback.tokens import collate, encode
from springback.train import train
from springback.worlds import get_world


def bare_loop(model, tok, examples, cfg: TrainConfig, seed: int) -> float:
    """The same update rule with nothing else (tokenising included, as in train): returns seconds."""
    t0 = time.perf_counter()
    enc = [encode(tok, e.prompt, e.response, "response", cfg.max_length) for e in examples]
    order = torch.randperm(len(enc), generator=torch.Generator().manual_seed(seed)).tolist()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=0.0)
    model.train()
    for i in range(0, len(order), cfg.batch_size):
        batch = collate([enc[j] for j in order[i : i + cfg.batch_size]], tok.pad_token_id)
        loss = per_example_loss(model, batch).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def trainer_loop(model, tok, examples, cfg: TrainConfig, seed: int, out_dir: str) -> float:
    """Hugging Face ``Trainer`` on the same examples (tokenising included): returns seconds."""
    from transformers import Trainer, TrainingArguments

    t0 = time.perf_counter()
    enc = [encode(tok, e.prompt, e.response, "response", cfg.max_length) for e in examples]
    data = [{"input_ids": e.input_ids, "loss_mask": e.loss_mask} for e in enc]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def collator(items: list[dict]) -> dict:
        # springback's collate: right padding, labels masked outside the response.
        from springback.tokens import Encoded

        return collate([Encoded(i["input_ids"], i["loss_mask"]) for i in items], pad)

    args = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=cfg.batch_size, num_train_epochs=1, learning_rate=cfg.lr,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2, max_grad_norm=0.0, optim="adamw_torch", seed=seed, data_seed=seed,
        report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, remove_unused_columns=False, use_cpu=not torch.cuda.is_available(),
    )
    Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="micro")
    ap.add_argument("--world", default="sentiment")
    ap.add_argument("--n-examples", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runtime.accelerator()  # same thread settings for both loops
    world = get_world(args.world)
    tok = world.tokenizer()
    data = world.aligned(args.n_examples, seed=0)
    n_tokens = sum(sum(encode(tok, e.prompt, e.response).loss_mask) for e in data)
    model = build_model(args.preset, tok, seed=0)
    cfg = TrainConfig(lr=3e-4, batch_size=args.batch_size)
    print(f"preset {args.preset} ({count_parameters(model) / 1e6:.2f}M params), {args.n_examples} examples, "
          f"{n_tokens} learned tokens, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    best = {"springback": float("inf"), "bare": float("inf"), "hf_trainer": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # interleaved, best of N: robust to background load
            m = copy.deepcopy(model)
            t0 = time.perf_counter()
            train(m, tok, data, cfg, seed=0, progress=False)
            best["springback"] = min(best["springback"], time.perf_counter() - t0)
            best["bare"] = min(best["bare"], bare_loop(copy.deepcopy(model), tok, data, cfg, seed=0))
            best["hf_trainer"] = min(best["hf_trainer"], trainer_loop(copy.deepcopy(model), tok, data, cfg, 0, tmp))
    for k, v in best.items():
        print(f"{k:>10}: {n_tokens / v:10.0f} learned tokens/s ({v:.2f} s)")
    print(f"ratio springback/bare throughput: {best['bare'] / best['springback']:.3f}")
    print(f"ratio springback/hf_trainer throughput: {best['hf_trainer'] / best['springback']:.3f}")


if __name__ == "__main__":
    main()
