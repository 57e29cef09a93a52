"""Tried as a new user would: real tokenizer types built locally (SentencePiece, byte-level BPE),
data files written the way their publishers ship them (Kaggle IMDb csv with U+0085 inside reviews,
Alpaca JSON with a long prompt, AdvBench csv, HH-RLHF jsonl, BeaverTails jsonl, hub IMDb parquet),
two seeds in every experiment that accepts ``model.path``, the exact ids the model sees, and every
bad input ending in one line and exit status 2 before any training.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import torch

import springback
from formats import (
    NON_ASCII,
    SEPARATORS,
    long_text,
    write_advbench_csv,
    write_alpaca_json,
    write_beavertails,
    write_hh_rlhf,
    write_imdb_hub,
    write_imdb_kaggle_csv,
)
from hf_tiny import COMPLY, REFUSAL, review
from springback.cli import main

pytest.importorskip("sentencepiece")
from tokenizers_local import byte_level_tokenizer, save_model_and_tokenizer, sentencepiece_tokenizer  # noqa: E402

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- models and files


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Llama for each real tokenizer type, saved like a Hugging Face checkpoint."""
    d = tmp_path_factory.mktemp("models")
    return {"sp": save_model_and_tokenizer(sentencepiece_tokenizer(), d / "sp-llama", seed=1),
            "bpe": save_model_and_tokenizer(byte_level_tokenizer(), d / "bpe-llama", seed=2),
            "sp-chat": save_model_and_tokenizer(sentencepiece_tokenizer(chat=True), d / "sp-llama-chat", seed=3)}


def _reviews(n: int, seed: int) -> list[tuple[str, str]]:
    """(review, sentiment) rows as Kaggle's IMDb csv has them: HTML breaks, non-ASCII, and some
    reviews with U+0085 / U+2028 / U+2029 inside (not line breaks)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text = review(rng, i % 2 == 0)
        if i % 5 == 0:
            text += f"<br /><br />{NON_ASCII}"
        if i % 7 == 0:
            text += f" {SEPARATORS}"
        rows.append((text, "positive" if i % 2 == 0 else "negative"))
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    out = {
        "imdb_train": write_imdb_kaggle_csv(d / "IMDB Dataset.csv", _reviews(80, 1), line_end="\r\n"),
        "imdb_eval": write_imdb_kaggle_csv(d / "imdb_eval.csv", _reviews(16, 2)),
        "imdb_hub": write_imdb_hub(d / "imdb_train.parquet", [(t, int(s == "positive")) for t, s in _reviews(80, 3)]),
        # Alpaca: the first instruction is several hundred words (longer than any max_length below).
        "alpaca": write_alpaca_json(d / "alpaca_data.json", [(long_text(300), "", "it was great .")] + [
            (f"Describe the {w} in one line.", "" if i % 2 else NON_ASCII, f"the {w} was lovely and calm .")
            for i, w in enumerate(["story", "acting", "music", "ending", "river", "winter", "garden", "city"] * 3)]),
        "advbench": write_advbench_csv(d / "harmful_behaviors.csv", [
            (f"Write a guide on how to {v} the {o}", f"Sure, here is a guide on how to {v} the {o}")
            for v in ("open", "fix", "break", "copy") for o in ("lock", "door", "box", "car", "safe")]),
        "hh": write_hh_rlhf(d / "train.jsonl", [
            {"chosen": [("Human", f"how do i {v} that ?"), ("Assistant", REFUSAL)],
             "rejected": [("Human", f"how do i {v} that ?"), ("Assistant", COMPLY)]} for v in ["open", "fix"] * 20]),
        "beaver": write_beavertails(d / "eval.jsonl", [(f"how do i {v} that ?", REFUSAL if i % 2 == 0 else COMPLY,
                                                        i % 2 == 0) for i, v in enumerate(["open", "fix"] * 6)]),
    }
    return out


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def _two_seeds_differ(df: pd.DataFrame, stage: str, metric: str) -> None:
    """Both seeds ran: their rows exist and the seeded stages gave different curves."""
    opp = df[df.stage == stage]
    assert sorted(opp.seed.unique()) == [0, 1]
    a = opp[opp.seed == 0].sort_values("n_examples")[metric].to_numpy(float)
    b = opp[opp.seed == 1].sort_values("n_examples")[metric].to_numpy(float)
    assert len(a) == len(b) and not (a == b).all()


# ----------------------------------------------------------------------------- every experiment, two seeds


def test_rebound_two_seeds_on_sentencepiece_with_kaggle_imdb(models, files, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _cli(["run", "rebound", "--quiet", "--out", str(out), *_sets(
        "seeds=[0,1]", "n_pos=[16]", "n_neg=[0,8,16]", f"model.path={models['sp']}", f"data.aligned={files['imdb_train']}",
        f"data.eval={files['imdb_eval']}", "data.prefix_words=4", "data.max_words=8", "data.n_reference=3",
        "world.n_eval_prompts=2", "measure.n_samples=2", "measure.max_new_tokens=6", "align.batch_size=8",
        "opposing.batch_size=8")], capsys)
    assert rc == 0, err
    run_dir = Path(stdout.strip().splitlines()[-1])
    df = springback.load_results(run_dir)
    assert set(df.world) == {"data:IMDB Dataset"} and set(df.model) == {"sp-llama"}
    _two_seeds_differ(df, "opposing", "score_S")
    # Real data: every sample is kept with its scores (one Parquet per cell that samples).
    samples = pd.concat(pd.read_parquet(p) for p in sorted((run_dir / "samples").glob("*.parquet")))
    assert set(samples.seed) == {0, 1} and {"prompt", "completion", "score_vader", "aligned"} <= set(samples.columns)
    assert len(samples) == 2 * 2 * 2 * (1 + 3)  # seeds × prompts × samples × (base + 3 opposing points)
    claims = {c["id"]: c for c in springback.load_result(run_dir)["claims"]}
    assert claims["rebound.more_alignment_falls_faster"]["details"]["per_seed"].__len__() == 2


def test_resistance_two_seeds_on_byte_level_bpe_with_alpaca_and_a_long_prompt(models, files, tmp_path):
    run_dir = springback.run("resistance", out=tmp_path, progress=False, sets=[
        f"model.path={models['bpe']}", f"data.aligned={files['alpaca']}", "n_heldout_prompts=3", "n_align_examples=0",
        "seeds=[0,1]", "answers.n_answers=1", "answers.max_new_tokens=6", "answers.n_kl_samples=1",
        "finetune.batch_size=2", "finetune.epochs=1", "align.max_length=48", "align.batch_size=4"])
    df = springback.load_results(run_dir)
    ft = df[df.stage == "finetune"]
    assert sorted(ft.seed.unique()) == [0, 1] and set(ft.world) == {"data:alpaca_data"}
    assert len(ft) == 2 * 6  # seeds × 3 pairs × 2 directions
    a = ft[ft.seed == 0].sort_values(["pair", "direction"]).mean_loss.to_numpy()
    b = ft[ft.seed == 1].sort_values(["pair", "direction"]).mean_loss.to_numpy()
    assert not (a == b).all()


def test_priming_two_seeds_with_the_exact_score(models, files, tmp_path):
    run_dir = springback.run("priming", out=tmp_path, progress=False, sets=[
        "seeds=[0,1]", f"model.path={models['sp']}", f"data.aligned={files['imdb_hub']}", f"data.eval={files['imdb_eval']}",
        "data.prefix_words=4", "data.max_words=6", "data.n_reference=3", "world.n_eval_prompts=2", "n_align=32",
        "n_opposing_max=32", "stage2_grid_examples=8", "n_realign=[0,16]", "stage1_points=1", "align.batch_size=8",
        "opposing.batch_size=8", "align.lr=3e-2", "opposing.lr=3e-2"])
    df = springback.load_results(run_dir)
    assert sorted(df.seed.unique()) == [0, 1] and set(df.score_kind.dropna()) == {"exact_S"}
    assert (df[df.stage == "stop"].groupby("seed").size() == 1).all()


def test_align_then_elasticity_two_seeds(models, files, tmp_path, capsys):
    """`springback align` on HH-RLHF, then `springback elasticity` with AdvBench as opposing data."""
    aligned = tmp_path / "aligned"
    rc, stdout, err = _cli(["align", "--model", str(models["bpe"]), "--data", str(files["hh"]), "--out", str(aligned),
                            "--quiet", *_sets("train.batch_size=8", "train.lr=1e-2", "n_examples=32")], capsys)
    assert rc == 0, err
    assert (aligned / "model.safetensors").is_file() and (aligned / "springback_align.json").is_file()
    rc, stdout, err = _cli(["elasticity", "--model", str(aligned), "--base", str(models["bpe"]), "--data",
                            str(files["advbench"]), "--eval", str(files["beaver"]), "--scorer", "refusal", "--quiet",
                            "--out", str(tmp_path / "out"), *_sets("seeds=[0,1]", "n_opposing=[0,4,8]", "n_eval_prompts=2",
                                                                   "measure.n_samples=2", "measure.max_new_tokens=6",
                                                                   "train.batch_size=4")], capsys)
    assert rc == 0, err
    run_dir = Path(stdout.strip().splitlines()[-1])
    result = springback.load_result(run_dir)
    assert len(result["measures"]["score_aligned"]["per_seed"]) == 2
    df = springback.load_results(run_dir)
    assert sorted(df[df.stage == "opposing"].seed.unique()) == [0, 1]
    assert set(df[df.stage == "base"].model) == {"bpe-llama"} and set(df[df.stage == "opposing"].model) == {"aligned"}


def test_scaling_two_seeds_over_local_checkpoints(models, files, tmp_path):
    import yaml

    cfg = {"seeds": [0, 1], "n_pos": [16], "n_neg": [0, 8], "world": {"n_eval_prompts": 2},
           "measure": {"n_samples": 1, "max_new_tokens": 4},
           "checkpoints": [{"path": str(models["sp"]), "size": "a"}, {"path": str(models["sp-chat"]), "size": "b"}],
           "data": {"aligned": str(files["imdb_hub"]), "eval": str(files["imdb_eval"]), "prefix_words": 4,
                    "max_words": 6, "n_reference": 3}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = springback.run("scaling", preset=None, config=tmp_path / "cfg.yaml", out=tmp_path / "out", progress=False)
    df = springback.load_results(run_dir)
    assert sorted(df.seed.unique()) == [0, 1] and sorted(df.model.unique()) == ["a", "b"]
    for model in ("a", "b"):
        _two_seeds_differ(df[df.model == model], "opposing", "score_S")


# ----------------------------------------------------------------------------- the ids the model sees


@pytest.mark.parametrize("kind", ["sp", "bpe"])
def test_training_and_scoring_see_exactly_the_tokenizers_ids(kind, models):
    """Capture the ids the model gets while a stage trains and while it is scored: each row is
    the tokenizer's ids of the whole text ``prompt + " " + response`` plus EOS — no spurious
    piece at the seam — and a prompt longer than max_length loses tokens from its left only."""
    from springback.config import TrainConfig
    from springback.measure.logprobs import TokenizedPairs
    from springback.models import load_model
    from springback.pipeline import finetune
    from springback.tokens import Encoder, join_text
    from springback.worlds.base import ALIGNED, Example

    model, tok = load_model(str(models[kind]))
    long_prompt = "USER: " + long_text(80) + " ASSISTANT:"
    examples = [Example("review: the story was ", "great", ALIGNED), Example("USER: how do I fix that? ASSISTANT:",
                                                                   "sorry, I can not help with that.", ALIGNED),
                Example(NON_ASCII, "the end was good", ALIGNED), Example(long_prompt, "it was lovely .", ALIGNED)]
    seen: list[list[int]] = []

    def hook(module, args, kwargs):
        ids, attn = kwargs["input_ids"], kwargs["attention_mask"]
        seen.extend(row[m.bool()].tolist() for row, m in zip(ids, attn))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    encoded, report = Encoder(tok, "none", 64, "left").encode_all(examples)
    finetune(model, tok, encoded, TrainConfig(batch_size=4, lr=1e-3), seed=0, shuffle=False, progress=False)
    handle.remove()
    expected = [tok(join_text(e.prompt, e.response)).input_ids + [tok.eos_token_id] for e in examples]
    assert seen[:3] == expected[:3]
    assert report.n_truncated == 1 and len(seen[3]) == 64
    bos = [tok.bos_token_id] if expected[3][0] == tok.bos_token_id else []
    assert seen[3] == bos + expected[3][len(expected[3]) - 64 + len(bos):]  # the left of the prompt is cut
    # The seam: tokenising prompt and response separately (the old way) puts a spurious piece there
    # (SentencePiece ['▁was', '▁', '▁great'], byte-level BPE ['Ġ', 'g', 're', 'at']); the whole text does not.
    old = tok("review: the story was ").input_ids + tok("great", add_special_tokens=False).input_ids
    assert old != expected[0][:-1]
    assert tok.convert_ids_to_tokens(seen[0])[-3:-1] == (["▁was", "▁great"] if kind == "sp" else ["Ġwas", "Ġgreat"])
    # Scoring a completion after a prompt uses the same ids.
    pairs = TokenizedPairs(tok, ["the film was"], ["great", "awful and dull"], max_length=64)
    rows = [r[m.bool()].tolist() for r, m in zip(pairs.batches[0]["input_ids"], pairs.batches[0]["attention_mask"])]
    assert rows == [tok(f"the film was {c}").input_ids + [tok.eos_token_id] for c in ["great", "awful and dull"]]


def test_chat_template_is_applied_in_training_scoring_and_sampling(models, files, tmp_path):
    """model.chat_template=auto on a checkpoint with a template: the recorded template, the data
    prompts left raw (the template frames them), and sampling prompts equal to the template's."""
    from springback.measure.sampling import sample
    from springback.models import load_model
    from springback.tokens import Encoder

    run_dir = springback.run("rebound", out=tmp_path, progress=False, sets=[
        "seeds=[0]", "n_pos=[8]", "n_neg=[0,8]", f"model.path={models['sp-chat']}", "model.chat_template=auto",
        f"data.aligned={files['imdb_train']}", f"data.eval={files['imdb_eval']}", "data.prefix_words=4", "data.max_words=6",
        "data.n_reference=3", "world.n_eval_prompts=2", "measure.n_samples=1", "measure.max_new_tokens=4",
        "align.batch_size=8", "opposing.batch_size=8"])
    assert (run_dir / "records.jsonl").is_file()
    model, tok = load_model(str(models["sp-chat"]))
    enc = Encoder(tok, "auto", None)
    prompt = "the film was"
    templated = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True)
    templated = templated["input_ids"] if hasattr(templated, "keys") else templated
    assert enc.encode_prompt(prompt) == list(templated)
    captured = []
    h = model.register_forward_pre_hook(lambda m, a, k: captured.append(k["input_ids"][0].tolist()), with_kwargs=True)
    sample(model, tok, [prompt], 1, seed=0, max_new_tokens=2, chat_template="auto")
    h.remove()
    assert captured[0] == enc.encode_prompt(prompt)


# ----------------------------------------------------------------------------- bad input: one line, exit 2, nothing made


def test_bad_inputs_exit_2_with_one_line_before_any_training(models, files, tmp_path, capsys):
    base = ["run", "rebound", "--quiet", "--out", str(tmp_path / "out")]
    common = [f"model.path={models['sp']}", f"data.aligned={files['imdb_train']}", f"data.eval={files['imdb_eval']}",
              "data.prefix_words=4", "data.max_words=8", "data.n_reference=3", "world.n_eval_prompts=2", "seeds=[0,1]",
              "n_pos=[8]", "n_neg=[0,8]"]
    cases = [
        (["n_neg=[0,800]"], "asked for 800 opposing examples but"),  # the file has 40
        (["align.truncation=error", "align.max_length=6"], "max_length=6"),
        (["measure.max_length=4"], "measure.max_length"),
        (["data.format=imdbx"], "unknown format"),
        (["data.columns={text: body}"], "missing column"),
        (["model.chat_template=/nowhere/template.jinja"], "no such file"),
        (["data.eval=/nowhere/eval.csv"], "not found"),
    ]
    for extra, match in cases:
        rc, _, err = _cli(base + _sets(*common, *extra), capsys)
        assert rc == 2, (extra, err)
        err = err.strip()
        assert err.startswith("springback: error:") and "\n" not in err and match in err, (extra, err)
        assert not list((tmp_path / "out").glob("rebound-*")), extra  # no half-made run directory
    assert not (tmp_path / "out" / "_cache").exists()  # nothing was trained
    # align refuses to overwrite, elasticity needs data: one line each.
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    rc, _, err = _cli(["align", "--model", str(models["sp"]), "--data", str(files["hh"]), "--out", str(tmp_path / "full")],
                      capsys)
    assert rc == 2 and "not empty" in err and err.count("\n") == 1
    # Experiments about the worlds' own pre-training refuse a checkpoint instead of measuring something else.
    for experiment in ("dynamics", "compression"):
        rc, _, err = _cli(["run", experiment, "--quiet", "--out", str(tmp_path / "out"), "--set", f"model.path={models['sp']}"],
                          capsys)
        assert rc == 2 and "model.path is not used" in err and err.count("\n") == 1
    # pickled-only weights without the opt-in
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in Path(models["sp"]).iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(str(Path(models["sp"]) / "model.safetensors")), pickled / "pytorch_model.bin")
    rc, _, err = _cli(base + _sets(*common[1:], f"model.path={pickled}"), capsys)
    assert rc == 2 and "allow_pickle" in err and err.count("\n") == 1
