"""Scoring vs arithmetic coding (encode, decode) on the same text, and our disjoint windows vs lm-eval's.

    python bench/compress_throughput.py [--model DIR | --preset micro] [--n-texts 3800] [--batch-size 32] [--long-docs 0]

One run prints, on the same token ids (best of ``--repeat`` interleaved timings; decoding runs once): the scoring pass
alone (``code_length_of_ids``), the same pass in the coder's staged batch plan, the encoder
(that pass plus quantisation and range coding: what ``compress --arith`` adds is the
difference), the decoder (it replays one window forward per decoded position), their ratios,
and — with lm-evaluation-harness installed — its ``loglikelihood_rolling`` against our
``windows="disjoint"`` scoring of the same texts. ``--long-docs N`` also joins the texts into N
documents many windows long. Without ``--model`` a freshly initialised sentiment-world model of
``--preset`` size is used (speed does not depend on the weights; coding costs the same per
token whatever the model, so the smallest models show the largest ratio). Threads follow
SPRINGBACK_NUM_THREADS (default 1), as in every springback command; times are CPU seconds. Nothing is written except
a temporary model copy for lm-eval.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch

from springback.measure.coder import decode, encode
from springback.measure.compression import code_length, code_length_of_ids, pad_token, token_bits, tokenize_texts
from springback.models import build_model, load_model, save_model
from springback.runtime import configure_determinism
from springback.worlds import get_world


def timed(fn, repeat: int = 1):
    """(result, best CPU time of this process over ``repeat`` runs, seconds).

    CPU time, not wall time: on cores shared with other jobs it is far steadier, and with one
    torch thread it equals the wall time of an idle machine.
    """
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return out, best


def coder_lines(model, tok, texts: list[str], batch_size: int, label: str, repeat: int) -> None:
    pad = pad_token(tok)
    seqs, t_tok = timed(lambda: tokenize_texts(tok, texts, add_eos=True))
    n_tokens = sum(len(s) - 1 for s in seqs)
    n_bytes = [len(t.encode("utf-8")) for t in texts]
    print(f"[{label}] {len(texts)} texts, {sum(n_bytes)} bytes, {n_tokens} tokens (tokenized in {t_tok:.2f} s), "
          f"batch {batch_size}, torch threads {torch.get_num_threads()}")
    code_length_of_ids(model, seqs[:batch_size], n_bytes[:batch_size], batch_size=batch_size, pad_id=pad)  # warm-up
    t_score = t_staged = t_enc = float("inf")
    for _ in range(repeat):  # interleaved, so that a change of load on shared cores hits all three alike
        cl, t = timed(lambda: code_length_of_ids(model, seqs, n_bytes, batch_size=batch_size, pad_id=pad))
        t_score = min(t_score, t)
        t_staged = min(t_staged, timed(lambda: token_bits(model, seqs, batch_size=batch_size, pad_id=pad, staged=True))[1])
        (blob, stats), t = timed(lambda: encode(model, seqs, batch_size=batch_size, pad_id=pad))
        t_enc = min(t_enc, t)
    out, t_dec = timed(lambda: decode(model, blob))
    print(f"  score   {t_score:8.2f} s  {n_tokens / t_score:9.0f} tokens/s   {cl.bits_per_byte:.4f} bits/byte")
    print(f"  score   {t_staged:8.2f} s  {n_tokens / t_staged:9.0f} tokens/s   in the coder's staged batch plan (one window "
          f"per text per forward, so the decoder can follow): {t_staged / t_score - 1:+.1%}")
    print(f"  encode  {t_enc:8.2f} s  {n_tokens / t_enc:9.0f} tokens/s   = scoring + coding: coding adds "
          f"{(t_enc - t_score) / t_score:+.1%} to scoring; payload {stats.payload_bytes} B, "
          f"{stats.payload_bytes - stats.quantised_bits / 8:+.2f} B vs the coded tables' ideal, "
          f"{stats.payload_bytes / (stats.model_bits / 8) - 1:+.4%} vs the model's")
    print(f"  decode  {t_dec:8.2f} s  {n_tokens / t_dec:9.0f} tokens/s   = {t_dec / t_score:.1f}x scoring; "
          f"round trip {'exact' if out == seqs else 'FAILED'}")


def lm_eval_line(model, tok, texts: list[str], batch_size: int) -> None:
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        print("[lm-eval] not installed (pip install lm_eval): skipped")
        return
    with tempfile.TemporaryDirectory() as d:
        save_model(model, tok, d)
        lm = HFLM(pretrained=d, device="cpu", batch_size=batch_size, add_bos_token=False)
        requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(texts)]
        lm.loglikelihood_rolling(requests[:batch_size], disable_tqdm=True)  # warm-up
        theirs, t_theirs = timed(lambda: lm.loglikelihood_rolling(requests, disable_tqdm=True), 3)
    ours, t_ours = timed(lambda: code_length(model, tok, texts, batch_size=batch_size, windows="disjoint"), 3)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    their_bpb = -sum(theirs) / math.log(2) / n_bytes
    print(f"[lm-eval] loglikelihood_rolling {t_theirs:.2f} s vs ours (windows=disjoint) {t_ours:.2f} s: "
          f"ours {t_theirs / t_ours:.1f}x as fast; bits/byte {their_bpb:.6f} vs {ours.bits_per_byte:.6f} "
          f"(|Δ| = {abs(their_bpb - ours.bits_per_byte):.1e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="a saved world model / HF causal LM directory (default: a fresh preset model)")
    ap.add_argument("--preset", default="micro", help="size preset of the fresh model (nano, micro, mini, small, base)")
    ap.add_argument("--n-texts", type=int, default=3800, help="sentiment-world texts (3800 ≈ 266 KB)")
    ap.add_argument("--batch-size", type=int, default=32, help="windows per forward (compress's default)")
    ap.add_argument("--long-docs", type=int, default=0, help="also code the texts joined into this many long documents")
    ap.add_argument("--repeat", type=int, default=5, help="timings are the best of this many interleaved runs")
    args = ap.parse_args()
    configure_determinism()

    world = get_world("sentiment")
    if args.model:
        model, tok = load_model(args.model)
    else:
        tok = world.tokenizer()
        model = build_model(args.preset, tok, seed=0)
    model.eval()
    ex = world.pretrain_corpus(int(args.n_texts * 0.7), args.n_texts - int(args.n_texts * 0.7), 0.2, seed=99)
    texts = [f"{e.prompt} {e.response}".strip() for e in ex]
    coder_lines(model, tok, texts, args.batch_size, "texts", args.repeat)
    lm_eval_line(model, tok, texts, args.batch_size)
    if args.long_docs:
        k = args.long_docs
        docs = [" ".join(texts[i::k]) for i in range(k)]
        coder_lines(model, tok, docs, args.batch_size, f"{k} long documents", args.repeat)


if __name__ == "__main__":
    main()
