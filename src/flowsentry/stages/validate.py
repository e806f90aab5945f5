"""Validate: jobs tables -> GX expectation suite -> clean tables + quarantine + Data Docs."""

from __future__ import annotations

import logging
import shutil

from flowsentry.config import Config
from flowsentry.data import schema
from flowsentry.data.flowbench import load_dag
from flowsentry.errors import ValidationFailed
from flowsentry.io import read_table, write_parquet
from flowsentry.reports import ValidatedTable, ValidationReport
from flowsentry.stages.tables import table_refs
from flowsentry.validation.runner import Outcome, Validation, quarantine_whole_runs
from flowsentry.validation.suite import read_suite, spec_for

log = logging.getLogger(__name__)


def run(cfg: Config) -> ValidationReport:
    """Validate every jobs table; write clean rows, quarantine and reports. Returns the report."""
    base_spec = read_suite(cfg.paths.gx_suite)
    docs_root = cfg.paths.reports / "data_docs"
    # Docs are a report of this run: the previous run's pages go, this run's (a failed
    # table included) are written into one site.
    shutil.rmtree(docs_root, ignore_errors=True)
    validation = Validation(docs_root)
    outcomes: dict[str, Outcome] = {}
    for ref in table_refs(cfg):
        path = cfg.paths.jobs / f"{ref.name}.parquet"
        table = read_table(path)
        if table.empty and ref.kind in ("stampede", "live"):  # no finished run yet
            log.info("%s: no runs yet (nothing to validate)", path)
            outcomes[ref.name] = Outcome(clean=table, quarantine=table.assign(reason=""))
            continue
        dag = list(load_dag(ref.dag)) if ref.dag is not None else None
        required = schema.required_measures(ref.kind)
        spec = spec_for(base_spec, cfg.limits.max_text_chars, required, dag, ref.dag)
        outcome = validation.table(table, spec, str(path))
        outcomes[ref.name] = quarantine_whole_runs(
            outcome,
            cfg.validate_.max_bad_job_fraction_per_run,
            len(dag) if dag else None,
            cfg.validate_.min_dag_fraction,
        )

    tables: dict[str, ValidatedTable] = {}
    for name, outcome in outcomes.items():
        total = len(outcome.clean) + len(outcome.quarantine)
        fraction = len(outcome.quarantine) / total if total else 0.0
        reasons = (
            outcome.quarantine["reason"].str.split("; ").explode().value_counts().to_dict()
            if len(outcome.quarantine)
            else {}
        )
        tables[name] = ValidatedTable(
            jobs=total,
            clean=len(outcome.clean),
            quarantined=len(outcome.quarantine),
            quarantined_fraction=round(fraction, 6),
            quarantine_reasons={str(k): int(v) for k, v in reasons.items()},
            expectations=len(outcome.checks),
            expectations_failed=sum(not c["success"] for c in outcome.checks),
            checks=outcome.checks,
        )
        if fraction > cfg.validate_.max_quarantine_fraction:
            raise ValidationFailed(
                f"{cfg.paths.jobs / (name + '.parquet')}: {fraction:.1%} of jobs break row-level "
                f"expectations (limit validate.max_quarantine_fraction="
                f"{cfg.validate_.max_quarantine_fraction}); top reason: {next(iter(reasons), '?')}"
            )

    for name, outcome in outcomes.items():
        source = [cfg.paths.jobs / f"{name}.parquet"]
        write_parquet(outcome.clean, cfg.paths.validated / f"{name}.parquet", source)
        write_parquet(outcome.quarantine, cfg.paths.quarantine / f"{name}.parquet", source)
    report = ValidationReport(
        suite=str(cfg.paths.gx_suite),
        success=all(outcome.success for outcome in outcomes.values()),
        tables=tables,
    )
    report.write(cfg.paths)
    return report
