"""Ingest: every source -> one jobs table each.

Sources: Flow-Bench traces (FLOWBENCH_DIR or a verified download), paper-format text
CSVs, Pegasus stampede databases, and the runs of live Pegasus workflows accepted from
the inbox. The operators' labels (`paths.labels`) are applied to every table. Every
source is parsed before anything is written; raw copies and tables are then written
atomically. A broken file stops the stage and leaves what was already ingested as it was.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from flowsentry.config import Config
from flowsentry.data import download, flowbench, schema
from flowsentry.data.flowbench import DAG_FOLDER, find_cycle
from flowsentry.data.labels import apply_labels, read_labels
from flowsentry.data.stampede import read_stampede
from flowsentry.data.textsource import read_text_source
from flowsentry.errors import DataError, SourceUnavailable
from flowsentry.io import file_digest, write_json, write_parquet
from flowsentry.reports import IngestedTable, IngestReport
from flowsentry.stages.tables import dags_path, table_refs

log = logging.getLogger(__name__)


def _sources(
    cfg: Config, flowbench_dir: Path | None, progress: bool
) -> list[flowbench.WorkflowSource]:
    checksums = download.known_checksums()  # always: a download is verified or refused
    if flowbench_dir is not None:
        if not flowbench_dir.is_dir():
            raise SourceUnavailable(f"FLOWBENCH_DIR={flowbench_dir} is not a folder")
        sources = [
            dataclasses.replace(flowbench.locate(flowbench_dir, wf), new_runs=_new_runs(cfg, wf))
            for wf in cfg.ingest.workflows
        ]
        for source in sources:  # verify before parsing: a corrupt copy is named early
            if source.traces.is_file():
                rel = source.traces.name
                if rel in checksums and file_digest(source.traces) != checksums[rel]:
                    log.warning("%s differs from the upstream release (sha256)", source.traces)
        return sources
    sources = []
    for wf in cfg.ingest.workflows:
        try:
            zip_path = download.fetch(
                cfg.ingest.source_url,
                f"{wf}.zip",
                cfg.paths.raw / f"{wf}.zip",
                checksums,
                progress=progress,
            )
            dag_rel = f"{DAG_FOLDER}/{wf}.json"
            dag_path = download.fetch(
                cfg.ingest.source_url,
                dag_rel,
                cfg.paths.raw / dag_rel,
                checksums,
                progress=progress,
            )
        except SourceUnavailable as exc:
            raise SourceUnavailable(
                f"no Flow-Bench traces: FLOWBENCH_DIR is not set and {exc}; "
                "set FLOWBENCH_DIR to a folder in the Flow-Bench data/ layout"
            ) from None
        sources.append(flowbench.WorkflowSource(wf, zip_path, dag_path, _new_runs(cfg, wf)))
    return sources


def _new_runs(cfg: Config, workflow: str) -> Path:
    """Where runs accepted from the inbox lie (read with the workflow's traces)."""
    return cfg.paths.raw / "new_runs" / workflow


def run(
    cfg: Config, flowbench_dir: str | Path | None = None, progress: bool = True
) -> IngestReport:
    """Read every configured source into `paths.jobs/<table>.parquet`; returns (and
    writes) what each table holds."""
    root = Path(flowbench_dir).expanduser().resolve() if flowbench_dir else None
    labels = read_labels(cfg.paths.labels)  # a bad labels file stops before anything
    sources = _sources(cfg, root, progress)
    parsed: dict[str, pd.DataFrame] = {}
    notes: dict[str, dict[str, Any]] = {}
    dags: dict[str, dict[str, dict[str, list[str]]]] = {}
    for source in sources:
        table = flowbench.read_workflow(
            source, progress=progress, max_runs=cfg.ingest.max_runs, limits=cfg.limits
        )
        if source.dag is None:
            raise DataError(
                source.traces.parent / DAG_FOLDER, f"no DAG file for workflow '{source.workflow}'"
            )
        flowbench.load_dag(source.dag)  # a broken DAG file stops here, before writing
        parsed[source.workflow] = table
    refs = table_refs(cfg)
    texts = iter(cfg.ingest.text_sources)
    stampedes = iter(cfg.ingest.stampede)
    for ref in refs[len(sources) :]:
        if ref.kind == "text":
            text_source = next(texts)
            parsed[ref.name] = read_text_source(text_source.path, text_source.workflow)
        elif ref.kind == "stampede":
            database = read_stampede(next(stampedes).url, ref.workflow or None)
            for run, dag in database.dags.items():
                cycle = find_cycle(dag)
                if cycle:
                    raise DataError(database.url, f"run {run}: the DAG has a cycle: "
                                    + " -> ".join(cycle), field="job_edge")  # fmt: skip
            parsed[ref.name], dags[ref.name] = database.jobs, database.dags
            notes[ref.name] = {
                "source": str(database.url),
                "still_running_not_read": list(database.running),
                "jobs_never_submitted": int(database.never_submitted),
            }
        else:  # live: the runs `flowsentry listen` wrote, accepted from the inbox
            parsed[ref.name] = _live_runs(cfg, ref.workflow, progress)
    for name in cfg.ingest.unlabelled:  # a new workflow: its runs, not their labels
        parsed[name] = parsed[name].assign(
            label=pd.Series(pd.NA, index=parsed[name].index, dtype="Int64"),
            anomaly_type=pd.Series(schema.UNKNOWN, index=parsed[name].index, dtype="string"),
        )
    applied: dict[str, int] = {}
    for name, table in parsed.items():
        parsed[name], applied[name] = apply_labels(table, labels)

    # Everything parsed: now write (raw copies first, then the tables).
    if root is not None:
        for source in sources:
            target = cfg.paths.raw / (
                source.traces.name if source.traces.is_file() else source.workflow
            )
            download.copy_verified(source.traces, target, source.traces.name, None)
            download.copy_verified(
                source.dag,
                cfg.paths.raw / DAG_FOLDER / source.dag.name,
                f"{DAG_FOLDER}/{source.dag.name}",
                None,
            )
    flowbench_source = (str(root) if root else cfg.ingest.source_url) if sources else None
    tables: dict[str, IngestedTable] = {}
    for ref in refs:
        table = parsed[ref.name]
        write_parquet(table, cfg.paths.jobs / f"{ref.name}.parquet")
        if ref.name in dags:
            write_json(dags[ref.name], dags_path(cfg, ref))
        tables[ref.name] = IngestedTable(
            kind=ref.kind,
            **notes.get(ref.name, {}),
            runs=int(table["run"].nunique()),
            jobs=len(table),
            anomalous=int(table["label"].sum()),
            unlabelled=int(table["label"].isna().sum()),
            operator_labels_applied=applied[ref.name],
            anomaly_types={str(k): int(v) for k, v in table["anomaly_type"].value_counts().items()},
            tasks=int(table["task"].nunique()),
        )
    _remove_stale(cfg.paths.jobs, set(parsed))
    report = IngestReport(source=flowbench_source, tables=tables)
    report.write(cfg.paths)
    return report


def _live_runs(cfg: Config, workflow: str, progress: bool) -> pd.DataFrame:
    """The runs of a live Pegasus workflow accepted from the inbox (none yet: no rows)."""
    folder = _new_runs(cfg, workflow)
    if not any(folder.glob("*.csv")):
        log.info("live workflow '%s': no runs accepted from the inbox yet", workflow)
        return schema.empty_jobs_table()
    source = flowbench.WorkflowSource(workflow, folder, None)
    return flowbench.read_workflow(source, progress=progress, limits=cfg.limits)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Drop tables of sources no longer configured (they are re-derivable from raw)."""
    for path in [*folder.glob("*.parquet"), *folder.glob("*.dags.json")]:
        if path.name not in {f"{k}.parquet" for k in keep} | {f"{k}.dags.json" for k in keep}:
            log.info("removing %s: its source is no longer in params.yaml", path)
            path.unlink()
