"""params.yaml -> typed config, with errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowsentry.config import Config, load_config
from flowsentry.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_repository_params_load_into_typed_config():
    cfg = load_config(ROOT / "params.yaml")
    assert isinstance(cfg, Config)
    assert cfg.ingest.workflows == ("1000genome",)
    assert cfg.split.method == "by_run" and cfg.base.seed == 42
    assert cfg.paths.jobs == Path("data/jobs")


def test_defaults_equal_params_yaml():
    """One source of config: the typed defaults are params.yaml's values."""
    assert load_config(ROOT / "params.yaml") == Config()


def test_candidates_must_be_known_kinds_listed_once():
    with pytest.raises(ConfigError, match="train.candidates"):
        load_config(ROOT / "params.yaml", {"train.candidates": ["sft", "sft"]})
    with pytest.raises(ConfigError, match="train.candidates"):
        load_config(ROOT / "params.yaml", {"train.candidates": ["xgboost"]})
    with pytest.raises(ConfigError, match="train.candidates"):
        load_config(ROOT / "params.yaml", {"train.candidates": []})


def test_config_is_immutable():
    cfg = load_config(ROOT / "params.yaml")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        cfg.base.seed = 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"split.method": "alphabetical"}, "split.method"),
        ({"split.train": 0.9}, "train + val + test must be 1.0"),
        ({"ingest.workflows": []}, "ingest: name at least one source"),
        ({"ingest.workflows": ["a b"]}, "ingest.workflows"),
        ({"ingest.stampede": [{"name": "x"}]}, "ingest.stampede.0.url"),
        ({"text.template": "haiku"}, "text.template"),
        ({"base.sed": 3}, "base.sed"),
        ({"gate.rank_on": "real_time", "gate.workflow": "montage"}, "set workflow to null"),
        ({"train.hybrid.folds": 1}, "train.hybrid.folds"),
        ({"augment.realtime_fraction": 2}, "augment.realtime_fraction"),
    ],
)
def test_bad_params_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(ROOT / "params.yaml", override)


def test_file_split_needs_a_manifest():
    with pytest.raises(ConfigError, match="split.manifest"):
        load_config(ROOT / "params.yaml", {"split.method": "file"})


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "params.yaml")


def test_overrides_parse_yaml_values_and_name_bad_items():
    from flowsentry.config import parse_overrides

    assert parse_overrides(["train.epochs=3", "sweep.modes=[full, head]"]) == {
        "train.epochs": 3,
        "sweep.modes": ["full", "head"],
    }
    with pytest.raises(ConfigError, match="--set epochs: expected KEY=VALUE"):
        parse_overrides(["epochs"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_overrides(["sweep.modes=[full"])
