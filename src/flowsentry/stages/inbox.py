"""Inbox: accept new DAG runs into the versioned raw data (before ingest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowsentry.config import Config
from flowsentry.data.flowbench import DAG_FOLDER, load_dag
from flowsentry.data.inbox import collect, run_digests
from flowsentry.io import read_table, write_json
from flowsentry.validation.suite import dag_expectation, read_suite


def run(cfg: Config, inbox: str | Path) -> dict[str, Any]:
    """Sort `<inbox>/<workflow>/*.csv`; writes reports/inbox.json (also when a step fails:
    then with what was done before and the error)."""
    inbox = Path(inbox)
    report: dict[str, Any] = {"accepted": [], "skipped": [], "quarantined": []}
    try:
        return _sort(cfg, inbox, report)
    except Exception as exc:
        report["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    finally:
        write_json(report, cfg.paths.reports / "inbox.json")


def _sort(cfg: Config, inbox: Path, report: dict[str, Any]) -> dict[str, Any]:
    base = read_suite(cfg.paths.gx_suite)
    specs, known = {}, {}
    for workflow in cfg.ingest.workflows:
        spec = {**base, "expectations": list(base["expectations"])}
        dag = cfg.paths.raw / DAG_FOLDER / f"{workflow}.json"
        if dag.exists():
            spec["expectations"].append(dag_expectation(list(load_dag(dag)), str(dag)))
        specs[workflow] = spec
        table = cfg.paths.jobs / f"{workflow}.parquet"
        known[workflow] = run_digests(read_table(table)) if table.exists() else {}
    return collect(inbox, cfg.paths.raw, cfg.paths.quarantine, known, specs, report)
