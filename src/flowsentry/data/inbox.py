"""New DAG runs arriving as Flow-Bench CSVs in an inbox: `<inbox>/<workflow>/<run>.csv`.

Each file is read and validated on its own before it joins the versioned raw data:
- good: moved to `<raw>/new_runs/<workflow>/` (ingest reads it with the workflow's traces);
- a run already ingested or already accepted: moved to `<inbox>/<workflow>/.skipped/`
  and reported, never counted twice;
- bad (unreadable, wrong columns or types, a failed expectation): moved to
  `<quarantine>/inbox/<workflow>/` with `<run>.reason.txt`; the other files proceed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from flowsentry.data.flowbench import read_run, to_jobs_table
from flowsentry.errors import DataError, ValidationFailed

log = logging.getLogger(__name__)


def _move(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.name
    os.replace(src, target) if src.stat().st_dev == folder.stat().st_dev else shutil.move(
        src, target
    )
    return target


def check_run(path: Path, workflow: str, spec: dict[str, Any]) -> str | None:
    """None when the run CSV is good, else the reason it is not."""
    from flowsentry.validation.runner import validate_table

    try:
        with path.open("rb") as stream:
            table = to_jobs_table(read_run(stream, str(path), path.stem), workflow)
        outcome = validate_table(table, spec, str(path))
    except (DataError, ValidationFailed) as exc:
        return str(exc)
    if len(outcome.quarantine):
        reasons = outcome.quarantine["reason"].value_counts()
        return f"{len(outcome.quarantine)} jobs break expectations: " + "; ".join(
            f"{reason} ({count})" for reason, count in reasons.items()
        )
    return None


def collect(
    inbox: Path,
    raw: Path,
    quarantine: Path,
    known_runs: dict[str, set[str]],
    specs: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Sort the inbox's run CSVs into accepted / skipped / quarantined; returns a report."""
    report: dict[str, Any] = {"accepted": [], "skipped": [], "quarantined": []}
    for workflow, spec in specs.items():
        folder = inbox / workflow
        if not folder.is_dir():
            continue
        accepted_dir = raw / "new_runs" / workflow
        for path in sorted(folder.glob("*.csv")):
            run = path.stem
            already = known_runs.get(workflow, set()) | {p.stem for p in accepted_dir.glob("*.csv")}
            if run in already:
                _move(path, folder / ".skipped")
                report["skipped"].append(
                    {"workflow": workflow, "run": run, "note": "already ingested"}
                )
                log.info("%s: run %s already ingested; skipped", path, run)
                continue
            reason = check_run(path, workflow, spec)
            if reason is None:
                _move(path, accepted_dir)
                report["accepted"].append({"workflow": workflow, "run": run})
            else:
                target = _move(path, quarantine / "inbox" / workflow)
                target.with_suffix(".reason.txt").write_text(reason + "\n")
                report["quarantined"].append({"workflow": workflow, "run": run, "reason": reason})
                log.warning("%s quarantined: %s", path, reason)
    return report
