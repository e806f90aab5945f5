"""Inbox: accept new DAG runs into the versioned raw data (before ingest), each validated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from flowsentry.config import Config
from flowsentry.data import schema
from flowsentry.data.arrivals import collect, run_digests
from flowsentry.data.flowbench import load_dag
from flowsentry.io import read_table
from flowsentry.reports import InboxReport
from flowsentry.validation.runner import Validation, quarantine_whole_runs
from flowsentry.validation.suite import read_suite, spec_for


def run(cfg: Config, inbox: str | Path) -> InboxReport:
    """Sort `<inbox>/<workflow>/*.csv`; returns and writes the InboxReport (written also
    when a step fails: then with what was done before and the error)."""
    inbox = Path(inbox)
    sorted_: dict[str, Any] = {"accepted": [], "skipped": [], "quarantined": []}
    try:
        _sort(cfg, inbox, sorted_)
    except Exception as exc:
        sorted_["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    finally:
        report = InboxReport.model_validate(sorted_)
        report.write(cfg.paths)
    return report


def _checker(
    spec: dict[str, Any], dag_size: int | None, min_dag_fraction: float
) -> Callable[[pd.DataFrame, Path], str | None]:
    """The inbox's check of a run: every job meets the suite `spec` and the run holds
    enough of its DAG, or the reasons."""

    def check(table: pd.DataFrame, path: Path) -> str | None:
        outcome = Validation().table(table, spec, str(path))
        outcome = quarantine_whole_runs(outcome, 1.0, dag_size, min_dag_fraction)
        if len(outcome.quarantine):
            reasons = outcome.quarantine["reason"].value_counts()
            return f"{len(outcome.quarantine)} jobs break expectations: " + "; ".join(
                f"{reason} ({count})" for reason, count in reasons.items()
            )
        return None

    return check


def _sort(cfg: Config, inbox: Path, report: dict[str, Any]) -> None:
    """Fill `report` file by file (arrivals.collect)."""
    base = read_suite(cfg.paths.gx_suite)
    checks, known = {}, {}
    # Flow-Bench workflows (checked against their DAG) and live Pegasus workflows
    # (`flowsentry listen` writes their finished runs here; each run has a DAG of its own).
    tables = {wf: wf for wf in cfg.ingest.workflows} | {wf: f"live_{wf}" for wf in cfg.ingest.live}
    for workflow, name in tables.items():
        dag_file = cfg.paths.dag(workflow)
        flowbench = workflow in cfg.ingest.workflows
        dag = list(load_dag(dag_file)) if flowbench and dag_file.exists() else None
        required = schema.required_measures("flowbench" if flowbench else "live")
        spec = spec_for(base, cfg.limits.max_text_chars, required, dag, dag_file)
        checks[workflow] = _checker(spec, len(dag) if dag else None, cfg.validate_.min_dag_fraction)
        table = cfg.paths.jobs / f"{name}.parquet"
        known[workflow] = run_digests(read_table(table)) if table.exists() else {}
    collect(inbox, cfg.paths.raw, cfg.paths.quarantine, known, checks, report, cfg.limits)
