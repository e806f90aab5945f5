"""The Prefect data flow runs the same stages as dvc.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def test_data_flow_on_tiny_traces(harness, make_flowbench, project, tmp_path):
    from flows.pipeline import data_pipeline

    cfg = project()
    suite = str(cfg.paths.gx_suite)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({"ingest": {"workflows": ["tiny"]}, "paths": {"gx_suite": suite}})
    )
    result = data_pipeline(params=str(params), flowbench_dir=str(make_flowbench(n_runs=10)))
    assert result["ingest"]["tables"]["tiny"]["jobs"] == 60
    assert result["validation"]["success"]
    assert len(pd.read_parquet(tmp_path / "data" / "prepared" / "train.parquet")) == 48
