"""Throughput of the arithmetic coder against scoring alone (tokens per second).

    python bench/compress_throughput.py [--model DIR] [--n-texts 400] [--batch-size 16]

Scoring runs one forward pass per window over many texts at once; the coder must run the
model one token at a time (the decoder learns token t only after decoding it, and the encoder
repeats the same incremental pass so both see identical probabilities), so it is much slower.
Without ``--model`` a freshly initialised ``micro`` sentiment-world model is used (speed does
not depend on the weights). Prints one line per stage; nothing is written.
"""

from __future__ import annotations

import argparse
import time

import torch

from springback.measure.coder import decode, encode
from springback.measure.compression import code_length, tokenize_texts
from springback.models import build_model, load_model
from springback.worlds import get_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="a saved world model / HF causal LM directory (default: fresh micro model)")
    ap.add_argument("--n-texts", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16, help="lock-step batch of the coder")
    args = ap.parse_args()

    world = get_world("sentiment")
    if args.model:
        model, tok = load_model(args.model)
    else:
        tok = world.tokenizer()
        model = build_model("micro", tok, seed=0)
    model.eval()
    ex = world.pretrain_corpus(int(args.n_texts * 0.7), args.n_texts - int(args.n_texts * 0.7), 0.2, seed=99)
    texts = [f"{e.prompt} {e.response}".strip() for e in ex]
    seqs = tokenize_texts(tok, texts, add_eos=True)
    n_tokens = sum(len(s) - 1 for s in seqs)
    print(f"{len(texts)} texts, {n_tokens} tokens, torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    cl = code_length(model, tok, texts, add_eos=True, batch_size=256)
    t_score = time.perf_counter() - t0
    print(f"score   {n_tokens / t_score:10.0f} tokens/s   ({t_score:.2f} s, {cl.bits_per_token:.3f} bits/token)")

    t0 = time.perf_counter()
    blob, stats = encode(model, seqs, batch_size=args.batch_size, terminator=tok.eos_token_id)
    t_enc = time.perf_counter() - t0
    print(f"encode  {n_tokens / t_enc:10.0f} tokens/s   ({t_enc:.2f} s, {len(blob)} bytes, "
          f"payload overhead {stats.payload_bytes - stats.model_bits / 8:+.2f} B)")

    t0 = time.perf_counter()
    out = decode(model, blob)
    t_dec = time.perf_counter() - t0
    print(f"decode  {n_tokens / t_dec:10.0f} tokens/s   ({t_dec:.2f} s, round trip {'exact' if out == seqs else 'FAILED'})")


if __name__ == "__main__":
    main()
