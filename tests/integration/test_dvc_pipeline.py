"""`dvc repro` of the data stages on a fresh copy of the repository, on the real traces
(all of 1000genome: its counts through ingest, validate and prepare).

The model stages (augment ... package) are covered on a real subset by
test_model_pipeline.py; here DVC itself is under test: the stages run, then re-running
with nothing changed runs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flowsentry.config import load_config
from flowsentry.data import schema
from flowsentry.data.flowbench import load_dag
from flowsentry.reports import IngestReport, PrepareReport, ValidationReport

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_dvc_repro_runs_the_data_stages_and_then_does_nothing(flowbench_dir, tmp_path):
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    clone = tmp_path / "clone"
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "FLOWBENCH_DIR": str(flowbench_dir),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    _run(["git", "init", "-q"], clone, env)
    _run(["git", "add", "-A"], clone, env)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"], clone, env)

    first = _run(["dvc", "repro", "prepare"], clone, env)
    assert "Running stage 'prepare'" in first.stdout
    # the real 1000genome counts, as the stages DVC ran report them
    paths = load_config(clone / "params.yaml").under(clone).paths
    ingested = IngestReport.read(paths).tables["1000genome"]
    assert (ingested.runs, ingested.jobs, ingested.anomalous) == (350, 47_950, 15_689)
    assert ValidationReport.read(paths).tables["1000genome"].clean == 47_950
    # what tests/integration/test_real_traces.py asks of every other workflow
    table = pd.read_parquet(paths.validated / "1000genome.parquet")
    assert table["label"].notna().all() and 0 < table["label"].mean() < 0.5
    assert table["task"].notna().all()
    assert table[list(schema.FLOWBENCH_REQUIRED)].notna().all().all()
    dag = load_dag(paths.dag("1000genome"))
    assert (table.groupby("run").size() == len(dag)).all()  # every run holds its whole DAG
    splits = PrepareReport.read(paths).splits
    assert sum(s.jobs for s in splits.values()) == 47_950
    assert splits["test"].jobs == 4_795
    assert (clone / "reports" / "data_docs" / "index.html").exists()
    assert (clone / "data" / "prepared" / "test.parquet").exists()

    second = _run(["dvc", "repro", "prepare"], clone, env)
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout
