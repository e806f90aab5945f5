"""The real Flow-Bench traces: counts, validation of all eight workflows."""

from __future__ import annotations

import pytest

from flowsentry.config import LimitsParams, ValidateParams
from flowsentry.data import schema
from flowsentry.data.flowbench import WORKFLOWS, load_dag, locate, read_workflow
from flowsentry.stages import ingest, prepare, validate
from flowsentry.validation.runner import quarantine_whole_runs, validate_table
from flowsentry.validation.suite import spec_for, suite_spec

pytestmark = pytest.mark.integration


def test_1000genome_pipeline_counts(flowbench_dir, project):
    cfg = project(ingest={"workflows": ["1000genome"]})
    summary = ingest.run(cfg, flowbench_dir, progress=False)
    assert summary["tables"]["1000genome"]["runs"] == 350
    assert summary["tables"]["1000genome"]["jobs"] == 47_950
    assert summary["tables"]["1000genome"]["anomalous"] == 15_689
    report = validate.run(cfg)
    assert report["tables"]["1000genome"]["clean"] == 47_950
    prepared = prepare.run(cfg)
    assert sum(s["jobs"] for s in prepared["splits"].values()) == 47_950
    assert prepared["splits"]["test"]["jobs"] == 4_795


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_every_workflow_reads_and_validates(flowbench_dir, workflow):
    source = locate(flowbench_dir, workflow)
    table = read_workflow(source, progress=False)
    assert table["run"].nunique() >= 300
    assert table["label"].notna().all() and 0 < table["label"].mean() < 0.5
    assert table["task"].notna().all()
    # schema.FLOWBENCH_REQUIRED is learned here: measures no job of any real run lacks.
    never_missing = {c for c in schema.FLOATS if table[c].notna().all()}
    assert set(schema.FLOWBENCH_REQUIRED) <= never_missing
    dag = list(load_dag(source.dag))
    assert (table.groupby("run").size() == len(dag)).all()  # every run holds its whole DAG
    limits, params = LimitsParams(), ValidateParams()
    spec = spec_for(suite_spec(), limits.max_text_chars, schema.FLOWBENCH_REQUIRED, dag, source.dag)
    outcome = validate_table(table, spec, workflow)  # raises on a table-level failure
    outcome = quarantine_whole_runs(
        outcome, params.max_bad_job_fraction_per_run, len(dag), params.min_dag_fraction
    )
    assert len(outcome.quarantine) <= 0.01 * len(table)
