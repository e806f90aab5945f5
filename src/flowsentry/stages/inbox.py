"""Inbox: accept new DAG runs into the versioned raw data (before ingest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from flowsentry.config import Config
from flowsentry.data.flowbench import DAG_FOLDER, load_dag
from flowsentry.data.inbox import collect
from flowsentry.io import write_json
from flowsentry.validation.suite import dag_expectation, read_suite


def run(cfg: Config, inbox: str | Path) -> dict[str, Any]:
    """Sort `<inbox>/<workflow>/*.csv`; writes reports/inbox.json."""
    inbox = Path(inbox)
    base = read_suite(cfg.paths.gx_suite)
    specs, known = {}, {}
    for workflow in cfg.ingest.workflows:
        spec = {**base, "expectations": list(base["expectations"])}
        dag = cfg.paths.raw / DAG_FOLDER / f"{workflow}.json"
        if dag.exists():
            spec["expectations"].append(dag_expectation(list(load_dag(dag)), str(dag)))
        specs[workflow] = spec
        table = cfg.paths.jobs / f"{workflow}.parquet"
        known[workflow] = (
            set(pd.read_parquet(table, columns=["run"])["run"]) if table.exists() else set()
        )
    report = collect(inbox, cfg.paths.raw, cfg.paths.quarantine, known, specs)
    write_json(report, cfg.paths.reports / "inbox.json")
    return report
