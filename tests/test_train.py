import copy

import pytest
import torch

from springback.config import TrainConfig
from springback.errors import DivergenceError
from springback.teacher import per_example_loss
from springback.tokens import collate, encode
from springback.train import _batches, train


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_encode_masks_prompt(sentiment_world):
    tok = sentiment_world.tokenizer()
    enc = encode(tok, "review of the red river :", "it was great , the music was superb .")
    n_prompt = len(tok("review of the red river :").input_ids)
    assert enc.loss_mask[:n_prompt] == [False] * n_prompt
    assert all(enc.loss_mask[n_prompt:]) and enc.input_ids[-1] == tok.eos_token_id
    full = encode(tok, "", "the cat saw a cup .", loss_on="all")
    assert full.loss_mask[0] is False and all(full.loss_mask[1:])


def test_loss_ignores_prompt_and_padding(nano_model):
    model, tok = nano_model
    a = encode(tok, "review of the red river :", "it was great , the music was superb .")
    b = encode(tok, "my thoughts on the cold city :", "it was bad , the ending was dull .")
    alone = per_example_loss(model, collate([a], tok.pad_token_id))
    padded = per_example_loss(model, collate([a, b], tok.pad_token_id))
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-5, atol=1e-6)


def test_parameters_change_and_runs_repeat(nano_model, sentiment_world):
    model, tok = nano_model
    data = sentiment_world.aligned(64, seed=0)
    cfg = TrainConfig(lr=1e-3, batch_size=16)
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    before = _params(m1)
    r1 = train(m1, tok, data, cfg, seed=0, progress=False)
    r2 = train(m2, tok, data, cfg, seed=0, progress=False)
    assert not torch.equal(before, _params(m1)), "a training step must change the parameters"
    assert torch.equal(_params(m1), _params(m2)), "same seed must repeat bit for bit"
    assert r1.loss == r2.loss and r1.n_examples == [16, 32, 48, 64]
    m3 = copy.deepcopy(model)
    train(m3, tok, data, cfg, seed=1, progress=False)
    assert not torch.equal(_params(m1), _params(m3)), "the seed sets the data order"


def test_gradient_accumulation_equivalence(nano_model, sentiment_world):
    """batch 8 x accumulation 1 == batch 8 split into 8 micro-batches of 1 (DESIGN rule 9)."""
    model, tok = nano_model
    data = sentiment_world.opposing(32, seed=0)
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    r1 = train(m1, tok, data, TrainConfig(lr=1e-3, batch_size=8, grad_accum=1), seed=0, progress=False)
    r2 = train(m2, tok, data, TrainConfig(lr=1e-3, batch_size=8, grad_accum=8), seed=0, progress=False)
    torch.testing.assert_close(_params(m1), _params(m2), rtol=1e-5, atol=1e-6)
    assert r1.loss == pytest.approx(r2.loss, rel=1e-5)


def test_measurement_points_are_exact(nano_model, sentiment_world):
    model, tok = nano_model
    seen = []
    res = train(copy.deepcopy(model), tok, sentiment_world.aligned(50, seed=0), TrainConfig(batch_size=16), seed=0,
                measure_at=[0, 5, 20, 50], on_measure=lambda n, m: seen.append(n), progress=False)
    assert seen == [0, 5, 20, 50]
    assert res.n_examples == [5, 20, 36, 50]  # a cut restarts the batch
    assert _batches(list(range(10)), 4, {3}) == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]


def test_constant_lr_prefix_property(nano_model, sentiment_world):
    """With a constant lr, the model after n examples of a long run equals a run on the first n."""
    model, tok = nano_model
    data = sentiment_world.opposing(48, seed=2)
    snap = {}
    long = copy.deepcopy(model)
    train(long, tok, data, TrainConfig(batch_size=8), seed=0, shuffle=False, measure_at=[24],
          on_measure=lambda n, m: snap.setdefault(n, _params(m).clone()), progress=False)
    short = copy.deepcopy(model)
    train(short, tok, data[:24], TrainConfig(batch_size=8), seed=0, shuffle=False, progress=False)
    assert torch.equal(snap[24], _params(short))


def test_divergence_names_stage_and_step(nano_model, sentiment_world):
    model, tok = nano_model
    bad = copy.deepcopy(model)
    with torch.no_grad():
        next(bad.parameters()).fill_(float("nan"))
    with pytest.raises(DivergenceError, match="stage 'align' at step 0"):
        train(bad, tok, sentiment_world.aligned(8, 0), TrainConfig(batch_size=4), seed=0, stage="align", progress=False)


def test_bad_measure_points(nano_model, sentiment_world):
    from springback.errors import ConfigError

    model, tok = nano_model
    with pytest.raises(ConfigError, match="outside"):
        train(copy.deepcopy(model), tok, sentiment_world.aligned(8, 0), TrainConfig(), seed=0, measure_at=[9], progress=False)
