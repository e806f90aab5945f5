"""Classical references on the same features and split (scikit-learn).

Gradient boosting and random forest (supervised) and IsolationForest
(unsupervised). They follow the same predictor contract as the language models:
`score(jobs)` -> anomaly score, `predict(jobs)` -> 0/1 by `threshold`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.data.context import CONTEXT_COLUMNS, add_context, has_context
from flowsentry.models.predictor import Jobs, as_frame

KINDS = ("gradient_boosting", "random_forest", "isolation_forest")


class FeatureDetector:
    """A scikit-learn model over the numeric features of a feature set (+ task code)."""

    def __init__(self, kind: str, features: Sequence[str], seed: int = 42) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown baseline '{kind}' (know {list(KINDS)})")
        self.kind = kind
        self.features = tuple(features)
        self.seed = seed
        self.threshold = 0.5
        self.tasks_: dict[str, int] = {}
        self.medians_: np.ndarray | None = None
        self.model_: Any = None

    @property
    def metadata(self) -> dict[str, Any]:
        return {"kind": "baseline", "model": self.kind, "features": list(self.features)}

    def _matrix(self, jobs: Jobs) -> np.ndarray:
        frame = as_frame(jobs)
        if any(f in CONTEXT_COLUMNS for f in self.features) and not has_context(frame):
            frame = add_context(frame)
        columns = []
        for name in self.features:
            if name == "task":
                tasks = frame["task"] if "task" in frame else pd.Series(pd.NA, index=frame.index)
                columns.append(tasks.map(self.tasks_).astype("float64").fillna(-1).to_numpy())
            elif name in frame:
                columns.append(pd.to_numeric(frame[name], errors="coerce").to_numpy("float64"))
            else:
                columns.append(np.full(len(frame), np.nan))
        return np.column_stack(columns) if columns else np.empty((len(frame), 0))

    def fit(self, jobs: pd.DataFrame, labels: np.ndarray) -> FeatureDetector:
        from sklearn.ensemble import (
            HistGradientBoostingClassifier,
            IsolationForest,
            RandomForestClassifier,
        )

        if "task" in self.features:
            self.tasks_ = {t: i for i, t in enumerate(sorted(jobs["task"].dropna().unique()))}
        x = self._matrix(jobs)
        labels = np.asarray(labels).astype(int)
        if self.kind != "isolation_forest" and len(np.unique(labels)) < 2:
            from flowsentry.errors import FlowsentryError

            raise FlowsentryError(
                f"{self.kind}: the training split holds only one class; use more runs"
            )
        if self.kind == "gradient_boosting":
            self.model_ = HistGradientBoostingClassifier(max_iter=300, random_state=self.seed)
            self.model_.fit(x, labels)
        elif self.kind == "random_forest":
            self.model_ = RandomForestClassifier(
                n_estimators=200, min_samples_leaf=2, n_jobs=-1, random_state=self.seed
            )
            self.model_.fit(x, labels)
        else:  # unsupervised: labels only set the expected anomaly share
            self.medians_ = np.nan_to_num(np.nanmedian(x, axis=0))
            self.model_ = IsolationForest(n_estimators=200, random_state=self.seed)
            self.model_.fit(self._impute(x))
            train_scores = -self.model_.score_samples(self._impute(x))
            self.threshold = float(np.quantile(train_scores, 1 - labels.mean()))
        return self

    def _impute(self, x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), self.medians_, x)

    def score(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        x = self._matrix(jobs)
        if k is not None:  # online: features past the k-th are not known yet
            x[:, k:] = np.nan
        if self.kind == "isolation_forest":
            return -self.model_.score_samples(self._impute(x))
        return self.model_.predict_proba(x)[:, 1]

    def predict(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        return (self.score(jobs, k) >= self.threshold).astype(int)
