"""New DAG runs arriving as Flow-Bench CSVs in an inbox: `<inbox>/<workflow>/<run>.csv`.

Each file is read and validated on its own before it joins the versioned raw data:
- good: moved to `<raw>/new_runs/<workflow>/` (ingest reads it with the workflow's traces);
- a run already ingested or already accepted (the same jobs, under its own name or
  another): moved to `<inbox>/<workflow>/.skipped/` and reported, never counted twice;
- bad (unreadable, wrong columns or types, a failed expectation, other jobs under the
  name of a run already there, or anything else that goes wrong while reading it),
  whatever its name: moved to `<quarantine>/inbox/<workflow>/` with
  `<run>.reason.txt`; the other files proceed.

A file never overwrites an earlier one of the same name in `.skipped/` or quarantine:
the later copy gets a numbered name (`run.1.csv`), so both are kept.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from flowsentry.data.flowbench import read_run, to_jobs_table
from flowsentry.errors import DataError, ValidationFailed
from flowsentry.io import digest

if TYPE_CHECKING:
    from flowsentry.config import LimitsParams

log = logging.getLogger(__name__)

# A run's check: None when its jobs are acceptable, else the reason (the stage gives it).
Check = Callable[[pd.DataFrame, Path], str | None]

# Columns that name a run rather than describe its jobs: excluded from its content hash.
_NAMING = ("workflow", "run")
# Not part of a run's content: what an operator's labels rewrite at ingest (a run sent
# again after it was labelled is still the same run).
_LABELS = ("label", "anomaly_type")


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/stem.N.suffix` for the first N not taken."""
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 0
    while target.exists() or target.with_suffix(".reason.txt").exists():
        number += 1
        target = folder / f"{stem}.{number}{suffix}"
    return target


def _move(src: Path, folder: Path) -> Path:
    """Move `src` into `folder` under a name no earlier file holds; returns where it went."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, src.name)
    if src.stat().st_dev == folder.stat().st_dev:
        os.replace(src, target)
    else:
        shutil.move(src, target)
    return target


def run_digests(table: pd.DataFrame) -> dict[str, str]:
    """Content hash of each run in a jobs table: its jobs' typed values, sorted by job id,
    without the run's name and labels. The same run under another file name, or after an
    operator labelled it, hashes the same."""
    columns = [c for c in table.columns if c not in _NAMING + _LABELS]
    digests = {}
    for run, jobs in table.groupby("run", sort=False):
        text = jobs[columns].sort_values("job").to_csv(index=False)
        digests[str(run)] = digest(text)
    return digests


def read_run_table(path: Path, workflow: str, limits: LimitsParams | None = None) -> pd.DataFrame:
    """One run CSV as a typed jobs table (raises DataError naming file, column, job)."""
    with path.open("rb") as stream:
        return to_jobs_table(read_run(stream, str(path), path.stem, limits), workflow)


def _accepted_digests(folder: Path, workflow: str, limits: LimitsParams | None) -> dict[str, str]:
    """Content hashes of the runs accepted earlier and not yet ingested."""
    digests: dict[str, str] = {}
    for path in sorted(folder.glob("*.csv")):
        try:
            digests.update(run_digests(read_run_table(path, workflow, limits)))
        except DataError:  # accepted files were checked; a damaged one is ingest's to report
            continue
    return digests


def collect(
    inbox: Path,
    raw: Path,
    quarantine: Path,
    known: dict[str, dict[str, str]],
    checks: dict[str, Check],
    report: dict[str, Any] | None = None,
    limits: LimitsParams | None = None,
) -> dict[str, Any]:
    """Sort the inbox's run CSVs into accepted / skipped / quarantined; returns a report.

    `known` maps each workflow to {run: content hash} of its ingested runs; `checks`
    each workflow to the check its runs must pass (validation). The report
    is filled file by file (pass one in to keep what was done if a later step fails).
    """
    report = report if report is not None else {}
    for key in ("accepted", "skipped", "quarantined"):
        report.setdefault(key, [])
    for workflow, check in checks.items():
        folder = inbox / workflow
        if not folder.is_dir():
            continue
        accepted_dir = raw / "new_runs" / workflow
        runs = dict(known.get(workflow, {}))
        runs.update(_accepted_digests(accepted_dir, workflow, limits))
        for path in sorted(folder.glob("*.csv")):
            _sort_one(path, workflow, check, runs, accepted_dir, quarantine, report, limits)
    return report


def _sort_one(
    path: Path,
    workflow: str,
    check: Check,
    runs: dict[str, str],
    accepted_dir: Path,
    quarantine: Path,
    report: dict[str, Any],
    limits: LimitsParams | None = None,
) -> None:
    """Accept, skip or quarantine one file; whatever goes wrong stays with this file.

    Every file is read and checked, a run name already ingested included: a damaged file
    is quarantined whatever its name, and only a file holding the very jobs of a run
    already there is skipped."""
    run = path.stem
    entry = {"workflow": workflow, "run": run, "file": path.name}
    try:
        table = read_run_table(path, workflow, limits)
        digest = run_digests(table)[run]
        reason = check(table, path)
        if reason is None and run in runs:
            if runs[run] == digest:
                _skip(path, entry, "already ingested (same run name, same jobs)", report)
                return
            reason = (f"{path}: run '{run}' is already ingested with other jobs; rename the "
                      "file if this is a new run")  # fmt: skip
        twin = _first(name for name, known in runs.items() if known == digest)
        if reason is None and twin is not None:
            _skip(path, entry, f"same jobs as run '{twin}' (content hash)", report)
            return
    except (DataError, ValidationFailed) as exc:
        reason = str(exc)
    except Exception as exc:  # one bad file must never stop the batch
        log.debug("unexpected error reading %s", path, exc_info=True)
        detail = str(exc).splitlines()[0] if str(exc) else ""
        reason = f"{path}: unexpected error ({type(exc).__name__}) {detail}".rstrip()
    if reason is None:
        _move(path, accepted_dir)
        runs[run] = digest
        report["accepted"].append(entry)
        log.info("%s accepted", path)
        return
    target = _move(path, quarantine / "inbox" / workflow)
    target.with_suffix(".reason.txt").write_text(reason + "\n")
    report["quarantined"].append({**entry, "kept_as": str(target), "reason": reason})
    log.warning("%s quarantined: %s", path, reason)


def _skip(path: Path, entry: dict[str, Any], note: str, report: dict[str, Any]) -> None:
    target = _move(path, path.parent / ".skipped")
    report["skipped"].append({**entry, "kept_as": str(target), "note": note})
    log.info("%s skipped: %s", path, note)


def _first(items: Iterable[str]) -> str | None:
    return next(iter(items), None)
