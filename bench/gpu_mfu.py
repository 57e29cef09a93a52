"""Model FLOP utilisation (MFU) of springback's full fine-tuning step on one GPU, bf16.

Run by hand (not a test):  python bench/gpu_mfu.py [--batch-size 8] [--seq-len 1024] [--steps 10]

The model is a ~0.89B-parameter Llama shape (hidden 2048, 16 layers, MLP 5632, 16 heads with
8 key/value heads, vocabulary 32000, untied embeddings), randomly initialised in bfloat16; the
data are random token ids, all learned (loss on every token). The step is springback's own
:func:`springback.train.train` (AdamW, per-example loss), so what is measured is the loop the
experiments use. FLOPs per step are 6·N·tokens (forward 2N + backward 4N per token: Kaplan et
al. 2020, "Scaling Laws for Neural Language Models", §2.1; MFU as defined by Chowdhery et al.
2022, PaLM, Appendix B); N counts every parameter. The attention-score FLOPs (12·L·d·T per token,
PaLM Appendix B) are printed separately and not counted in the 6·N·tokens MFU.

Prints achieved TFLOP/s, the device's peak and their ratio (MFU). The peak is the dense BF16
tensor-core number from the vendor's datasheet (table below), or ``--peak-tflops``.
Exits with a message (status 2) when no CUDA device is visible.
"""

from __future__ import annotations

import argparse
import sys
import time

# Dense (no sparsity) BF16 tensor-core peak, TFLOP/s, by device-name substring; datasheets:
# NVIDIA H100 Tensor Core GPU datasheet (SXM 989.4 / NVL 835 / PCIe 756 dense, half the quoted
# "with sparsity" numbers); NVIDIA H200 datasheet (SXM 989 / NVL 835, same halving); NVIDIA A100
# datasheet (312); NVIDIA L40S datasheet (362.05); NVIDIA L4 datasheet (121); NVIDIA A10
# datasheet (125); NVIDIA B200 (HGX B200 datasheet: 2.25 PF dense FP16/BF16 per GPU).
PEAK_BF16_TFLOPS = [
    ("H200 NVL", 835.0), ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.4),
    ("A100", 312.0), ("L40S", 362.05), ("L4", 121.0), ("A10", 125.0), ("B200", 2250.0),
]

# The ~0.89B Llama shape (ours; Llama-style block: RMSNorm, SwiGLU MLP, rotary, grouped KV heads).
SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
             num_key_value_heads=8, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256, max_position_embeddings=256, tie_word_embeddings=False)


def device_peak(name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:  # more specific names first
        if key.lower() in name.lower():
            return tflops
    return None


class _Tok:
    """What train() needs of a tokenizer here: a pad id."""

    pad_token_id = 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps (after --warmup ones)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak (dense BF16) if not in the table")
    ap.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)  # tiny shape on CPU: checks the code only
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_mfu: no CUDA device is visible; this benchmark measures a GPU (nothing was run)", file=sys.stderr)
        return 2
    from transformers import LlamaConfig, LlamaForCausalLM

    from springback import runtime
    from springback.config import TrainConfig
    from springback.tokens import Encoded
    from springback.train import train

    runtime.accelerator()
    dev = runtime.device()
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    peak = args.peak_tflops or device_peak(name)
    if peak is None:
        print(f"gpu_mfu: unknown peak for '{name}': pass --peak-tflops (dense BF16, from its datasheet)", file=sys.stderr)
        return 2
    shape = TINY if args.cpu_smoke else SHAPE
    torch.manual_seed(0)
    with dev:
        model = LlamaForCausalLM(LlamaConfig(**shape)).to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)

    def batch_examples(n_steps: int) -> list[Encoded]:
        ids = torch.randint(1, shape["vocab_size"], (n_steps * args.batch_size, args.seq_len), generator=gen)
        return [Encoded(row.tolist(), [True] * args.seq_len) for row in ids]

    cfg = TrainConfig(lr=1e-5, batch_size=args.batch_size, max_length=args.seq_len)
    train(model, _Tok(), batch_examples(args.warmup), cfg, seed=0, loss_on="all", progress=False)  # kernels, allocator
    data = batch_examples(args.steps)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    train(model, _Tok(), data, cfg, seed=1, loss_on="all", progress=False)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = args.steps * args.batch_size * args.seq_len
    achieved = 6 * n_params * tokens / seconds / 1e12
    attn = 12 * shape["num_hidden_layers"] * shape["hidden_size"] * args.seq_len * tokens / seconds / 1e12
    print(f"device {name}; Llama shape {n_params / 1e9:.3f}B parameters, bf16; batch {args.batch_size} x "
          f"{args.seq_len} tokens, {args.steps} steps in {seconds:.2f} s ({tokens / seconds:,.0f} tokens/s)")
    print(f"achieved {achieved:.1f} TFLOP/s (6·N·tokens; attention scores add {attn:.1f}); peak {peak:g} TFLOP/s dense BF16")
    print(f"MFU: {achieved / peak:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
