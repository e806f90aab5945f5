"""Evaluation metrics: values checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowsentry.evaluation.metrics import bias, binary_metrics, early_detection, report


def test_binary_metrics_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    out = binary_metrics(labels, scores, 0.5)
    assert out["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert out["accuracy"] == 0.6 and out["precision"] == round(2 / 3, 4)
    assert out["recall"] == round(2 / 3, 4) and out["roc_auc"] == round(5 / 6, 4)


def test_report_recall_per_anomaly_type_and_workflow():
    jobs = pd.DataFrame(
        {
            "label": [1, 1, 1, 0],
            "anomaly_type": ["cpu_2", "cpu_2", "hdd_5", "none"],
            "workflow": ["a", "a", "b", "b"],
        }
    )
    out = report(jobs, np.array([0.9, 0.1, 0.8, 0.2]), 0.5)
    assert out["recall_by_anomaly_type"] == {"cpu_2": 0.5, "hdd_5": 1.0}
    assert set(out["by_workflow"]) == {"a", "b"} and out["by_workflow"]["b"]["accuracy"] == 1.0


def test_early_detection_first_correct_k():
    labels = np.array([1, 1, 0])
    prefix_scores = [
        np.array([0.0, 0.0, 0.0]),
        np.array([0.9, 0.0, 0.0]),
        np.array([0.9, 0.9, 0.0]),
    ]
    out = early_detection(labels, prefix_scores, 0.5)
    assert out["accuracy_by_k"] == [round(1 / 3, 4), round(2 / 3, 4), 1.0]
    assert out["first_correct_k_histogram"] == {"0": 1, "1": 1, "2": 1}
    assert out["anomalous_detected_by_k"] == [0.0, 0.5, 1.0]


def test_bias_gap():
    out = bias({"empty": 0.5, "names_only": 0.9})
    assert out["gap"] == {"empty": 0.0, "names_only": 0.8} and out["mean_gap"] == 0.4
