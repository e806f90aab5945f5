"""Baselines follow the predictor contract and learn an obvious signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from flowsentry.models.baselines import FeatureDetector
from flowsentry.text.sentences import PAPER_FEATURES


@pytest.fixture
def jobs():
    rng = np.random.default_rng(0)
    n = 400
    labels = (rng.random(n) < 0.3).astype(int)
    frame = pd.DataFrame({f: rng.normal(10, 1, n) for f in PAPER_FEATURES})
    frame["runtime"] += labels * 6  # anomalies run slow
    frame.loc[::7, "stage_in_bytes"] = np.nan  # missing values are allowed
    frame["task"] = np.where(rng.random(n) < 0.5, "a", "b")
    frame["label"] = labels
    return frame


@pytest.mark.parametrize("kind", ["gradient_boosting", "random_forest", "isolation_forest"])
def test_detector_scores_anomalies_higher(jobs, kind):
    features = ("task", *PAPER_FEATURES)
    detector = FeatureDetector(kind, features).fit(jobs.iloc[:300], jobs["label"].iloc[:300])
    test = jobs.iloc[300:]
    scores = detector.score(test)
    assert scores.shape == (100,)
    # Unsupervised IsolationForest sees one informative feature among ten.
    assert roc_auc_score(test["label"], scores) > (0.75 if kind == "isolation_forest" else 0.95)
    assert set(detector.predict(test)) <= {0, 1}
    # Records as dicts work like a DataFrame.
    np.testing.assert_allclose(detector.score(test.to_dict("records")), scores)


def test_online_prefix_hides_later_features(jobs):
    detector = FeatureDetector("gradient_boosting", PAPER_FEATURES).fit(jobs, jobs["label"])
    early = detector.score(jobs, k=2)  # runtime (3rd feature) is not known yet
    full = detector.score(jobs)
    assert roc_auc_score(jobs["label"], full) > roc_auc_score(jobs["label"], early)
