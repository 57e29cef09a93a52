"""Arithmetic coder: quantisation, round trips, size against the ideal code length, the logit-mismatch failure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from springback.errors import SpringbackError
from springback.measure.coder import (
    PRECISION_BITS,
    ArithmeticDecoder,
    ArithmeticEncoder,
    CoderMismatchError,
    NextTokenTables,
    cumulative,
    decode,
    encode,
    quantise,
    table_bits,
)
from springback.measure.compression import code_length_of_ids, tokenize_texts
from springback.models import build_model
from springback.worlds import get_world


# ----------------------------------------------------------------------------- quantisation


def test_quantise_sums_keeps_every_symbol_and_is_deterministic():
    rng = np.random.default_rng(0)
    for p in (rng.dirichlet(np.full(1000, 0.05)), np.eye(50)[3], np.full(7, 1 / 7), np.array([1.0, 0.0, 0.0])):
        f = quantise(p)
        assert f.sum() == 2**PRECISION_BITS
        assert f.min() >= 1  # any token stays codable, even with p = 0
        assert np.array_equal(f, quantise(p.copy()))  # same input, same table
        big = p > 1e-6
        # frequencies follow the probabilities to within the +1 floor and the top-up of the argmax
        assert np.all(np.abs(f[big] / 2**PRECISION_BITS - p[big]) <= len(p) / 2**PRECISION_BITS + 1e-12)


def test_quantise_is_monotone():
    p = np.random.default_rng(1).dirichlet(np.ones(300))
    f = quantise(p)
    order = np.argsort(p)
    assert np.all(np.diff(f[order]) >= 0)


# ----------------------------------------------------------------------------- coder on known distributions


@pytest.mark.parametrize("vocab,alpha,seed", [(2, 1.0, 0), (50, 0.3, 1), (1000, 0.05, 2), (40000, 0.02, 3)])
def test_roundtrip_random_distributions(vocab, alpha, seed):
    rng = np.random.default_rng(seed)
    n = 400 if vocab < 40000 else 60
    probs = rng.dirichlet(np.full(vocab, alpha), size=n)
    symbols = [int(rng.choice(vocab, p=p)) for p in probs]
    cums = [cumulative(quantise(p)) for p in probs]
    enc = ArithmeticEncoder()
    for c, s in zip(cums, symbols):
        enc.encode(c, s)
    data = enc.finish()
    dec = ArithmeticDecoder(data)
    assert [dec.decode(c) for c in cums] == symbols
    ideal = sum(table_bits(c, s) for c, s in zip(cums, symbols))
    assert ideal - 8 <= 8 * len(data) <= ideal + 2 + 8  # ≤ 2 bits of termination + byte padding


def test_roundtrip_improbable_and_certain_symbols():
    # a symbol of probability ~2^-32 and long runs of near-certain symbols
    p_rare = np.array([1.0 - 1e-12, 1e-12, 0.0])
    seq = [0] * 500 + [1, 2, 0, 1]
    cum = cumulative(quantise(p_rare))
    enc = ArithmeticEncoder()
    for s in seq:
        enc.encode(cum, s)
    data = enc.finish()
    dec = ArithmeticDecoder(data)
    assert [dec.decode(cum) for _ in seq] == seq
    assert 8 * len(data) <= sum(table_bits(cum, s) for s in seq) + 10


# ----------------------------------------------------------------------------- coder with a model


@pytest.fixture(scope="module")
def world_model():
    world = get_world("sentiment")
    tok = world.tokenizer()
    model = build_model("nano", tok, seed=0).eval()
    with torch.no_grad():  # sharpen the random model's distributions so they are far from uniform
        model.model.norm.weight.mul_(5.0)
    examples = world.pretrain_corpus(30, 10, 0.2, seed=0)
    texts = [f"{e.prompt} {e.response}".strip() for e in examples]
    return model, tok, texts


def test_model_roundtrip_and_size_near_ideal(world_model):
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts, add_eos=True)
    blob, stats = encode(model, seqs, batch_size=8)
    assert decode(model, blob) == seqs
    # one stream: within 2 bytes of the model's ideal code length in total
    assert stats.model_bits - 8 <= stats.payload_bytes * 8 <= stats.model_bits + 16
    # quantisation costs almost nothing at 32-bit precision
    assert abs(stats.quantised_bits - stats.model_bits) < 1e-4 * stats.model_bits
    with torch.no_grad():  # the tables are far from uniform
        probs = torch.softmax(model(input_ids=torch.tensor([seqs[0]])).logits[0].double(), -1)
    assert float(probs.max(-1).values.mean()) > 5 / model.config.vocab_size
    # the coder's probabilities (incremental pass) agree with the scoring pass (one forward per window)
    scored = code_length_of_ids(model, seqs, [1] * len(seqs), pad_id=tok.pad_token_id)
    assert stats.model_bits == pytest.approx(scored.total_bits, rel=1e-5)


def test_each_sequence_alone_within_a_few_bytes(world_model):
    model, tok, texts = world_model
    for seq in tokenize_texts(tok, texts[:6], add_eos=True):
        blob, stats = encode(model, [seq], batch_size=1)
        assert decode(model, blob) == [seq]
        assert stats.payload_bytes - stats.model_bits / 8 <= 2.0


@pytest.mark.parametrize("batch_size,window", [(1, None), (3, None), (16, 6)])
def test_roundtrip_batches_and_window_resets(world_model, batch_size, window):
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts[:10], add_eos=False)
    seqs.append(seqs[0][:1])  # an empty text: prefix only, zero coded tokens
    blob, _ = encode(model, seqs, window=window, batch_size=batch_size)
    assert decode(model, blob) == seqs


def test_eos_terminated_streams_need_no_lengths(world_model):
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts, add_eos=True)
    with_lengths, s1 = encode(model, seqs, batch_size=8)
    terminated, s2 = encode(model, seqs, batch_size=8, terminator=tok.eos_token_id)
    assert decode(model, terminated) == seqs
    assert s2.header_bytes < s1.header_bytes - len(seqs) // 2 and s2.payload_bytes == s1.payload_bytes
    with pytest.raises(CoderMismatchError):
        decode(_JitteredLogits(model, 1e-5), terminated)
    with pytest.raises(SpringbackError, match="terminator"):
        encode(model, tokenize_texts(tok, texts[:2], add_eos=False), terminator=tok.eos_token_id)


def test_tables_identical_between_two_passes(world_model):
    """Encoder and decoder each build their own NextTokenTables; the integer tables must be equal bit for bit."""
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts[:4], add_eos=True)
    width = min(len(s) for s in seqs)

    def run() -> list[np.ndarray]:
        t = NextTokenTables(model, window=8)  # small window: exercises the cache rebuild as well
        t.start([s[0] for s in seqs])
        out = []
        for i in range(1, width):
            out += t.tables()[1]
            t.push([s[i] for s in seqs])
        return out

    first, second = run(), run()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


class _JitteredLogits(torch.nn.Module):
    """The model with float32-rounding-sized noise on its logits: what a different kernel or batch shape does."""

    def __init__(self, model: torch.nn.Module, scale: float):
        super().__init__()
        self.model, self.scale, self.config = model, scale, model.config
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, **kw):
        out = self.model(**kw)
        out.logits = out.logits + self.scale * torch.randn(out.logits.shape, generator=self.gen)
        return out


def test_logit_mismatch_is_detected_not_silent(world_model):
    """The known failure of model-based coders: tiny logit differences between passes break decoding."""
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts, add_eos=True)
    blob, _ = encode(model, seqs, batch_size=8)
    with pytest.raises(CoderMismatchError):
        decode(_JitteredLogits(model, 1e-5), blob)


def test_bad_streams_raise_clear_errors(world_model):
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts[:2])
    blob, _ = encode(model, seqs)
    with pytest.raises(SpringbackError, match="magic"):
        decode(model, b"XXXX" + blob[4:])
    with pytest.raises(SpringbackError, match="truncated"):
        decode(model, blob[:6])
    with pytest.raises(SpringbackError, match="window"):
        decode(model, blob, window=7)
    with pytest.raises(SpringbackError, match="vocabulary"):
        encode(model, [[seqs[0][0], 10**6]])


def test_agrees_with_constriction_range_coder():
    """An independent, well-kept coder on the same quantised tables produces about the same size."""
    constriction = pytest.importorskip("constriction")
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.full(64, 0.2), size=300)
    symbols = np.array([rng.choice(64, p=p) for p in probs], dtype=np.int32)
    tables = np.stack([quantise(p) / 2**PRECISION_BITS for p in probs]).astype(np.float64)
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(symbols, constriction.stream.model.Categorical(perfect=False), tables)
    theirs = 4 * len(enc.get_compressed())  # 32-bit words
    ours = ArithmeticEncoder()
    for p, s in zip(tables, symbols):
        ours.encode(cumulative(quantise(p)), int(s))
    assert abs(len(ours.finish()) - theirs) <= 8
    ideal = -sum(math.log2(p[s]) for p, s in zip(probs, symbols)) / 8
    assert theirs <= ideal + 8
