"""Dynamics experiment: the softmax trace, analysis helpers, and a tiny end-to-end run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from springback.analysis.correlation import pearson, slope_through_origin
from springback.analysis.curves import half_gain_examples
from springback.experiments.dynamics import measurement_grid
from springback.measure.forces import softmax_trace


def test_softmax_trace_first_order_and_phases():
    rows = softmax_trace(6, 5, narrowness=2, seed=0, lr=0.05, n_steps=400, start_score=math.log(0.25), gain=1.0)
    steps = [r for r in rows if math.isfinite(r["delta_S"])]
    pred = np.array([r["predicted_delta_S"] for r in steps])
    exact = np.array([r["delta_S"] for r in steps])
    # First order with a small step: every step's exact ΔS within 5% of η(F_drive + F_rebound).
    assert np.all(np.abs(exact - pred) <= 0.05 * np.abs(exact) + 1e-12)
    align = [r for r in rows if r["stage"] == "align"]
    opp = [r for r in rows if r["stage"] == "opposing"]
    assert align[0]["score_S"] == pytest.approx(math.log(0.25), abs=1e-9)  # starts at the requested level
    assert align[-1]["score_S"] >= align[0]["score_S"] + 1.0  # stopped once the gain was reached ...
    assert align[-1]["step"] < 400  # ... not at the step cap
    assert opp[-1]["score_S"] < opp[0]["score_S"]  # opposing data lowers S
    assert all(r["f_drive"] > 0 for r in align[:-1]) and all(r["f_drive"] < 0 for r in opp[:-1])


def test_softmax_narrow_rebounds_faster_in_the_tabular_model():
    """The prediction the networks are checked against: in the softmax model, narrower alignment
    (fewer aligned templates, larger C_A) loses half of a matched gain in fewer opposing steps."""
    n_half = {}
    for k in (1, 8):
        rows = softmax_trace(16, 16, narrowness=k, seed=1, lr=0.5, n_steps=3000, start_score=-1.0, gain=2.0)
        al = [r for r in rows if r["stage"] == "align"]
        op = [r for r in rows if r["stage"] == "opposing"]
        n_half[k] = half_gain_examples([r["step"] for r in op], [r["score_S"] for r in op], al[0]["score_S"])
    assert n_half[1] < n_half[8]


def test_half_gain_examples():
    n = [0, 10, 20, 30]
    # S₀ = 0, S₁ = 4: level 2, crossed between 10 (3) and 20 (1) at 15.
    assert half_gain_examples(n, [4.0, 3.0, 1.0, 0.5], 0.0) == pytest.approx(15.0)
    assert math.isnan(half_gain_examples(n, [4.0, 3.5, 3.0, 2.5], 0.0))  # never reached
    assert math.isnan(half_gain_examples(n, [-1.0, -2.0, -3.0, -4.0], 0.0))  # no gain


def test_grid_and_statistics():
    assert measurement_grid(100, 32) == [0, 32, 64, 96, 100]
    assert measurement_grid(64, 32) == [0, 32, 64]
    with pytest.raises(ValueError):
        measurement_grid(10, 0)
    assert pearson([1, 2, 3, float("nan")], [2, 4, 6, 1]) == pytest.approx(1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert slope_through_origin([1, 2], [2, 4]) == pytest.approx(2.0)


@pytest.mark.parametrize("sets", [["window_examples=0"], ["narrowness=[]"], ["narrowness=[-1]"], ["softmax_lr=0"]])
def test_bad_config_is_one_clear_error_before_training(tmp_path, sets):
    import springback
    from springback.errors import ConfigError

    with pytest.raises(ConfigError):
        springback.run("dynamics", preset="quick", sets=sets, out=tmp_path, progress=False)
    assert not (tmp_path / "_cache").exists()  # nothing was pre-trained


@pytest.mark.slow
def test_dynamics_end_to_end(tmp_path):
    import springback

    sets = ["worlds=[safety]", "seeds=[0,1]", "narrowness=[1,0]", "n_align=96", "align_gain=0.5", "n_opposing=64",
            "window_examples=16", "world.n_eval_prompts=2", "world.n_task_examples=600", "world.n_general_examples=100",
            "model.preset=nano", "align.lr=1e-3", "opposing.lr=1e-3", "softmax_steps=200"]
    run_dir = springback.run("dynamics", preset="quick", sets=sets, out=tmp_path, progress=False)
    result = json.loads((run_dir / "result.json").read_text())
    ids = [c["id"] for c in result["claims"]]
    assert ids == ["dynamics.softmax_identity", "dynamics.forces_predict_delta_s", "dynamics.rebound_pulls_to_zero",
                   "dynamics.narrow_rebounds_faster"]
    assert result["claims"][0]["effect"] > 0.99  # the identity holds in the softmax model
    df = springback.load_results(run_dir)
    net = df[df.kind == "network"]
    assert set(net.narrowness) == {0, 1} and set(net.stage) == {"align", "opposing"}
    # The measured ΔS of a window is the difference of consecutive scores.
    g = net[(net.seed == 0) & (net.narrowness == 1) & (net.stage == "opposing")].sort_values("n_examples")
    assert np.allclose(g.delta_S.iloc[:-1].to_numpy(), np.diff(g.score_S.to_numpy()))
    assert len(result["figures"]) == 2
