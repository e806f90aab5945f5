"""Every detector accepts whatever validation lets through (the plausible ranges' edges,
near-zero values, missing values): scores stay finite, sentences stay short."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsentry.data import schema
from flowsentry.data.context import CONTEXT_COLUMNS, add_context
from flowsentry.data.evidence import EVIDENCE_COLUMNS, PROFILE_COLUMN, Profile
from flowsentry.data.flowbench import locate, read_workflow
from flowsentry.models.baselines import FeatureDetector
from flowsentry.text.sentences import FEATURE_SETS, TEMPLATES, features_of, sentences
from flowsentry.validation.runner import validate_table
from flowsentry.validation.suite import suite_spec

KINDS = ("gradient_boosting", "random_forest", "isolation_forest")
FEATURES = features_of("evidence")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The tiny traces as a jobs table, and one fitted detector of each feature kind."""
    from tests.conftest import dag_for, make_run

    root = tmp_path_factory.mktemp("flowbench")
    import json
    import zipfile

    (root / "adjacency_list_dags").mkdir()
    (root / "adjacency_list_dags" / "tiny.json").write_text(json.dumps(dag_for(12)))
    with zipfile.ZipFile(root / "tiny.zip", "w") as archive:
        for r in range(12):
            frame = make_run(r, 12, anomalous_host=r % 3 == 0)
            archive.writestr(f"tiny-run{r:04d}.csv", frame.to_csv(index=False))
    jobs = read_workflow(locate(root, "tiny"), progress=False)
    profile = Profile.fit(jobs, sorted({f for fs in FEATURE_SETS for f in features_of(fs)}))
    table = add_context(jobs, profile)
    detectors = {}
    for kind in KINDS:
        detector = FeatureDetector(kind, FEATURES)
        detector.profile = profile
        detectors[kind] = detector.fit(table, table)
    return table, profile, detectors


def _extreme(column: str) -> st.SearchStrategy[float]:
    top = schema.UPPER_BOUNDS.get(column)
    if top is None:  # timestamps: anywhere in the plausible epoch window
        return st.floats(schema.TIMESTAMP_MIN, schema.TIMESTAMP_MAX)
    return st.one_of(
        st.sampled_from([0.0, 5e-324, 1e-300, top, float("nan")]),
        st.floats(0.0, top, allow_subnormal=True),
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_validation_accepts_every_detector_scores(fitted, data):
    table, profile, detectors = fitted
    jobs = table.drop(columns=[*CONTEXT_COLUMNS, *EVIDENCE_COLUMNS, PROFILE_COLUMN]).copy()
    for column in data.draw(st.lists(st.sampled_from(schema.NON_NEGATIVE), min_size=1)):
        values = data.draw(st.lists(_extreme(column), min_size=len(jobs), max_size=len(jobs)))
        jobs[column] = pd.array(values, dtype="float64")
    # keep only what validation lets through (the timestamps stay ordered as generated)
    outcome = validate_table(jobs, suite_spec(), "extreme.parquet")
    clean = add_context(outcome.clean, profile)
    if clean.empty:
        return
    for kind, detector in detectors.items():
        scores = detector.score(clean)
        assert np.isfinite(scores).all(), kind
    for template in TEMPLATES:
        for feature_set in FEATURE_SETS:
            names = features_of(feature_set)
            for text in sentences(clean, template, names, profile=profile):
                # bounded: no value prints longer than a float's repr
                assert len(text) < 80 * len(names) and "inf" not in text.split()
