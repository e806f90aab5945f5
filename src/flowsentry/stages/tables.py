"""Which jobs tables a config produces, and where each one lies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flowsentry.config import Config


@dataclass(frozen=True)
class TableRef:
    name: str  # file stem under paths.jobs / validated / quarantine
    workflow: str
    dag: Path | None  # the DAG its job ids must belong to (raw copy), if any


def table_refs(cfg: Config) -> list[TableRef]:
    """One table per Flow-Bench workflow, then one per paper-format text source."""
    refs = [TableRef(wf, wf, cfg.paths.dag(wf)) for wf in cfg.ingest.workflows]
    refs += [
        TableRef(f"text_{source.path.stem}", source.workflow, None)
        for source in cfg.ingest.text_sources
    ]
    names = [ref.name for ref in refs]
    if len(set(names)) != len(names):
        from flowsentry.errors import ConfigError

        raise ConfigError("params.yaml: ingest: two sources map to the same table name")
    return refs
