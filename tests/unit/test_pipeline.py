"""The in-process pipeline takes its stage order from dvc.yaml (the one definition)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flowsentry import pipeline
from flowsentry.config import Config
from flowsentry.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_stage_order_is_dvc_yaml_order():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    expected = [name for name, s in stages.items() if s["cmd"] == f"flowsentry {name}"]
    assert pipeline.stage_order(ROOT / "dvc.yaml") == expected
    assert expected[:4] == ["ingest", "validate", "prepare", "augment"]


def test_a_workspace_moves_artifacts_and_keeps_reading_the_suite(tmp_path):
    cfg = Config()
    project = cfg.under(tmp_path)
    assert project.paths.jobs == tmp_path / "data" / "jobs"
    assert project.paths.gx_suite == tmp_path / cfg.paths.gx_suite
    work = cfg.under(tmp_path, artifacts_only=True)
    assert work.paths.models == tmp_path / "models" / "candidates"
    assert work.paths.gx_suite == cfg.paths.gx_suite  # an input, versioned with the code


def test_runs_the_stages_up_to_one_in_a_workspace(make_flowbench, project, tmp_path):
    cfg = project().under(tmp_path / "work", artifacts_only=True)
    ran = pipeline.run(cfg, until="validate", flowbench_dir=make_flowbench(n_runs=6))
    assert list(ran) == ["ingest", "validate"]
    assert (tmp_path / "work" / "data" / "validated" / "tiny.parquet").exists()
    with pytest.raises(ConfigError, match="unknown stage 'deploy'"):
        pipeline.run(cfg, until="deploy")
