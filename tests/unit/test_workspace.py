"""`dvc.yaml` run by DVC in a workspace (a study's or a sweep candidate's): DVC decides
what is stale there, as in the project; nothing of the project is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flowsentry.config import Config, load_config
from flowsentry.errors import ConfigError
from flowsentry.workspace import StageFailed, Workspace, stage_order

ROOT = Path(__file__).resolve().parents[2]


def test_stage_order_is_dvc_yaml_order():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    expected = [name for name, s in stages.items() if s["cmd"] == f"flowsentry {name}"]
    assert stage_order(ROOT / "dvc.yaml") == expected
    assert expected[:4] == ["ingest", "validate", "prepare", "augment"]
    with pytest.raises(ConfigError, match="not found"):
        stage_order(ROOT / "no" / "dvc.yaml")


def test_paths_under_a_folder_keep_absolute_ones(tmp_path):
    paths = Config().paths.model_copy(update={"gx_suite": ROOT / "gx"}).under(tmp_path)
    assert paths.jobs == tmp_path / "data" / "jobs"
    assert paths.gx_suite == ROOT / "gx"


def test_dvc_runs_the_stale_stages_in_the_workspace_only(make_flowbench, project, tmp_path):
    cfg = project(limits={"max_rows_per_run": 500})
    traces = make_flowbench(n_runs=6)
    space = Workspace.open(tmp_path / "work", cfg)

    # its params.yaml is the config, its inputs absolute, its pipeline the project's
    assert load_config(space.root / "params.yaml").limits.max_rows_per_run == 500
    assert space.cfg.paths.gx_suite.is_absolute() and space.cfg.paths.labels.exists()
    assert (space.root / "dvc.yaml").resolve() == (ROOT / "dvc.yaml")

    assert space.run("ingest", traces) == ["ingest"]
    assert (space.paths.jobs / "tiny.parquet").exists()
    assert not (tmp_path / "data").exists()  # the project's own artifacts: untouched
    assert space.run("ingest", traces) == []  # DVC: up to date

    looser = cfg.limits.model_copy(update={"max_rows_per_run": 400})
    changed = Workspace.open(tmp_path / "work", cfg.model_copy(update={"limits": looser}))
    assert changed.run("ingest", traces) == ["ingest"]  # its params changed

    with pytest.raises(ConfigError, match="unknown stage 'deploy'"):
        space.run("deploy")


def test_a_seeded_workspace_takes_the_stages_from_the_cache(make_flowbench, project, tmp_path):
    cfg = project()
    traces = make_flowbench(n_runs=6)
    data = Workspace.open(tmp_path / "sweep" / "data", cfg)
    data.run("ingest", traces)
    other = Workspace.open(tmp_path / "sweep" / "other", cfg)
    other.seed(data, ["ingest"])
    assert (other.paths.jobs / "tiny.parquet").read_bytes() == (
        data.paths.jobs / "tiny.parquet"
    ).read_bytes()
    assert other.run("ingest", traces) == []
    assert other.run("ingest", traces, force_only=True) == ["ingest"]

    # the data changes: a second seed replaces what DVC does not cache too (the report)
    smaller = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"max_runs": 4})})
    data = Workspace.open(data.root, smaller)
    data.run("ingest", traces)
    other = Workspace.open(other.root, smaller)
    other.seed(data, ["ingest"])
    report = "reports/ingest.json"
    assert (other.root / report).read_text() == (data.root / report).read_text()
    assert other.run("ingest", traces) == []


def test_a_failed_stage_is_one_line_naming_the_workspace(project, tmp_path):
    space = Workspace.open(tmp_path / "work", project())
    with pytest.raises(StageFailed, match=r"work: dvc repro ingest failed: ") as failed:
        space.run("ingest", tmp_path / "no-traces")
    assert "\n" not in str(failed.value)
    with pytest.raises(StageFailed, match=r"no locked stages \['ingest'\]"):
        Workspace.open(tmp_path / "other", project()).seed(space, ["ingest"])
