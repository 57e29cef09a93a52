"""Scaling experiment (SPEC §3.3): checkpoint selection, elasticity measures, trend statistic,
a tiny end-to-end run, and real-checkpoint lists resolved against tiny local HF models."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from springback import api
from springback.config import TrainConfig, WorldConfig
from springback.errors import ConfigError
from springback.experiments import EXPERIMENTS
from springback.analysis.curves import area_above, curve_measures
from springback.analysis.trends import trend_slopes
from springback.config import ModelConfig, to_dict
from springback.experiments.scaling import ScalingConfig, _trend_claim, preset_points
from springback.pipeline import RunContext, pretrain_spec
from springback.pipeline.bases import (
    examples_at_token_budgets,
    pretrained_base,
    pretrained_snapshots,
    pretraining_order,
    pretraining_token_counts,
    shares_base,
)
from springback.models import build_model, load_model, save_model
from springback.train import train
from springback.worlds import get_world

REPO = Path(__file__).resolve().parents[1]
TINY_WORLD = WorldConfig(n_task_examples=96, n_general_examples=32, n_eval_prompts=4)  # 128 examples
PRETRAIN = TrainConfig(lr=2e-3, batch_size=32, max_length=64)


def _ctx(root: Path) -> RunContext:
    return RunContext(root / "run", root / "cache", progress=False)


def _spec(world_cfg: WorldConfig, seed: int, budgets: tuple = (), at: int = 0, pretrain: TrainConfig = PRETRAIN):
    return pretrain_spec("sentiment", world_cfg, ModelConfig(preset="nano"), pretrain, seed, snapshots=budgets, at=at)


def _weights(path: str) -> dict[str, torch.Tensor]:
    model, _ = load_model(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- checkpoint selection


def test_examples_at_token_budgets_picks_first_example_reaching_budget():
    counts = [3, 5, 2, 4]  # cumulative 3, 8, 10, 14
    assert examples_at_token_budgets(counts, [0, 1, 3, 4, 8, 9, 14]) == [0, 1, 1, 2, 2, 3, 4]
    with pytest.raises(ConfigError, match="exceeds"):
        examples_at_token_budgets(counts, [15])
    with pytest.raises(ConfigError):
        examples_at_token_budgets(counts, [-1])


def test_pretraining_order_is_the_order_train_visits(monkeypatch):
    """The token-budget conversion relies on knowing train()'s data order."""
    import springback.objectives as tr  # train's SFT objective collates each micro-batch

    world = get_world("sentiment")
    tok = world.tokenizer()
    corpus = world.pretrain_corpus(30, 10, 0.2, seed=3)
    seen: list[tuple] = []
    real = tr.collate

    def spy(batch, pad_id):
        seen.extend(tuple(e.input_ids) for e in batch)
        return real(batch, pad_id)

    monkeypatch.setattr(tr, "collate", spy)
    train(build_model("nano", tok, 0), tok, corpus, TrainConfig(batch_size=8, epochs=2), seed=3, loss_on="all",
          progress=False)
    from springback.tokens import encode

    encoded = [tuple(encode(tok, ex.prompt, ex.response, "all", 64).input_ids) for ex in corpus]
    assert seen == [encoded[i] for i in pretraining_order(len(corpus), 3, epochs=2)]
    counts = pretraining_token_counts(_spec(WorldConfig(n_task_examples=30, n_general_examples=10), 3,
                                            pretrain=TrainConfig(epochs=2)))
    assert counts == [len(t) for t in seen]


def test_checkpoints_are_prefixes_of_one_run_and_final_is_the_shared_base(tmp_path):
    world = get_world("sentiment")
    tok = world.tokenizer()
    ctx = _ctx(tmp_path / "a")
    paths = pretrained_snapshots(ctx, _spec(TINY_WORLD, 0, (0, 32, 64, 128)))
    assert sorted(paths) == [0, 32, 64, 128]
    assert shares_base([0, 32, 64, 128], to_dict(PRETRAIN), 128)
    # The last checkpoint is published as the base and is bit-identical to an independent pretrained_base.
    assert "/bases/" in paths[128]
    independent = pretrained_base(_ctx(tmp_path / "b"), _spec(TINY_WORLD, 0))
    assert _same(_weights(paths[128]), _weights(independent))
    # ... and pretrained_base in the same cache reuses it instead of training again.
    assert pretrained_base(ctx, _spec(TINY_WORLD, 0)) == paths[128]
    # Budget 0 is the fresh initialisation; budget 64 is the model after the first 64 examples of the run.
    assert _same(_weights(paths[0]), {k: v for k, v in build_model("nano", tok, 0).state_dict().items()})
    corpus = world.pretrain_corpus(96, 32, 0.2, 0)
    prefix = [corpus[i] for i in pretraining_order(len(corpus), 0)[:64]]
    model = build_model("nano", tok, 0)
    train(model, tok, prefix, PRETRAIN, seed=0, loss_on="all", shuffle=False, progress=False)
    assert _same(_weights(paths[64]), model.state_dict())
    assert not _same(_weights(paths[32]), _weights(paths[64]))


def test_off_boundary_budget_keeps_final_private(tmp_path):
    assert not shares_base([40, 128], to_dict(PRETRAIN), 128)
    paths = pretrained_snapshots(_ctx(tmp_path), _spec(TINY_WORLD, 1, (40, 128)))
    assert "/checkpoints/" in paths[128] and not (tmp_path / "cache" / "bases").exists()
    with pytest.raises(ConfigError, match="outside"):
        pretrained_snapshots(_ctx(tmp_path), _spec(TINY_WORLD, 1, (256,)))


def test_cross_and_full_grids():
    cfg = ScalingConfig(sizes=["mini", "nano", "micro"], budgets=[10, 100, 1000])
    pts = preset_points(cfg, vocab_size=88)
    assert [(p.size, p.budget) for p in pts] == [("nano", "1000"), ("micro", "1000"), ("mini", "1000"),
                                                  ("mini", "10"), ("mini", "100")]
    full = preset_points(dataclasses.replace(cfg, grid="full", data_size="micro"), vocab_size=88)
    assert len(full) == 9
    assert [(p.size, p.budget) for p in preset_points(dataclasses.replace(cfg, data_size="nano"), 88)][3:] == [
        ("nano", "10"), ("nano", "100")]


def test_quick_preset_spans_ten_times_in_parameters():
    from springback.models import preset_parameters

    cfg = api.resolve_config("scaling", "quick")
    params = [preset_parameters(s, 88) for s in cfg.sizes]
    assert len(cfg.sizes) >= 3 and max(params) >= 10 * min(params)
    assert len(cfg.budgets) >= 3 and max(cfg.budgets) == cfg.world.n_task_examples + cfg.world.n_general_examples
    assert all(b % cfg.pretrain.batch_size == 0 for b in cfg.budgets)  # final checkpoint = the shared base


# ----------------------------------------------------------------------------- measures and trend statistic


def test_curve_measures_on_a_hand_worked_curve():
    n = np.array([0, 10, 20, 30, 40.0])
    s = np.array([3, 2, 1, 0.5, 0.25])
    kl = np.array([2.0, 1.0, 0.5, 0.2, 0.05])
    m = curve_measures(n, s, 1.0, kl, 0.1)
    assert m["n_base"] == pytest.approx(20)
    assert m["initial_fall_per_100"] == pytest.approx(10.0)  # (3 − 1) / 20 examples
    assert m["late_fall_per_100"] == pytest.approx(3.75)  # (1 − 0.25) / 20
    assert m["area_above_base"] == pytest.approx(0.2)  # (15 + 5) / 100
    assert m["n_kl_below_eps"] == pytest.approx(30 + 10 * (0.2 - 0.1) / 0.15)
    assert m["n_half"] == pytest.approx(10)  # half of the gain 3 − 1 is lost at s = 2
    # KL that starts below ε needs no opposing examples at all.
    assert curve_measures(n, s, 1.0, kl * 0.01, 0.1)["n_kl_below_eps"] == 0.0
    # A crossing inside a segment counts only the part above the level.
    assert area_above(np.array([0, 10.0]), np.array([2.0, 0.0]), 1.0) == pytest.approx(2.5)


def _synthetic_cells(true_slope: float, seeds=range(5), noise=0.05) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for x in [2e4, 1.3e5, 4.5e5, 2e6]:
            for n_pos in [500, 2000]:
                y = 1.0 + true_slope * math.log10(x) + 0.3 * (n_pos == 2000) + rng.normal(0, noise)
                rows.append({"seed": seed, "n_params": x, "n_pos": n_pos, "m": y})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("true_slope", [0.7, -0.4])
def test_trend_statistic_recovers_a_known_slope(true_slope):
    cells = _synthetic_cells(true_slope)
    slopes = trend_slopes(cells, "m", "n_params")
    assert set(slopes) == set(range(5))
    assert all(abs(v - true_slope) < 0.1 for v in slopes.values())
    claim = _trend_claim("t", "", "", cells, "m", "n_params", +1.0, "u", list(range(5)))
    assert claim.ci_low < true_slope < claim.ci_high
    assert claim.verdict == ("reproduced" if true_slope > 0 else "not_reproduced")
    flipped = _trend_claim("t", "", "", cells, "m", "n_params", -1.0, "u", list(range(5)))
    assert flipped.effect == pytest.approx(-claim.effect)


def test_trend_statistic_without_a_trend_is_inconclusive_and_skips_nan():
    cells = _synthetic_cells(0.0, noise=0.3)
    claim = _trend_claim("t", "", "", cells, "m", "n_params", +1.0, "u", list(range(5)))
    assert claim.verdict == "inconclusive"
    with_nan = _synthetic_cells(0.5)
    with_nan.loc[with_nan.n_params == 2e6, "m"] = float("nan")  # e.g. curves that never cross
    slopes = trend_slopes(with_nan, "m", "n_params")
    assert all(abs(v - 0.5) < 0.1 for v in slopes.values())


# ----------------------------------------------------------------------------- end to end

TINY_SETS = ["seeds=[0,1]", "n_pos=[40]", "n_neg=[0,16,32]", "world.n_task_examples=96", "world.n_general_examples=32",
             "world.n_eval_prompts=2", "measure.n_samples=1", "measure.vader=false"]


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_five_claims_and_figures(tmp_path):
    """nano only, two token budgets of one pre-training run: claims, rows, figures, resume."""
    sets = TINY_SETS + ["sizes=[nano]", "data_size=", "budget_unit=tokens", "budgets=[300,1500]"]
    run_dir = api.run("scaling", preset="quick", sets=sets, out=tmp_path, progress=False)
    result = api.load_result(run_dir)
    ids = [c["id"] for c in result["claims"]]
    assert ids == ["scaling.size_faster_initial_fall", "scaling.size_slower_late_fall", "scaling.data_faster_initial_fall",
                   "scaling.data_slower_late_fall", "scaling.small_budget_barely_elastic"]
    assert all(c["verdict"] in ("reproduced", "not_reproduced", "absent", "inconclusive") for c in result["claims"])
    df = api.load_results(run_dir)
    base = df[df.stage == "base"]
    assert base.budget_unit.unique().tolist() == ["tokens"]
    # Token budgets pick the first example count whose tokens reach them, per seed's data order.
    for seed in (0, 1):
        counts = pretraining_token_counts(_spec(WorldConfig(n_task_examples=96, n_general_examples=32), seed,
                                                pretrain=api.resolve_config("scaling", "quick").pretrain))
        got = base[base.seed == seed].sort_values("budget_n").pretrain_examples.tolist()
        assert got == examples_at_token_budgets(counts, [300, 1500])
    # Each budget has its own base level: the two checkpoints score differently before alignment.
    assert base.groupby("budget").score_S.mean().nunique() == 2
    assert len(df[df.stage == "opposing"]) == 2 * 2 * 3  # seeds × budgets × n⁻ points
    figs = [Path(run_dir) / f for f in result["figures"]]
    assert figs and all(f.is_file() for f in figs)
    assert any("summary" in f.name for f in figs) and any("_data_" in f.name for f in figs)
    # Re-running the same config does no work.
    again = api.run("scaling", preset="quick", sets=sets, out=tmp_path, progress=False)
    assert api.load_result(again)["timings"]["cells_run"] == 0


def _tiny_hf_model(directory: Path, preset: str, seed: int) -> str:
    tok = get_world("sentiment").tokenizer()
    save_model(build_model(preset, tok, seed), tok, directory)
    return str(directory)


@pytest.mark.parametrize("name", ["scaling_qwen15.yaml", "scaling_tinyllama.yaml"])
def test_paper_configs_resolve(name):
    cfg = api.resolve_config("scaling", None, REPO / "configs" / "paper" / name)
    assert len(cfg.checkpoints) >= 3 and all(c.path for c in cfg.checkpoints)
    if "qwen" in name:
        assert len({c.size for c in cfg.checkpoints}) == 3 and len({c.budget for c in cfg.checkpoints}) == 1
    else:
        assert len({c.size for c in cfg.checkpoints}) == 1 and all(c.train_tokens > 0 for c in cfg.checkpoints)


def _imdb_like_csv(path: Path, seed: int, n_each: int) -> str:
    """IMDb-format rows (text, label) in the sentiment world's words, so the tiny tokenizer knows them."""
    import random

    world = get_world("sentiment")
    rng = random.Random(seed)
    rows = [(f"{rng.choice(world.train_prompts)} {rng.choice(resp)}", label)
            for label, resp in ((1, world.aligned_responses), (0, world.opposing_responses)) for _ in range(n_each)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


@pytest.mark.slow
def test_real_checkpoint_list_against_local_models(tmp_path):
    """The TinyLlama config's data axis, each checkpoint swapped for a tiny local model and
    IMDb for a small local file in IMDb format (the hub is not reachable here)."""
    data = yaml.safe_load((REPO / "configs" / "paper" / "scaling_tinyllama.yaml").read_text())
    ckpts = data["checkpoints"][:2]
    for i, c in enumerate(ckpts):
        c["path"] = _tiny_hf_model(tmp_path / f"m{i}", "nano", seed=i)
    data["checkpoints"] = ckpts
    data["data"].update({"aligned": _imdb_like_csv(tmp_path / "train.csv", 0, 40),
                         "eval": _imdb_like_csv(tmp_path / "eval.csv", 1, 8),
                         "scorers": ["vader"], "label_map": "", "n_reference": 4})
    data.update({"seeds": [0], "n_pos": [30], "n_neg": [0, 10, 20], "world": {"n_eval_prompts": 2},
                 "measure": {"n_samples": 1}, "model": {}, "align": {}, "opposing": {}})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(data))
    run_dir = api.run("scaling", preset=None, config=cfg_file, out=tmp_path / "out", progress=False)
    df = api.load_results(run_dir)
    base = df[df.stage == "base"]
    assert sorted(base.budget.unique()) == sorted(c["budget"] for c in ckpts)
    assert base.world.unique().tolist() == ["data:train"]
    n_nano = sum(p.numel() for p in build_model("nano", get_world("sentiment").tokenizer(), 0).parameters())
    assert base.n_params.tolist() == [n_nano, n_nano]  # counted from the loaded checkpoints
    assert sorted(base.budget_n) == sorted(float(c["train_tokens"]) for c in ckpts)
    assert len(df[df.stage == "opposing"]) == 2 * 3
    claims = {c["id"]: c for c in api.load_result(run_dir)["claims"]}
    assert claims["scaling.size_faster_initial_fall"]["verdict"] == "inconclusive"  # one size: no size trend
    assert claims["scaling.data_faster_initial_fall"]["details"]["reference_size"] == "1.1B"


def test_bad_inputs_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown size preset"):
        api.run("scaling", sets=["sizes=[huge]"], out=tmp_path)
    with pytest.raises(ConfigError, match="grid"):
        api.run("scaling", sets=["grid=diagonal"], out=tmp_path)
    with pytest.raises(ConfigError, match="data_size"):
        api.run("scaling", sets=["data_size=small"], out=tmp_path)
    assert "scaling" in EXPERIMENTS
