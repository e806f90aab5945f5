"""params.yaml `limits` and the content expectations, with generated inputs through ingest,
validate and the inbox: over a limit is one line naming the file and the limit; a job that
lacks what its source always records, a run mostly made of such jobs, and a fragment of a
DAG are quarantined with their reason; a bomb costs megabytes."""

from __future__ import annotations

import json
import logging
import tracemalloc
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tests.conftest import dag_for

from flowsentry.config import LimitsParams
from flowsentry.data import schema
from flowsentry.data.arrivals import collect
from flowsentry.data.flowbench import WorkflowSource, read_workflow
from flowsentry.errors import DataError
from flowsentry.stages import inbox, ingest, validate

N_JOBS = 6
CLEAN_RUNS = 3
TEXT_LIMIT = 32
FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]  # each example runs whole stages


def _write(root: Path, runs: dict[str, bytes], dag: dict) -> Path:
    """A Flow-Bench layout holding exactly `runs` (name -> CSV bytes) and `dag`."""
    (root / "adjacency_list_dags").mkdir(parents=True, exist_ok=True)
    (root / "adjacency_list_dags" / "tiny.json").write_text(json.dumps(dag))
    with zipfile.ZipFile(root / "tiny.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in runs.items():
            archive.writestr(f"{name}.csv", payload)
    return root


def _clean(run_frame) -> dict[str, bytes]:
    return {f"tiny-run{r:04d}": run_frame(r, N_JOBS).to_csv(index=False).encode()
            for r in range(CLEAN_RUNS)}  # fmt: skip


@st.composite
def damage(draw) -> dict:
    """One run's damage: a long hostname on some jobs, required measures blanked (or a
    literal NaN) on some jobs, and only some of the DAG's jobs present."""
    return {
        "host_chars": draw(st.integers(1, 2 * TEXT_LIMIT), label="host_chars"),
        "long_host_jobs": draw(st.sets(st.integers(0, N_JOBS - 1), max_size=3), label="long"),
        "missing": draw(
            st.sets(st.sampled_from(schema.FLOWBENCH_REQUIRED), max_size=2), label="missing"
        ),
        "missing_jobs": draw(st.sets(st.integers(0, N_JOBS - 1), max_size=N_JOBS), label="jobs"),
        "kept": draw(st.integers(1, N_JOBS), label="kept"),
    }


def _damaged(run_frame, d: dict) -> tuple[pd.DataFrame, int]:
    """The damaged run's CSV frame and how many of its jobs should stay clean."""
    frame = run_frame(9, N_JOBS).astype(object)
    for j in d["long_host_jobs"]:
        frame.loc[j, "kickstart_hostname"] = "h" * d["host_chars"]
    for j in d["missing_jobs"]:
        for column in d["missing"]:
            frame.loc[j, column] = "NaN" if column == "runtime" else ""
    frame = frame.iloc[: d["kept"]]
    bad = {j for j in d["long_host_jobs"] if d["host_chars"] > TEXT_LIMIT}
    bad |= set(d["missing_jobs"]) if d["missing"] else set()
    bad = {j for j in bad if j < d["kept"]}
    whole_run_out = len(bad) / d["kept"] > 0.5 or d["kept"] / N_JOBS < 0.5
    return frame, 0 if whole_run_out else d["kept"] - len(bad)


def _cfg(project):
    return project(
        limits={"max_text_chars": TEXT_LIMIT},
        validate={"max_quarantine_fraction": 1.0},
    )


@settings(max_examples=10, deadline=None, suppress_health_check=FIXTURES, phases=NO_SHRINK)
@given(d=damage())
def test_content_expectations_through_ingest_and_validate(d, project, run_frame, tmp_path):

    cfg = _cfg(project)
    frame, clean = _damaged(run_frame, d)
    runs = {**_clean(run_frame), "tiny-run0009": frame.to_csv(index=False).encode()}
    root = _write(tmp_path / "flowbench", runs, dag_for(N_JOBS))
    ingest.run(cfg, root, progress=False)
    report = validate.run(cfg).tables["tiny"]
    assert report.clean == CLEAN_RUNS * N_JOBS + clean
    quarantined = pd.read_parquet(cfg.paths.quarantine / "tiny.parquet")
    assert len(quarantined) == d["kept"] - clean
    assert (quarantined["run"] == "tiny-run0009").all() and quarantined["reason"].str.len().all()


@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURES, phases=NO_SHRINK)
@given(d=damage())
def test_content_expectations_in_the_inbox(d, project, run_frame, make_flowbench, tmp_path):
    cfg = _cfg(project)
    root = make_flowbench(n_runs=CLEAN_RUNS, n_jobs=N_JOBS)
    if not (cfg.paths.jobs / "tiny.parquet").exists():
        ingest.run(cfg, root, progress=False)
    frame, clean = _damaged(run_frame, d)
    box = tmp_path / "inbox" / "tiny"
    box.mkdir(parents=True, exist_ok=True)
    name = f"damaged-{len(list((cfg.paths.raw / 'new_runs').rglob('*.csv')))}"
    frame.to_csv(box / f"{name}.csv", index=False)
    report = inbox.run(cfg, tmp_path / "inbox")
    accepted = clean == d["kept"]  # a file is accepted whole or not at all
    assert [r.run for r in report.accepted] == ([name] if accepted else [])
    if not accepted:
        (entry,) = report.quarantined
        assert "\n" not in entry.reason and entry.reason
        # accepted files go to new_runs; move them out so names stay unique per example
    for path in (cfg.paths.raw / "new_runs" / "tiny").glob("*.csv"):
        path.rename(tmp_path / path.name)


def test_a_run_made_of_ids_alone_is_quarantined_whole(project, run_frame, tmp_path):
    """ids, task and label but no measure at all: last round it trained as `task individuals`."""

    cfg = _cfg(project)
    frame = run_frame(9, N_JOBS)
    keep = ["", "anomaly_type", "type", "kickstart_transformations"]
    for column in schema.RAW_COLUMNS:
        if column not in keep:
            frame[column] = ""
    runs = {**_clean(run_frame), "tiny-run0009": frame.to_csv(index=False).encode()}
    ingest.run(cfg, _write(tmp_path / "fb", runs, dag_for(N_JOBS)), progress=False)
    assert validate.run(cfg).tables["tiny"].clean == CLEAN_RUNS * N_JOBS
    reasons = pd.read_parquet(cfg.paths.quarantine / "tiny.parquet")["reason"]
    assert reasons.str.contains("runtime is missing").all()


def test_a_fragment_of_the_dag_is_quarantined_with_its_reason(project, run_frame, tmp_path):

    cfg = _cfg(project)
    runs = {**_clean(run_frame), "tiny-run0009": run_frame(9, 2).to_csv(index=False).encode()}
    ingest.run(cfg, _write(tmp_path / "fb", runs, dag_for(N_JOBS)), progress=False)
    validate.run(cfg)
    reasons = set(pd.read_parquet(cfg.paths.quarantine / "tiny.parquet")["reason"])
    assert reasons == {"run tiny-run0009: holds 2 of its DAG's 6 jobs "
                       "(under validate.min_dag_fraction 0.5)"}  # fmt: skip


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURES)
@given(
    rows=st.integers(1, 12),
    row_limit=st.integers(1, 12),
    extra=st.integers(-2000, 2000),
    folder=st.booleans(),
)
def test_byte_and_row_limits(rows, row_limit, extra, folder, run_frame, tmp_path):
    """Each limit refuses exactly what is over it, in one line naming the file and the key."""
    payload = run_frame(1, rows).to_csv(index=False).encode()
    byte_limit = max(1, len(payload) + extra)
    limits = LimitsParams(max_member_bytes=byte_limit, max_rows_per_run=row_limit)
    root = tmp_path / f"src-{rows}-{row_limit}-{extra}-{folder}"
    root.mkdir()
    if folder:
        traces = root / "tiny"
        traces.mkdir()
        (traces / "tiny-run0001.csv").write_bytes(payload)
    else:
        traces = root / "tiny.zip"
        with zipfile.ZipFile(traces, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("tiny-run0001.csv", payload)
    source = WorkflowSource("tiny", traces, root / "dag.json")
    if len(payload) > byte_limit:
        with pytest.raises(DataError, match=r"limits\.max_member_bytes") as err:
            read_workflow(source, progress=False, limits=limits)
        assert "tiny-run0001.csv" in str(err.value) and "\n" not in str(err.value)
    elif rows > row_limit:
        with pytest.raises(DataError, match=r"limits\.max_rows_per_run") as err:
            read_workflow(source, progress=False, limits=limits)
        assert "tiny-run0001.csv" in str(err.value)
    else:
        assert len(read_workflow(source, progress=False, limits=limits)) == rows
    # The inbox reads each file under the same limits: over one, the file is quarantined.
    box = root / "inbox"
    (box / "tiny").mkdir(parents=True)
    (box / "tiny" / "tiny-run0001.csv").write_bytes(payload)
    report = collect(box, root / "raw", root / "quarantine", {}, {"tiny": lambda *_: None},
                     limits=limits)  # fmt: skip
    if len(payload) > byte_limit or rows > row_limit:
        (entry,) = report["quarantined"]
        assert "limits.max_" in entry["reason"] and "\n" not in entry["reason"]
    else:
        assert [e["run"] for e in report["accepted"]] == ["tiny-run0001"]


@settings(max_examples=10, deadline=None, suppress_health_check=FIXTURES)
@given(extra=st.integers(-500, 500))
def test_file_limit(extra, run_frame, tmp_path):
    traces = tmp_path / "tiny.zip"
    with zipfile.ZipFile(traces, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny-run0001.csv", run_frame(1, N_JOBS).to_csv(index=False))
    size = traces.stat().st_size
    limits = LimitsParams(max_file_bytes=max(1, size + extra))
    source = WorkflowSource("tiny", traces, tmp_path / "dag.json")
    if size > limits.max_file_bytes:
        with pytest.raises(DataError, match=r"tiny\.zip: .* over limits\.max_file_bytes"):
            read_workflow(source, progress=False, limits=limits)
    else:
        assert len(read_workflow(source, progress=False, limits=limits)) == N_JOBS


def _bomb(path: Path, inflated: int) -> None:
    """A zip whose one member inflates to `inflated` bytes (written in 1 MiB pieces)."""
    header = b"," + b",".join(c.encode() for c in schema.RAW_COLUMNS) + b"\n"
    piece = b"0" * 2**20
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("tiny-run0001.csv", "w", force_zip64=True) as member,
    ):
        member.write(header)
        for _ in range(inflated // len(piece)):
            member.write(piece)


def _lie_about_size(path: Path, declared: int) -> None:
    """Rewrite the member's uncompressed size in the central directory (what zipfile reads)."""
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")
    extra_at = entry + 46 + int.from_bytes(data[entry + 28 : entry + 30], "little")
    if data[entry + 24 : entry + 28] == b"\xff\xff\xff\xff":  # zip64: the size is in the extra
        data[extra_at + 4 : extra_at + 12] = declared.to_bytes(8, "little")
    else:
        data[entry + 24 : entry + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("lying", [False, True], ids=["honest-header", "lying-header"])
def test_a_zip_bomb_costs_megabytes(lying, tmp_path):
    """A member inflating to 256 MiB against a 4 MiB limit: refused in one line, and the
    read never holds more than a few MiB (a lying header is caught as bytes arrive)."""
    traces = tmp_path / "tiny.zip"
    _bomb(traces, 256 * 2**20)
    assert traces.stat().st_size < 2 * 2**20  # the archive itself is small
    if lying:
        _lie_about_size(traces, 1000)
    source = WorkflowSource("tiny", traces, tmp_path / "dag.json")
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            read_workflow(source, progress=False, limits=LimitsParams(max_member_bytes=4 * 2**20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert message.startswith(f"{traces}:tiny-run0001.csv: ") and "\n" not in message
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    if not lying:
        assert "over limits.max_member_bytes" in message


def test_a_member_with_a_path_is_read_by_its_name_with_a_warning(run_frame, tmp_path, caplog):
    traces = tmp_path / "tiny.zip"
    with zipfile.ZipFile(traces, "w") as archive:
        archive.writestr("../tiny-run0001.csv", run_frame(1, N_JOBS).to_csv(index=False))
        archive.writestr("/abs/tiny-run0002.csv", run_frame(2, N_JOBS).to_csv(index=False))
    with caplog.at_level(logging.WARNING):
        table = read_workflow(WorkflowSource("tiny", traces, tmp_path / "d.json"), progress=False)
    assert sorted(table["run"].unique()) == ["tiny-run0001", "tiny-run0002"]
    warned = [r.getMessage() for r in caplog.records if "a member with a path" in r.getMessage()]
    assert len(warned) == 2 and "../tiny-run0001.csv" in warned[0]
    assert not (tmp_path.parent / "tiny-run0001.csv").exists()
