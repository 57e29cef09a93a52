import dataclasses

import pytest

from springback.config import (
    TrainConfig,
    deep_merge,
    from_dict,
    parse_set,
    resolve,
    stable_hash,
    to_dict,
)
from springback.errors import ConfigError


@dataclasses.dataclass
class Cfg:
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    lr: float = 1e-3
    name: str = "x"
    flag: bool = False
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def test_round_trip_and_types():
    cfg = from_dict(Cfg, {"seeds": [1, 2], "lr": 1, "train": {"batch_size": 4}})
    assert cfg.seeds == [1, 2] and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.train.batch_size == 4 and cfg.train.lr == TrainConfig().lr
    assert from_dict(Cfg, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"nope": 1}, "unknown config key 'nope'"),
        ({"train": {"bsz": 1}}, "unknown config key 'train.bsz'"),
        ({"lr": "fast"}, "lr: expected a number"),
        ({"seeds": [1, "a"]}, "seeds[1]: expected an integer"),
        ({"flag": 1}, "flag: expected true or false"),
        ({"seeds": 3}, "seeds: expected a list"),
    ],
)
def test_bad_values_are_named(data, needle):
    with pytest.raises(ConfigError, match=None) as exc:
        from_dict(Cfg, data)
    assert needle in str(exc.value)


def test_precedence_defaults_preset_file_sets(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.5\nname: file\n")
    presets = {"quick": {"lr": 0.1, "name": "preset", "seeds": [7]}}
    cfg = resolve(Cfg, presets, "quick", f, ["name=cli", "train.lr=2e-5"])
    assert (cfg.seeds, cfg.lr, cfg.name, cfg.train.lr) == ([7], 0.5, "cli", 2e-5)


def test_parse_set_and_errors(tmp_path):
    assert parse_set("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    assert parse_set("x=true") == {"x": True}
    with pytest.raises(ConfigError):
        parse_set("novalue")
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve(Cfg, {"quick": {}}, "huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        resolve(Cfg, {}, None, bad)
    with pytest.raises(ConfigError, match="not found"):
        resolve(Cfg, {}, None, tmp_path / "missing.yaml")


def test_hash_is_stable_and_sensitive():
    a, b = Cfg(), Cfg()
    assert stable_hash(a) == stable_hash(b)
    b.train.lr = 1e-4
    assert stable_hash(a) != stable_hash(b)
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


def test_every_experiment_preset_resolves():
    from springback.api import resolve_config
    from springback.experiments import EXPERIMENTS

    for name, exp in EXPERIMENTS.items():
        for preset in exp.presets:
            cfg = resolve_config(name, preset)
            assert isinstance(cfg, exp.config_cls)


def _shipped_configs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    out = []
    for f in sorted(root.rglob("*.yaml")):
        head = f.read_text().splitlines()[:5]
        exp = next((line.split(":", 1)[1].strip() for line in head if line.startswith("# experiment:")), None)
        if exp is not None:
            out.append(pytest.param(f, exp, id=str(f.relative_to(root))))
    return out or [pytest.param(None, None, marks=pytest.mark.skip(reason="no experiment configs shipped"))]


@pytest.mark.parametrize("path, experiment", _shipped_configs())
def test_shipped_config_files_resolve(path, experiment):
    """Every YAML under configs/ whose header names an experiment (``# experiment: NAME``) resolves."""
    from springback.api import resolve_config

    cfg = resolve_config(experiment, None, path)
    assert type(cfg).__name__.lower().startswith(experiment.replace("_", "")[:4])
