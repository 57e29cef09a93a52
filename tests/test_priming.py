"""Rehearsal priming: the stage-2 stopping rule, the bisection, early stopping, a tiny end-to-end run."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from springback.analysis.curves import area_between
from springback.pipeline.spec import StopRule
from springback.pipeline.stages import _LevelStop, bisect_to_level, interpolate_state
from springback.pipeline.stages import level_rule as stage2_rule


def test_stage2_rule_cases():
    s0, tol = -1.0, 0.005
    assert stage2_rule([(0, 2.0), (32, 0.5), (64, -0.999)], s0, tol) == ("hit", 2, 2)
    assert stage2_rule([(0, 2.0), (32, 0.5), (64, -1.3), (96, -2.0)], s0, tol) == ("bracket", 1, 2)
    assert stage2_rule([(0, 2.0), (32, 0.5)], s0, tol) == ("none", -1, -1)
    assert stage2_rule([(0, -1.5)], s0, tol) == ("start_below", 0, 0)
    # Exactly at the tolerance edge is not a hit (strict inequality, as SPEC §5's |S − S₀| < 0.005).
    assert stage2_rule([(0, 2.0), (32, -0.005)], 0.0, tol)[0] == "bracket"


@pytest.mark.parametrize("f", [lambda x: 1.0 - 3.0 * x ** 3, lambda x: math.cos(3.0 * x), lambda x: -2.0 + 5.0 * x])
def test_bisection_meets_tolerance(f):
    target, tol = 0.3, 1e-4
    x, fx, n = bisect_to_level(f, target, tol, f(0.0), f(1.0))
    assert abs(fx - target) < tol
    assert fx == pytest.approx(f(x))
    assert 0 < n <= 40


def test_bisection_needs_a_bracket_and_reports_its_best():
    with pytest.raises(ValueError):
        bisect_to_level(lambda x: 1.0 + x, 0.0, 1e-3, 1.0, 2.0)
    step = lambda x: 1.0 if x < 0.37 else -1.0  # noqa: E731 - a score that jumps: tolerance unreachable
    x, fx, n = bisect_to_level(step, 0.0, 1e-3, 1.0, -1.0, max_steps=12)
    assert n == 12 and abs(fx) == 1.0 and abs(x - 0.37) < 1e-3


def test_interpolate_state():
    a = {"w": torch.zeros(3), "i": torch.tensor([1, 2])}
    b = {"w": torch.ones(3) * 4, "i": torch.tensor([5, 6])}
    out = interpolate_state(a, b, 0.25)
    assert torch.allclose(out["w"], torch.ones(3))
    assert torch.equal(out["i"], a["i"])


@pytest.mark.parametrize("sets", [["stage2_grid_examples=0"], ["tolerance=0"], ["n_realign=[0]"], ["model.lora_r=4"],
                                  ["data.aligned=x.csv"]])
def test_bad_config_is_one_clear_error_before_training(tmp_path, sets):
    import springback
    from springback.errors import ConfigError

    with pytest.raises(ConfigError):
        springback.run("priming", preset="quick", sets=sets, out=tmp_path, progress=False)
    assert not (tmp_path / "_cache").exists()  # nothing was pre-trained


def test_area_between():
    n = [0, 10, 20]
    assert area_between(n, [0, 1, 2], [0, 0, 0]) == pytest.approx(1.0)  # (5 + 15) / 20
    assert area_between(n, [0, 0, 0], [0, 1, 2]) == pytest.approx(-1.0)
    assert math.isnan(area_between([0], [1], [0]))


def test_training_stops_when_callback_says_so(nano_model, sentiment_world):
    from springback.config import TrainConfig
    from springback.train import train

    model, tok = nano_model
    seen = []
    res = train(copy.deepcopy(model), tok, sentiment_world.opposing(64, 0), TrainConfig(batch_size=8), seed=0,
                measure_at=[0, 16, 32, 48, 64], on_measure=lambda n, m: seen.append(n) or n == 32, progress=False)
    assert seen == [0, 16, 32]
    assert res.n_examples[-1] == 32


class _Toy(torch.nn.Module):
    """A model whose 'score' is one weight; training pushes it down by a fixed step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([3.0]))


def test_level_stop_brackets_and_bisects():
    """Stage 2's stop rule on a stand-in model: S falls 0.7 per 32 examples; it must stop within tolerance."""
    model = _Toy()
    stop = _LevelStop(StopRule("level", "score", tolerance=0.005), level=-1.234)
    for n in range(0, 257, 32):
        if n:
            with torch.no_grad():
                model.w -= 0.7
        if stop.after(n, model, {"score": float(model.w.detach())}):
            break
    rows: list[dict] = []
    summary = stop.settle(model, lambda m: {"score": float(m.w.detach())}, rows,
                          lambda n, values: {"n_examples": n, **values})
    assert summary["status"] == "bracket"
    assert summary["within_tolerance"] and abs(float(model.w.detach()) - (-1.234)) < 0.005
    # S = 3 − 0.7·(n/32): −1.2 at 192 (still above −1.234 − tol), −1.9 at 224: the bracket is 192..224.
    assert 192 < summary["n_stop"] < 224
    assert summary["n_bisect"] >= 1 and all(r["bisect"] for r in rows) and len(rows) == summary["n_bisect"]
    assert summary["n_trained"] == 224


@pytest.mark.slow
def test_priming_end_to_end(tmp_path):
    import springback

    sets = ["worlds=[safety]", "seeds=[0]", "n_align=96", "n_opposing_max=256", "stage2_grid_examples=16",
            "n_realign=[0,16,48]", "stage1_points=2", "world.n_eval_prompts=2", "world.n_task_examples=600",
            "world.n_general_examples=100", "model.preset=nano", "align.lr=1e-3", "opposing.lr=1e-3"]
    run_dir = springback.run("priming", preset="quick", sets=sets, out=tmp_path, progress=False)
    result = json.loads((run_dir / "result.json").read_text())
    (claim,) = result["claims"]
    assert claim["id"] == "priming.primed_realigns_faster"
    cells = claim["details"]["cells"]
    assert len(cells) == 1
    cell = cells[0]
    assert cell["status"] in ("hit", "bracket")  # this tiny run does get back to S₀ within its budget
    assert cell["within_tolerance"] and abs(cell["start_gap"]) < 0.005
    assert math.isfinite(cell["area_per_example"])
    df = springback.load_results(run_dir)
    assert {"base", "align", "return", "stop"} <= set(df.stage)
    assert result["figures"]


# ----------------------------------------------------------------------------- a local Hugging Face model with data files


def _real_sets(tmp_path, eval_rows):
    from hf_tiny import imdb_rows, save, write

    model_dir = save("llama", tmp_path / "model", seed=3, layers=1, hidden=32)
    train = write(imdb_rows(300, seed=1), tmp_path / "train.jsonl")
    ev = write(eval_rows, tmp_path / "eval.csv")
    return ["seeds=[0]", f"model.path={model_dir}", f"data.aligned={train}", f"data.eval={ev}", "data.prefix_words=4",
            "data.n_reference=3", "world.n_eval_prompts=2", "n_align=128", "n_opposing_max=64", "stage2_grid_examples=8",
            "n_realign=[0,16,32]", "stage1_points=1", "align.batch_size=8", "opposing.batch_size=8", "align.lr=3e-2",
            "opposing.lr=3e-2", "measure.n_samples=8", "measure.max_new_tokens=10"]


@pytest.mark.slow
def test_priming_on_a_local_model_sampled_score_when_no_reference_completions(tmp_path):
    """Evaluation data with one label only: no exact S, so the sampled aligned rate (VADER labels
    on samples, fixed seed) drives every stage and the stop uses the sampled tolerance."""
    import springback
    from hf_tiny import imdb_rows

    only_positive = [r for r in imdb_rows(12, seed=2) if r["label"] == 1]
    run_dir = springback.run("priming", preset="quick", sets=_real_sets(tmp_path, only_positive) + ["sampled_tolerance=0.15"],
                             out=tmp_path / "out", progress=False)
    df = springback.load_results(run_dir)
    assert set(df.world) == {"data:train"} and set(df.score_kind.dropna()) == {"sampled_rate"}
    assert df.score.dropna().between(0, 1).all()  # an aligned rate, not a log-odds
    stop = df[df.stage == "stop"].iloc[0]
    assert stop.tolerance == 0.15 and stop.S1 > stop.S0 + 0.15  # stage 1 lifted the sampled rate
    assert stop.status in ("hit", "bracket") and bool(stop.within_tolerance) and abs(stop.gap) < 0.15
    assert set(df[df.stage == "realign"].arm) == {"primed", "control"}
    (claim,) = springback.load_result(run_dir)["claims"]
    assert claim["unit"].startswith("aligned rate") and claim["n_seeds"] == 1


@pytest.mark.slow
def test_priming_on_a_local_model_exact_score_with_reference_completions(tmp_path):
    import springback
    from hf_tiny import imdb_rows

    run_dir = springback.run("priming", preset="quick", sets=_real_sets(tmp_path, imdb_rows(12, seed=2)),
                             out=tmp_path / "out", progress=False)
    df = springback.load_results(run_dir)
    assert set(df.score_kind.dropna()) == {"exact_S"}
    stop = df[df.stage == "stop"].iloc[0]
    assert stop.status in ("hit", "bracket") and abs(stop.gap) < 0.005
