"""PNG plots for people (DVC renders its own from the dvclive JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    """Write a figure as PNG (creating its folder) and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def roc_pr(labels: np.ndarray, curves: Mapping[str, np.ndarray], folder: Path) -> list[Path]:
    """ROC and precision-recall curves of several detectors on the same jobs."""
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    plt = _pyplot()
    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in curves.items():
        RocCurveDisplay.from_predictions(labels, scores, name=name, ax=ax)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_title("ROC (test split)")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(plt, fig, folder / "roc.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in curves.items():
        PrecisionRecallDisplay.from_predictions(labels, scores, name=name, ax=ax)
    ax.set_title("Precision-recall (test split)")
    ax.legend(loc="lower left", fontsize=8)
    paths.append(_save(plt, fig, folder / "precision_recall.png"))
    return paths


def reliability(
    labels: np.ndarray, curves: Mapping[str, np.ndarray], path: Path, bins: int = 10
) -> Path:
    """Reliability diagram: the share of anomalous jobs against the mean score, in
    `bins` equal-count bins of each detector's scores (a calibrated score lies on the
    diagonal; the gate's threshold, not calibration, decides the label)."""
    from sklearn.calibration import CalibrationDisplay

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in curves.items():
        CalibrationDisplay.from_predictions(
            labels, np.clip(scores, 0.0, 1.0), n_bins=bins, strategy="quantile", name=name, ax=ax
        )
    ax.set(xlabel="mean score in the bin", ylabel="share anomalous in the bin")
    ax.set_title("Reliability of the scores (test split)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(plt, fig, path)


def confusion(matrix: Mapping[str, int], title: str, path: Path) -> Path:
    """The confusion matrix of one detector (counts from the metrics report)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    values = np.array([[matrix["tn"], matrix["fp"]], [matrix["fn"], matrix["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ConfusionMatrixDisplay(values, display_labels=["normal", "anomalous"]).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d"
    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(plt, fig, path)


def early_detection(
    series: Mapping[str, tuple[Sequence[str], Sequence[float]]], path: Path
) -> Path:
    """Accuracy against the number of features known (online detection); `series`:
    per candidate its feature order and its accuracy with the first k known."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (_, values) in series.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    orders = {tuple(features) for features, _ in series.values()}
    if len(orders) == 1:  # one feature order: name the ticks
        (names,) = orders
        ks = list(range(len(names) + 1))
        ax.set_xticks(ks, ["(none)", *names], rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel("features known (k, in each candidate's order)")
    ax.set(ylabel="accuracy", title="Early detection: accuracy from the first k features")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def icl_curve(rows: Sequence[Mapping[str, object]], path: Path, title: str = "") -> Path:
    """ICL accuracy and ROC-AUC against the number of balanced examples per prompt."""
    plt = _pyplot()

    def value(x: object) -> float:  # undefined (one class in the sample): a gap
        return float("nan") if x is None else float(x)  # type: ignore[arg-type]

    points = sorted(
        (int(r["n_examples"]), value(r["accuracy"]), value(r["roc_auc"]))
        for r in rows
        if not r["fine_tuned"] and r["examples"] in ("balanced", "none")
    )
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ns = [p[0] for p in points]
    ax.plot(ns, [p[1] for p in points], marker="o", label="accuracy")
    ax.plot(ns, [p[2] for p in points], marker="s", label="ROC-AUC")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="balanced examples per prompt", ylim=(0, 1), xticks=ns)
    ax.set_title(title or "In-context learning: performance against examples", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)
