import json
import math

import numpy as np
import pandas as pd
import pytest

from springback.analysis.curves import crossing, fall_rates
from springback.experiments.rebound import ReboundConfig, claims


def test_crossing_interpolates():
    n = np.array([0, 10, 20, 40.0])
    s = np.array([4.0, 2.0, -1.0, -2.0])
    assert crossing(n, s, 0.0) == pytest.approx(10 + 10 * 2 / 3)
    assert math.isnan(crossing(n, s, -5.0))  # never reaches
    assert math.isnan(crossing(n, s, 5.0))  # starts below


def test_fall_rates_known_answer():
    # Falls 1.0 per example to the level 0 at n=4, then 0.1 per example.
    n = np.array([0, 2, 4, 14.0])
    s = np.array([4.0, 2.0, 0.0, -1.0])
    init, late, nc = fall_rates(n, s, 0.0)
    assert (init, late, nc) == pytest.approx((1.0, 0.1, 4.0))


def _synthetic(fast_then_slow: bool, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Curves built by hand: S falls at rate a to the base level, then at rate b."""
    rows = []
    grid = [0, 50, 100, 200, 400, 800]
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for world in ("w",):
            rows.append({"stage": "base", "world": world, "seed": seed, "n_aligned": 0, "n_opposing": 0, "score_S": 0.0})
            for n_pos in (500, 1000, 2000):
                s0 = math.log2(n_pos) - 7  # higher start with more alignment
                a = 0.02 * s0  # ... and a faster initial fall
                b = a / 4 if fast_then_slow else a * 4
                nc = s0 / a
                for n in grid:
                    s = s0 - a * n if n <= nc else -b * (n - nc)
                    kl = max(0.0, (s - 0.0)) * 0.1 + 0.001 + rng.uniform(0, 1e-4)
                    rows.append({"stage": "opposing", "world": world, "seed": seed, "n_aligned": n_pos, "n_opposing": n,
                                 "score_S": s + rng.normal(0, 1e-3), "kl_to_base": kl})
    return pd.DataFrame(rows)


def test_analysis_verdicts_follow_the_data():
    cfg = ReboundConfig(early_examples=100, kl_epsilon=0.05)
    good = {c.id: c for c in claims(_synthetic(True), cfg)}
    assert good["rebound.fast_then_slow"].verdict == "reproduced"
    assert good["rebound.fast_then_slow"].effect > 0
    assert good["rebound.more_alignment_falls_faster"].verdict == "reproduced"
    bad = {c.id: c for c in claims(_synthetic(False), cfg)}
    assert bad["rebound.fast_then_slow"].verdict == "not_reproduced"
    assert bad["rebound.fast_then_slow"].effect < 0
    for c in good.values():
        assert c.n_seeds in (0, 3)


@pytest.mark.slow
def test_rebound_end_to_end_and_resume(tiny_rebound_run, tiny_rebound_sets):
    from springback import load_results, run
    from springback.api import load_result

    run_dir = tiny_rebound_run
    result = load_result(run_dir)
    ids = [c["id"] for c in result["claims"]]
    assert ids == ["rebound.fast_then_slow", "rebound.more_alignment_falls_faster", "rebound.kl_return"]
    for c in result["claims"]:
        assert set(c) >= {"id", "statement", "effect", "ci_low", "ci_high", "n_seeds", "verdict"}
        assert c["verdict"] in ("reproduced", "not_reproduced", "absent", "inconclusive")
    df = load_results(run_dir)
    # 2 seeds x (1 base + 2 n_pos x 4 checkpoints) rows
    assert len(df) == 2 * (1 + 2 * 4)
    assert set(df.columns) >= {"pi_pos", "score_S", "sampled_rate", "vader", "kl_to_base", "coverage"}
    assert ((df.pi_pos >= 0) & (df.pi_pos <= 1)).all()
    # Alignment raises S above the base; opposing data lowers it again.
    opp = df[df.stage == "opposing"]
    base = df[df.stage == "base"].score_S.mean()
    assert opp[opp.n_opposing == 0].score_S.mean() > base
    assert opp[opp.n_opposing == 80].score_S.mean() < opp[opp.n_opposing == 0].score_S.mean()
    assert (opp[opp.n_opposing == 0].kl_to_base > 0).all()
    figs = result["figures"]
    assert any("score_S" in f for f in figs) and all((run_dir / f).exists() for f in figs)
    # Re-running the same command reuses every cell and gives the same claims.
    before = (run_dir / "records.jsonl").read_bytes()
    again = run("rebound", sets=tiny_rebound_sets, out=run_dir.parent, progress=False)
    assert again == run_dir
    assert (run_dir / "records.jsonl").read_bytes() == before
    r2 = load_result(run_dir)
    assert r2["timings"]["cells_run"] == 0 and r2["timings"]["cells_skipped"] == result["timings"]["cells_run"]
    assert json.dumps(r2["claims"]) == json.dumps(result["claims"])
