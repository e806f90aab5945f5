"""Classification metrics for anomaly scores (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

ANOMALY_TYPES = ("cpu_2", "cpu_3", "cpu_4", "hdd_5", "hdd_10")


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC-AUC, PR-AUC and the confusion matrix."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(scores) >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {
        "jobs": len(labels),
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
        "precision": round(float(precision_score(labels, predicted, zero_division=0)), 4),
        "recall": round(float(recall_score(labels, predicted, zero_division=0)), 4),
        "f1": round(float(f1_score(labels, predicted, zero_division=0)), 4),
        "roc_auc": round(float(roc_auc_score(labels, scores)), 4) if both else None,
        "pr_auc": round(float(average_precision_score(labels, scores)), 4) if both else None,
        "threshold": round(float(threshold), 4),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def report(jobs: pd.DataFrame, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """binary_metrics overall, recall per anomaly type and metrics per workflow."""
    labels = jobs["label"].astype(int).to_numpy()
    predicted = np.asarray(scores) >= threshold
    out = binary_metrics(labels, scores, threshold)
    types = jobs["anomaly_type"].astype("string").fillna("?").to_numpy()
    out["recall_by_anomaly_type"] = {
        kind: round(float(predicted[types == kind].mean()), 4)
        for kind in ANOMALY_TYPES
        if (types == kind).any()
    }
    if "workflow" in jobs:  # the gate may judge one workflow's runs (gate.workflow)
        out["by_workflow"] = {
            str(wf): binary_metrics(labels[mask], np.asarray(scores)[mask], threshold)
            for wf in sorted(jobs["workflow"].unique())
            for mask in [(jobs["workflow"] == wf).to_numpy()]
        }
    return out


def early_detection(
    labels: np.ndarray, prefix_scores: Sequence[np.ndarray], threshold: float
) -> dict[str, Any]:
    """Accuracy per prefix length k and, per job, the first k already right.

    `prefix_scores[k]` are the scores from the first k features (k = 0 .. K). A job's
    first correct k is the smallest k whose prediction equals the true label, counted
    over the jobs the full record classifies correctly.
    """
    labels = np.asarray(labels).astype(int)
    correct = np.stack([(np.asarray(s) >= threshold).astype(int) == labels for s in prefix_scores])
    accuracy = [round(float(c.mean()), 4) for c in correct]
    final_right = correct[-1]
    first = np.argmax(correct, axis=0).astype(float)
    first[~final_right] = np.nan
    anomalous = labels == 1
    detected_by_k = [
        round(
            float(
                (correct[: k + 1].any(axis=0) & final_right & anomalous).sum()
                / max(anomalous.sum(), 1)
            ),
            4,
        )
        for k in range(len(prefix_scores))
    ]
    return {
        "jobs": len(labels),
        "accuracy_by_k": accuracy,
        "first_correct_k_mean": round(float(np.nanmean(first)), 3) if final_right.any() else None,
        "first_correct_k_median": float(np.nanmedian(first)) if final_right.any() else None,
        "first_correct_k_histogram": {
            str(k): int((first == k).sum()) for k in range(len(prefix_scores))
        },
        "anomalous_detected_by_k": detected_by_k,
    }


def bias(probabilities: dict[str, float]) -> dict[str, Any]:
    """P(anomalous) on uninformative inputs and the gap |P(anomalous) - P(normal)|."""
    gaps = {name: round(abs(2 * p - 1), 4) for name, p in probabilities.items()}
    return {
        "p_anomalous": {k: round(float(v), 4) for k, v in probabilities.items()},
        "gap": gaps,
        "mean_gap": round(float(np.mean(list(gaps.values()))), 4) if gaps else None,
    }
