"""Operators' labels: the file's parser, appending, and applying them to a jobs table."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flowsentry.data import schema
from flowsentry.data.labels import COLUMNS, add_labels, apply_labels, read_labels
from flowsentry.errors import DataError


def _table() -> pd.DataFrame:
    jobs = schema.empty_jobs_table().reindex(range(4))
    jobs["workflow"] = "wf"
    jobs["run"] = ["r1", "r1", "r1", "r2"]
    jobs["job"] = ["a", "b", "c", "a"]
    jobs["anomaly_type"] = schema.UNKNOWN
    return jobs.astype(schema.JOBS_COLUMNS)


def test_job_labels_win_over_a_run_label_and_a_later_label_over_an_earlier(tmp_path):
    path = tmp_path / "labels.csv"
    add_labels(path, [{"workflow": "wf", "run": "r1", "job": "a", "label": "normal"}])
    add_labels(path, [{"workflow": "wf", "run": "r1", "job": "a", "label": "anomalous"},
                      {"workflow": "wf", "run": "r1", "job": "*", "label": "normal"}])  # fmt: skip
    jobs, applied = apply_labels(_table(), read_labels(path))
    assert applied == 3
    assert jobs["label"].tolist()[:3] == [1, 0, 0]
    assert jobs["anomaly_type"].tolist() == ["unspecified", "none", "none", "unknown"]
    assert pd.isna(jobs["label"].iloc[3])  # another run, never labelled


def test_a_bad_label_is_refused_and_the_file_stays_whole(tmp_path):
    path = tmp_path / "labels.csv"
    add_labels(path, [{"workflow": "wf", "run": "r1", "job": "a", "label": "normal"}])
    before = path.read_bytes()
    for entry in (
        {"workflow": "wf", "run": "r1", "job": "a", "label": "maybe"},
        {"workflow": "", "run": "r1", "job": "a", "label": "normal"},
        {"workflow": "wf", "run": "r\\n1", "job": "a" * 2000, "label": "normal"},
        {"workflow": "wf", "run": "r\n1", "job": "a", "label": "normal"},
        {"workflow": "wf", "run": "r1", "job": "a", "label": "nor\nmal"},
    ):
        with pytest.raises(DataError) as refused:
            add_labels(path, [entry])
        assert "\n" not in str(refused.value)  # one line, whatever the value holds
    assert path.read_bytes() == before


cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    header=st.one_of(st.just(list(COLUMNS)), st.lists(cell, max_size=7)),
    rows=st.lists(st.lists(cell, min_size=0, max_size=8), max_size=6),
)
@example(header=list(COLUMNS), rows=[["0", "0", "0", "\n", "", ""]])  # a quoted newline
def test_any_labels_file_is_read_or_refused_in_one_line(tmp_path_factory, header, rows):
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(text.getvalue(), encoding="utf-8")
    try:
        labels = read_labels(path)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc).strip()
        return
    assert list(labels.columns) == list(COLUMNS)
    assert set(labels["label"]) <= {"anomalous", "normal"}
    jobs, _ = apply_labels(_table(), labels)
    assert jobs["label"].isna().eq(jobs["anomaly_type"] == schema.UNKNOWN).all()


@given(
    path=st.text(max_size=20), reason=st.text(max_size=20), field=st.none() | st.text(max_size=8)
)
def test_a_data_error_is_one_line_whatever_its_parts_hold(path, reason, field):
    """A file name or a quoted value may hold a line break: the message stays one line
    (the CLI prints it as the last line of a failed command)."""
    message = str(DataError(path, reason, field))
    assert "\n" not in message and "\r" not in message
    assert message.startswith(path.replace("\r", "\\r").replace("\n", "\\n"))
