"""The Prefect retraining flow on tiny traces with a tiny encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture
def setup(harness, make_flowbench, project, tiny_encoder, tmp_path, bento_home):
    cfg = project()

    def write(workflow_edit=None):
        params = {
            "ingest": {"workflows": ["tiny"]},
            "paths": {"gx_suite": str(cfg.paths.gx_suite)},
            "text": {"template": "compact", "feature_set": "context"},
            "train": {
                "model": str(tiny_encoder),
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_train_samples": 150,
                "device": "cpu",
            },
            "evaluate": {"online_max_jobs": 20},
            "gate": {
                "min_f1": 0.0,
                "min_roc_auc": 0.0,
                "max_bias_gap": 1.0,
                "max_p99_latency_ms": 10000,
            },
        }
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        return str(make_flowbench(n_runs=30, edit=workflow_edit))

    return write, tmp_path


def test_retrain_promotes_packages_then_trains_nothing_new(setup):
    from flows.retrain import retrain

    write, home = setup
    traces = write()
    bentofile = str(ROOT / "bentofile.yaml")
    first = retrain(params="params.yaml", flowbench_dir=traces, bentofile=bentofile)
    assert first["gate"]["decision"] == "promote" and first["bento"]
    model_meta = home / "models" / "sft" / "flowsentry.json"
    stamp = model_meta.stat().st_mtime_ns

    second = retrain(params="params.yaml", flowbench_dir=traces, bentofile=bentofile)
    assert model_meta.stat().st_mtime_ns == stamp  # cached: nothing was trained
    assert second["train"] == first["train"]
    assert second["gate"]["decision"] == "reject" and second["bento"] is None
    failed = {c["check"] for c in second["gate"]["checks"] if c["verdict"] == "fail"}
    assert failed == {"beats_champion"}  # the same model cannot beat itself


def test_failed_validation_stops_before_training(setup):
    from flows.retrain import retrain

    write, home = setup

    def unknown_anomaly(_, frame):
        frame["anomaly_type"] = "gpu_9"
        return frame

    traces = write(unknown_anomaly)
    state = retrain(params="params.yaml", flowbench_dir=traces, return_state=True)
    assert state.is_failed()
    assert not (home / "models" / "sft").exists()  # training never ran


def test_new_traces_are_ingested_once_and_bad_ones_reported(setup, run_frame):
    from flows.retrain import retrain

    make_run = run_frame

    write, home = setup
    traces = write()
    box = home / "inbox" / "tiny"
    box.mkdir(parents=True)
    make_run(200).to_csv(box / "tiny-run0200.csv", index=False)
    make_run(201).drop(columns="runtime").to_csv(box / "tiny-run0201.csv", index=False)
    result = retrain(
        params="params.yaml",
        flowbench_dir=traces,
        inbox_dir=str(home / "inbox"),
        bentofile=str(ROOT / "bentofile.yaml"),
    )
    assert [r["run"] for r in result["inbox"]["accepted"]] == ["tiny-run0200"]
    assert [r["run"] for r in result["inbox"]["quarantined"]] == ["tiny-run0201"]
    assert result["ingest"]["tables"]["tiny"]["runs"] == 31  # 30 + exactly the new one
