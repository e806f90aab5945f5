"""Downloading upstream files with checksums (tested against a local file:// source)."""

from __future__ import annotations

import hashlib

import pytest

from flowsentry.data.download import fetch, known_checksums
from flowsentry.errors import DataError, SourceUnavailable


@pytest.fixture
def upstream(tmp_path):
    folder = tmp_path / "upstream"
    (folder / "adjacency_list_dags").mkdir(parents=True)
    payload = b"PK fake zip bytes" * 1000
    (folder / "wf.zip").write_bytes(payload)
    return folder, {"wf.zip": hashlib.sha256(payload).hexdigest()}


def test_fetch_verifies_checksum(upstream, tmp_path):
    folder, sums = upstream
    dest = fetch(folder.as_uri(), "wf.zip", tmp_path / "raw" / "wf.zip", sums, progress=False)
    assert dest.read_bytes() == (folder / "wf.zip").read_bytes()


def test_checksum_mismatch_leaves_nothing_behind(upstream, tmp_path):
    folder, _ = upstream
    dest = tmp_path / "raw" / "wf.zip"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(folder.as_uri(), "wf.zip", dest, {"wf.zip": "0" * 64}, progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_unreachable_source_is_source_unavailable(tmp_path):
    with pytest.raises(SourceUnavailable, match="cannot download"):
        fetch((tmp_path / "nowhere").as_uri(), "wf.zip", tmp_path / "x.zip", {}, progress=False)


def test_known_checksums_cover_the_eight_workflows():
    sums = known_checksums()
    from flowsentry.data.flowbench import WORKFLOWS

    for workflow in WORKFLOWS:
        assert len(sums[f"{workflow}.zip"]) == 64
        assert len(sums[f"adjacency_list_dags/{workflow}.json"]) == 64
