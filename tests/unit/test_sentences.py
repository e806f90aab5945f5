"""Job record -> sentence."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from flowsentry.serving.schemas import EXAMPLE
from flowsentry.text.sentences import PAPER_FEATURES, features_of, sentence, sentences

# The service's example job, queued 22 s, its iowait known
JOB = {
    **{
        k: v
        for k, v in EXAMPLE.items()
        if k not in ("workflow", "run", "job", "kickstart_hostname")
    },
    "queue_delay": 22.0,
    "kickstart_online_iowait": 0.0,
}


def test_paper_template_is_the_paper_sentence():
    assert sentence(JOB) == (
        "wms_delay is 6.0 queue_delay is 22.0 runtime is 1022.0 post_script_delay is 5.0 "
        "stage_in_delay is 64.0 stage_out_delay is 4.0 stage_in_bytes is 1014283276.0 "
        "stage_out_bytes is 387809.0 kickstart_executables_cpu_time is 934.6"
    )


def test_compact_template_keeps_every_value_in_fewer_characters():
    compact = sentence(JOB, "compact")
    assert compact == (
        "wms=6 queue=22 run=1022 post=5 in=64 out=4 inb=1014283276 outb=387809 cpu=934.6"
    )
    assert len(compact) < len(sentence(JOB)) / 2


def test_missing_values_are_never_invented():
    job = {**JOB, "stage_in_bytes": math.nan, "stage_out_bytes": None}
    assert "stage_in_bytes is nan stage_out_bytes is nan" in sentence(job)
    assert "inb=" not in sentence(job, "compact") and "outb=" not in sentence(job, "compact")


def test_prefix_keeps_the_first_k_features_in_job_order():
    assert sentence(JOB, k=2) == "wms_delay is 6.0 queue_delay is 22.0"
    assert sentence(JOB, k=0) == ""
    assert PAPER_FEATURES[:3] == ("wms_delay", "queue_delay", "runtime")


def test_extended_feature_set_adds_task_and_kickstart_counters():
    text = sentence(JOB, "paper", features_of("extended"))
    assert text.startswith("task is individuals wms_delay is 6.0")
    assert "kickstart_online_iowait is 0.0" in text


def test_table_sentences_match_record_sentences():
    frame = pd.DataFrame([JOB, {**JOB, "runtime": 7.5}])
    assert sentences(frame) == [sentence(JOB), sentence({**JOB, "runtime": 7.5})]


def test_unknown_template_or_feature_set_is_an_error():
    with pytest.raises(ValueError, match="unknown template"):
        sentence(JOB, "poem")
    with pytest.raises(ValueError, match="unknown feature set"):
        features_of("everything")
