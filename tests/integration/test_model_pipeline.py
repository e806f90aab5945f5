"""ingest -> evaluate with the real MiniLM on a small real subset of 1000genome."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flowsentry.reports import EvaluationReport
from flowsentry.stages import augment, evaluate, ingest, prepare, train, validate

pytestmark = pytest.mark.integration


def test_real_subset_pipeline(flowbench_dir, project):
    cfg = project(
        ingest={"workflows": ["1000genome"], "max_runs": 20},
        text={"template": "compact", "feature_set": "context"},
        train={
            "model": "minilm",
            "epochs": 1,
            "max_train_samples": 400,
            "max_val_samples": 100,
            "learning_rate": 2e-4,
            # the fine-tuned encoder beside the reference it must beat; every other kind
            # is trained and scored on tiny traces (tests/unit/test_model_stages.py,
            # test_hybrid.py): here the real encoder meets real jobs
            "candidates": ["sft", "gradient_boosting"],
            # the float32 ONNX file scores here; the int8 choice is tested on the tiny
            # encoder (tests/unit/test_model_stages.py, test_sft.py)
            "int8": "off",
        },
        evaluate={"online_max_jobs": 10},
    )
    summary = ingest.run(cfg, flowbench_dir, progress=False)
    assert summary.tables["1000genome"].runs == 20
    assert summary.tables["1000genome"].jobs == 20 * 137
    validate.run(cfg)
    prepare.run(cfg)
    augment.run(cfg)
    trained = train.run(cfg, progress=False)
    assert set(trained.candidates) == set(cfg.train.candidates)

    report = evaluate.run(cfg, progress=False)
    assert report.split.method == "by_run"
    test_runs = {run for run in pd.read_parquet(cfg.paths.prepared / "test.parquet")["run"]}
    train_runs = set(pd.read_parquet(cfg.paths.prepared / "train.parquet")["run"])
    assert test_runs and not test_runs & train_runs  # whole runs held out
    sft, gb = report.candidates["sft"].test, report.candidates["gradient_boosting"].test
    assert sft.jobs == gb.jobs == 137 * len(test_runs)
    # Boosting on the host-slowdown context is the reference to beat.
    assert gb.roc_auc > 0.8
    assert sft.roc_auc > 0.6  # 400 jobs, one epoch: learning, not converged
    saved = json.loads((cfg.paths.models / "sft" / "flowsentry.json").read_text())
    assert saved["base_model"] == "minilm" and saved["template"] == "compact"
    assert saved["data_version"] == report.candidates["sft"].model["data_version"]
    assert EvaluationReport.read(cfg.paths) == report  # what the gate and the flows read
    assert report.candidates["sft"].model["workflows"] == ["1000genome"]
