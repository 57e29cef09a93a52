"""Resistance (forward vs inverse alignment): pairing, the excess-loss control, exact target
entropy, the analysis verdicts, a local Hugging Face model on a local JSON file, and a tiny
end-to-end run."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
import torch

import springback
from springback.analysis import NOT_REPRODUCED, REPRODUCED
from springback.config import TrainConfig, resolve
from springback.errors import ConfigError
from springback.experiments.resistance import (
    FORWARD,
    INVERSE,
    PRESETS,
    ResistanceConfig,
    checkpoint_points,
    direction_run,
    pair_rows,
)
from springback.experiments.resistance import claims as analyze
from springback.measure.answers import dataset_loss, exact_answer_stats
from springback.measure import alignment_measure
from springback.models import build_model
from springback.worlds import get_world
from springback.worlds.base import ALIGNED, Example, build_word_tokenizer


@pytest.fixture(scope="module")
def world_and_tok():
    w = get_world("sentiment")
    return w, w.tokenizer()


def _uniform(model: torch.nn.Module) -> torch.nn.Module:
    """Zero the final norm: every hidden state is 0, so every logit is 0 — a uniform model."""
    with torch.no_grad():
        model.model.norm.weight.zero_()
    return model


def _cfg(**kw) -> ResistanceConfig:
    cfg = resolve(ResistanceConfig, PRESETS, "quick")
    return dataclasses.replace(cfg, **kw)


# ----------------------------------------------------------------------------- known answers


def test_uniform_model_losses_and_target_entropy_are_log_vocab(world_and_tok):
    """A uniform model's per-token loss is log V on any data, so is the exact entropy of its
    sampling distribution (per token), and q's mass on a completion of n tokens is V^-n."""
    w, tok = world_and_tok
    model = _uniform(build_model("nano", tok, seed=0)).eval()
    v = len(tok)
    examples = [Example(p, r, ALIGNED) for p, r in zip(w.eval_prompts(3), w.aligned_responses[:3])]
    assert dataset_loss(model, tok, examples) == pytest.approx(math.log(v), abs=1e-5)
    a, n = w.aligned_responses[:4], w.opposing_responses[:3]
    stats = exact_answer_stats(model, tok, w.eval_prompts(2), a, n, temperature=0.5, top_p=1.0)
    assert stats["target_entropy"] == pytest.approx(math.log(v), abs=1e-5)
    n_tok = [len(tok(c, add_special_tokens=False).input_ids) + 1 for c in a + n]  # + EOS
    assert stats["target_coverage"] == pytest.approx(sum(v ** -k for k in n_tok), rel=1e-4)
    assert stats["pi_pos"] == pytest.approx(sum(v ** -k for k in n_tok[:4]) / sum(v ** -k for k in n_tok), rel=1e-4)


def test_exact_stats_match_alignment_measure(world_and_tok):
    w, tok = world_and_tok
    model = build_model("nano", tok, seed=3).eval()
    prompts, (a, n) = w.eval_prompts(3), w.reference_sets()
    ref = alignment_measure(model, tok, prompts, a[:10], n[:7]).summary()
    mine = exact_answer_stats(model, tok, prompts, a[:10], n[:7], temperature=1.0, top_p=1.0)
    for k in ("pi_pos", "score_S", "coverage"):
        assert mine[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9)
    # At temperature 1 with no top-p cut the sampler's distribution is the model's own.
    assert mine["target_coverage"] == pytest.approx(mine["coverage"], rel=1e-6)


def test_excess_loss_is_zero_when_the_learner_is_the_writer(world_and_tok):
    """Training loss − writer's own loss: with a learner identical to the writer and a vanishing
    learning rate every update's loss is the writer's loss on that batch, so the excess of the
    mean loss over the run is 0 (equal batch sizes; the same per-example reduction)."""
    w, tok = world_and_tok
    writer = build_model("nano", tok, seed=1).eval()
    targets = [Example(p, r, ALIGNED) for p in w.eval_prompts(4) for r in w.aligned_responses[:2]]  # 8 examples
    gen = dataset_loss(writer, tok, targets)
    cfg = _cfg(finetune=TrainConfig(lr=1e-12, batch_size=4, epochs=2))
    cfg = dataclasses.replace(cfg, answers=dataclasses.replace(cfg.answers, n_kl_samples=0))
    row = direction_run(writer, writer, tok, targets, gen, cfg.answers, cfg.finetune, {}, w.eval_prompts(4), seed=0)
    assert row["generator_loss"] == gen
    assert row["excess_mean_loss"] == pytest.approx(0.0, abs=1e-5)
    assert row["n_updates"] == 4 and row["n_examples"] == 16 and len(row["curve_loss"]) == 4
    # ... and a (frozen) uniform learner's excess is exactly log V − the writer's loss.
    uniform = _uniform(build_model("nano", tok, seed=2)).eval()
    row2 = direction_run(uniform, writer, tok, targets, gen, cfg.answers, cfg.finetune, {}, w.eval_prompts(4), seed=0)
    assert row2["mean_loss"] == pytest.approx(math.log(len(tok)), abs=1e-5)
    assert row2["excess_mean_loss"] == pytest.approx(math.log(len(tok)) - gen, abs=1e-5)


# ----------------------------------------------------------------------------- pairing


def test_forward_and_inverse_are_paired(world_and_tok):
    """Every pair runs both directions with the same prompts, example count, updates and
    hyper-parameters; inverse = later checkpoint learns the earlier one's answers."""
    w, tok = world_and_tok
    ckpts = [build_model("nano", tok, seed=s).eval() for s in (10, 11, 12)]
    prompts = w.eval_prompts(3)
    # Answers of different lengths per checkpoint (as real answers are), same prompts and order.
    answers = [[Example(p, w.aligned_responses[k] if k < 2 else w.opposing_responses[0], ALIGNED) for p in prompts]
               for k in range(3)]
    gen = [dataset_loss(m, tok, a) for m, a in zip(ckpts, answers)]
    cfg = _cfg(finetune=TrainConfig(lr=1e-3, batch_size=2, epochs=2))
    cfg = dataclasses.replace(cfg, answers=dataclasses.replace(cfg.answers, n_kl_samples=1, max_new_tokens=6))
    rows = pair_rows(ckpts, answers, gen, tok, cfg.answers, cfg.finetune, {}, prompts, seed=0)
    df = pd.DataFrame(rows)
    assert sorted(df.pair.unique()) == ["1-2", "1-3", "2-3"]
    for pair, g in df.groupby("pair"):
        inv, fwd = g[g.direction == INVERSE].iloc[0], g[g.direction == FORWARD].iloc[0]
        assert (inv.learner, inv.writer) == (fwd.writer, fwd.learner) == (inv.j, inv.i)
        assert inv.n_examples == fwd.n_examples == 6 and inv.n_updates == fwd.n_updates == 3
        assert inv.curve_n_examples == fwd.curve_n_examples
        assert inv.generator_loss == gen[inv.writer - 1] and fwd.generator_loss == gen[fwd.writer - 1]
        assert {"kl_before", "kl_after", "kl_change"} <= set(g.columns)
    # the model objects passed in are not modified (each direction trains a copy)
    assert dataset_loss(ckpts[0], tok, answers[0]) == gen[0]


def test_checkpoint_points():
    assert checkpoint_points(1000, [0.25, 0.5, 0.75]) == [250, 500, 750]
    for bad in ([0.5], [0.5, 0.25], [0.0, 0.5], [0.5, 1.5], [0.5, 0.5001]):
        with pytest.raises(ConfigError):
            checkpoint_points(1000, bad)


# ----------------------------------------------------------------------------- analysis


def _frame(raw_gap: float, writer_gap: float, seeds=(0, 1, 2)) -> pd.DataFrame:
    """finetune rows where forward's loss exceeds inverse's by ``raw_gap`` (± 0.002 across seeds,
    mean exactly ``raw_gap``) and forward's writer (θj) has ``writer_gap`` higher own loss on its
    answers than inverse's writer (θi)."""
    rows = []
    for seed in seeds:
        for pair, gi, gj in (("1-2", 1.0, 1.0 + writer_gap), ("2-3", 0.9, 0.9 + writer_gap)):
            noise = 0.002 * seed
            inv = 0.5 + noise
            rows.append({"stage": "finetune", "world": "w", "model": "nano", "seed": seed, "pair": pair,
                         "direction": INVERSE, "mean_loss": inv, "generator_loss": gi, "excess_mean_loss": inv - gi,
                         "final_loss": inv, "kl_change": 0.1})
            fwd = inv + raw_gap + 0.002 * (seed - 1)  # seeds differ: a real interval, not a zero-width one
            rows.append({"stage": "finetune", "world": "w", "model": "nano", "seed": seed, "pair": pair,
                         "direction": FORWARD, "mean_loss": fwd, "generator_loss": gj, "excess_mean_loss": fwd - gj,
                         "final_loss": fwd, "kl_change": 0.1 + raw_gap + noise})
    return pd.DataFrame(rows)


def test_analysis_flags_a_raw_result_explained_by_target_entropy():
    # Forward targets are harder to predict by 0.3 (their writer's own loss), forward loss only 0.1 higher:
    # raw says inverse is easier, excess (0.1 − 0.3 = −0.2) says the opposite.
    claims = {c.id: c for c in analyze(_frame(raw_gap=0.1, writer_gap=0.3), ResistanceConfig())}
    raw, excess = claims["resistance.inverse_lower_loss"], claims["resistance.inverse_lower_excess_loss"]
    assert raw.verdict == REPRODUCED and raw.effect == pytest.approx(0.1)
    assert raw.details["n_cells"] == 2 and raw.details["fraction_cells_holding"] == 1.0
    assert excess.verdict == NOT_REPRODUCED and excess.effect == pytest.approx(-0.2)
    assert excess.details["raw_explained_by_target_entropy"] is True
    assert "explained by" in excess.statement
    assert claims["resistance.inverse_smaller_kl_change"].verdict == REPRODUCED


def test_analysis_when_the_control_agrees():
    claims = {c.id: c for c in analyze(_frame(raw_gap=0.1, writer_gap=-0.05), ResistanceConfig())}
    excess = claims["resistance.inverse_lower_excess_loss"]
    assert excess.verdict == REPRODUCED and excess.effect == pytest.approx(0.15)
    assert excess.details["raw_explained_by_target_entropy"] is False
    cells = claims["resistance.inverse_lower_loss"].details["cells"]
    assert {c["pair"] for c in cells} == {"1-2", "2-3"} and all(c["n_seeds"] == 3 for c in cells)


# ----------------------------------------------------------------------------- real model + data file


def _tiny_hf_model_and_data(tmp_path):
    """A tiny GPT-2 with a word-level tokenizer, saved like any HF checkpoint, and an Alpaca-format JSON file."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from springback.data import load_examples

    subjects = ["cats", "dogs", "rivers", "stars", "trees", "boats", "books", "lamps", "birds", "clouds"]
    rows = [{"instruction": f"Describe {s} in one line.", "input": "", "output": f"{s} are {adj} and {adj2} ."}
            for s in subjects for adj, adj2 in (("nice", "calm"), ("big", "old"))]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(rows))
    texts = [t for e in load_examples(str(data), "alpaca") for t in (e.prompt, e.response)]
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>"] + sorted({w for t in texts for w in t.split()})
    tok = build_word_tokenizer(vocab)
    cfg = GPT2Config(vocab_size=len(vocab), n_positions=96, n_embd=16, n_layer=1, n_head=2,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model_dir = tmp_path / "tiny-gpt2"
    GPT2LMHeadModel(cfg).save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    return model_dir, data


@pytest.mark.slow
def test_local_hf_model_on_local_json_file(tmp_path):
    """A saved tiny GPT-2 + Alpaca JSON, with LoRA fine-tuning (adapters merged into each checkpoint)."""
    model_dir, data = _tiny_hf_model_and_data(tmp_path)
    run_dir = springback.run(
        "resistance", preset="quick", out=tmp_path / "runs", progress=False,
        sets=[f"model.path={model_dir}", f"data.aligned={data}", "data.format=alpaca", "n_heldout_prompts=4",
              "n_align_examples=0", "seeds=[0]", "answers.n_answers=1", "answers.max_new_tokens=8",
              "answers.n_kl_samples=1", "finetune.batch_size=2", "finetune.epochs=1", "model.lora_r=2"],
    )
    df = springback.load_results(run_dir)
    ft = df[df.stage == "finetune"]
    assert set(ft.world) == {"data:alpaca"} and set(ft["model"]) == {"tiny-gpt2"}
    assert len(ft) == 6 and set(ft.direction) == {FORWARD, INVERSE}
    assert ft.n_examples.nunique() == 1 and ft.n_examples.iloc[0] == 4  # 4 held-out prompts × 1 answer
    ck = df[df.stage == "checkpoint"]
    # 20 examples on 10 prompts; 4 prompts (8 examples) held out → 12 SFT examples → θ at 3 / 6 / 9
    assert ck.n_align_seen.tolist() == [3, 6, 9]
    assert "target_entropy" not in df.columns or ck.target_entropy.isna().all()  # no exact answer sets for real data
    assert all(math.isfinite(v) for v in ft.mean_loss) and all(math.isfinite(v) for v in ft.excess_mean_loss)
    result = springback.load_result(run_dir)
    assert {c["id"] for c in result["claims"]} == {"resistance.inverse_lower_loss", "resistance.inverse_lower_excess_loss",
                                                   "resistance.inverse_smaller_kl_change"}


def test_real_data_needs_a_model_path(tmp_path):
    with pytest.raises(ConfigError, match="model.path"):
        springback.run("resistance", preset="quick", out=tmp_path, progress=False, sets=["data.aligned=x.json"])


@pytest.mark.parametrize("bad", ["worlds=[nope]", "sizes=[huge]", "answers.n_answers=0", "checkpoint_fractions=[0.5]",
                                 "n_align_examples=0", "seeds=[]"])
def test_bad_input_fails_before_training(tmp_path, bad):
    with pytest.raises(ConfigError):
        springback.run("resistance", preset="quick", out=tmp_path, progress=False, sets=[bad])
    assert not list((tmp_path / "_cache").glob("bases/*"))  # nothing was trained


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_end_to_end_run_and_resume(tmp_path):
    sets = ["worlds=[truthful]", "sizes=[nano]", "seeds=[0,1]", "world.n_task_examples=300",
            "world.n_general_examples=60", "world.n_eval_prompts=4", "n_align_examples=120",
            "answers.n_answers=1", "answers.max_new_tokens=12", "answers.n_kl_samples=1", "finetune.epochs=1",
            "finetune.batch_size=2"]
    run_dir = springback.run("resistance", preset="quick", out=tmp_path, progress=False, sets=sets)
    result = springback.load_result(run_dir)
    claims = {c["id"]: c for c in result["claims"]}
    assert set(claims) == {"resistance.inverse_lower_loss", "resistance.inverse_lower_excess_loss",
                           "resistance.inverse_smaller_kl_change"}
    raw = claims["resistance.inverse_lower_loss"]
    assert raw["n_seeds"] == 2 and raw["details"]["n_cells"] == 3
    assert raw["verdict"] in ("reproduced", "not_reproduced", "absent", "inconclusive")
    df = springback.load_results(run_dir)
    ck = df[df.stage == "checkpoint"]
    assert len(ck) == 6 and ck.target_coverage.between(0, 1 + 1e-9).all()
    # the exact entropy is undefined only where the sampler cannot write any answer of A ∪ N
    # (this tiny base often cannot); then its mass there is 0
    assert (ck[pd.to_numeric(ck.target_entropy).isna()].target_coverage == 0).all()
    assert ck.groupby("seed").n_align_seen.apply(list).tolist() == [[30, 60, 90]] * 2
    assert any(p.endswith("resistance_heatmap_mean_loss.png") for p in result["figures"])
    assert (run_dir / "figures" / "resistance_loss_curves.png").exists()
    again = springback.run("resistance", preset="quick", out=tmp_path, progress=False, sets=sets)
    assert again == run_dir and springback.load_result(run_dir)["timings"]["cells_skipped"] == 2
