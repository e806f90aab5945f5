"""augment -> train -> evaluate with the real MiniLM on a small real subset of 1000genome."""

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
            "hybrid": {"folds": 2, "fold_samples": 200, "stack_samples": 1000},
            "candidates": [
                "sft",
                "hybrid",
                "gradient_boosting",
                "random_forest",
                "isolation_forest",
            ],
        },
        evaluate={"online_max_jobs": 60},
    )
    summary = ingest.run(cfg, flowbench_dir, progress=False)
    assert summary["tables"]["1000genome"]["runs"] == 20
    assert summary["tables"]["1000genome"]["jobs"] == 20 * 137
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
    # The hybrid's trees read the evidence and the encoder's out-of-fold score: on 1,000
    # stacked rows it stays near the boosting it is built on.
    hybrid = report.candidates["hybrid"].test
    assert hybrid.jobs == gb.jobs and hybrid.roc_auc > 0.8
    saved = json.loads((cfg.paths.models / "hybrid" / "flowsentry.json").read_text())
    assert saved["out_of_fold"]["rows"] == 1000 and saved["out_of_fold"]["roc_auc"] > 0.5
    assert EvaluationReport.read(cfg.paths) == report  # what the gate and the flows read
    assert report.candidates["sft"].model["workflows"] == ["1000genome"]
