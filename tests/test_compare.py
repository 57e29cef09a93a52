"""`springback compare`: intervals and differences against scipy and hand computation, labels,
sorting and errors on hand-made records; then end to end on three elasticity runs (different
aligned checkpoints) and two rebound runs (different model sizes), every number of the table
recomputed by hand from the runs' own records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from springback.analysis.compare import RunRecords, compare_runs, difference, run_labels, welch_interval
from springback.errors import SpringbackError

T975 = {n: float(sps.t.ppf(0.975, n - 1)) for n in range(2, 10)}


def t_by_hand(values):
    """(mean, low, high): the 95% Student-t interval, written out."""
    x = np.asarray(values, float)
    half = T975[len(x)] * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def first_crossing(n, s, level):
    """First n where s falls to ``level``, linearly interpolated (NaN if it starts at or below it or never does)."""
    if not s[0] > level:
        return math.nan
    for i in range(1, len(s)):
        if s[i] <= level:
            return n[i - 1] + (s[i - 1] - level) / (s[i - 1] - s[i]) * (n[i] - n[i - 1])
    return math.nan


def same(a, b, rel=1e-9):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rel, abs=1e-12)


# ----------------------------------------------------------------------------- pieces


def test_welch_interval_matches_scipy():
    a, b = [1.0, 2.5, 3.1, 4.0], [0.2, 0.9, 0.4]
    diff, lo, hi = welch_interval(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(a) - np.mean(b)) and (lo, hi) == pytest.approx((ref.low, ref.high))
    assert math.isnan(welch_interval([1.0], [2.0, 3.0])[1])  # one value: no spread to estimate


def test_difference_is_paired_over_shared_seeds_else_welch():
    row, best = {0: 10.0, 1: 14.0, 2: 11.0, 3: math.nan}, {0: 12.0, 1: 15.0, 2: 16.0, 3: 20.0}
    mean, lo, hi, n, paired = difference(row, best)
    assert paired and n == 3  # seed 3 is undefined in the row: left out of the pairs
    assert (mean, lo, hi) == pytest.approx(t_by_hand([-2.0, -1.0, -5.0]))
    mean, lo, hi, n, paired = difference({0: 1.0, 1: 2.0}, {2: 4.0, 3: 7.0})  # no shared seed
    assert not paired and (mean, lo, hi) == pytest.approx(welch_interval([1.0, 2.0], [4.0, 7.0]))


def test_run_labels():
    cfg = lambda preset, lr: {"model": {"preset": preset, "path": ""}, "align": {"lr": lr}, "seeds": [0, 1]}  # noqa: E731
    assert run_labels([cfg("a", 1), cfg("b", 1)], [["nano"], ["micro"]], ["r1", "r2"]) == ["nano", "micro"]
    # Same model everywhere: the config values that differ name the rows.
    assert run_labels([cfg("a", 1e-4), cfg("a", 1e-3)], [["m"], ["m"]], ["r1", "r2"]) == ["align.lr=0.0001", "align.lr=0.001"]
    assert run_labels([cfg("a", 1), cfg("a", 1)], [["m"], ["m"]], ["r1", "r2"]) == ["r1", "r2"]


def _records(curves, base, experiment="rebound", model="m"):
    """Records of one run: ``curves`` = {(seed, n_aligned): [(n_opposing, score)]}, ``base`` = {seed: score}."""
    rows = [{"experiment": experiment, "stage": "base", "world": "w", "seed": s, "n_aligned": 0, "n_opposing": 0,
             "score_S": v, "model": model} for s, v in base.items()]
    for (seed, n_pos), pts in curves.items():
        rows += [{"experiment": experiment, "stage": "opposing", "world": "w", "seed": seed, "n_aligned": n_pos,
                  "n_opposing": n, "score_S": v, "model": model} for n, v in pts]
    return pd.DataFrame(rows)


CFG = {"kl_epsilon": 0.1, "kl_metric": "kl_ref_to_base"}


def test_rows_average_a_seeds_curves_only_when_every_curve_defines_the_measure():
    # Run A: per seed two n⁺ curves, both losing half their gain inside the grid.
    a = _records({(0, 100): [(0, 4.0), (100, 0.0)], (0, 200): [(0, 6.0), (100, 2.0)],
                  (1, 100): [(0, 3.0), (100, 1.0)], (1, 200): [(0, 5.0), (100, 1.0)]}, {0: 0.0, 1: 0.0}, model="a")
    # Run B: seed 1's n⁺ = 200 curve never loses half its gain: seed 1 has no n½.
    b = _records({(0, 100): [(0, 2.0), (100, 0.0)], (0, 200): [(0, 2.0), (100, 0.0)],
                  (1, 100): [(0, 2.0), (100, 0.0)], (1, 200): [(0, 8.0), (100, 7.0)]}, {0: 0.0, 1: 0.0}, model="b")
    cmp = compare_runs([RunRecords("ra", a, CFG), RunRecords("rb", b, CFG)])
    t = cmp.table.set_index("label")
    # n½ per curve: A (0,100) 50, (0,200) 75, (1,100) 75, (1,200) 62.5 → seeds 62.5, 68.75.
    assert (t.loc["a", "n_half"], t.loc["a", "n_half_ci_low"]) == pytest.approx(t_by_hand([62.5, 68.75])[:2])
    assert t.loc["b", "n_half"] == 50.0 and t.loc["b", "n_half_n"] == 1  # seed 1 undefined, not a partial mean
    assert t.loc["a", "gain"] == pytest.approx(4.5) and list(cmp.table.label) == ["a", "b"]  # larger n½ first
    assert t.loc["a", "best"] and not t.loc["b", "best"]
    # Δ n½ of b: one shared seed only → Welch over the values each row has (b has one: no interval).
    assert not t.loc["b", "n_half_diff_paired"] and math.isnan(t.loc["b", "n_half_diff_ci_low"])
    # Δ gain: both seeds shared → paired: b − a per seed = (2 − 5, 5 − 4).
    assert t.loc["b", "gain_diff_paired"]
    assert (t.loc["b", "gain_diff"], t.loc["b", "gain_diff_ci_low"], t.loc["b", "gain_diff_ci_high"]) == \
        pytest.approx(t_by_hand([-3.0, 1.0]))
    # Split by n⁺: one row per (run, n⁺), best row per n⁺.
    split = compare_runs([RunRecords("ra", a, CFG), RunRecords("rb", b, CFG)], by=["n_aligned"])
    assert list(zip(split.table.label, split.table.n_aligned, split.table["rank"])) == \
        [("a", 100, 1), ("b", 100, 2), ("a", 200, 1), ("b", 200, 2)]
    # Sorting by a fall rate puts the smallest first (a slower fall is the more robust one).
    assert compare_runs([RunRecords("ra", a, CFG), RunRecords("rb", b, CFG)], sort_by="late_fall_per_100").descending is False


def test_elasticity_without_a_base_model_uses_its_base_score():
    curves = {(0, 0): [(0, 0.9), (100, 0.5)], (1, 0): [(0, 0.8), (100, 0.4)]}
    a = _records(curves, {}, experiment="elasticity", model="a")
    b = _records(curves, {}, experiment="elasticity", model="b")
    cmp = compare_runs([RunRecords("ra", a, {"kl_epsilon": 0.01, "base_score": 0.6}), RunRecords("rb", b, {"kl_epsilon": 0.01})])
    t = cmp.table.set_index("label")
    # a: gains 0.3 and 0.2; n½ where the score falls to 0.75 (100 × 0.15/0.4) and to 0.7 (100 × 0.1/0.4).
    assert (t.loc["a", "gain"], t.loc["a", "n_half"]) == pytest.approx((0.25, np.mean([37.5, 25.0])))
    assert math.isnan(t.loc["b", "gain"]) and "no base level in b" in cmp.notes[0]
    assert list(cmp.table.label) == ["a", "b"]  # the undefined row goes last


def test_compare_refuses_what_it_cannot_compare():
    a = _records({(0, 100): [(0, 4.0), (100, 0.0)]}, {0: 0.0})
    cases = [
        ([RunRecords("a", a, CFG), RunRecords("b", a.assign(experiment="priming"), CFG)], {}, "one experiment"),
        ([RunRecords("a", a.assign(experiment="priming"), CFG)], {}, "not 'priming'"),
        ([RunRecords("a", a, CFG)], {"sort_by": "speed"}, "unknown measure 'speed'"),
        ([RunRecords("a", a, CFG)], {"by": ["seed"]}, "cannot split"),
        ([RunRecords("a", a, CFG), RunRecords("b", a, {**CFG, "kl_epsilon": 0.01})], {}, "different KL thresholds"),
        ([RunRecords("a", a, CFG)], {"metric": "vader"}, "metric 'vader' was not measured"),
    ]
    for runs, kw, match in cases:
        with pytest.raises(SpringbackError, match=match):
            compare_runs(runs, **kw)
    # The threshold can be overridden when the runs disagree.
    assert compare_runs(cases[4][0], kl_epsilon=0.05).kl_epsilon == 0.05


# ----------------------------------------------------------------------------- end to end: elasticity


@pytest.fixture(scope="module")
def elasticity_runs(tmp_path_factory):
    """Three elasticity runs of one base: aligned checkpoints after 32, 64 and 128 aligned examples."""
    import springback
    from springback.config import TrainConfig
    from springback.models import build_model, save_model
    from springback.train import train
    from springback.worlds import get_world

    d = tmp_path_factory.mktemp("compare-elasticity")
    world = get_world("sentiment")
    tok = world.tokenizer()
    model = build_model("nano", tok, seed=0)
    save_model(model, tok, d / "base")
    seen = 0
    runs = []
    for n in (32, 64, 128):
        train(model, tok, world.aligned(n, 0)[seen:n], TrainConfig(lr=3e-3, batch_size=16), seed=0, progress=False)
        seen = n
        save_model(model, tok, d / f"aligned_{n}")
    for n in (32, 64, 128):
        r = springback.elasticity(model=str(d / f"aligned_{n}"), base=str(d / "base"), world="sentiment", sets=[
            "seeds=[0,1]", "n_opposing=[0,16,32,64]", "n_eval_prompts=4", "measure.n_samples=2",
            "measure.max_new_tokens=12", "train.lr=3e-3"], out=d / "out", progress=False)
        runs.append(Path(r["run_dir"]))
    return runs


@pytest.mark.slow
def test_compare_elasticity_runs_by_hand(elasticity_runs, tmp_path, capsys):
    import springback
    from springback.cli import main

    from test_report import _Collect, _self_contained

    out = tmp_path / "cmp"
    assert main(["compare", *map(str, elasticity_runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "compare.html")
    for name in ("compare.html", "compare.md", "compare.csv", "compare.png"):
        assert (out / name).is_file()
    page = (out / "compare.html").read_text()
    parser = _Collect()
    parser.feed(page)
    _self_contained(page, parser)
    assert len(parser.images) == 1 and parser.images[0]["src"].startswith("data:image/png;base64,")

    eps = 0.5  # the runs' own ε (0.01) is never reached here; an override exercises the KL measure
    res = springback.compare(elasticity_runs, out=tmp_path / "api", kl_epsilon=eps)
    rows = res["rows"]
    assert res["metric"] == "pi_pos" and res["kl_metric"] == "kl_to_base" and res["kl_epsilon"] == eps
    # By hand, per run and seed, from the records: base level, gain, n½, fall rates, KL < ε.
    hand = {}
    for run in elasticity_runs:
        df = springback.load_results(run)
        label = str(df[df.stage == "opposing"].model.iloc[0])
        per = {}
        for seed in (0, 1):
            base = float(df[(df.stage == "base") & (df.seed == seed)].pi_pos.iloc[0])
            c = df[(df.stage == "opposing") & (df.seed == seed)].sort_values("n_opposing")
            n, s, kl = c.n_opposing.tolist(), c.pi_pos.tolist(), c.kl_to_base.tolist()
            nb = first_crossing(n, s, base)
            init = (s[0] - base) / nb * 100 if nb < n[-1] else math.nan
            late = (base - s[-1]) / (n[-1] - nb) * 100 if nb < n[-1] else math.nan
            per[seed] = {"gain": s[0] - base, "n_half": first_crossing(n, s, base + (s[0] - base) / 2),
                         "initial_fall_per_100": init, "late_fall_per_100": late,
                         "n_kl_below_eps": 0.0 if kl[0] < eps else first_crossing(n, kl, eps)}
        hand[label] = per
    assert [r["label"] for r in rows] == ["aligned_128", "aligned_64", "aligned_32"]
    # Not a vacuous check: n½ is defined everywhere, the fall rates and KL < ε where the curves get there.
    assert all(math.isfinite(r["n_half"]) and r["n_half_n"] == 2 for r in rows)
    assert math.isfinite(rows[2]["initial_fall_per_100"]) and math.isfinite(rows[2]["late_fall_per_100"])
    assert rows[2]["n_kl_below_eps"] == 0.0 and rows[0]["n_kl_below_eps_n"] == 0
    # Sorted by n½, largest first: the hand values agree with that order.
    means = [np.mean([hand[r["label"]][s]["n_half"] for s in (0, 1)]) for r in rows]
    assert means == sorted(means, reverse=True)
    best = hand["aligned_128"]
    for r in rows:
        h = hand[r["label"]]
        for m in ("gain", "n_half", "initial_fall_per_100", "late_fall_per_100", "n_kl_below_eps"):
            vals = [h[0][m], h[1][m]]
            finite = [v for v in vals if not math.isnan(v)]
            assert r[f"{m}_n"] == len(finite), (r["label"], m)
            if len(finite) < 2:  # the mean of what is defined, and no interval
                assert same(r[m], finite[0] if finite else math.nan) and math.isnan(r[f"{m}_ci_low"]), (r["label"], m)
                continue
            mean, lo, hi = t_by_hand(vals) if vals[0] != vals[1] else (vals[0], math.nan, math.nan)
            assert same(r[m], mean) and same(r[f"{m}_ci_low"], lo) and same(r[f"{m}_ci_high"], hi), (r["label"], m)
            if r["best"]:
                assert r[f"{m}_diff"] == 0.0
                continue
            d = [h[s][m] - best[s][m] for s in (0, 1)]
            if any(math.isnan(v) for v in d):
                continue
            dm, dlo, dhi = t_by_hand(d) if abs(d[0] - d[1]) > 1e-12 * max(1.0, abs(d[0])) else (np.mean(d), math.nan, math.nan)
            assert r[f"{m}_diff_paired"] and same(r[f"{m}_diff"], dm), (r["label"], m)
            assert same(r[f"{m}_diff_ci_low"], dlo) and same(r[f"{m}_diff_ci_high"], dhi), (r["label"], m)
    # The exact π⁺ is deterministic: every seed gives the same gain, so there is no interval.
    assert all(math.isnan(r["gain_ci_low"]) for r in rows)
    csv = pd.read_csv(tmp_path / "api" / "compare.csv")
    assert list(csv.label) == [r["label"] for r in rows] and csv.n_half.to_numpy() == pytest.approx([r["n_half"] for r in rows])


# ----------------------------------------------------------------------------- end to end: rebound


@pytest.mark.slow
def test_compare_rebound_runs_of_two_sizes_by_hand(tiny_rebound_run, tiny_rebound_sets, tmp_path):
    import springback

    nano = tiny_rebound_run
    micro = springback.run("rebound", sets=tiny_rebound_sets + ["model.preset=micro"], out=nano.parent, progress=False)
    res = springback.compare([nano, micro], out=tmp_path)
    assert res["metric"] == "score_S" and res["kl_epsilon"] == 0.1 and res["kl_metric"] == "kl_ref_to_base"
    assert set(res["labels"].values()) == {"nano", "micro"} and res["out"] == str(tmp_path)
    # By hand: per seed, the mean over the n⁺ curves of the gain and n½ in S, each against the seed's base row.
    hand = {}
    for run in (nano, micro):
        df = springback.load_results(run)
        per = {}
        for seed in sorted(df.seed.unique()):
            base = float(df[(df.stage == "base") & (df.seed == seed)].score_S.iloc[0])
            gains, halves = [], []
            for n_pos in sorted(df[df.stage == "opposing"].n_aligned.unique()):
                c = df[(df.stage == "opposing") & (df.seed == seed) & (df.n_aligned == n_pos)].sort_values("n_opposing")
                s = c.score_S.tolist()
                gains.append(s[0] - base)
                halves.append(first_crossing(c.n_opposing.tolist(), s, base + (s[0] - base) / 2))
            per[int(seed)] = {"gain": np.mean(gains), "n_half": np.mean(halves)}  # NaN if any curve lacks n½
        hand[str(df.model.iloc[0])] = per
    rows = {r["label"]: r for r in res["rows"]}
    assert all(math.isfinite(r["n_half"]) and math.isfinite(r["n_half_ci_low"]) for r in rows.values())
    for label, per in hand.items():
        for m in ("gain", "n_half"):
            mean, lo, hi = t_by_hand([per[0][m], per[1][m]])
            r = rows[label]
            assert same(r[m], mean) and same(r[f"{m}_ci_low"], lo) and same(r[f"{m}_ci_high"], hi), (label, m)
            assert r["n_curves"] == 2
    order = sorted(hand, key=lambda k: -np.nanmean([hand[k][s]["n_half"] for s in (0, 1)]))
    assert [r["label"] for r in res["rows"]] == order
    best, other = rows[order[0]], rows[order[1]]
    d = [hand[order[1]][s]["n_half"] - hand[order[0]][s]["n_half"] for s in (0, 1)]
    assert other["n_half_diff_paired"] and (other["n_half_diff"], other["n_half_diff_ci_low"], other["n_half_diff_ci_high"]) \
        == pytest.approx(t_by_hand(d))
    assert best["best"] and best["n_half_diff"] == 0.0
    md = (tmp_path / "compare.md").read_text()
    assert "per seed, the mean over its n⁺ curves" in md and f"**{order[0]}**" in md


def test_compare_cli_bad_input_is_one_line(tmp_path, capsys):
    from springback.cli import main

    (tmp_path / "not-a-run").mkdir()
    cases = [([str(tmp_path / "missing")], "run directory not found"),
             ([str(tmp_path / "not-a-run")], "not a springback run directory"),
             ([str(tmp_path / "not-a-run"), str(tmp_path / "not-a-run")], "given twice")]
    for args, match in cases:
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
