"""Feature detectors: the detector contract, an obvious signal, safe persistence."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from flowsentry.errors import FlowsentryError
from flowsentry.models.baselines import MODEL_FILE, FeatureDetector
from flowsentry.models.loading import load_detector
from flowsentry.text.sentences import PAPER_FEATURES

KINDS = ["gradient_boosting", "random_forest", "isolation_forest"]
FEATURES = ("task", *PAPER_FEATURES)


@pytest.fixture
def jobs():
    rng = np.random.default_rng(0)
    n = 500
    labels = (rng.random(n) < 0.3).astype(int)
    frame = pd.DataFrame({f: rng.normal(10, 1, n) for f in PAPER_FEATURES})
    frame["runtime"] += labels * 6  # anomalies run slow
    frame.loc[::7, "stage_in_bytes"] = np.nan  # missing values are allowed
    frame["task"] = np.where(rng.random(n) < 0.5, "a", "b")
    frame["workflow"] = "wf"
    frame["label"] = labels
    return frame


@pytest.mark.parametrize("kind", KINDS)
def test_detector_scores_anomalies_higher(jobs, kind):
    detector = FeatureDetector(kind, FEATURES).fit(jobs.iloc[:300], jobs.iloc[300:400])
    test = jobs.iloc[400:]
    scores = detector.score(test)
    assert scores.shape == (100,)
    # Unsupervised IsolationForest sees one informative feature among ten.
    assert roc_auc_score(test["label"], scores) > (0.75 if kind == "isolation_forest" else 0.95)
    assert set(detector.predict(test)) <= {0, 1}
    # Records as dicts work like a DataFrame.
    np.testing.assert_allclose(detector.score(test.to_dict("records")), scores)


def test_online_prefix_hides_later_features(jobs):
    detector = FeatureDetector("gradient_boosting", PAPER_FEATURES).fit(jobs, jobs)
    early = detector.score(jobs, k=2)  # runtime (3rd feature) is not known yet
    full = detector.score(jobs)
    assert roc_auc_score(jobs["label"], full) > roc_auc_score(jobs["label"], early)


@pytest.mark.parametrize("kind", [*KINDS, "ecod", "copod", "hbos"])
def test_prefixes_in_one_call_equal_one_score_per_prefix(jobs, kind):
    """The online curve (the kinds that score rows alone stack every prefix into one call,
    the random forest on one thread below PARALLEL_ROWS) scores as `score(jobs, k)` does."""
    detector = FeatureDetector(kind, FEATURES).fit(jobs.iloc[:300], jobs.iloc[300:400])
    test = jobs.iloc[400:]
    prefixes = detector.score_prefixes(test)
    assert len(prefixes) == len(FEATURES) + 1
    for k, scores in enumerate(prefixes):
        np.testing.assert_allclose(scores, detector.score(test, k=k), rtol=1e-12)
    assert not np.allclose(prefixes[0], prefixes[-1])  # the features do reach the model


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_scores_identically(jobs, tmp_path, kind):
    detector = FeatureDetector(kind, FEATURES).fit(jobs.iloc[:300], jobs.iloc[300:400])
    detector.save(tmp_path / kind)
    saved = {p.name for p in (tmp_path / kind).iterdir()}
    assert saved == {MODEL_FILE, "flowsentry.json"}  # no pickle anywhere
    loaded = load_detector(tmp_path / kind)
    assert isinstance(loaded, FeatureDetector) and loaded.kind == kind
    assert loaded.threshold_ == detector.threshold_
    # (a random forest sums its trees in parallel: equal up to float rounding)
    np.testing.assert_allclose(
        loaded.score(jobs.iloc[400:]), detector.score(jobs.iloc[400:]), rtol=1e-12
    )


def _saved(jobs, tmp_path):
    folder = tmp_path / "gb"
    FeatureDetector("gradient_boosting", FEATURES).fit(jobs.iloc[:300], jobs.iloc[300:]).save(
        folder
    )
    return folder


def test_a_damaged_model_file_is_refused(jobs, tmp_path):
    folder = _saved(jobs, tmp_path)
    (folder / MODEL_FILE).write_bytes(b"PK\x03\x04 this is not a skops archive")
    with pytest.raises(FlowsentryError, match=f"{MODEL_FILE}: not a skops model file"):
        load_detector(folder)


def test_a_foreign_type_in_the_model_file_is_refused_never_loaded(jobs, tmp_path):
    """A file that would construct an untrusted type (here os.system) is refused."""
    folder = _saved(jobs, tmp_path)
    path = folder / MODEL_FILE
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["__module__"], schema["__class__"] = "os", "system"
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(FlowsentryError, match="refused: holds types flowsentry does not trust"):
        load_detector(folder)


def test_tampered_metadata_is_a_clear_error(jobs, tmp_path):
    folder = _saved(jobs, tmp_path)
    (folder / "flowsentry.json").write_text("{not json")
    with pytest.raises(FlowsentryError, match="flowsentry.json: not valid JSON"):
        load_detector(folder)
    (folder / "flowsentry.json").write_text(json.dumps({"kind": "pickle"}))
    with pytest.raises(FlowsentryError, match="kind 'pickle' is unknown"):
        load_detector(folder)


@given(
    st.lists(st.sampled_from(["a", "b", "c", "mine"]), min_size=1, max_size=60),
    st.floats(0.05, 0.95),
)
def test_workflow_weights_every_other_workflow_the_same_and_its_own_share(names, share):
    from flowsentry.models.baselines import WEIGHT_COLUMN, workflow_weights

    jobs = pd.DataFrame({"workflow": names})
    weights = workflow_weights(jobs, "mine", share)
    assert list(weights["workflow"]) == names and (weights[WEIGHT_COLUMN] > 0).all()
    totals = weights.groupby("workflow")[WEIGHT_COLUMN].sum()
    others = totals.drop("mine", errors="ignore")
    if len(others):
        assert np.allclose(others, others.iloc[0])  # each other workflow weighs the same
    if "mine" in totals and len(others):
        assert totals["mine"] / totals.sum() == pytest.approx(share)
    unadapted = workflow_weights(jobs, None, share)[WEIGHT_COLUMN]
    equal = unadapted.groupby(jobs["workflow"]).sum()
    assert np.allclose(equal, equal.iloc[0])
