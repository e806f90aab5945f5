"""The real Flow-Bench traces: every workflow read and validated (1000genome's all 350
runs through DVC's ingest, validate and prepare, with the same checks:
test_dvc_pipeline.py)."""

from __future__ import annotations

import pytest

from flowsentry.config import LimitsParams, ValidateParams
from flowsentry.data import schema
from flowsentry.data.flowbench import WORKFLOWS, load_dag, locate, read_workflow
from flowsentry.validation.runner import quarantine_whole_runs, validate_table
from flowsentry.validation.suite import spec_for, suite_spec

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("workflow", [w for w in WORKFLOWS if w != "1000genome"])
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
