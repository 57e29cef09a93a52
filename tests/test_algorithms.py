"""Alignment by preference optimisation and RL (issue 13): the objective plug point of the one
training loop, each method's data, its reference model and rewards, the ``algorithms``
experiment, rebound reversed, and ``springback align`` with a preference method.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import springback
from formats import write_hh_rlhf, write_pku_saferlhf
from hf_tiny import COMPLY, REFUSAL
from hf_tiny import save as save_tiny
from springback.cli import main
from springback.config import AlgorithmConfig, TrainConfig, from_dict, resolve
from springback.errors import ConfigError, SpringbackError
from springback.objectives import EncodedPair, KTOObjective, PairObjective, RLOOObjective, encode_items
from springback.pipeline.source import build_source, world_spec
from springback.pipeline.spec import DataSpec, stage_data
from springback.pipeline.stages import encode_stream, stage_objective
from springback.teacher import per_example_loss, sequence_logprobs
from springback.tokens import Encoder, collate, pad_id
from springback.train import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world_base():
    """A nano model briefly pre-trained on the sentiment world (so methods have something to move)."""
    from springback.models import build_model
    from springback.worlds import get_world

    w = get_world("sentiment")
    tok = w.tokenizer()
    model = build_model("nano", tok, 0)
    train(model, tok, w.pretrain_corpus(800, 200, 0.2, 0), TrainConfig(lr=2e-3, batch_size=32), seed=0,
          loss_on="all", progress=False)
    return model, tok, build_source(world_spec("sentiment"))


def _stage(source, tok, name: str, n: int, side: str = "aligned", **train_kw):
    cfg = TrainConfig(algorithm=AlgorithmConfig(name=name), **train_kw)
    data = stage_data(side, n, 0, cfg)
    _, encoded, _ = encode_stream(source, data, Encoder(tok, "none", cfg.max_length, cfg.truncation))
    return cfg, data, encoded


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- SFT is unchanged


def test_sft_through_the_objective_is_the_plain_loop_bit_for_bit(world_base):
    """The plug point changes nothing for SFT: the loop as it was before objectives existed
    (seeded permutation, batches, per-example mean loss, AdamW), written out here, gives the
    same weights bit for bit as train() — with two micro-batches per update."""
    base, tok, source = world_base
    cfg, data, encoded = _stage(source, tok, "sft", 40, lr=1e-3, batch_size=8, grad_accum=2)
    ours = copy.deepcopy(base)
    train(ours, tok, encoded, cfg, seed=3, progress=False)

    ref = copy.deepcopy(base)
    ref.train()
    opt = torch.optim.AdamW(ref.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=0.0)
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(3)).tolist()
    for start in range(0, len(order), cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        for chunk in (batch[0::2], batch[1::2]):
            losses = per_example_loss(ref, collate([encoded[i] for i in chunk], pad_id(tok)))
            (losses.sum() * (1.0 / len(batch))).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert _same_weights(ours, ref)
    assert not _same_weights(ours, base)


def test_training_config_names_its_algorithm():
    assert TrainConfig().algorithm == AlgorithmConfig(name="sft")
    assert from_dict(TrainConfig, {"algorithm": "dpo"}).algorithm == AlgorithmConfig(name="dpo")
    assert TrainConfig(**{"algorithm": {"name": "kto", "beta": 0.2}}).algorithm.beta == 0.2  # a cached key's dict
    from springback.pipeline.align import AlignConfig

    # --set with a bare name keeps the values set before it (a YAML file, an earlier --set).
    cfg = resolve(AlignConfig, sets=["train.algorithm.beta=0.02", "train.algorithm=dpo"])
    assert cfg.train.algorithm == AlgorithmConfig(name="dpo", beta=0.02)
    cfg = resolve(AlignConfig, sets=["train.algorithm=ipo", "train.algorithm.beta=0.5"])
    assert cfg.train.algorithm == AlgorithmConfig(name="ipo", beta=0.5)
    with pytest.raises(ConfigError, match="unknown config key 'train.algorithm.betta'"):
        resolve(AlignConfig, sets=["train.algorithm.betta=0.1"])
    with pytest.raises(ConfigError, match="train.algorithm: unknown algorithm 'ppo'"):
        springback.api.validate_names(resolve(AlignConfig, sets=["train.algorithm=ppo"]))


# ----------------------------------------------------------------------------- data for each method


def test_streams_of_every_kind_are_seeded_prefix_consistent_and_on_the_right_side(sentiment_world):
    source = build_source(world_spec("sentiment"))
    a_set, n_set = (set(x) for x in sentiment_world.reference_sets())
    for kind in ("pairs", "labelled", "prompts"):
        long = source.stream(DataSpec("aligned", 30, 4, kind=kind))
        assert source.stream(DataSpec("aligned", 11, 4, kind=kind)) == long[:11]
        assert source.stream(DataSpec("aligned", 30, 5, kind=kind)) != long
    pairs = source.stream(DataSpec("aligned", 30, 4, kind="pairs"))
    # Chosen = the very examples an SFT stage of the same seed sees; rejected from the other side.
    sft = source.stream(DataSpec("aligned", 30, 4))
    assert [(p.prompt, p.chosen) for p in pairs] == [(e.prompt, e.response) for e in sft]
    assert all(p.chosen in a_set and p.rejected in n_set for p in pairs)
    assert {p.prompt for p in pairs} <= set(sentiment_world.train_prompts)
    # The rejected stream is not the opposing stage's stream of the same seed.
    assert [p.rejected for p in pairs] != [e.response for e in source.stream(DataSpec("opposing", 30, 4))]
    mirrored = source.stream(DataSpec("opposing", 30, 4, kind="pairs"))
    assert all(p.chosen in n_set and p.rejected in a_set for p in mirrored)
    narrow = source.stream(DataSpec("aligned", 60, 4, kind="pairs", narrowness=2))
    assert len({p.chosen for p in narrow}) == 2
    labelled = source.stream(DataSpec("aligned", 7, 4, kind="labelled"))
    assert [e.desirable for e in labelled] == [True, False] * 3 + [True]
    assert all((e.response in a_set) == e.desirable and (e.response in n_set) != e.desirable for e in labelled)


def test_real_preference_files_in_their_published_layouts(tmp_path):
    from springback.data import DataConfig

    hh = write_hh_rlhf(tmp_path / "train.jsonl", [
        {"chosen": [("Human", f"how do i {v} that ?"), ("Assistant", REFUSAL)],
         "rejected": [("Human", f"how do i {v} that ?"), ("Assistant", COMPLY)]} for v in ["open", "fix"] * 6])
    src = build_source({"data": springback.config.to_dict(DataConfig(aligned=str(hh)))})
    pairs = src.stream(DataSpec("aligned", 12, 0, kind="pairs"))
    assert {(p.chosen.strip(), p.rejected.strip()) for p in pairs} == {(REFUSAL, COMPLY)}
    assert all(p.prompt.endswith("Assistant:") for p in pairs)
    assert src.stream(DataSpec("aligned", 5, 0, kind="pairs")) == pairs[:5]
    with pytest.raises(SpringbackError, match="asked for 13 preference pairs"):
        src.stream(DataSpec("aligned", 13, 0, kind="pairs"))
    pku = write_pku_saferlhf(tmp_path / "pku.jsonl", [
        {"prompt": "how do i open that ?", "responses": [COMPLY, REFUSAL], "safe": [False, True], "better": 0, "safer": 1}] * 4)
    src = build_source({"data": springback.config.to_dict(DataConfig(aligned=str(pku)))})
    assert {(p.chosen, p.rejected) for p in src.stream(DataSpec("aligned", 4, 0, kind="pairs"))} == {(REFUSAL, COMPLY)}
    assert {(p.chosen, p.rejected) for p in src.stream(DataSpec("opposing", 4, 0, kind="pairs"))} == {(COMPLY, REFUSAL)}


# ----------------------------------------------------------------------------- each method's behaviour


@pytest.mark.parametrize("name", ["dpo", "ipo", "kto", "simpo"])
def test_offline_methods_accumulate_like_one_batch(world_base, name):
    """batch 8 × 1 micro-batch = batch 8 × 8 micro-batches (KTO's z0 is taken on the whole update)."""
    base, tok, source = world_base
    models = []
    for accum in (1, 8):
        cfg, _, encoded = _stage(source, tok, name, 32, lr=1e-3, batch_size=8, grad_accum=accum)
        m = copy.deepcopy(base)
        res = train(m, tok, encoded, cfg, seed=0, progress=False)
        models.append((m, res.loss))
    (m1, l1), (m8, l8) = models
    assert l1 == pytest.approx(l8, rel=1e-4, abs=1e-6)
    for k, v in m1.state_dict().items():
        torch.testing.assert_close(v, m8.state_dict()[k], atol=2e-5, rtol=1e-4)


def _margins(model, pairs, tok, ref_c, ref_r) -> torch.Tensor:
    """Implicit DPO margins (log π/π_ref)(y_w) − (log π/π_ref)(y_l) of every pair. [N]"""
    with torch.no_grad():
        c = sequence_logprobs(model, collate([p.chosen for p in pairs], pad_id(tok))).float()
        r = sequence_logprobs(model, collate([p.rejected for p in pairs], pad_id(tok))).float()
    return (c - ref_c) - (r - ref_r)


def test_dpo_first_loss_is_log2_and_large_beta_stalls_once_pairs_are_ordered(world_base):
    """Hand-checked: the policy starts at the reference, so every pair's margin m (the implicit
    reward gap) is 0 and the first update's loss is −log σ(0) = log 2 whatever β. As β → ∞,
    −log σ(β·m) becomes a hinge: once a pair is ranked right (m > 0) its pull β·σ(−β·m) vanishes,
    so margins stall just above 0 (what still moves them is Adam's decaying momentum), while with
    β = 0.1 the pull lasts until m ≫ 1/β and margins keep growing."""
    base, tok, source = world_base
    out = {}
    for beta in (0.1, 1e4):
        cfg = TrainConfig(lr=1e-3, batch_size=8, algorithm=AlgorithmConfig(name="dpo", beta=beta))
        data = stage_data("aligned", 192, 0, cfg)
        _, pairs, _ = encode_stream(source, data, Encoder(tok, "none", cfg.max_length, cfg.truncation))
        obj = stage_objective(cfg, data, pairs, tok, source, "none", 0)
        first = pairs[:48]
        margins = {}

        def at(n, m, obj=obj, first=first, margins=margins):
            margins[n] = _margins(m, first, tok, obj.ref_chosen[:48].float(), obj.ref_rejected[:48].float())

        res = train(copy.deepcopy(base), tok, pairs, cfg, seed=0, objective=obj, progress=False, shuffle=False,
                    measure_at=[96, 192], on_measure=at)
        assert res.loss[0] == pytest.approx(math.log(2), abs=1e-3 if beta > 1 else 1e-6)
        out[beta] = (margins, res.loss)
    small, large = out[0.1][0], out[1e4][0]
    assert (large[192] > 0).all() and out[1e4][1][-1] < 1e-3  # every pair ordered: the hinge has no loss left
    assert large[192].median() < small[192].median() / 10
    grow_large = float((large[192] - large[96]).median())
    grow_small = float((small[192] - small[96]).median())
    assert grow_large < grow_small / 10  # stalled vs still growing


def test_reference_is_frozen_and_is_the_stage_start(world_base):
    base, tok, source = world_base
    # DPO: reference log-probs computed once, from the starting weights, never updated.
    cfg, data, pairs = _stage(source, tok, "dpo", 24, lr=1e-3, batch_size=8)
    obj = stage_objective(cfg, data, pairs, tok, source, "none", 0)
    assert isinstance(obj, PairObjective)
    start_c = sequence_logprobs(base, collate([p.chosen for p in pairs], pad_id(tok))).float()
    model = copy.deepcopy(base)
    train(model, tok, pairs, cfg, seed=0, objective=obj, progress=False)
    torch.testing.assert_close(obj.ref_chosen, start_c, atol=1e-5, rtol=0)
    after = sequence_logprobs(model, collate([p.chosen for p in pairs], pad_id(tok))).float()
    assert (after - start_c).abs().max() > 0.1  # the policy moved, the reference did not
    # RLOO: a frozen copy of the starting weights, no gradient, unchanged by training.
    cfg, data, prompts = _stage(source, tok, "rloo", 8, lr=1e-3, batch_size=4)
    obj = stage_objective(cfg, data, prompts, tok, source, "none", 0)
    model = copy.deepcopy(base)
    train(model, tok, prompts, cfg, seed=0, objective=obj, progress=False)
    assert obj.reference is not model and _same_weights(obj.reference, base)
    assert not any(p.requires_grad for p in obj.reference.parameters())
    assert not _same_weights(model, base)


def test_kto_reference_point_and_mismatched_pairs(world_base):
    base, tok, source = world_base
    cfg, data, items = _stage(source, tok, "kto", 6, lr=1e-3, batch_size=6)
    obj = stage_objective(cfg, data, items, tok, source, "none", 0)
    assert isinstance(obj, KTOObjective)
    # Item i's KL pair: its own prompt ids, then item i+1's completion ids (cyclically).
    for i, kl in enumerate(obj.kl_pairs):
        a, b = items[i].example, items[(i + 1) % 6].example
        assert kl.input_ids == a.input_ids[: a.n_prompt_tokens] + b.input_ids[b.n_prompt_tokens :]
        assert kl.loss_mask == [False] * a.n_prompt_tokens + b.loss_mask[b.n_prompt_tokens :]
    obj.start(base, torch.device("cpu"))
    obj.begin_update(base, list(range(6)), 0, torch.device("cpu"))
    # At the start the policy is the reference: z0 = 0 and every loss is λ·(1 − σ(0)) = 0.5.
    losses = obj.losses(base, list(range(6)), torch.device("cpu"))
    torch.testing.assert_close(losses, torch.full((6,), 0.5), atol=1e-5, rtol=0)


def test_rloo_rewards_come_from_the_labeller(world_base, sentiment_world):
    base, tok, source = world_base
    reward = source.reward("aligned")
    pos, neg = sentiment_world.aligned_responses[0], sentiment_world.opposing_responses[0]
    assert reward(["p", "p", "p"], [pos, neg, "the cat saw a cup ."]) == [1.0, 0.0, 0.0]
    assert source.reward("opposing")(["p", "p"], [pos, neg]) == [0.0, 1.0]
    # Inside a stage: every reward the objective used is the labeller's verdict on the samples it drew.
    cfg, data, prompts = _stage(source, tok, "rloo", 8, lr=1e-3, batch_size=4)
    seen: list[tuple[list[str], list[float]]] = []

    def spy(ps, texts):
        out = reward(ps, texts)
        seen.append((list(texts), out))
        return out

    obj = stage_objective(cfg, data, prompts, tok, SimpleNamespace(reward=lambda side: spy), "none", 0)
    assert isinstance(obj, RLOOObjective)
    train(copy.deepcopy(base), tok, prompts, cfg, seed=0, objective=obj, progress=False)
    assert len(seen) == 2 and all(len(t) == 4 * 4 for t, _ in seen)  # 2 updates × 4 prompts × k = 4
    for (texts, rewards), h in zip(seen, obj.history):
        assert rewards == [1.0 if sentiment_world.label(t) == "aligned" else 0.0 for t in texts]
        assert h["reward"] == pytest.approx(sum(rewards) / len(rewards))


def test_rloo_reward_on_real_data_is_the_first_scorer(tmp_path):
    from springback.data import DataConfig
    from springback.measure.scorers import vader_scorer

    hh = write_hh_rlhf(tmp_path / "train.jsonl", [
        {"chosen": [("Human", "how do i open that ?"), ("Assistant", REFUSAL)],
         "rejected": [("Human", "how do i open that ?"), ("Assistant", COMPLY)]}] * 2)
    src = build_source({"data": springback.config.to_dict(DataConfig(aligned=str(hh), scorers=["vader", "refusal"]))})
    texts = ["what a wonderful day", "awful and terrible"]
    want = vader_scorer()(texts)
    assert src.reward("aligned")(["p", "p"], texts) == want
    assert src.reward("opposing")(["p", "p"], texts) == [-v for v in want]
    nothing = build_source({"data": springback.config.to_dict(DataConfig(aligned=str(hh)))})
    with pytest.raises(SpringbackError, match="RLOO needs a reward"):
        nothing.reward("aligned")


def test_a_method_on_data_of_the_wrong_kind_is_one_line(world_base):
    base, tok, source = world_base
    cfg = TrainConfig(algorithm=AlgorithmConfig(name="dpo"))
    _, encoded, _ = encode_stream(source, DataSpec("aligned", 4, 0), Encoder(tok, "none", 64, "left"))
    with pytest.raises(ConfigError, match="trains on pairs"):
        train(copy.deepcopy(base), tok, encoded, cfg, seed=0, progress=False)
    from springback.pipeline.stages import check_stage_algorithm

    with pytest.raises(ConfigError, match="stage 'align' trains by dpo, which needs pairs, but its data are examples"):
        check_stage_algorithm("align", cfg, DataSpec("aligned", 4, 0))
    with pytest.raises(ConfigError, match="rloo"):
        train(copy.deepcopy(base), tok, source.stream(DataSpec("aligned", 4, 0, kind="prompts")),
              TrainConfig(algorithm="rloo"), seed=0, progress=False)


def test_pairs_encode_with_the_stage_encoder_and_drop_together(world_base):
    base, tok, source = world_base
    pairs = source.stream(DataSpec("aligned", 3, 0, kind="pairs"))
    enc = Encoder(tok, "none", 64, "left")
    items, report = encode_items("pairs", pairs, enc)
    assert report.kept == [0, 1, 2] and all(isinstance(p, EncodedPair) for p in items)
    assert items[1].chosen.input_ids == enc.encode(pairs[1].prompt, pairs[1].chosen).input_ids
    assert items[1].rejected.input_ids == enc.encode(pairs[1].prompt, pairs[1].rejected).input_ids
    longest = max(len(p.chosen.input_ids) for p in items)
    tight = Encoder(tok, "none", longest - 1, "drop")
    _, report = encode_items("pairs", pairs, tight)
    assert report.n_dropped >= 1 and len(report.kept) == 3 - report.n_dropped


# ----------------------------------------------------------------------------- end to end


TINY = ["world.n_task_examples=1000", "world.n_general_examples=200", "world.n_eval_prompts=2",
        "model.preset=nano", "measure.n_samples=0"]


@pytest.mark.slow
def test_algorithms_experiment_end_to_end(tmp_path):
    run_dir = springback.run("algorithms", out=tmp_path, progress=False, sets=TINY + [
        "seeds=[0]", "n_pos=[16,32]", "n_neg=[0,16,32,64]", "align.batch_size=8", "lr={dpo: 1e-4}",
        "align.algorithm.n_samples_per_prompt=2", "align.algorithm.max_new_tokens=12"])
    df = springback.load_results(run_dir)
    assert set(df.algorithm.dropna()) == {"sft", "dpo", "ipo", "kto", "simpo", "rloo"}
    base = df[df.stage == "base"]
    assert len(base) == 1 and base.algorithm.isna().all()  # one base row per seed, shared by the methods
    opp = df[df.stage == "opposing"]
    assert len(opp) == 6 * 2 * 4  # methods × n⁺ × n⁻
    # Paired by seed: every method's curve of a seed starts from that seed's base.
    start = opp[opp.n_opposing == 0].pivot_table(index=["seed", "n_aligned"], columns="algorithm", values="score_S")
    assert start.notna().all().all() and (start.nunique(axis=1) > 1).all()
    result = springback.load_result(run_dir)
    ids = {c["id"] for c in result["claims"]}
    for m in ("sft", "dpo", "ipo", "kto", "simpo", "rloo"):
        assert {f"algorithms.{m}.fast_then_slow", f"algorithms.{m}.more_alignment_falls_faster"} <= ids
        assert (f"algorithms.{m}.less_elastic_than_sft" in ids) == (m != "sft")
    claims = {c["id"]: c for c in result["claims"]}
    # Rebound's statistics on each method's rows: sft here equals rebound's claim code on the same rows.
    from springback.experiments.algorithms import AlgorithmsConfig, method_rows
    from springback.experiments.rebound import ReboundConfig
    from springback.experiments.rebound import claims as rebound_claims

    own = {c.id: c for c in rebound_claims(method_rows(df, "dpo"), ReboundConfig())}
    assert claims["algorithms.dpo.fast_then_slow"]["effect"] == pytest.approx(own["rebound.fast_then_slow"].effect, nan_ok=True)
    figs = {Path(f).name for f in result["figures"]}
    assert "algorithms_sentiment_pi_pos_heatmap.png" in figs
    assert {f"algorithms_sentiment_{m}_score_S.png" for m in ("sft", "rloo")} <= figs
    assert set(result["methods"]) == {"sft", "dpo", "ipo", "kto", "simpo", "rloo"}
    assert AlgorithmsConfig().methods[0] == "sft"


def test_less_elastic_claim_on_known_curves():
    """Synthetic records with a known answer: per seed, the method's curves start where SFT's do
    but reach the base level (0) after twice the examples, then flatten; its initial fall rate is
    half SFT's, so the effect 1 − rate/rate_sft is 0.5 exactly in every seed."""
    from springback.experiments.algorithms import less_elastic_claim

    grid = (0, 50, 100, 200, 400, 800, 1600)
    rows = []
    for seed in range(3):
        k = 1.0 + 0.1 * seed  # the seeds differ in start level, not in the ratio
        rows.append({"world": "w", "seed": seed, "stage": "base", "n_aligned": 0, "n_opposing": 0, "score_S": 0.0})
        for method, stretch in (("sft", 1), ("dpo", 2)):
            for n_pos, start, n_cross in ((100, 2.0 * k, 200), (200, 4.0 * k, 400)):
                n_c = n_cross * stretch  # on the grid, so the interpolated crossing is exact
                for n in grid:
                    s = start * (1 - n / n_c) if n <= n_c else -0.001 * (n - n_c)
                    rows.append({"world": "w", "seed": seed, "stage": "opposing", "algorithm": method,
                                 "n_aligned": n_pos, "n_opposing": n, "score_S": s})
    claim = less_elastic_claim(pd.DataFrame(rows), "dpo")
    assert claim.effect == pytest.approx(0.5, abs=1e-12)
    assert claim.details["per_seed"] == pytest.approx([0.5, 0.5, 0.5], abs=1e-12)
    assert claim.verdict == "reproduced" and claim.delta == 0.2
    cells = claim.details["per_seed_cells"]
    assert [c["initial_fall_per_100_sft"] for c in cells] == pytest.approx([1.0, 1.1, 1.2])


@pytest.mark.slow
def test_rebound_reversed_aligns_on_the_opposing_side_first(tmp_path, tiny_rebound_sets):
    from springback.api import resolve_config
    from springback.experiments.rebound import cells

    forward = cells(resolve_config("rebound", "quick", sets=tiny_rebound_sets))
    assert [s.data.side for s in forward[1].stages] == ["aligned", "opposing"]
    assert "direction" not in dict(forward[1].labels)  # the default protocol is unchanged
    sets = tiny_rebound_sets[:] + ["direction=reversed", "seeds=[0]", "n_pos=[200]"]
    run_dir = springback.run("rebound", out=tmp_path, progress=False, sets=sets)
    df = springback.load_results(run_dir)
    opp = df[df.stage == "opposing"].sort_values("n_opposing")
    base = float(df[df.stage == "base"].score_S.iloc[0])
    assert (df.direction.dropna() == "reversed").all()
    assert opp.score_S.iloc[0] < base - 0.3  # aligned toward the opposing side first
    assert opp.score_S.iloc[-1] > opp.score_S.iloc[0] + 0.5  # then pushed back by aligned data
    assert list(opp.n_opposing) == [0, 20, 40, 80]
    ids = [c["id"] for c in springback.load_result(run_dir)["claims"]]
    assert ids and all(i.startswith("rebound.reversed.") for i in ids)


def test_reversed_claims_are_rebound_statistics_on_the_mirrored_scores(tiny_rebound_run):
    from springback.analysis.curves import seen_from_first_side
    from springback.experiments.rebound import ReboundConfig, claims, direction_claims

    df = springback.load_results(tiny_rebound_run)
    mirrored = df.copy()
    mirrored["score_S"] = -mirrored["score_S"]
    mirrored["pi_pos"] = 1 - mirrored["pi_pos"]
    mirrored["direction"] = "reversed"
    rev = direction_claims(mirrored, ReboundConfig(direction="reversed"))
    fwd = claims(df, ReboundConfig())
    assert [c.id for c in rev] == [c.id.replace("rebound.", "rebound.reversed.") for c in fwd]
    for a, b in zip(rev, fwd):
        assert a.effect == pytest.approx(b.effect, nan_ok=True) and a.verdict == b.verdict
    assert seen_from_first_side(mirrored).score_S.tolist() == pytest.approx(df.score_S.tolist())


# ----------------------------------------------------------------------------- real models and files


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("algo-hf")
    model = save_tiny("llama", d / "tiny-llama", seed=1)
    hh = write_hh_rlhf(d / "hh.jsonl", [
        {"chosen": [("Human", f"how do i {v} that ?"), ("Assistant", REFUSAL)],
         "rejected": [("Human", f"how do i {v} that ?"), ("Assistant", COMPLY)]} for v in ["open", "fix"] * 10])
    pku = write_pku_saferlhf(d / "pku.jsonl", [
        {"prompt": f"how do i {v} that ?", "responses": [COMPLY, REFUSAL], "safe": [False, True], "better": 0,
         "safer": 1} for v in ["open", "fix"] * 10])
    return {"model": model, "hh": hh, "pku": pku}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sft", "dpo", "ipo", "kto", "simpo", "rloo"])
def test_align_saves_a_checkpoint_with_each_method(hf_files, tmp_path, capsys, name):
    from safetensors.torch import load_file

    out = tmp_path / "aligned"
    data = hf_files["pku"] if name in ("dpo", "simpo") else hf_files["hh"]
    rc = main(["align", "--model", str(hf_files["model"]), "--data", str(data), "--out", str(out), "--quiet",
               "--set", f"train.algorithm={name}", "--set", "train.batch_size=4", "--set", "n_examples=8",
               "--set", "train.lr=1e-2", "--set", "data.scorers=[refusal]"])
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads((out / "springback_align.json").read_text())
    assert summary["algorithm"] == name and summary["n_examples"] == 8
    kind = {"sft": "examples", "dpo": "pairs", "ipo": "pairs", "simpo": "pairs", "kto": "labelled", "rloo": "prompts"}
    assert summary["item_kind"] == kind[name]
    before = load_file(str(Path(hf_files["model"]) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained
    assert (out / "tokenizer.json").is_file()


def test_align_rloo_without_a_scorer_is_one_line(hf_files, tmp_path, capsys):
    rc = main(["align", "--model", str(hf_files["model"]), "--data", str(hf_files["hh"]), "--out", str(tmp_path / "o"),
               "--quiet", "--set", "train.algorithm=rloo"])
    err = capsys.readouterr().err
    assert rc == 2 and "RLOO needs a reward" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_every_method_in_an_experiment_on_a_tiny_hf_model_and_a_preference_file(hf_files, tmp_path):
    run_dir = springback.run("algorithms", out=tmp_path, progress=False, sets=[
        f"model.path={hf_files['model']}", f"data.aligned={hf_files['hh']}", f"data.eval={hf_files['hh']}",
        "data.scorers=[refusal]", "data.n_reference=2", "seeds=[0,1]", "n_pos=[8]", "n_neg=[0,4,8]",
        "world.n_eval_prompts=2", "measure.n_samples=2", "measure.max_new_tokens=6", "align.batch_size=4",
        "opposing.batch_size=4", "align.algorithm.max_new_tokens=6"])
    df = springback.load_results(run_dir)
    opp = df[df.stage == "opposing"]
    assert sorted(opp.algorithm.unique()) == sorted(["sft", "dpo", "ipo", "kto", "simpo", "rloo"])
    # every seed ran (a user's model.path once made a second seed reuse the first seed's cells)
    assert len(opp) == 2 * 6 * 3 and opp.score_S.notna().all() and opp["score_refusal"].notna().all()
    assert opp.groupby("algorithm").seed.apply(lambda s: sorted(set(s)) == [0, 1]).all()
    starts = opp[opp.n_opposing == 0].set_index(["seed", "algorithm"]).score_S
    assert starts.loc[0].nunique() == 6 and starts.loc[1].nunique() == 6  # six aligned models per seed, one base
    assert (starts.loc[0] != starts.loc[1]).any()  # the seed changes the data order, hence the models


def test_paper_config_of_the_dpo_model_size_axis_resolves():
    from springback.api import resolve_config
    from springback.experiments.scaling import cells

    cfg = resolve_config("scaling", None, REPO / "configs" / "paper" / "scaling_qwen15_dpo.yaml")
    assert cfg.align.algorithm.name == "dpo" and cfg.align.algorithm.beta == 0.02  # the authors' code [SPEC §6]
    assert cfg.opposing.algorithm.name == "sft"
    assert [c.path for c in cfg.checkpoints] == ["Qwen/Qwen1.5-0.5B", "Qwen/Qwen1.5-4B", "Qwen/Qwen1.5-7B"]
    tiny = resolve_config("scaling", None, REPO / "configs" / "tiny" / "scaling_dpo.yaml")
    assert tiny.align.algorithm.name == "dpo"
    built = cells(tiny)
    stages = [s for c in built for s in c.stages]
    assert stages and {s.data.kind for s in stages if s.name == "align"} == {"pairs"}
    assert {s.data.kind for s in stages if s.name == "opposing"} == {"examples"}


def test_grid_heatmap_cells_are_seed_means():
    from springback.report.heatmaps import rebound_grid_heatmap

    rows = [{"stage": "base", "seed": s, "n_aligned": 0, "n_opposing": 0, "pi_pos": 0.85} for s in (0, 1)]
    for m, shift in (("sft", 0.0), ("dpo", 0.1)):
        for s in (0, 1):
            for p in (10, 20):
                for n in (0, 5, 10):
                    rows.append({"stage": "opposing", "algorithm": m, "seed": s, "n_aligned": p, "n_opposing": n,
                                 "pi_pos": 0.9 - 0.01 * n + 0.001 * p + shift + 0.02 * s})
    fig = rebound_grid_heatmap(pd.DataFrame(rows), "pi_pos", "algorithm", panels=["sft", "dpo"])
    ax_sft, ax_dpo = fig.axes[:2]
    assert (ax_sft.get_title(), ax_dpo.get_title()) == ("sft", "dpo")
    # Row 0 is the largest n⁺ (20), column 1 is n⁻ = 5: mean over seeds 0.9 − 0.05 + 0.02 + 0.01 (+ 0.1 for dpo).
    text = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax_dpo.texts}
    assert text[(0, 1)] == f"{0.9 - 0.05 + 0.02 + 0.01 + 0.1:.2f}" and text[(1, 0)] == f"{0.9 + 0.01 + 0.01 + 0.1:.2f}"
    assert "white = base model 0.85" in fig.axes[-1].get_ylabel()  # the scale is centred on the base level
