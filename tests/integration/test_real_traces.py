"""The real Flow-Bench traces: counts, validation of all eight workflows."""

from __future__ import annotations

import pytest

from flowsentry.data.flowbench import WORKFLOWS, load_dag, locate, read_workflow
from flowsentry.stages import ingest, prepare, validate
from flowsentry.validation.runner import validate_table
from flowsentry.validation.suite import dag_expectation, suite_spec

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
    spec = suite_spec()
    spec["expectations"].append(dag_expectation(list(load_dag(source.dag)), str(source.dag)))
    outcome = validate_table(table, spec, workflow)  # raises on a table-level failure
    assert len(outcome.quarantine) <= 0.01 * len(table)
