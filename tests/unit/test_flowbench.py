"""Reading the native Flow-Bench layout into the jobs table."""

from __future__ import annotations

import itertools
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsentry.data import schema
from flowsentry.data.flowbench import find_cycle, load_dag, locate, read_workflow
from flowsentry.errors import DataError


def test_reads_zip_into_canonical_jobs_table(make_flowbench):
    root = make_flowbench(n_runs=4, n_jobs=6)
    table = read_workflow(locate(root, "tiny"), progress=False)

    assert list(table.columns) == list(schema.JOBS_COLUMNS)
    assert {c: str(t) for c, t in table.dtypes.items()} == {
        c: str(pd.Series(dtype=d).dtype) for c, d in schema.JOBS_COLUMNS.items()
    }
    assert len(table) == 24 and table["run"].nunique() == 4
    assert sorted(table["run"].unique())[0] == "tiny-run0000"  # file name without .csv
    assert table.loc[0, "job"] == "prepare_ID0000000"  # first column
    assert set(table["task"]) == {"prepare", "compute", "merge"}
    # `None` is normal; run 0 and 3 have an anomalous host for even jobs.
    assert set(table["anomaly_type"]) == {"none", "cpu_2"}
    assert (table["label"] == (table["anomaly_type"] != "none").astype(int)).all()
    # Missing stays missing: job 0 stages nothing.
    first = table[table["job"] == "prepare_ID0000000"]
    assert first["stage_in_bytes"].isna().all() and first["stage_in_delay"].isna().all()


def test_unzipped_folder_reads_the_same_as_zip(make_flowbench, tmp_path):
    zipped = read_workflow(locate(make_flowbench(root=tmp_path / "a"), "tiny"), progress=False)
    folder = read_workflow(
        locate(make_flowbench(root=tmp_path / "b", as_folder=True), "tiny"), progress=False
    )
    pd.testing.assert_frame_equal(zipped, folder)


def test_task_falls_back_to_job_id_without_id_suffix(make_flowbench):
    def drop_transformation(_, frame):
        frame["kickstart_transformations"] = ""
        return frame

    table = read_workflow(locate(make_flowbench(edit=drop_transformation), "tiny"), progress=False)
    assert set(table["task"]) == {"prepare", "compute", "merge"}


def test_truncated_zip_names_the_file(make_flowbench):
    root = make_flowbench()
    archive = root / "tiny.zip"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"tiny\.zip.*(truncated|corrupt|read)"):
        read_workflow(locate(root, "tiny"), progress=False)


def test_missing_column_names_file_and_column(make_flowbench):
    def drop(run, frame):
        return frame.drop(columns="runtime") if run == 2 else frame

    root = make_flowbench(edit=drop)
    with pytest.raises(DataError) as info:
        read_workflow(locate(root, "tiny"), progress=False)
    assert "tiny-run0002.csv" in str(info.value) and "'runtime'" in str(info.value)
    assert info.value.field == "runtime"


def test_wrong_type_names_file_column_job_and_value(make_flowbench):
    def corrupt(run, frame):
        if run == 1:
            frame["queue_delay"] = frame["queue_delay"].astype(object)
            frame.loc[3, "queue_delay"] = "soon"
        return frame

    with pytest.raises(DataError) as info:
        read_workflow(locate(make_flowbench(edit=corrupt), "tiny"), progress=False)
    message = str(info.value)
    for part in ("tiny-run0001.csv", "queue_delay", "soon", "ID0000003", "not a number"):
        assert part in message


def test_unreadable_csv_is_an_error_naming_it(make_flowbench):
    root = make_flowbench()
    with zipfile.ZipFile(root / "tiny.zip", "a") as archive:
        archive.writestr("tiny-run9999.csv", "")
    with pytest.raises(DataError, match=r"tiny-run9999\.csv"):
        read_workflow(locate(root, "tiny"), progress=False)


def test_missing_workflow_and_bad_dag_are_clear(make_flowbench, tmp_path):
    root = make_flowbench()
    with pytest.raises(DataError, match="no traces for workflow 'other'"):
        locate(root, "other")
    bad = tmp_path / "dag.json"
    bad.write_text('{"a": ["b"]}')
    with pytest.raises(DataError, match="not jobs of the DAG"):
        load_dag(bad)
    bad.write_text("{}")
    with pytest.raises(DataError, match=r"dag\.json: the DAG has no jobs"):
        load_dag(bad)
    bad.write_text('{"a": ["b"], "b": ["c"], "c": ["a"], "d": []}')
    with pytest.raises(
        DataError, match=r"the DAG has a cycle: (a -> b -> c -> a|b -> c -> a -> b)"
    ):
        load_dag(bad)


@settings(deadline=None)
@given(edges=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20))
def test_find_cycle_finds_one_exactly_when_the_graph_has_one(edges):
    import networkx as nx

    dag = {str(n): [] for n in range(8)}
    for parent, child in edges:
        dag[str(parent)].append(str(child))
    cycle = find_cycle(dag)
    graph = nx.DiGraph([(p, c) for p, cs in dag.items() for c in cs])
    graph.add_nodes_from(dag)
    assert (cycle is None) == nx.is_directed_acyclic_graph(graph)
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(b in dag[a] for a, b in itertools.pairwise(cycle))


def test_max_runs_spreads_over_the_sorted_runs(make_flowbench):
    root = make_flowbench(n_runs=10)
    table = read_workflow(locate(root, "tiny"), progress=False, max_runs=3)
    assert sorted(table["run"].unique()) == ["tiny-run0000", "tiny-run0004", "tiny-run0009"]


def _deflated_archive(run_frame, n_runs: int = 3) -> tuple[bytes, list[tuple[int, int]]]:
    """A Flow-Bench zip as upstream ships it (deflated members) and, per member, the
    byte range of its compressed data."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for r in range(n_runs):
            frame = run_frame(r, 6, anomalous_host=r == 0)
            archive.writestr(f"tiny-run{r:04d}.csv", frame.to_csv(index=False))
    data = buffer.getvalue()
    ranges = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            ranges.append((start, start + info.compress_size))
    return data, ranges


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_damaged_archive_bytes_give_one_line_naming_the_archive(run_frame, tmp_path, data):
    """Any damage to a member's compressed bytes: either the member still reads (the
    damage hit nothing that matters) or a one-line DataError names archive and member,
    never a zlib or pandas traceback."""
    archive, ranges = _deflated_archive(run_frame)
    start, end = ranges[data.draw(st.integers(0, len(ranges) - 1))]
    positions = data.draw(st.lists(st.integers(start, end - 1), min_size=1, max_size=8))
    damaged = bytearray(archive)
    for position in positions:
        damaged[position] ^= data.draw(st.integers(1, 255))
    import tempfile

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    (root / "adjacency_list_dags").mkdir()
    (root / "tiny.zip").write_bytes(bytes(damaged))
    ids = [f"{t}_ID{j:07d}" for j, t in enumerate(["prepare", "compute", "merge"] * 2)]
    (root / "adjacency_list_dags" / "tiny.json").write_text(json.dumps({i: [] for i in ids}))
    try:
        read_workflow(locate(root, "tiny"), progress=False)
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and "tiny.zip" in message
        assert "tiny-run" in message  # the member


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    column=st.sampled_from((*schema.INTEGERS, "runtime", "stage_in_bytes", "ready")),
    value=st.one_of(
        st.integers(min_value=-(10**40), max_value=10**40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        # cell text (line breaks are CSV structure: tested as unreadable CSVs elsewhere)
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12),
    ),
)
def test_any_cell_value_is_typed_or_refused_in_one_line(run_frame, column, value):
    """A cell that does not fit its column's type (a fraction or a huge magnitude in a
    whole-number column, text, infinity): one line naming file, column, job and value."""
    import io

    from flowsentry.data.flowbench import read_run, to_jobs_table

    frame = run_frame(0, 4)
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value
    raw = read_run(io.BytesIO(frame.to_csv(index=False).encode()), "tiny.zip:run0.csv", "run0")
    try:
        table = to_jobs_table(raw, "tiny")
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and "tiny.zip:run0.csv" in message
        assert f"column '{column}'" in message and "compute_ID0000001" in message
    else:
        assert len(table) == 4


def test_a_duplicated_column_and_a_non_utf8_byte_are_named(run_frame):
    import io

    from flowsentry.data.flowbench import read_run

    text = run_frame(0, 4).to_csv(index=False)
    header, rest = text.split("\n", 1)
    doubled = header + ",runtime\n" + "".join(line + ",1\n" for line in rest.splitlines())
    with pytest.raises(DataError, match="column 'runtime': the column appears more than once"):
        read_run(io.BytesIO(doubled.encode()), "r.csv", "r")
    lines = text.encode().split(b"\n")
    lines[3] = lines[3].replace(b"compute", b"comp\xe9te", 1)
    with pytest.raises(DataError) as info:
        read_run(io.BytesIO(b"\n".join(lines)), "r.csv", "r")
    assert "line 4" in str(info.value) and "byte 0xe9" in str(info.value)
