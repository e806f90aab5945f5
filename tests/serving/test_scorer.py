"""The job scorer behind the service, in-process: scoring, validation, hot swap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from flowsentry.registry import store
from flowsentry.serving.schemas import EXAMPLE, JobRecord
from flowsentry.serving.scorer import JobScorer, UnknownWorkflow
from flowsentry.text.sentences import features_of


def _model(tiny_encoder, target, threshold=0.5):
    shutil.copytree(tiny_encoder, target)
    (target / "flowsentry.json").write_text(
        json.dumps(
            {
                "kind": "sft",
                "mode": "full",
                "template": "paper",
                "feature_set": "paper",
                "features": list(features_of("paper")),
                "threshold": threshold,
                "max_length": 128,
                "workflows": ["1000genome"],
                "data_version": {"augmented": "x"},
            }
        )
    )
    return target


def test_schema_rejects_bad_values_naming_the_field():
    for bad in (
        {"runtime": -1.0},
        {"runtime": float("nan")},
        {"runtime": float("inf")},
        {"runtime": "fast"},
        {"runtime": "12"},  # a number as text is not a number
        {"runtime": True},  # nor is a boolean
        {"run": 7},  # nor is a number a name
        {"colour": "red"},
        {"ready": 12.0},
    ):
        with pytest.raises(ValidationError) as info:
            JobRecord(**{**EXAMPLE, **bad})
        assert next(iter(bad)) in str(info.value)
    assert JobRecord(workflow="1000genome", wms_delay=6.0).runtime is None  # partial is fine


def test_scorer_scores_and_refuses_unknown_workflows(bento_home, tiny_encoder, tmp_path):
    scorer = JobScorer("m:1", _model(tiny_encoder, tmp_path / "m1"), follow_champion=False)
    jobs = [JobRecord(**EXAMPLE), JobRecord(**{**EXAMPLE, "runtime": 4000.0})]
    results = scorer.classify(jobs)
    assert [r.model for r in results] == ["m:1", "m:1"] and all(0 <= r.score <= 1 for r in results)
    with pytest.raises(UnknownWorkflow, match="workflow: 'montage'"):
        scorer.classify([JobRecord(**{**EXAMPLE, "workflow": "montage"})])
    partial = scorer.classify_partial(JobRecord(wms_delay=6.0, queue_delay=20.0))
    assert partial.known_features == 2 and partial.label in ("normal", "anomalous")
    nothing = scorer.classify_partial(JobRecord())  # an empty record: no guess
    assert nothing.known_features == 0 and nothing.label == "unknown"
    assert not nothing.confident
    assert scorer.info().workflows == ["1000genome"]


def test_hot_swap_follows_the_registry(bento_home, tiny_encoder, tmp_path, monkeypatch):
    first = store.register(_model(tiny_encoder, tmp_path / "a", 0.5), {}, {})
    second = store.register(_model(tiny_encoder, tmp_path / "b", 0.3), {}, {})
    store.promote(first)
    scorer = JobScorer(second, store.get(second).path)  # asked for second: serves the champion
    reads = []
    monkeypatch.setattr(
        store, "champion_tag", lambda real=store.champion_tag: reads.append(1) or real()
    )
    for _ in range(5):
        assert scorer.classify([JobRecord(**EXAMPLE)])[0].model == first
    assert reads == []  # an unchanged pointer is never parsed again
    store.promote(second)
    scorer.classify([JobRecord(**EXAMPLE)])
    scorer.wait_loaded(60)
    reply = scorer.classify([JobRecord(**EXAMPLE)])[0]
    assert reply.model == second and reply.threshold == 0.3 and len(reads) == 1
    store.rollback()
    scorer.classify([JobRecord(**EXAMPLE)])
    scorer.wait_loaded(60)
    assert scorer.classify([JobRecord(**EXAMPLE)])[0].model == first


def test_hot_swap_under_concurrent_requests(bento_home, tiny_encoder, tmp_path):
    """Requests keep being answered by the old champion while the new one loads (slowly,
    on its own thread); every reply is whole (a tag with its own threshold); after the
    load every reply comes from the new champion."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from flowsentry.models.loading import load_detector

    first = store.register(_model(tiny_encoder, tmp_path / "a", 0.5), {}, {})
    second = store.register(_model(tiny_encoder, tmp_path / "b", 0.3), {}, {})
    store.promote(first)
    release = threading.Event()

    def slow_loader(path):
        model = load_detector(path)
        if model.threshold_ == 0.3:
            release.wait(60)  # the new champion takes as long as the test wants
        return model

    scorer = JobScorer(first, store.get(first).path, loader=slow_loader)
    thresholds = {first: 0.5, second: 0.3}

    def ask(_):
        started = time.perf_counter()
        reply = scorer.classify([JobRecord(**EXAMPLE)])[0]
        return reply.model, reply.threshold, time.perf_counter() - started

    with ThreadPoolExecutor(8) as pool:
        before = list(pool.map(ask, range(16)))
        store.promote(second)
        during = list(pool.map(ask, range(32)))  # the load is blocked: the old one answers
        assert scorer.loading is not None and scorer.loading.is_alive()
        release.set()
        scorer.wait_loaded(60)
        after = list(pool.map(ask, range(16)))
    assert {tag for tag, _, _ in before + during} == {first}
    assert {tag for tag, _, _ in after} == {second}
    assert all(thresholds[tag] == threshold for tag, threshold, _ in before + during + after)
    assert max(seconds for _, _, seconds in during) < 30  # nobody waited for the load


def test_a_champion_that_fails_to_load_leaves_the_old_one_serving(
    bento_home, tiny_encoder, tmp_path
):
    first = store.register(_model(tiny_encoder, tmp_path / "a", 0.5), {}, {})
    broken = store.register(_model(tiny_encoder, tmp_path / "b", 0.3), {}, {})
    (Path(store.get(broken).path) / "flowsentry.json").write_text("{not json")
    store.promote(first)
    scorer = JobScorer(first, store.get(first).path)
    store.promote(broken)
    scorer.classify([JobRecord(**EXAMPLE)])
    scorer.wait_loaded(60)
    assert scorer.classify([JobRecord(**EXAMPLE)])[0].model == first


def test_an_icl_champion_classifies_and_explains(
    bento_home, tiny_decoder, tiny_decoder_folder, tmp_path
):
    import numpy as np
    import pandas as pd

    from flowsentry.config import ICLParams
    from flowsentry.models.in_context import ICLDetector

    model, tokenizer = tiny_decoder
    folder = tiny_decoder_folder
    features = features_of("paper")
    rng = np.random.default_rng(0)
    pool = pd.DataFrame({f: rng.normal(10, 1, 20) for f in features})
    pool["label"], pool["workflow"] = [0, 1] * 10, "1000genome"
    params = ICLParams(model=str(folder), feature_set="paper", n_examples=2)
    saved = ICLDetector(model, tokenizer, pool, params).save(tmp_path / "icl")
    tag = store.register(saved, {}, {})
    store.promote(tag)
    scorer = JobScorer(tag, store.get(tag).path)
    (reply,) = scorer.classify([JobRecord(**EXAMPLE)])
    assert reply.model == tag and 0 < reply.score < 1
    explained = scorer.explain(JobRecord(**EXAMPLE))
    assert isinstance(explained["reasoning"], str) and explained["model"] == tag
    assert scorer.info().kind == "icl"


def test_a_fine_tuned_encoder_cannot_explain(bento_home, tiny_encoder, tmp_path):
    from flowsentry.serving.scorer import NotExplainable

    scorer = JobScorer("m:1", _model(tiny_encoder, tmp_path / "m1"), follow_champion=False)
    with pytest.raises(NotExplainable, match="ICL decoder"):
        scorer.explain(JobRecord(**EXAMPLE))


def test_partial_record_counts_the_evidence_its_measures_give(bento_home, tmp_path):
    """A job still running: evidence columns are known once their measure is."""
    from flowsentry.data.evidence import Profile, add_evidence
    from flowsentry.models.baselines import FeatureDetector
    from flowsentry.text.sentences import features_of

    rng = np.random.default_rng(0)
    rows = []
    for r in range(10):
        for j in range(8):
            slow = r % 2 == 0 and j % 2 == 0
            runtime = float(rng.uniform(90, 110) * (3 if slow else 1))
            rows.append(
                {
                    "workflow": "1000genome",
                    "run": f"r{r}",
                    "job": f"j{j}",
                    "task": "individuals",
                    "kickstart_hostname": f"h{j % 2}",
                    "stage_in_delay": 10.0,
                    "runtime": runtime,
                    "label": int(slow),
                }
            )
    train = pd.DataFrame(rows)
    features = features_of("evidence_compact")
    profile = Profile.fit(train, features)
    model = FeatureDetector("gradient_boosting", features)
    model.profile = profile
    model.fit(add_evidence(train, profile), add_evidence(train, profile))
    scorer = JobScorer("gb:1", model.save(tmp_path / "gb"), follow_champion=False)
    job = {"workflow": "1000genome", "run": "r1", "job": "j1", "task": "individuals"}
    staged = scorer.classify_partial(JobRecord(**job, stage_in_delay=10.0))
    assert staged.known_features == 5  # task + the four stage-in evidence columns
    ran = scorer.classify_partial(JobRecord(**job, stage_in_delay=10.0, runtime=300.0))
    assert ran.known_features == 9 and ran.score > staged.score
