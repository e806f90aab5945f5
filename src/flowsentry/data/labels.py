"""Operators' labels: what a person said of a job (or of a whole run) after an alert.

A Pegasus installation's runs carry no labels (`anomaly_type` "unknown"). An operator
marks an alert right (the job was anomalous) or wrong (it was normal), or a whole run
normal once its alerts are dealt with; `flowsentry label` appends these to one CSV
(`paths.labels`: `workflow,run,job,label,note,labelled_at`, `job` `*` for every job of
the run not labelled one by one). Ingest applies them, so the next retraining learns
from them: `label` 1 / `anomaly_type` "unspecified" for anomalous, 0 / "none" for normal.
A later label of the same job replaces an earlier one.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from flowsentry.data import schema
from flowsentry.errors import DataError
from flowsentry.io import atomic_path

log = logging.getLogger(__name__)

COLUMNS = ("workflow", "run", "job", "label", "note", "labelled_at")
VALUES = {"anomalous": 1, "normal": 0}
WHOLE_RUN = "*"
MAX_FIELD = 1000  # characters of a name or note


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels file (an absent file holds no labels); one line for a bad row."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="string") for c in COLUMNS})
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable labels file ({exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise DataError(path, f"the header must be {','.join(COLUMNS)}")
    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(COLUMNS):
            raise DataError(path, f"line {line}: {len(row)} fields, expected {len(COLUMNS)}")
        record = dict(zip(COLUMNS, row, strict=True))
        for name in ("workflow", "run", "job"):
            if not record[name].strip():
                raise DataError(path, f"line {line}: empty {name}", field=name)
        if record["label"] not in VALUES:
            raise DataError(
                path, f"line {line}: label {record['label'][:40]!r} is not one of {sorted(VALUES)}",
                field="label",
            )  # fmt: skip
        if any(len(value) > MAX_FIELD for value in record.values()):
            raise DataError(path, f"line {line}: a field is over {MAX_FIELD} characters")
        records.append(record)
    return pd.DataFrame(records, columns=list(COLUMNS)).astype("string")


def add_labels(path: str | Path, entries: Iterable[dict[str, str]]) -> int:
    """Append `entries` ({workflow, run, job, label, note}) to the labels file, atomically
    (the file is whole before and after); returns how many were written."""
    path = Path(path)
    existing = read_labels(path)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    new = []
    for entry in entries:
        if entry["label"] not in VALUES:
            label = str(entry["label"])[:40]
            raise DataError(path, f"label {label!r} is not one of {sorted(VALUES)}")
        for name in ("workflow", "run", "job"):
            value = str(entry.get(name) or "").strip()
            if not value or len(value) > MAX_FIELD or "\n" in value:
                raise DataError(path, f"{name} {value[:40]!r} is empty, too long or multi-line")
        new.append({**{c: "" for c in COLUMNS}, **entry, "labelled_at": stamp})
    if not new:
        return 0
    table = pd.concat([existing, pd.DataFrame(new, columns=list(COLUMNS))], ignore_index=True)
    with atomic_path(path, ".csv") as tmp:
        table.to_csv(tmp, index=False)
    return len(new)


def apply_labels(jobs: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`jobs` with the operators' labels applied (job labels first, then a run's `*` to the
    jobs of the run still unlabelled); returns the table and how many jobs got a label."""
    if labels.empty or jobs.empty:
        return jobs, 0
    jobs = jobs.copy()
    latest = labels.drop_duplicates(["workflow", "run", "job"], keep="last")
    key = pd.MultiIndex.from_frame(jobs[["workflow", "run", "job"]].astype(str))
    value = pd.Series(pd.NA, index=jobs.index, dtype="Int64")
    by_job = latest[latest["job"] != WHOLE_RUN]
    if len(by_job):
        lookup = pd.Series(
            by_job["label"].map(VALUES).astype("Int64").to_numpy(),
            index=pd.MultiIndex.from_frame(by_job[["workflow", "run", "job"]].astype(str)),
        )
        value = pd.Series(lookup.reindex(key).to_numpy(), index=jobs.index, dtype="Int64")
    by_run = latest[latest["job"] == WHOLE_RUN]
    if len(by_run):
        lookup = pd.Series(
            by_run["label"].map(VALUES).astype("Int64").to_numpy(),
            index=pd.MultiIndex.from_frame(by_run[["workflow", "run"]].astype(str)),
        )
        run_key = pd.MultiIndex.from_frame(jobs[["workflow", "run"]].astype(str))
        rest = pd.Series(lookup.reindex(run_key).to_numpy(), index=jobs.index, dtype="Int64")
        value = value.fillna(rest)
    hit = value.notna()
    jobs.loc[hit, "label"] = value[hit]
    jobs.loc[hit, "anomaly_type"] = value[hit].map({1: "unspecified", 0: schema.NORMAL})
    jobs["label"] = jobs["label"].astype("Int64")
    jobs["anomaly_type"] = jobs["anomaly_type"].astype("string")
    applied = int(hit.sum())
    if applied:
        log.info("applied %d operator labels", applied)
    return jobs, applied
