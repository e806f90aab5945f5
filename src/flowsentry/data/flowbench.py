"""Read Flow-Bench traces in their native upstream layout into the jobs table.

Layout (the upstream `data/` folder):
    <root>/<workflow>.zip                      one CSV per DAG run (or an unzipped folder)
    <root>/adjacency_list_dags/<workflow>.json {job_id: [child_job_id, ...]}

Run id = the CSV's file name without `.csv`; job id = the CSV's first column.
Values are parsed strictly: a cell that is not a number where a number belongs is an
error naming the file, column, job and value. Empty cells stay missing (NaN).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd

from flowsentry.data import schema
from flowsentry.errors import DataError

if TYPE_CHECKING:
    from flowsentry.config import LimitsParams

log = logging.getLogger(__name__)

DAG_FOLDER = "adjacency_list_dags"
# The eight workflows of the Flow-Bench release (data/<workflow>.zip).
WORKFLOWS = (
    "1000genome",
    "montage",
    "predict_future_sales",
    "eht_difmap",
    "eht_imaging",
    "eht_smili",
    "pycbc_inference",
    "somospie",
)
_MISSING = {"", "nan", "NaN", "NA", "null", "NULL"}
_ID_SUFFIX = re.compile(r"_ID\d+$")


@dataclass(frozen=True)
class WorkflowSource:
    """Where one workflow's traces and DAG lie."""

    workflow: str
    traces: Path  # a .zip or a folder of CSVs
    dag: Path | None  # adjacency list; None when the source has no DAG file
    new_runs: Path | None = None  # accepted new run CSVs (from the inbox), if any


def locate(root: str | Path, workflow: str) -> WorkflowSource:
    """Find `<workflow>.zip` (or folder) and its DAG under a Flow-Bench `data/` folder."""
    root = Path(root)
    candidates = [root / f"{workflow}.zip", root / workflow]
    traces = next((p for p in candidates if p.exists()), None)
    if traces is None:
        raise DataError(root, f"no traces for workflow '{workflow}' (expected {workflow}.zip)")
    dag = root / DAG_FOLDER / f"{workflow}.json"
    return WorkflowSource(workflow, traces, dag if dag.exists() else None)


def load_dag(path: str | Path) -> dict[str, list[str]]:
    """Read an adjacency-list DAG: {job_id: [child_job_id, ...]}."""
    path = Path(path)
    try:
        dag = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable DAG file: {exc}") from None
    if not isinstance(dag, dict) or not all(isinstance(v, list) for v in dag.values()):
        raise DataError(path, "a DAG file must map each job id to a list of child job ids")
    if not dag:
        raise DataError(path, "the DAG has no jobs (an empty mapping)")
    unknown = {child for children in dag.values() for child in children} - dag.keys()
    if unknown:
        raise DataError(path, f"children that are not jobs of the DAG: {sorted(unknown)[:5]}")
    cycle = find_cycle(dag)
    if cycle:
        raise DataError(path, f"the DAG has a cycle: {' -> '.join(cycle)}")
    return dag


def find_cycle(dag: dict[str, list[str]]) -> list[str] | None:
    """One cycle of `dag` ({job: [child, ...]}) as [a, b, ..., a], or None if acyclic.
    (A Pegasus DAG is acyclic by definition: a cycle means a damaged file.)"""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in dag:
        if state.get(start):
            continue
        path, stack = [start], [iter(dag.get(start, ()))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(dag.get(child, ())))
    return None


def _spread(names: list[str], max_runs: int | None) -> list[str]:
    """`max_runs` names spread evenly over the sorted list (all when None)."""
    if max_runs is None or len(names) <= max_runs:
        return names
    picks = np.unique(np.linspace(0, len(names) - 1, max_runs).round().astype(int))
    return [names[i] for i in picks]


def _limits(limits: LimitsParams | None) -> LimitsParams:
    from flowsentry.config import LimitsParams

    return limits or LimitsParams()


def read_limited(stream: IO[bytes], limit: int, origin: str, what: str) -> bytes:
    """Read `stream` as it arrives, stopping at `limit` bytes: a larger payload is one
    line naming `origin` and the limit, and costs at most the limit in memory."""
    chunks, total = [], 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
        if total > limit:
            raise DataError(
                origin, f"{what} is over limits.max_member_bytes ({limit:,} bytes); raise the "
                "limit in params.yaml if this run is real"
            )  # fmt: skip
        chunks.append(chunk)
    return b"".join(chunks)


def iter_run_files(
    traces: Path, max_runs: int | None = None, limits: LimitsParams | None = None
) -> Iterator[tuple[str, str, IO[bytes]]]:
    """Yield (run id, origin for messages, binary stream) for each CSV of a workflow,
    each read within `limits` (the archive's size, each run's bytes as they inflate).

    With `max_runs`, only that many runs, spread evenly over the runs sorted by name.
    """
    limits = _limits(limits)
    if traces.is_dir():
        for path in _spread(sorted(traces.glob("*.csv")), max_runs):
            with path.open("rb") as stream:
                payload = read_limited(stream, limits.max_member_bytes, str(path), "the file")
            yield path.stem, str(path), io.BytesIO(payload)
        return
    size = traces.stat().st_size if traces.exists() else 0
    if size > limits.max_file_bytes:
        raise DataError(
            traces, f"{size:,} bytes is over limits.max_file_bytes ({limits.max_file_bytes:,})"
        )
    try:
        archive = zipfile.ZipFile(traces)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            traces, f"not a readable zip archive (truncated or corrupt?): {exc}"
        ) from None
    with archive:
        members = sorted(
            m
            for m in archive.namelist()
            if m.endswith(".csv") and not m.startswith("__MACOSX/") and not m.endswith("/")
        )
        members = _spread(members, max_runs)
        for member in members:
            origin = f"{traces}:{member}"
            if Path(member).name != member:  # a folder, `..` or an absolute name
                log.warning("%s: a member with a path; read as run '%s' (nothing is written "
                            "where its path points)", origin, Path(member).stem)  # fmt: skip
            declared = archive.getinfo(member).file_size
            if declared > limits.max_member_bytes:
                raise DataError(
                    origin, f"inflates to {declared:,} bytes, over limits.max_member_bytes "
                    f"({limits.max_member_bytes:,})"
                )  # fmt: skip
            try:
                with archive.open(member) as stream:  # the header may lie: count as it inflates
                    payload = read_limited(stream, limits.max_member_bytes, origin, "the member")
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                zlib.error,  # damaged deflate data
                OSError,
                EOFError,
                NotImplementedError,  # an unsupported compression method
                RuntimeError,  # an encrypted member
            ) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DataError(origin, f"cannot be read from the archive: {reason}") from None
            yield Path(member).stem, origin, io.BytesIO(payload)


def read_run(
    stream: IO[bytes], origin: str, run: str, limits: LimitsParams | None = None
) -> pd.DataFrame:
    """Read one DAG run's CSV as text, checking its structure (columns, job ids) and
    `limits` (its bytes as they arrive, its rows)."""
    limits = _limits(limits)
    payload = read_limited(stream, limits.max_member_bytes, origin, "the run")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(origin, _not_utf8(payload, exc)) from None
    try:
        raw = pd.read_csv(  # one row past the limit is enough to refuse
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
            nrows=limits.max_rows_per_run + 1,
        )  # fmt: skip
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(origin, f"unreadable CSV: {exc}".splitlines()[0]) from None
    if raw.shape[1] == 0 or raw.empty:
        raise DataError(origin, "no jobs in this run (empty CSV)")
    if len(raw) > limits.max_rows_per_run:
        raise DataError(
            origin, f"more than {limits.max_rows_per_run:,} jobs, over "
            "limits.max_rows_per_run"
        )  # fmt: skip
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
    doubled = sorted({name for name in header if header.count(name) > 1})
    if doubled:  # pandas would rename the second copy and keep the first silently
        raise DataError(origin, "the column appears more than once in the header", field=doubled[0])
    first = raw.columns[0]
    if first != "" and not first.startswith("Unnamed"):
        raise DataError(origin, "the first column must be the unnamed job-id column", field=first)
    raw = raw.rename(columns={first: "job"})
    missing = [c for c in schema.RAW_COLUMNS if c not in raw.columns]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(origin, f"required column missing{more}", field=missing[0])
    known = (*schema.RAW_COLUMNS, *schema.OPTIONAL_COLUMNS)
    extra = [c for c in raw.columns if c != "job" and c not in known]
    if extra:
        log.warning("%s: ignoring columns not in the Flow-Bench schema: %s", origin, extra)
    for name in schema.OPTIONAL_COLUMNS:  # Flow-Bench's own CSVs never carry them
        if name not in raw.columns:
            raw[name] = ""
    raw["job"] = raw["job"].str.strip()
    if (raw["job"] == "").any():
        line = int(np.flatnonzero(raw["job"] == "")[0]) + 2  # the header is line 1
        raise DataError(origin, f"empty job id on line {line}", field="job")
    raw = raw[["job", *schema.RAW_COLUMNS, *schema.OPTIONAL_COLUMNS]]
    raw.insert(0, "run", run)
    raw.insert(0, "_origin", origin)
    return raw


def _not_utf8(payload: bytes, exc: UnicodeDecodeError) -> str:
    """Where a byte that is not UTF-8 lies: line, job id (the line's first field), byte."""
    line_start = payload.rfind(b"\n", 0, exc.start) + 1
    line = payload.count(b"\n", 0, exc.start) + 1
    job = payload[line_start:].split(b",", 1)[0].split(b"\n", 1)[0]
    job_text = job.decode("utf-8", errors="replace").strip() or "?"
    where = "in the header" if line == 1 else f"for job '{job_text}'"
    return (
        f"line {line} {where}: byte 0x{payload[exc.start]:02x} at column "
        f"{exc.start - line_start + 1} is not UTF-8 text"
    )


def to_jobs_table(raw: pd.DataFrame, workflow: str) -> pd.DataFrame:
    """Type the text columns of runs read by `read_run` into the canonical jobs table.

    Strict: a non-numeric cell where a number belongs raises `DataError` naming the
    file, column, job and value. Empty cells stay missing.
    """
    origin, jobs = raw["_origin"], raw["job"]
    out: dict[str, pd.Series] = {
        "workflow": pd.Series(workflow, index=raw.index, dtype="string"),
        "run": raw["run"].astype("string"),
        "job": jobs.astype("string"),
    }
    for name in schema.STRINGS:
        out[name] = raw[name].mask(raw[name].isin(_MISSING)).astype("string")
    for name in (*schema.INTEGERS, *schema.PEGASUS_INTEGERS):
        values = _numeric(raw[name], origin, jobs, name)
        fractional = values.notna() & (values != np.floor(values))
        if fractional.any():
            _fail(origin, name, jobs, raw[name], fractional, "is not a whole number")
        huge = values.notna() & (values.abs() >= 2.0**53)  # beyond exact integers in float
        if huge.any():
            _fail(origin, name, jobs, raw[name], huge, "is too large for a whole-number column")
        out[name] = values.astype("Int64")
    for name in (*schema.FLOATS, *schema.PEGASUS_FLOATS):
        out[name] = _numeric(raw[name], origin, jobs, name)
    out["task"] = derive_task(out["kickstart_transformations"], out["job"])
    anomaly = raw["anomaly_type"].str.strip()
    # Flow-Bench writes `None` for a normal job; an empty cell stays missing; a job nobody
    # labelled (`unknown`) has no label.
    anomaly = anomaly.mask(anomaly == "").str.lower().astype("string")
    out["anomaly_type"] = anomaly
    out["label"] = (
        (anomaly != schema.NORMAL)
        .astype("Int64")
        .where(anomaly.notna() & (anomaly != schema.UNKNOWN))
    )
    frame = pd.DataFrame(out)
    return frame[list(schema.JOBS_COLUMNS)].astype(schema.JOBS_COLUMNS)


def derive_task(transformations: pd.Series, jobs: pd.Series) -> pd.Series:
    """The job's kind: its kickstart transformation, else its job id, without `_IDnnn`."""
    source = transformations.fillna(jobs).astype("string")
    return source.str.replace(_ID_SUFFIX, "", regex=True).astype("string")


def read_workflow(
    source: WorkflowSource,
    progress: bool = True,
    max_runs: int | None = None,
    limits: LimitsParams | None = None,
) -> pd.DataFrame:
    """Read every run (or `max_runs` spread over them) of one workflow into its jobs table."""
    frames: list[pd.DataFrame] = []
    seen: dict[str, str] = {}
    from tqdm.auto import tqdm  # not a serving requirement: the service imports this module

    files = iter_run_files(source.traces, max_runs, limits)
    bar = tqdm(files, desc=f"ingest {source.workflow}", unit="run", disable=not progress)
    for run, origin, stream in bar:
        if run in seen:
            raise DataError(origin, f"run '{run}' appears twice (also in {seen[run]})")
        seen[run] = origin
        frames.append(read_run(stream, origin, run, limits))
    if source.new_runs is not None and source.new_runs.is_dir():
        for run, origin, stream in iter_run_files(source.new_runs, limits=limits):
            if run in seen:  # never double-count a run
                log.warning("%s: run '%s' is already in %s; skipped", origin, run, seen[run])
                continue
            seen[run] = origin
            frames.append(read_run(stream, origin, run, limits))
    if not frames:
        raise DataError(source.traces, "no run CSV files found")
    table = to_jobs_table(pd.concat(frames, ignore_index=True), source.workflow)
    log.info(
        "%s: %d runs, %d jobs, %d anomalous",
        source.workflow,
        len(frames),
        len(table),
        int(table["label"].sum()),
    )
    return table


def _numeric(values: pd.Series, origin: pd.Series, jobs: pd.Series, name: str) -> pd.Series:
    text = values.str.strip()
    missing = text.isin(_MISSING)
    parsed = pd.to_numeric(text.mask(missing), errors="coerce")
    bad = parsed.isna() & ~missing
    if bad.any():
        _fail(origin, name, jobs, values, bad, "is not a number")
    infinite = np.isinf(parsed.to_numpy(dtype="float64", na_value=np.nan))
    if infinite.any():
        _fail(origin, name, jobs, values, pd.Series(infinite, index=values.index), "is infinite")
    return parsed.astype("float64")


def _fail(
    origin: pd.Series, name: str, jobs: pd.Series, values: pd.Series, mask: pd.Series, why: str
):
    first = int(np.flatnonzero(mask.to_numpy())[0])
    count = int(mask.sum())
    more = f" ({count} rows in all)" if count > 1 else ""
    raise DataError(
        origin.iloc[first],
        f"value '{values.iloc[first]}' for job '{jobs.iloc[first]}' {why}{more}",
        field=name,
    )


def write_run_csv(jobs: pd.DataFrame | list[dict], path: str | Path) -> Path:
    """One run's jobs as a run CSV in Flow-Bench's layout (the unnamed job-id column,
    then RAW_COLUMNS and the optional Pegasus columns), atomically: what `read_run`
    reads back to the same jobs table (floats written exactly, missing values empty)."""
    from flowsentry.io import atomic_path

    records = jobs.to_dict("records") if isinstance(jobs, pd.DataFrame) else jobs
    columns = (*schema.RAW_COLUMNS, *schema.OPTIONAL_COLUMNS)
    floats = set(schema.FLOATS) | set(schema.PEGASUS_FLOATS)

    def cell(name: str, value: object) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return ""
        return repr(float(value)) if name in floats else str(value)

    path = Path(path)
    with atomic_path(path, ".csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["", *columns])
        for record in records:
            writer.writerow([record["job"], *(cell(c, record.get(c)) for c in columns)])
    return path
