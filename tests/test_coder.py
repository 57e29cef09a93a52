"""Arithmetic coder: exact integer tables, the range coder, round trips, sizes against the ideal, constriction."""

from __future__ import annotations

import math

import constriction  # dev extra: the independent cross-check must run, not skip
import numpy as np
import pytest
import torch

import hf_tiny
from springback.errors import SpringbackError
from springback.measure.coder import (
    PRECISION_BITS,
    CoderMismatchError,
    RangeDecoder,
    decode,
    encode,
    quantise,
    quantise_cdf,
    range_encode,
    table_entries,
)
from springback.measure.compression import chunk_inputs, chunk_logprobs, code_length_of_ids, tokenize_texts, token_bits
from springback.models import build_model
from springback.worlds import get_world

T = 2**PRECISION_BITS


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The runtime's CPU setup (SPRINGBACK_NUM_THREADS, default 1), as every springback command uses:
    the decoder's many tiny forwards slow down 30× with spinning worker threads on shared cores."""
    from springback.runtime import configure_determinism

    configure_determinism()


def _starts_freqs(freq: torch.Tensor, symbols: torch.Tensor) -> tuple[list[int], list[int]]:
    f = freq.gather(1, symbols[:, None])
    return (freq.cumsum(1).gather(1, symbols[:, None]) - f).squeeze(1).tolist(), f.squeeze(1).tolist()


def _decode_all(data: bytes, freq: torch.Tensor, precision_bits: int = PRECISION_BITS) -> list[int]:
    dec, cum = RangeDecoder(data, precision_bits), freq.cumsum(1).numpy()
    return [dec.decode(cum[k]) for k in range(len(cum))]


# ----------------------------------------------------------------------------- quantisation


def test_quantise_closed_forms():
    # uniform over 4 tokens: u = 2**52 each, f = floor((T − 4) / 4) + 1 = 2**30 exactly, nothing left over
    assert quantise(torch.zeros(1, 4)).tolist() == [[2**30] * 4]
    # a certain token: it keeps everything but the other token's floor
    assert quantise(torch.tensor([[0.0, -float("inf")]])).tolist() == [[T - 1, 1]]
    # two tied tokens: the rounded CDF is floor((T − 3) / 2) + 1 = 2**31 − 1, then T − 1, then T
    assert quantise(torch.tensor([[-0.7, -0.7, -float("inf")]])).tolist() == [[2**31 - 1, 2**31, 1]]


def test_quantise_sums_floors_follows_p_and_is_row_independent():
    rng = np.random.default_rng(0)
    p = torch.tensor(rng.dirichlet(np.full(1000, 0.05), size=7))
    p[0] = 0.0
    p[0, 3] = 1.0  # a certain token; the others get exactly the floor
    p[1, :500] = p[1, 500:]  # ties: equal probabilities get frequencies within one unit
    p[1] /= p[1].sum()
    logp = p.log().float()
    f = quantise(logp)
    assert (f.sum(1) == T).all() and (f >= 1).all()
    assert f[0, 3] == T - 999 and (f[0, :3] == 1).all()
    assert int((f[1, :500] - f[1, 500:]).abs().max()) <= 1
    # frequencies follow the probabilities within the +1 floor, the top-up and the 2**-20-nat grid
    assert torch.all((f / T - p).abs() <= 1001 / T + 2e-6 * p)
    # a row's table does not depend on the other rows, their order or the batch shape
    for perm in (torch.arange(7).flip(0), torch.tensor([4, 4, 2])):
        assert torch.equal(quantise(logp[perm]), f[perm])
    assert torch.equal(quantise(logp[2:3]), f[2:3])
    assert torch.equal(quantise(torch.cat([logp, logp])[5:9]), torch.cat([f, f])[5:9])
    assert torch.equal(quantise_cdf(logp), f.cumsum(1)) and (quantise_cdf(logp)[:, -1] == T).all()
    # the encoder's two-entry shortcut reads the very same tables, first and last token included
    symbols = torch.tensor([3, 0, 999, 500, 17, 0, 999])
    start, freq = table_entries(logp, symbols)
    assert torch.equal(freq, f.gather(1, symbols[:, None]).squeeze(1))
    assert torch.equal(start, f.cumsum(1).gather(1, symbols[:, None]).squeeze(1) - freq)


def test_quantise_rejects_bad_input():
    with pytest.raises(SpringbackError, match="does not fit"):
        quantise(torch.zeros(1, 300), precision_bits=8)
    with pytest.raises(SpringbackError, match="NaN"):
        quantise(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(SpringbackError, match="NaN"):
        quantise(torch.full((1, 3), -float("inf")))


def test_quantisation_cost_bound_and_floor():
    """Per token: coded cost ≤ −log2 p + log2(T/(T−V)) + grid term, and never more than P bits."""
    vocab = 32000
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, vocab, generator=g, dtype=torch.float64) * 4
    logp = torch.log_softmax(logits, -1)
    symbols = torch.multinomial(logp.exp(), 1, generator=g).squeeze(1)
    symbols[:5] = logp[:5].argmin(-1)  # absurd tokens, p ≪ 2**-32
    f = quantise(logp.float())
    coded = PRECISION_BITS - torch.log2(f.gather(1, symbols[:, None]).squeeze(1).double())
    ideal = -logp.gather(1, symbols[:, None]).squeeze(1) / math.log(2)
    assert (ideal[:5] > 40).all() and (coded[:5] <= PRECISION_BITS).all()  # the floor makes them cheaper
    bound = -math.log2(1 - vocab / T) + 2e-6  # the floor's share of the mass + the grid
    assert torch.all(coded[5:] - ideal[5:] <= bound)
    assert torch.all(coded[5:] - ideal[5:] >= -1e-3)  # probable tokens are not made cheaper


# ----------------------------------------------------------------------------- range coder


@pytest.mark.parametrize("vocab,alpha,n", [(2, 1.0, 3000), (50, 0.3, 1000), (40000, 0.02, 60)])
def test_range_coder_roundtrip_and_size(vocab, alpha, n):
    rng = np.random.default_rng(vocab)
    p = torch.tensor(rng.dirichlet(np.full(vocab, alpha), size=n))
    freq = quantise(p.log())
    symbols = torch.multinomial(p, 1, generator=torch.Generator().manual_seed(1)).squeeze(1)
    starts, freqs = _starts_freqs(freq, symbols)
    data = range_encode(starts, freqs)
    assert _decode_all(data, freq) == symbols.tolist()
    ideal = sum(PRECISION_BITS - math.log2(f) for f in freqs)
    assert ideal - 8 <= 8 * len(data) <= ideal + 16  # ≤ ~1 byte to finish + padding; dropped zeros can save one


def test_range_coder_extremes():
    # near-certain runs, a 2**-32 symbol, a carry chain (0xFF bytes) and the empty message
    freq = torch.tensor([[T - 2, 1, 1]] * 604)
    symbols = torch.tensor([0] * 500 + [1, 2, 0, 1] + [2] * 100)
    starts, freqs = _starts_freqs(freq, symbols)
    data = range_encode(starts, freqs)
    assert _decode_all(data, freq) == symbols.tolist()
    assert 8 * len(data) <= sum(PRECISION_BITS - math.log2(f) for f in freqs) + 16
    assert range_encode([], []) == b""
    top = torch.tensor([[1, T - 1]] * 300)  # symbol 1 over and over: low creeps towards 1, carries propagate
    sym = torch.tensor([1] * 299 + [0])
    starts, freqs = _starts_freqs(top, sym)
    assert _decode_all(range_encode(starts, freqs), top) == sym.tolist()


def test_agrees_with_constriction_on_the_same_tables():
    """An independent, well-kept range coder codes our quantised tables to the same size; both round-trip."""
    rng = np.random.default_rng(5)
    precision = 24  # constriction's Python coder quantises to 24 bits; code 24-bit tables with both
    for vocab, alpha, n in ((64, 0.2, 400), (1000, 0.05, 200)):
        p = torch.tensor(rng.dirichlet(np.full(vocab, alpha), size=n))
        freq = quantise(p.log(), precision_bits=precision)
        symbols = torch.multinomial(p, 1, generator=torch.Generator().manual_seed(vocab)).squeeze(1)
        tables = (freq.double() / 2**precision).numpy()  # exactly representable: constriction keeps them
        theirs = constriction.stream.queue.RangeEncoder()
        theirs.encode(symbols.numpy().astype(np.int32), constriction.stream.model.Categorical(perfect=False), tables)
        words = theirs.get_compressed()
        back = constriction.stream.queue.RangeDecoder(words).decode(constriction.stream.model.Categorical(perfect=False), tables)
        assert back.tolist() == symbols.tolist()
        starts, freqs = _starts_freqs(freq, symbols)
        ours = range_encode(starts, freqs, precision)
        assert _decode_all(ours, freq, precision) == symbols.tolist()
        ideal_bytes = sum(precision - math.log2(f) for f in freqs) / 8
        assert abs(len(ours) - 4 * len(words)) <= 8  # constriction emits whole 32-bit words
        assert ideal_bytes - 1 <= len(ours) <= ideal_bytes + 2 and 4 * len(words) <= ideal_bytes + 8


# ----------------------------------------------------------------------------- the replay assumption


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
def test_forward_at_known_positions_ignores_later_tokens(kind):
    """What the decoder relies on: with the shape and mask fixed, log-probs at position p are bit-identical
    whatever the tokens after p are (and they are *not* bit-identical in a shorter forward)."""
    tok = hf_tiny.tokenizer()
    model = hf_tiny.build(kind, tok, hidden=32, layers=2)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, len(tok), (n,), generator=g).tolist() for n in (30, 21, 9)]
    chunk = [(i, 0, 1, len(s)) for i, s in enumerate(seqs)]
    ids, attn, _ = chunk_inputs(seqs, chunk, tok.pad_token_id)
    with torch.no_grad():
        ref = chunk_logprobs(model, ids, attn)
        for p in (0, 4, 12, 27):
            scrambled = ids.clone()
            scrambled[:, p + 1 :] = torch.randint(0, len(tok), scrambled[:, p + 1 :].shape, generator=g)
            assert torch.equal(chunk_logprobs(model, scrambled, attn)[:, : p + 1], ref[:, : p + 1])


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


def test_model_roundtrip_size_and_scores(world_model):
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts, add_eos=True)
    blob, stats = encode(model, seqs, batch_size=8, pad_id=tok.pad_token_id)
    assert decode(model, blob) == seqs
    # the encoder is the scoring pass: its scores are the scorer's, to the bit
    scored = token_bits(model, seqs, batch_size=8, pad_id=tok.pad_token_id)
    assert all(np.array_equal(a, b) for a, b in zip(stats.token_bits, scored))
    assert stats.model_bits == pytest.approx(code_length_of_ids(model, seqs, [1] * len(seqs)).total_bits, rel=1e-5)
    # one stream: within 2 bytes of the coded tables' ideal, within 0.1% of the model's ideal
    assert -1 <= stats.payload_bytes - stats.quantised_bits / 8 <= 2
    assert abs(stats.payload_bytes - stats.model_bits / 8) <= 1e-3 * stats.model_bits / 8
    assert abs(stats.quantised_bits - stats.model_bits) <= stats.n_tokens * 1e-4 and stats.n_tokens_beyond_floor == 0
    s = stats.summary()
    assert s["coder_overhead_bytes"] == pytest.approx(stats.payload_bytes - stats.quantised_bits / 8)
    assert s["total_bytes"] == len(blob) and s["n_tokens"] == sum(len(x) - 1 for x in seqs)
    with torch.no_grad():  # the tables are far from uniform
        probs = torch.softmax(model(input_ids=torch.tensor([seqs[0]])).logits[0].double(), -1)
    assert float(probs.max(-1).values.mean()) > 5 / model.config.vocab_size


@pytest.mark.parametrize("kind", ["llama", "gpt2", "neox"])
@pytest.mark.parametrize("window,stride,batch_size", [(8, 3, 4), (16, 16, 3), (5, 1, 2)])
def test_roundtrip_long_texts_windows_and_batches(kind, window, stride, batch_size):
    """Texts many windows long (the staged plan), the prefix-only text, three model families."""
    tok = hf_tiny.tokenizer()
    model = hf_tiny.build(kind, tok, hidden=16, layers=1)
    g = torch.Generator().manual_seed(1)
    seqs = [[tok.bos_token_id] + torch.randint(3, len(tok), (n,), generator=g).tolist() for n in (24, 0, 11, 3, 16)]
    blob, stats = encode(model, seqs, window=window, stride=stride, batch_size=batch_size, pad_id=tok.pad_token_id)
    assert decode(model, blob, window=window) == seqs
    ref = token_bits(model, seqs, window, stride, 64, tok.pad_token_id)  # the unstaged plan: same windows
    assert stats.model_bits == pytest.approx(sum(float(b.sum()) for b in ref), rel=1e-6)
    assert -1 <= stats.payload_bytes - stats.quantised_bits / 8 <= 2


def test_absurd_text_codes_shorter_than_the_model_ideal(world_model):
    """The floor caps each token at P bits: a very peaked model on text it finds impossible codes it in
    less than −Σ log2 p, and the report keeps the two references apart."""
    model, tok, texts = world_model
    peaked = build_model("nano", tok, seed=0).eval()
    with torch.no_grad():
        peaked.model.norm.weight.mul_(400.0)
    seqs = tokenize_texts(tok, texts[:6], add_eos=True)
    blob, stats = encode(peaked, seqs, pad_id=tok.pad_token_id)
    assert decode(peaked, blob) == seqs
    s = stats.summary()
    assert stats.n_tokens_beyond_floor > 0 and s["quantisation_bytes"] < -10  # shorter than the model's ideal
    assert stats.quantised_bits <= PRECISION_BITS * stats.n_tokens
    assert -1 <= s["coder_overhead_bytes"] <= 2  # measured against the coded tables, the coder is honest


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
    seqs = tokenize_texts(tok, texts[:12], add_eos=True)
    blob, _ = encode(model, seqs, batch_size=4, pad_id=tok.pad_token_id)
    with pytest.raises(CoderMismatchError):
        decode(_JitteredLogits(model, 1e-5), blob)


def test_bad_streams_and_inputs_raise_clear_errors(world_model):
    model, tok, texts = world_model
    seqs = tokenize_texts(tok, texts[:2])
    blob, _ = encode(model, seqs)
    with pytest.raises(SpringbackError, match="magic"):
        decode(model, b"XXXX" + blob[4:])
    with pytest.raises(SpringbackError, match="truncated"):
        decode(model, blob[:6])
    with pytest.raises(SpringbackError, match="window"):
        decode(model, blob, window=7)
    with pytest.raises(SpringbackError, match="version"):
        decode(model, blob[:4] + b"\x01" + blob[5:])
    other = build_model("nano", get_world("safety").tokenizer(), seed=0)
    if other.config.vocab_size != model.config.vocab_size:
        with pytest.raises(SpringbackError, match="vocabulary"):
            decode(other, blob)
    with pytest.raises(SpringbackError, match="vocabulary"):
        encode(model, [[seqs[0][0], 10**6]])
    with pytest.raises(SpringbackError, match="prefix"):
        encode(model, [seqs[0], [seqs[0][0] + 1, 5]])
