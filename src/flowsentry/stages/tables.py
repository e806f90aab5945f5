"""Which jobs tables a config produces, and where each one lies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flowsentry.config import Config

SourceKind = Literal["flowbench", "text", "stampede", "live"]


@dataclass(frozen=True)
class TableRef:
    name: str  # file stem under paths.jobs / validated / quarantine
    workflow: str  # the workflow of its runs ("" for a stampede table: each run says)
    dag: Path | None  # the workflow's DAG its job ids must belong to (raw copy), if any
    kind: SourceKind = "flowbench"


def table_refs(cfg: Config) -> list[TableRef]:
    """One table per Flow-Bench workflow, per paper-format text source, per stampede
    database and per live Pegasus workflow, in that order."""
    refs = [TableRef(wf, wf, cfg.paths.dag(wf)) for wf in cfg.ingest.workflows]
    refs += [
        TableRef(f"text_{source.path.stem}", source.workflow, None, "text")
        for source in cfg.ingest.text_sources
    ]
    refs += [
        TableRef(source.table, source.workflow or "", None, "stampede")
        for source in cfg.ingest.stampede
    ]
    refs += [TableRef(f"live_{wf}", wf, None, "live") for wf in cfg.ingest.live]
    names = [ref.name for ref in refs]
    if len(set(names)) != len(names):
        from flowsentry.errors import ConfigError

        raise ConfigError("params.yaml: ingest: two sources map to the same table name")
    return refs


def dags_path(cfg: Config, ref: TableRef) -> Path:
    """Where a stampede table's per-run DAGs lie ({run: {job: [child, ...]}})."""
    return cfg.paths.jobs / f"{ref.name}.dags.json"
