"""`springback elasticity`: the measures on hand-made curves (oracle by hand), and the
benchmark end to end on a tiny world model and on a local HF model with data files and LoRA."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hf_tiny import save, safety_rows, write
from springback.cli import main
from springback.analysis.curves import MEASURES
from springback.analysis.curves import curve_measures as seed_measures

# ----------------------------------------------------------------------------- measures by hand


def test_measures_on_a_piecewise_linear_curve():
    n = np.array([0, 100, 200, 400], float)
    s = np.array([1.0, 0.6, 0.2, 0.1])
    kl = np.array([0.5, 0.1, 0.02, 0.005])
    m = seed_measures(n, s, base=0.2, kl=kl, kl_epsilon=0.01)
    # gain 0.8; half level 0.6 reached at n = 100; base level 0.2 at n = 200.
    assert m["n_half"] == pytest.approx(100.0) and m["n_base"] == pytest.approx(200.0)
    assert m["initial_fall_per_100"] == pytest.approx(0.4)  # (1.0 − 0.2) / 200 examples × 100
    assert m["late_fall_per_100"] == pytest.approx(0.05)  # (0.2 − 0.1) / 200 examples × 100
    assert m["fall_rate_ratio"] == pytest.approx(8.0)
    # KL: 0.02 at 200 → 0.005 at 400 crosses 0.01 at 200 + (0.01/0.015) × 200.
    assert m["n_kl_below_eps"] == pytest.approx(200 + 200 * (0.02 - 0.01) / (0.02 - 0.005))
    assert m["kl_aligned"] == 0.5 and m["score_aligned"] == 1.0 and m["score_final"] == 0.1
    assert set(m) == set(MEASURES)


def test_measures_outside_the_grid_are_nan_not_extrapolated():
    n = np.array([0, 50, 100], float)
    m = seed_measures(n, np.array([0.9, 0.85, 0.8]), base=0.5, kl=np.array([1.0, 0.9, 0.8]), kl_epsilon=0.01)
    for k in ("n_half", "n_base", "initial_fall_per_100", "fall_rate_ratio", "n_kl_below_eps"):
        assert math.isnan(m[k]), k
    # No alignment gain (aligned model not above its base): nothing to lose.
    m = seed_measures(n, np.array([0.4, 0.3, 0.2]), base=0.5, kl=None, kl_epsilon=0.01)
    assert math.isnan(m["n_half"]) and math.isnan(m["kl_aligned"])
    # Unknown base level: the score curve is still reported.
    m = seed_measures(n, np.array([0.9, 0.5, 0.1]), base=float("nan"), kl=None, kl_epsilon=0.01)
    assert m["score_final"] == pytest.approx(0.1) and math.isnan(m["n_half"])


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def world_models(tmp_path_factory):
    """A base and an 'aligned' nano model for the sentiment world: the base is random, the
    aligned one is the base after a short run on aligned examples (enough to move π⁺)."""
    from springback.config import TrainConfig
    from springback.models import build_model, save_model
    from springback.train import train
    from springback.worlds import get_world

    d = tmp_path_factory.mktemp("world")
    world = get_world("sentiment")
    tok = world.tokenizer()
    model = build_model("nano", tok, seed=0)
    save_model(model, tok, d / "base")
    train(model, tok, world.aligned(96, 0), TrainConfig(lr=3e-3, batch_size=16), seed=0, progress=False)
    save_model(model, tok, d / "aligned")
    return d


@pytest.mark.slow
def test_elasticity_on_a_world_model(world_models, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["elasticity", "--model", str(world_models / "aligned"), "--base", str(world_models / "base"),
            "--world", "sentiment", "--out", str(out), "--quiet", "--set", "seeds=[0,1]",
            "--set", "n_opposing=[0,16,32,64]", "--set", "n_eval_prompts=4", "--set", "measure.n_samples=2",
            "--set", "measure.max_new_tokens=12", "--set", "train.lr=3e-3"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary, run_dir = lines[-2], Path(lines[-1])
    assert summary.startswith("elasticity ") and "n_half" in summary and "KL<0.01" in summary
    result = json.loads((run_dir / "result.json").read_text())
    for key in ("experiment", "config_hash", "claims", "figures", "versions", "machine", "timings", "measures",
                "curve", "summary", "metric"):
        assert key in result, key
    assert result["experiment"] == "elasticity" and result["metric"] == "pi_pos"
    assert (run_dir / result["figures"][0]).is_file()
    m = result["measures"]
    assert set(m) == set(MEASURES)
    assert len(m["score_aligned"]["per_seed"]) == 2
    # The short alignment run moved π⁺ above the base's level and opposing data brings it down.
    assert m["score_aligned"]["mean"] > m["score_base"]["mean"]
    assert m["score_final"]["mean"] < m["score_aligned"]["mean"]
    assert m["kl_aligned"]["mean"] > 0
    assert [p["n_opposing"] for p in result["curve"]] == [0, 16, 32, 64]
    for v in m.values():  # intervals bracket the mean whenever they are defined
        if v["ci_low"] is not None and v["mean"] is not None:
            assert v["ci_low"] <= v["mean"] <= v["ci_high"]
    # Repeating the command resumes: every cell is reused, the numbers are identical.
    assert main(args) == 0
    again = json.loads((run_dir / "result.json").read_text())
    assert again["timings"]["cells_run"] == 0 and again["timings"]["cells_skipped"] == 4
    assert again["measures"] == result["measures"]


@pytest.mark.slow
def test_elasticity_on_a_local_model_with_data_files_lora_and_two_scorers(tmp_path):
    import springback

    model = save("neox", tmp_path / "aligned", seed=5)
    data = write(safety_rows(40, seed=1), tmp_path / "harmful.csv")
    ev = write(safety_rows(8, seed=2), tmp_path / "eval.jsonl")
    result = springback.elasticity(
        model=str(model), data=str(data), eval=str(ev), scorers=["refusal", "vader"],
        sets=["seeds=[0]", "n_opposing=[0,8,16]", "n_eval_prompts=2", "measure.n_samples=2", "measure.max_new_tokens=6",
              "model.lora_r=2", "train.batch_size=8", "base_score=0.5"],
        out=tmp_path / "out", progress=False,
    )
    assert result["metric"] == "score"
    assert "agree_refusal~vader" in result["agreement"] and "kappa_refusal~vader" in result["agreement"]
    df = springback.load_results(result["run_dir"])
    assert sorted(df.n_opposing) == [0, 8, 16] and "score_refusal" in df.columns
    assert result["measures"]["score_base"]["mean"] == 0.5  # the given base level, no base model needed
    cfg = (Path(result["run_dir"]) / "config.yaml").read_text()
    assert "lora_r: 2" in cfg and "harmful.csv" in cfg


def test_elasticity_bad_input(tmp_path, capsys):
    model = save("gpt2", tmp_path / "m")
    cases = [
        (["elasticity", "--world", "sentiment"], "give the aligned model"),
        (["elasticity", "--model", str(model)], "no opposing data"),
        (["elasticity", "--model", str(model), "--world", "nowhere"], "unknown world"),
        (["elasticity", "--model", str(model), "--data", str(tmp_path / "missing.jsonl"), "--eval", "x.jsonl"],
         "not found"),
        (["elasticity", "--model", str(model), "--world", "sentiment", "--scorer", "nonsense"], "unknown scorer"),
    ]
    for args, match in cases:
        assert main(args + ["--out", str(tmp_path / "out"), "--quiet"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("springback: error:") and "\n" not in err and match in err, (args, err)
