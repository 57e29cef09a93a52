"""Experiment trackers: the logged losses and measurements are the run's own, logging changes no
result and no cell key, and a missing backend is one line before any work."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from springback.cli import main
from springback.errors import SpringbackError
from springback.pipeline.trackers import Tracker, check_tracker, row_metrics, wandb_mode


def _scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in one directory: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(directory), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_on_step_sees_every_update_and_changes_nothing(nano_model, sentiment_world):
    import copy

    import torch

    from springback.config import TrainConfig
    from springback.train import train

    model, tok = nano_model
    examples = sentiment_world.aligned(20, 0)
    cfg = TrainConfig(lr=1e-3, batch_size=8)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    seen = []
    ra = train(a, tok, examples, cfg, seed=3, progress=False, on_step=lambda n, loss: seen.append((n, loss)))
    rb = train(b, tok, examples, cfg, seed=3, progress=False)
    assert seen == list(zip(ra.n_examples, ra.loss)) and [n for n, _ in seen] == [8, 16, 20]
    assert ra.loss == rb.loss and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_missing_or_unknown_tracker_is_one_line(monkeypatch, tmp_path, capsys):
    with pytest.raises(SpringbackError, match="unknown tracker 'neptune'"):
        check_tracker("neptune")
    check_tracker(None)  # off by default
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(SpringbackError, match=r"pip install 'springback\[wandb\]'"):
        check_tracker("wandb")
    assert main(["run", "rebound", "--log-with", "wandb", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs the 'wandb' package" in err[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_row_metrics_and_wandb_mode(monkeypatch):
    row = {"experiment": "rebound", "stage": "opposing", "world": "sentiment", "seed": 1, "n_aligned": 100,
           "n_opposing": 40, "n_examples": 40, "score_S": -1.5, "pi_pos": float("nan"), "bisect": True,
           "model": "nano", "curve_loss": [1.0, 2.0]}
    assert row_metrics(row) == ("opposing", 40, {"opposing/score_S": -1.5, "opposing/bisect": 1})
    prefix, step, _ = row_metrics({"stage": "finetune", "direction": "inverse", "pair": "1-2", "n_examples": 12.6})
    assert (prefix, step) == ("finetune/inverse/1-2", 13)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_mode(("127.0.0.1", 9), timeout_s=0.5) == "offline"  # nothing listens there: no network


def test_tensorboard_tracker_writes_one_run_per_cell(tmp_path):
    pytest.importorskip("tensorboard")
    tr = Tracker("tensorboard", tmp_path, "springback-test", {"experiment": "x", "nested": {"not": "logged"}})
    tr.start_cell("abc123", "cell one", (("world", "sentiment"), ("seed", 0)))
    for n, loss in ((8, 2.5), (16, 2.25)):
        tr.loss_logger("align")(n, loss)
    tr.log_rows([{"stage": "opposing", "n_examples": 0, "score_S": 0.5}, {"stage": "opposing", "n_examples": 20, "score_S": 0.25}])
    tr.close()
    got = _scalars(tmp_path / "tensorboard" / "abc123")
    assert got["loss/align"] == [(8, 2.5), (16, 2.25)]
    assert got["opposing/score_S"] == [(0, 0.5), (20, 0.25)]


class _FakeBackend:
    """Stands in for accelerate's WandBTracker / MLflowTracker: records what springback asks of it."""

    made: list = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.logged, self.config, self.defined, self.finished = args, kwargs, [], None, [], False
        self.tracker = self  # W&B's run object: define_metric lives there
        _FakeBackend.made.append(self)

    def start(self):
        pass

    def store_init_configuration(self, values):
        self.config = values

    def log(self, values, step=None):
        self.logged.append((values, step))

    def define_metric(self, name, **kwargs):
        self.defined.append((name, kwargs))

    def finish(self):
        self.finished = True


def test_wandb_and_mlflow_wiring(monkeypatch, tmp_path):
    import sys
    import types

    from accelerate import tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in ("wandb", "mlflow") else real(name, *a))
    monkeypatch.setattr(tracking, "WandBTracker", _FakeBackend)
    monkeypatch.setattr(tracking, "MLflowTracker", _FakeBackend)
    uris = []
    monkeypatch.setitem(sys.modules, "mlflow", types.SimpleNamespace(set_tracking_uri=uris.append))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    _FakeBackend.made = []

    # W&B: the cell key names the run; each stage's examples are their own x axis (W&B's own step must only grow).
    tr = Tracker("wandb", tmp_path / "run", "springback-rebound")
    tr.start_cell("k1", "sentiment n+=100 s0", (("seed", 0),))
    tr.log_loss("align", 8, 2.5)
    tr.log_rows([{"stage": "opposing", "n_examples": 0, "score_S": 0.5}])
    tr.close()
    w = _FakeBackend.made[-1]
    assert w.args == ("springback-rebound",) and w.kwargs["name"] == "k1" and w.kwargs["mode"] == "offline"
    assert w.kwargs["dir"] == str(tmp_path / "run") and w.config["cell_key"] == "k1" and w.config["seed"] == 0
    assert w.logged == [({"loss/align": 2.5, "examples/align": 8}, None),
                        ({"opposing/score_S": 0.5, "examples/opposing": 0}, None)]
    assert ("loss/align", {"step_metric": "examples/align"}) in w.defined and w.finished

    # MLflow: a local file: store under the run directory, one run per cell named by its key.
    tr = Tracker("mlflow", tmp_path / "run", "springback-rebound")
    assert uris == [(tmp_path / "run" / "mlruns").resolve().as_uri()] and uris[0].startswith("file:")
    tr.start_cell("k2", "cell", ())
    tr.log_loss("opposing", 16, 1.25)
    tr.close()
    m = _FakeBackend.made[-1]
    assert m.kwargs["run_name"] == "k2" and m.kwargs["experiment_name"] == "springback-rebound"
    assert m.logged == [({"loss/opposing": 1.25}, 16)] and m.finished


@pytest.mark.slow
def test_tiny_rebound_logged_to_tensorboard(tiny_rebound_run, tiny_rebound_sets, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import springback
    import springback.train as train_module

    losses = []  # (stage, n_examples, loss) of every update, as train returned them
    real_train = train_module.train

    def spy(*args, **kwargs):
        result = real_train(*args, **kwargs)
        losses.extend((kwargs["stage"].split()[0], n, v) for n, v in zip(result.n_examples, result.loss))
        return result

    monkeypatch.setattr(train_module, "train", spy)
    out = tmp_path / "out"
    shutil.copytree(tiny_rebound_run.parent / "_cache", out / "_cache")  # reuse the pre-trained bases
    run_dir = springback.run("rebound", sets=tiny_rebound_sets, out=out, progress=False, log_with="tensorboard")
    # Logging changes nothing: same run directory name, same cell keys, the same rows byte for byte.
    assert run_dir.name == tiny_rebound_run.name
    assert (run_dir / "records.jsonl").read_bytes() == (tiny_rebound_run / "records.jsonl").read_bytes()
    df = springback.load_results(run_dir)
    cells = sorted(df.cell.unique())
    assert sorted(p.name for p in (run_dir / "tensorboard").iterdir()) == cells  # one tracker run per cell key
    logged = []
    for cid in cells:
        got = _scalars(run_dir / "tensorboard" / cid)
        for tag, points in got.items():
            if tag.startswith("loss/"):
                logged += [(tag.split("/", 1)[1], step, value) for step, value in points]
        rows = df[df.cell == cid]
        for stage, g in rows.groupby("stage"):  # every measurement row, at step = n_examples
            assert got[f"{stage}/score_S"] == [(int(n), pytest.approx(np.float32(v))) for n, v in zip(g.n_examples, g.score_S)]
    stages = [s for s, _, _ in losses]
    assert set(stages) == {"align", "opposing"} and len(logged) == len(losses) > 0
    # TensorBoard stores float32: the logged losses are the run's, rounded to float32.
    assert sorted(logged) == sorted((s, n, float(np.float32(v))) for s, n, v in losses)



@pytest.mark.slow
def test_tracking_through_a_worker_pool_logs_what_serial_logs(tiny_rebound_run, tiny_rebound_sets, tmp_path):
    """Cells computed by worker processes are logged there (the losses exist only where the model
    trains): every tag, step and value equals a serial tracked run's, and the records are unchanged."""
    pytest.importorskip("tensorboard")
    import springback

    runs = {}
    for kind in ("serial", "local"):
        out = tmp_path / kind
        shutil.copytree(tiny_rebound_run.parent / "_cache", out / "_cache")
        runs[kind] = springback.run("rebound", sets=tiny_rebound_sets + ["executor.workers=2"] * (kind == "local"),
                                    out=out, progress=False, log_with="tensorboard", executor=kind)
    serial, local = runs["serial"], runs["local"]
    assert (local / "records.jsonl").read_bytes() == (tiny_rebound_run / "records.jsonl").read_bytes()
    cells = sorted(p.name for p in (serial / "tensorboard").iterdir())
    assert cells == sorted(p.name for p in (local / "tensorboard").iterdir()) and len(cells) >= 2
    trained = 0
    for cid in cells:
        a, b = _scalars(serial / "tensorboard" / cid), _scalars(local / "tensorboard" / cid)
        assert a == b and any(t.endswith("/score_S") for t in b)
        trained += any(t.startswith("loss/") for t in b)
    assert trained >= 2  # the curves' cells trained in a worker and logged their losses there
