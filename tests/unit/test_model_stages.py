"""augment -> train -> evaluate on tiny traces with a tiny encoder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flowsentry.stages import augment, evaluate, ingest, prepare, train, validate


@pytest.fixture
def trained(make_flowbench, project, tiny_encoder):
    cfg = project(
        text={"template": "compact", "feature_set": "context"},
        train={
            "model": str(tiny_encoder),
            "epochs": 2,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "max_train_samples": 200,
            "max_val_samples": 60,
            "device": "cpu",
        },
        augment={"prefix_fraction": 0.5, "empty_fraction": 0.05},
        evaluate={"online_max_jobs": 40},
    )
    ingest.run(cfg, make_flowbench(n_runs=40, n_jobs=6), progress=False)
    validate.run(cfg)
    prepare.run(cfg)
    return cfg


def test_augment_train_evaluate(trained):
    cfg = trained
    summary = augment.run(cfg)
    assert summary["by_kind"]["prefix"] == 96 and summary["by_kind"]["empty"] == 10
    train_summary = train.run(cfg, progress=False)
    assert train_summary["train_jobs"] == 200  # of 298 augmented rows
    metadata = json.loads((cfg.paths.model / "flowsentry.json").read_text())
    assert metadata["feature_set"] == "context" and 0 < metadata["threshold"] < 1
    assert len(metadata["data_version"]["train_md5"]) == 32

    report = evaluate.run(cfg, progress=False)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "confusion"):
        assert key in report["sft"]
    assert set(report["sft"]["recall_by_anomaly_type"]) == {"cpu_2"}
    assert {"gradient_boosting", "random_forest", "isolation_forest"} <= set(report["baselines"])
    assert "gradient_boosting/paper_features" in report["baselines"]
    # The host-slowdown context makes the synthetic anomalies easy for boosting.
    assert report["baselines"]["gradient_boosting"]["f1"] > 0.9
    online = report["online"]["sft"]
    assert len(online["accuracy_by_k"]) == len(report["online"]["features"]) + 1
    assert set(report["sft"]["bias"]["p_anomalous"]) == {"empty", "all_missing", "names_only"}

    out = cfg.paths.reports / "evaluate"
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns) == ["workflow", "run", "job", "label", "score", "prediction"]
    assert len(predictions) == 24
    for name in ("roc.png", "precision_recall.png", "confusion.png", "early_detection.png"):
        assert (out / "png" / name).stat().st_size > 1000
    for name in (
        "sklearn/roc.json",
        "sklearn/precision_recall.json",
        "sklearn/confusion.json",
        "custom/early_detection.json",
    ):
        assert (out / "live" / "plots" / name).exists()
    assert json.loads((out / "metrics.json").read_text())["sft"]["jobs"] == 24
