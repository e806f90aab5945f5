"""The detector behind the service, in-process: scoring, validation, hot swap."""

from __future__ import annotations

import json
import shutil

import pytest
from pydantic import ValidationError

from flowsentry.registry import store
from flowsentry.serving.detector import Detector, UnknownWorkflow
from flowsentry.serving.schemas import EXAMPLE, JobRecord
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


def test_detector_scores_and_refuses_unknown_workflows(bento_home, tiny_encoder, tmp_path):
    detector = Detector("m:1", _model(tiny_encoder, tmp_path / "m1"), follow_champion=False)
    jobs = [JobRecord(**EXAMPLE), JobRecord(**{**EXAMPLE, "runtime": 4000.0})]
    results = detector.classify(jobs)
    assert [r.model for r in results] == ["m:1", "m:1"] and all(0 <= r.score <= 1 for r in results)
    with pytest.raises(UnknownWorkflow, match="workflow: 'montage'"):
        detector.classify([JobRecord(**{**EXAMPLE, "workflow": "montage"})])
    partial = detector.classify_partial(JobRecord(wms_delay=6.0, queue_delay=20.0))
    assert partial.known_features == 2 and partial.label in ("normal", "anomalous")
    nothing = detector.classify_partial(JobRecord())  # an empty record: no guess
    assert nothing.known_features == 0 and nothing.label == "unknown"
    assert not nothing.confident
    assert detector.info().workflows == ["1000genome"]


def test_hot_swap_follows_the_registry(bento_home, tiny_encoder, tmp_path):
    first = store.register(_model(tiny_encoder, tmp_path / "a", 0.5), {}, {})
    second = store.register(_model(tiny_encoder, tmp_path / "b", 0.3), {}, {})
    store.promote(first)
    detector = Detector(first, store.get(first).path)
    assert detector.classify([JobRecord(**EXAMPLE)])[0].model == first
    store.promote(second)
    reply = detector.classify([JobRecord(**EXAMPLE)])[0]
    assert reply.model == second and reply.threshold == 0.3


def test_an_icl_champion_classifies_and_explains(bento_home, tiny_decoder, tmp_path):
    import numpy as np
    import pandas as pd

    from flowsentry.config import ICLParams
    from flowsentry.models.icl import ICLDetector

    model, tokenizer = tiny_decoder
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    features = features_of("paper")
    rng = np.random.default_rng(0)
    pool = pd.DataFrame({f: rng.normal(10, 1, 20) for f in features})
    pool["label"], pool["workflow"] = [0, 1] * 10, "1000genome"
    params = ICLParams(model=str(folder), feature_set="paper", n_examples=2)
    saved = ICLDetector(model, tokenizer, pool, params).save(tmp_path / "icl")
    tag = store.register(saved, {}, {})
    store.promote(tag)
    detector = Detector(tag, store.get(tag).path)
    (reply,) = detector.classify([JobRecord(**EXAMPLE)])
    assert reply.model == tag and 0 < reply.score < 1
    explained = detector.explain(JobRecord(**EXAMPLE))
    assert isinstance(explained["reasoning"], str) and explained["model"] == tag
    assert explained["category"] in (None, "Normal", "Abnormal")
    assert detector.info().kind == "icl"


def test_a_fine_tuned_encoder_cannot_explain(bento_home, tiny_encoder, tmp_path):
    from flowsentry.serving.detector import NotExplainable

    detector = Detector("m:1", _model(tiny_encoder, tmp_path / "m1"), follow_champion=False)
    with pytest.raises(NotExplainable, match="ICL decoder"):
        detector.explain(JobRecord(**EXAMPLE))
