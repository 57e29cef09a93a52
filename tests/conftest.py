"""Shared fixtures: tiny worlds and models so tests run in seconds on a laptop CPU."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs execute in the test process (monkeypatches reach them; no worker pools to start);
# tests/test_executors.py picks its executors explicitly.
os.environ.setdefault("SPRINGBACK_EXECUTOR", "serial")

# A rebound config small enough for an end-to-end run in a few seconds.
TINY_REBOUND = [
    "seeds=[0,1]",
    "worlds=[sentiment]",
    "n_pos=[100,200]",
    "n_neg=[0,20,40,80]",
    "world.n_task_examples=1500",
    "world.n_general_examples=300",
    "world.n_eval_prompts=4",
    "model.preset=nano",
    "measure.n_samples=2",
    "measure.max_new_tokens=14",
]


@pytest.fixture
def tiny_rebound_sets() -> list[str]:
    return list(TINY_REBOUND)


@pytest.fixture(scope="session")
def sentiment_world():
    from springback.worlds import get_world

    return get_world("sentiment")


@pytest.fixture(scope="session")
def nano_model(sentiment_world):
    from springback.models import build_model

    tok = sentiment_world.tokenizer()
    return build_model("nano", tok, seed=0), tok


@pytest.fixture(scope="session")
def tiny_rebound_run(tmp_path_factory):
    """One tiny finished rebound run, shared by the tests that only read it."""
    from springback import run

    out = tmp_path_factory.mktemp("rebound-runs")
    return run("rebound", sets=list(TINY_REBOUND), out=out, progress=False)
