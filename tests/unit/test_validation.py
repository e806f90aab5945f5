"""The GX expectation suite: table-level stops, row-level quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowsentry.data import schema
from flowsentry.data.flowbench import load_dag, locate, read_workflow
from flowsentry.errors import ValidationFailed
from flowsentry.validation.runner import validate_table
from flowsentry.validation.suite import dag_expectation, suite_spec

COMMITTED = Path(__file__).resolve().parents[2] / "gx" / "expectations" / "flowbench_jobs.json"


@pytest.fixture
def tiny(make_flowbench):
    root = make_flowbench(n_runs=3, n_jobs=6)
    source = locate(root, "tiny")
    table = read_workflow(source, progress=False)
    spec = suite_spec()
    spec["expectations"].append(dag_expectation(list(load_dag(source.dag)), str(source.dag)))
    return table, spec


def test_committed_suite_is_the_schema_suite():
    # The versioned suite in gx/ must match the code; regenerate with `flowsentry write-suite`.
    assert json.loads(COMMITTED.read_text()) == json.loads(json.dumps(suite_spec()))


def test_clean_table_passes_every_expectation(tiny, tmp_path):
    table, spec = tiny
    outcome = validate_table(table, spec, "tiny.parquet", docs_dir=tmp_path / "docs")
    assert outcome.success and len(outcome.clean) == len(table) and outcome.quarantine.empty
    assert all(check["success"] for check in outcome.checks)
    assert (tmp_path / "docs" / "index.html").exists()  # Data Docs rendered


def test_tables_of_one_run_share_one_data_docs_site(tiny, tmp_path):
    """Each table against its own suite, every result in one site's index."""
    from flowsentry.validation.runner import Validation

    table, spec = tiny
    validation = Validation(tmp_path / "docs")
    validation.table(table, spec, "data/jobs/alpha.parquet")
    broken = table.assign(runtime=table["runtime"].where(table.index > 0, -5.0))
    assert not validation.table(broken, spec, "data/jobs/beta.parquet").success
    index = (tmp_path / "docs" / "index.html").read_text()
    assert "alpha" in index and "beta" in index
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 2


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("runtime", -5.0, "runtime is negative"),
        ("anomaly_type", "net_7", "unknown anomaly_type"),
        ("job", "ghost_ID0000099", "not in the DAG"),
        ("execute_end", 1_000_000_000.0, "execute_end is before execute_start"),
        ("ready", 12.0, "ready is not a plausible epoch time"),
        ("stage_in_bytes", -1.0, "stage_in_bytes is negative"),
    ],
)
def test_row_level_failure_goes_to_quarantine_with_reason(tiny, column, value, reason):
    table, spec = tiny
    table.loc[4, column] = value
    outcome = validate_table(table, spec, "tiny.parquet")
    assert not outcome.success
    assert len(outcome.quarantine) == 1 and len(outcome.clean) == len(table) - 1
    assert reason in outcome.quarantine.loc[0, "reason"]
    assert outcome.quarantine.loc[0, "job"] == table.loc[4, "job"]


def test_duplicate_job_quarantines_both_copies(tiny):
    table, spec = tiny
    table.loc[1, "job"] = table.loc[0, "job"]
    outcome = validate_table(table, spec, "tiny.parquet")
    assert len(outcome.quarantine) == 2
    assert outcome.quarantine["reason"].str.contains("duplicate job").all()


def test_missing_column_stops_with_file_and_expectation(tiny):
    table, spec = tiny
    with pytest.raises(ValidationFailed) as info:
        validate_table(table.drop(columns="queue_delay"), spec, "data/jobs/tiny.parquet")
    assert "data/jobs/tiny.parquet" in str(info.value)
    assert "expect_column_to_exist" in str(info.value) and "queue_delay" in str(info.value)


def test_wrong_dtype_stops(tiny):
    table, spec = tiny
    table["runtime"] = table["runtime"].astype(str)
    with pytest.raises(ValidationFailed, match="runtime is not of type float64"):
        validate_table(table, spec, "tiny.parquet")


def test_validation_leaves_nothing_in_the_system_temp_dir(tiny, tmp_path, monkeypatch):
    """GX's ephemeral context would make a Data Docs site in the temp dir on every run."""
    import tempfile

    scratch = tmp_path / "system-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    table, spec = tiny
    validate_table(table, spec, "tiny.zip", docs_dir=tmp_path / "docs")
    validate_table(table, spec, "tiny.zip")
    assert (tmp_path / "docs" / "index.html").exists()
    assert list(scratch.iterdir()) == []


def test_every_measure_has_a_plausible_maximum(tiny):
    """At its bound a value passes; above it the job is quarantined, naming the column."""
    table, spec = tiny
    columns = sorted(schema.UPPER_BOUNDS)
    for column in columns:
        table[column] = schema.UPPER_BOUNDS[column]
    outcome = validate_table(table, spec, "tiny.parquet")
    assert outcome.success and outcome.quarantine.empty
    for i, column in enumerate(columns):
        table.loc[i % len(table), column] = schema.UPPER_BOUNDS[column] * 1.001
    reasons = "; ".join(validate_table(table, spec, "tiny.parquet").quarantine["reason"])
    for column in columns:
        assert f"{column} is negative or above its plausible maximum" in reasons


@pytest.mark.parametrize(("column", "value"), [("is_clustered", 2), ("kickstart_status", 2**40)])
def test_whole_number_columns_have_ranges(tiny, column, value):
    table, spec = tiny
    table.loc[3, column] = value
    outcome = validate_table(table, spec, "tiny.parquet")
    assert len(outcome.quarantine) == 1
    assert f"{column} is outside" in outcome.quarantine.loc[0, "reason"]
