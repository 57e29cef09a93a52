"""Compression rates of a model on text, the compression experiment and `springback compress`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from springback.errors import SpringbackError
from springback.data.loading import read_texts
from springback.measure.compression import (
    baseline_sizes,
    code_length,
    code_length_of_ids,
    examples_code_length,
    lm_eval_max_length,
    resolve_windows,
    scored_positions,
    token_bits,
    tokenize_texts,
    window_plan,
    windows,
)
from springback.models import build_model, save_model
from springback.worlds import get_world

import hf_tiny


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The runtime's CPU setup (SPRINGBACK_NUM_THREADS, default 1), as every springback command uses."""
    from springback.runtime import configure_determinism

    configure_determinism()


@pytest.fixture(scope="module")
def world_setup():
    world = get_world("sentiment")
    tok = world.tokenizer()
    model = build_model("nano", tok, seed=0).eval()
    examples = world.pretrain_corpus(24, 8, 0.2, seed=1)
    texts = [f"{e.prompt} {e.response}".strip() for e in examples]
    return world, tok, model, examples, texts


def test_uniform_model_costs_log2_vocab_per_token(world_setup):
    """A model whose logits are all equal spends exactly log2 V bits on every token."""
    _, tok, model, _, texts = world_setup
    uniform = build_model("nano", tok, seed=0).eval()
    with torch.no_grad():
        uniform.model.norm.weight.zero_()  # final hidden state 0 -> every logit 0
    cl = code_length(uniform, tok, texts, add_eos=True)
    v = uniform.config.vocab_size
    assert cl.bits_per_token == pytest.approx(math.log2(v), rel=1e-6)
    assert cl.bits_per_byte == pytest.approx(cl.total_tokens * math.log2(v) / cl.total_bytes, rel=1e-6)
    assert cl.gamma == pytest.approx(cl.bits_per_byte / 8)
    assert cl.total_tokens == sum(len(t.split()) + 1 for t in texts)  # word tokens + EOS, never the BOS prefix


def test_batch_size_independent(world_setup):
    _, tok, model, _, texts = world_setup
    ref = code_length(model, tok, texts, batch_size=64)
    for bs in (1, 5):
        other = code_length(model, tok, texts, batch_size=bs)
        np.testing.assert_allclose(other.bits, ref.bits, rtol=1e-5)
        assert np.array_equal(other.n_tokens, ref.n_tokens)


@pytest.mark.parametrize("n", [1, 2, 5, 17, 64, 65, 130])
@pytest.mark.parametrize("window,stride", [(8, 8), (8, 3), (8, 1), (64, 32)])
def test_windows_tile_targets_exactly_once(n, window, stride):
    ws = windows(n, window, stride)
    scored = [t for _, a, b in ws for t in range(a, b)]
    assert scored == list(range(1, n))  # each target once, in order
    for c, a, b in ws:
        assert b - 1 - c <= window and c <= a - 1  # input fits and covers the first target's context


@pytest.mark.parametrize("staged", [False, True])
def test_window_plan_covers_every_window_once_and_staged_keeps_context_first(staged):
    lengths = [1, 40, 7, 23, 2, 40]
    window, stride, batch = 8, 3, 4
    plan = window_plan(lengths, window, stride, batch, staged=staged)
    assert all(1 <= len(chunk) <= batch for chunk in plan)
    pieces = [p for chunk in plan for p in chunk]
    expected = {(i, *w) for i, n in enumerate(lengths) for w in windows(n, window, stride)}
    assert len(pieces) == len(expected) and set(pieces) == expected
    if staged:  # every input token of a batch is the prefix or a target of an earlier batch
        known = {(i, 0) for i in range(len(lengths))}
        for chunk in plan:
            assert all((i, t) in known for i, c, a, b in chunk for t in range(c, a))
            known |= {(i, t) for i, c, a, b in chunk for t in range(a, b)}
    one_window = [5, 9, 2, 9]  # with one window per sequence the two plans are the same
    assert window_plan(one_window, 16, 8, 3, staged=True) == window_plan(one_window, 16, 8, 3)


def test_scored_positions_are_step_major():
    chunk = [(0, 0, 1, 4), (1, 2, 5, 7), (2, 0, 1, 2)]  # 3, 2 and 1 targets
    rows, pos, t = scored_positions(chunk)
    assert rows.tolist() == [0, 1, 2, 0, 1, 0]
    assert t.tolist() == [1, 5, 1, 2, 6, 3]
    assert pos.tolist() == [0, 2, 0, 1, 3, 2]  # target t is predicted at input position t − 1 − c


def test_sliding_window_scores_each_token_once_with_its_window_context(world_setup):
    _, tok, model, _, texts = world_setup
    long_ids = tokenize_texts(tok, [" ".join(texts[:4])], add_eos=True)[0]  # ~50 tokens
    full = token_bits(model, [long_ids], window=128)[0]
    assert len(full) == len(long_ids) - 1 and not np.isnan(full).any()
    window, stride = 12, 5
    win = token_bits(model, [long_ids], window=window, stride=stride)[0]
    # first window sees the same context as the full pass
    np.testing.assert_allclose(win[: window], full[: window], rtol=1e-5)
    # every later token: cost equals a direct forward over exactly its window's input
    for c, a, b in windows(len(long_ids), window, stride)[1:]:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([long_ids[c : b - 1]])).logits[0]
        lp = torch.log_softmax(logits.float(), -1)
        for t in range(a, b):
            direct = -float(lp[t - 1 - c, long_ids[t]]) / math.log(2)
            assert win[t - 1] == pytest.approx(direct, rel=1e-5)
    # less context costs more bits overall (the model uses its context)
    assert win.sum() != pytest.approx(full.sum(), rel=1e-9)


def test_window_conventions_and_lm_eval_max_length():
    from types import SimpleNamespace as NS

    long = NS(config=NS(max_position_embeddings=4096))
    assert resolve_windows(long) == (1024, 512)  # sliding: capped, half-window stride
    assert resolve_windows(long, windows="sliding", window=100, stride=7) == (100, 7)
    assert resolve_windows(long, windows="disjoint") == (4096, 4096)  # lm-eval's length, uncapped
    assert resolve_windows(long, windows="disjoint", window=64, stride=64) == (64, 64)
    with pytest.raises(SpringbackError, match="stride"):
        resolve_windows(long, windows="disjoint", stride=5)
    with pytest.raises(SpringbackError, match="sliding, disjoint"):
        resolve_windows(long, windows="rolling")
    # lm-eval's order: n_positions, max_position_embeddings, n_ctx, a nested text_config first
    assert lm_eval_max_length(NS(config=NS(n_positions=77, max_position_embeddings=99))) == 77
    assert lm_eval_max_length(NS(config=NS(text_config=NS(n_ctx=300), n_positions=1200))) == 300
    assert lm_eval_max_length(NS(config=NS()), NS(model_max_length=512)) == 512
    assert lm_eval_max_length(NS(config=NS()), NS(model_max_length=int(1e30))) == 2048  # unset tokenizer limit


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_disjoint_windows_match_lm_evaluation_harness(tmp_path, kind):
    """bits/byte of long texts equals lm-eval's loglikelihood_rolling on the same local model (to 1e-4)."""
    import random

    from lm_eval.api.instance import Instance  # dev extra: the parity check must run, not skip
    from lm_eval.models.huggingface import HFLM

    from springback.models import load_model

    directory = hf_tiny.save(kind, tmp_path / kind, hidden=16, layers=1)  # context 128 tokens
    rng = random.Random(0)
    texts = [" ".join(hf_tiny.review(rng, i % 2 == 0) for _ in range(n)) for i, n in enumerate((3, 1, 19, 8, 16, 20))]
    lm = HFLM(pretrained=str(directory), device="cpu", batch_size=4, add_bos_token=False)
    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(texts)]
    theirs = np.array(lm.loglikelihood_rolling(requests, disable_tqdm=True))  # nats per text
    model, tok = load_model(str(directory))
    ours = code_length(model, tok, texts, windows="disjoint", batch_size=4)
    assert ours.n_tokens.max() > 2 * 128  # three windows, the last one partial
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert ours.bits_per_byte == pytest.approx(-theirs.sum() / math.log(2) / n_bytes, abs=1e-4)
    np.testing.assert_allclose(ours.bits, -theirs / math.log(2), rtol=1e-5)
    sliding = code_length(model, tok, texts, batch_size=4)  # more context per window: a different number
    assert abs(sliding.total_bits - ours.total_bits) > 1e-6 * ours.total_bits


def test_masked_tokens_and_padding_contribute_nothing(world_setup):
    _, tok, model, _, texts = world_setup
    seqs = tokenize_texts(tok, texts[:6], add_eos=True)
    per_token = token_bits(model, seqs)
    masks = [[i % 2 == 0 for i in range(len(s))] for s in seqs]
    cl = code_length_of_ids(model, seqs, [1] * len(seqs), masks=masks, pad_id=tok.pad_token_id)
    for i, s in enumerate(seqs):
        keep = np.array(masks[i][1:])
        assert cl.bits[i] == pytest.approx(per_token[i][keep].sum(), rel=1e-6)
        assert cl.n_tokens[i] == keep.sum()
    # a short sequence costs the same alone as next to a long one (padding is invisible)
    alone = code_length_of_ids(model, [seqs[0]], [1], pad_id=tok.pad_token_id)
    with_long = code_length_of_ids(model, [seqs[0], seqs[0] + seqs[1][1:] * 3], [1, 1], pad_id=tok.pad_token_id)
    assert with_long.bits[0] == pytest.approx(alone.bits[0], rel=1e-5)


def test_examples_response_part(world_setup):
    _, tok, model, examples, _ = world_setup
    allp = examples_code_length(model, tok, examples, part="all")
    resp = examples_code_length(model, tok, examples, part="response")
    assert resp.total_bytes == sum(len(e.response.encode()) for e in examples)
    assert resp.total_tokens == sum(len(e.response.split()) + 1 for e in examples)
    assert resp.total_bits < allp.total_bits
    with pytest.raises(ValueError):
        examples_code_length(model, tok, examples, part="prompt")


def test_read_texts_formats_and_errors(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("héllo world\n\nsecond line\n", encoding="utf-8")
    assert read_texts(txt) == ["héllo world", "second line"]
    assert read_texts(txt, max_bytes=3) == ["hé"]  # 'h' + 'é' (2 bytes) = 3 bytes
    assert read_texts(txt, max_bytes=2) == ["h"]  # never splits a UTF-8 character
    js = tmp_path / "b.jsonl"
    js.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two", "x": 1}) + "\n")
    assert read_texts(js) == ["one", "two"]
    with pytest.raises(SpringbackError, match="not found"):
        read_texts(tmp_path / "missing.txt")
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"id": 3, "score": 0.5}\n')  # no text column, no known format
    with pytest.raises(SpringbackError, match="text"):
        read_texts(bad)
    (tmp_path / "d.jsonl").write_text("{not json\n")
    with pytest.raises(SpringbackError, match="JSON"):
        read_texts(tmp_path / "d.jsonl")


def test_baselines_compress_repetitive_text():
    data = b"the cat saw the dog . " * 200
    sizes = baseline_sizes(data)
    assert set(sizes) == {"gzip -9", "bz2 -9", "xz -9e"}
    assert all(0 < s < len(data) / 10 for s in sizes.values())


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_compress_cli_arith_on_saved_world_model(tmp_path, capsys, world_setup):
    from springback.cli import main

    world, tok, _, _, texts = world_setup
    model = build_model("nano", tok, seed=3)
    save_model(model, tok, tmp_path / "model")
    data = tmp_path / "data.txt"
    data.write_text("\n".join(texts) + "\n")
    rc = main(["compress", "--model", str(tmp_path / "model"), "--data", str(data), "--arith", "--eos"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "round trip: tokens exact, text exact" in out
    for name in ("gzip -9", "bz2 -9", "xz -9e", "model (ideal)", "model (arith payload)"):
        assert name in out
    assert "decoding" in out and "coder overhead" in out
    rc = main(["compress", "--model", str(tmp_path / "model"), "--data", str(data), "--json", "--max-bytes", "200"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["model_rate"]["n_bytes"] <= 200 and r["model_rate"]["bits_per_byte"] > 0
    rc = main(["compress", "--model", str(tmp_path / "model"), "--data", str(data), "--json", "--windows", "disjoint",
               "--arith", "--window", "8"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and (r["windows"], r["window"], r["stride"]) == ("disjoint", 8, 8)
    assert r["arith"]["roundtrip_tokens_exact"] and set(r["seconds"]) == {"encode", "decode"}
    assert abs(r["arith"]["payload_bytes"] - r["model_rate"]["code_bits"] / 8) <= 2
    assert main(["compress", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "nope.txt")]) == 2
    assert "data file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_compression_experiment_tiny(tmp_path):
    import springback

    sets = ["seeds=[0,1]", "n_align=[400,40]", "l_values=[0.0,0.25,0.5]", "n_heldout=24",
            "world.n_task_examples=1500", "world.n_general_examples=500", "model.preset=nano",
            "pretrain.batch_size=64", "measure_batch_size=64"]
    run_dir = springback.run("compression", sets=sets, out=tmp_path, progress=False)
    result = springback.load_result(run_dir)
    ids = [c["id"] for c in result["claims"]]
    assert ids == ["compression.opposite_signs", "compression.ratio_grows_with_k"]
    df = springback.load_results(run_dir)
    opp = df[df.stage == "opposing"]
    assert set(opp.n_aligned) == {400, 40} and set(opp.k) == {5.0, 50.0}
    assert sorted(opp[opp.n_aligned == 40].n_opposing.unique()) == [0, 10, 20]
    assert opp[["gamma_p", "gamma_a", "gamma_t"]].gt(0).all().all()
    assert (run_dir / "figures" / "compression_ratio_vs_k.png").exists()
    assert (run_dir / "figures" / "compression_hooke.png").exists()
    # resuming skips every finished cell
    again = springback.run("compression", sets=sets, out=tmp_path, progress=False)
    assert springback.load_result(again)["timings"]["cells_run"] == 0
