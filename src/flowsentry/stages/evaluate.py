"""Evaluate: the fine-tuned model beside the baselines on the (un-augmented) test split.

Writes reports/evaluate/: metrics.json (DVC metrics), dvclive plots (ROC, PR,
confusion, early detection) for `dvc plots`, PNGs, and predictions.csv.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.config import Config
from flowsentry.evaluation import metrics as m
from flowsentry.evaluation import plots
from flowsentry.io import atomic_path, write_csv, write_json
from flowsentry.models.baselines import FeatureDetector
from flowsentry.models.predictor import Predictor, SentenceClassifier
from flowsentry.models.sft import stratified_sample
from flowsentry.stages.validate import read_table
from flowsentry.text.augment import uninformative_inputs
from flowsentry.text.sentences import PAPER_FEATURES, features_of

log = logging.getLogger(__name__)

# The paper's SFT accuracy where the issue tracker quotes it (forgetting table, D1).
PAPER_SFT_ACCURACY = {"1000genome": 0.8155}


def online_scores(predictor: Predictor, jobs: pd.DataFrame, n_features: int) -> list[np.ndarray]:
    """Scores from the first k features, k = 0 .. n_features."""
    return [predictor.score(jobs, k=k) for k in range(n_features + 1)]


def bias_probe(predictor: SentenceClassifier) -> dict[str, Any]:
    inputs = uninformative_inputs(predictor.template, predictor.features)
    names = list(inputs)
    probabilities = predictor.score_texts([inputs[n] for n in names])
    return m.bias(dict(zip(names, probabilities, strict=True)))


def latency_ms(predictor: Predictor, jobs: pd.DataFrame, calls: int = 100) -> dict[str, float]:
    """p50 / p99 wall time of scoring one job record (sentence building included)."""
    records = jobs.head(calls).to_dict("records")
    times = []
    for record in records:
        started = time.perf_counter()
        predictor.score([record])
        times.append((time.perf_counter() - started) * 1000)
    return {
        "p50": round(float(np.percentile(times, 50)), 2),
        "p99": round(float(np.percentile(times, 99)), 2),
        "calls": len(times),
    }


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Score the test split with the trained model and the baselines; write the report."""
    out_dir = cfg.paths.reports / "evaluate"
    train = read_table(cfg.paths.prepared / "train.parquet")
    test = read_table(cfg.paths.prepared / "test.parquet")
    labels = test["label"].astype(int).to_numpy()
    features = features_of(cfg.text.feature_set)

    predictor = SentenceClassifier.load(cfg.paths.model, device=cfg.train.device)
    started = time.perf_counter()
    scores = predictor.score_texts(predictor.sentences(test), progress=progress)
    seconds = time.perf_counter() - started
    sft_report = m.report(test, scores, predictor.threshold)
    sft_report["jobs_per_second"] = round(len(test) / max(seconds, 1e-9), 1)
    sft_report["bias"] = bias_probe(predictor)
    sft_report["latency_ms"] = latency_ms(predictor, test)
    workflows = sorted(test["workflow"].unique())
    sft_report["paper_accuracy"] = {
        wf: PAPER_SFT_ACCURACY[wf] for wf in workflows if wf in PAPER_SFT_ACCURACY
    }

    baselines: dict[str, Any] = {}
    baseline_scores: dict[str, np.ndarray] = {}
    detectors: dict[str, FeatureDetector] = {}
    for kind in cfg.evaluate.baselines:
        for label, names in ((kind, features), (f"{kind}/paper_features", PAPER_FEATURES)):
            if label.endswith("/paper_features") and tuple(names) == tuple(features):
                continue
            detector = FeatureDetector(kind, names, cfg.base.seed).fit(train, train["label"])
            baseline_scores[label] = detector.score(test)
            baselines[label] = m.report(test, baseline_scores[label], detector.threshold)
            detectors[label] = detector
            log.info("%s: F1 %.4f", label, baselines[label]["f1"])

    online_jobs = stratified_sample(test, cfg.evaluate.online_max_jobs, cfg.base.seed)
    online_labels = online_jobs["label"].astype(int).to_numpy()
    online = {"features": list(features)}
    online["sft"] = m.early_detection(
        online_labels, online_scores(predictor, online_jobs, len(features)), predictor.threshold
    )
    if "gradient_boosting" in detectors:
        gb = detectors["gradient_boosting"]
        online["gradient_boosting"] = m.early_detection(
            online_labels, online_scores(gb, online_jobs, len(features)), gb.threshold
        )

    report: dict[str, Any] = {
        "model": {
            k: predictor.metadata.get(k)
            for k in ("base_model", "mode", "template", "feature_set", "workflows", "data_version")
        },
        "sft": sft_report,
        "baselines": baselines,
        "online": online,
    }
    _write(out_dir, report, test, labels, scores, predictor.threshold, baseline_scores, features)
    return report


def _write(
    out_dir: Path,
    report: dict[str, Any],
    test: pd.DataFrame,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    baseline_scores: dict[str, np.ndarray],
    features: tuple[str, ...],
) -> None:
    from dvclive import Live

    predictions = test[["workflow", "run", "job", "label"]].copy()
    predictions["score"] = np.round(scores, 6)
    predictions["prediction"] = (scores >= threshold).astype(int)
    write_csv(predictions, out_dir / "predictions.csv")

    png = out_dir / "png"
    plots.roc_pr(labels, {"sft": scores, **baseline_scores}, png)
    plots.confusion(report["sft"]["confusion"], "fine-tuned model (test)", png / "confusion.png")
    series = {"sft": report["online"]["sft"]["accuracy_by_k"]}
    if "gradient_boosting" in report["online"]:
        series["gradient boosting"] = report["online"]["gradient_boosting"]["accuracy_by_k"]
    plots.early_detection(series, features, png / "early_detection.png")

    with Live(dir=str(out_dir / "live"), save_dvc_exp=False, dvcyaml=None) as live:
        live.log_sklearn_plot("roc", labels, scores, name="roc.json")
        live.log_sklearn_plot("precision_recall", labels, scores, name="precision_recall.json")
        live.log_sklearn_plot(
            "confusion_matrix", labels, (scores >= threshold).astype(int), name="confusion.json"
        )
        points = [
            {"k": k, "accuracy": acc}
            for k, acc in enumerate(report["online"]["sft"]["accuracy_by_k"])
        ]
        live.log_plot("early_detection", points, x="k", y="accuracy", title="Early detection")
    with atomic_path(out_dir / "metrics.json", ".json"):
        pass
    write_json(report, out_dir / "metrics.json")
