"""The paper's public text format (`text,label`) as a second source."""

from __future__ import annotations

import pytest

from flowsentry.data import schema
from flowsentry.data.textsource import read_text_source
from flowsentry.errors import DataError


def test_text_csv_becomes_jobs_rows(tmp_path):
    path = tmp_path / "poseidon_train.csv"
    path.write_text(
        "text,label\n"
        '"wms_delay is 6.0 queue_delay is 22.0 runtime is 1022.0 stage_in_bytes is nan",0\n'
        '"wms_delay is 7.0 queue_delay is 90.0 runtime is 3022.0",1\n'
    )
    table = read_text_source(path, "1000genome")
    assert list(table.columns) == list(schema.JOBS_COLUMNS)
    assert table["label"].tolist() == [0, 1]
    assert table["anomaly_type"].tolist() == ["none", "unspecified"]
    assert table.loc[1, "runtime"] == 3022.0 and table["stage_in_bytes"].isna().all()
    assert set(table["run"]) == {"poseidon_train"} and table["job"].is_unique


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('text\n"wms_delay is 1"\n', "column 'label': required column missing"),
        ('text,label\n"wms_delay is 1",2\n', "label '2' is not 0 or 1"),
        ('text,label\n"colour is blue",0\n', "unknown feature 'colour'"),
        ('text,label\n"runtime is fast",0\n', "runtime value 'fast' is not a number"),
    ],
)
def test_bad_text_csv_names_file_and_field(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(DataError, match=message) as info:
        read_text_source(path, "wf")
    assert "bad.csv" in str(info.value)
