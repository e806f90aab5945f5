"""Read a Pegasus stampede database (what pegasus-monitord writes) into the jobs table.

A source is a SQLAlchemy URL (`sqlite:///path/run.stampede.db`, `mysql+pymysql://...`,
`postgresql+psycopg://...`). The whole database is read in one transaction, so a
monitord writing at the same time never gives a torn read. The columns are derived the
way Flow-Bench derived them from the same records (its CSVs agree on every row:
`execute_end` = `post_script_start`, `post_script_delay` about 5 s of DAGMan polling):

- `ready`: the latest end (post-script end, else job end) of the job's parents in
  `job_edge`, of its previous attempt, and of the workflow's (re)start before it was
  submitted; a root job is ready when DAGMan started (`WORKFLOW_STARTED`);
- `pre_script_start/end`: PRE_SCRIPT_STARTED / PRE_SCRIPT_SUCCESS|FAILED;
- `submit`: SUBMIT; `execute_start`: EXECUTE (the last: an evicted job runs again);
- `execute_end`: JOB_SUCCESS|JOB_FAILURE (DAGMan's verdict, the moment the post script
  starts), else JOB_TERMINATED or JOB_ABORTED;
- `post_script_start/end`: POST_SCRIPT_STARTED / POST_SCRIPT_SUCCESS|FAILED;
- delays: `wms_delay` = (pre-script start or submit) - ready, `pre_script_delay`,
  `queue_delay` = execute - submit, `runtime` = execute end - execute start,
  `post_script_delay`; the job's invocations (the DAGMan post script's, whose
  `task_submit_seq` is negative, excluded) give CPU time (summed), exit code,
  transformation, executable and arguments; `host` gives the hostname.

What Pegasus records and Flow-Bench lacks is kept in extra columns (`schema.PEGASUS`):
`maxrss` (KiB, the largest of the invocations), `avg_cpu` (CPU time / wall time),
`retries` (earlier attempts), `held_time` (seconds between JOB_HELD and JOB_RELEASED).
What the database does not record (Panorama's stage-in/out delays and bytes, the
`kickstart_online_*` counters) stays missing, never 0. No job carries a label: every
row says `anomaly_type` "unknown" until an operator labels it (`flowsentry label`).

Choices:
- **Retries: one row a job, its last attempt.** The last attempt is the one whose outcome
  the workflow kept, and one row a DAG node is the shape of a Flow-Bench run (and of the
  DAG the job ids must belong to). Its `ready` is its previous attempt's end, so its
  delays describe that attempt alone; `retries` says how many came before.
- **Sub-workflows: runs of their own.** Each workflow (`wf_uuid`) is a run, a
  sub-workflow included: it has its own DAG (`job_edge` is per workflow), its own DAGMan
  start and end, and pegasus-monitord announces it as a workflow of its own
  (`stampede.xwf.start/end`), so a live listener and a batch read group jobs the same
  way, and a finished sub-workflow is complete evidence while its parent still runs. The
  parent keeps the sub-workflow's job (type `subwf`, as Flow-Bench names it), whose
  runtime spans the sub-workflow. (Flow-Bench folds a sub-workflow's jobs into its
  parent's CSV; the sibling context here is per run, so a sub-workflow's jobs are
  compared with each other.)
- **Still running** (no WORKFLOW_TERMINATED after its last WORKFLOW_STARTED): not read;
  one line says so, and no job of it is stored (a run read half-way would look complete).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.data import schema
from flowsentry.data.flowbench import derive_task
from flowsentry.errors import DataError

log = logging.getLogger(__name__)

#: stampede schema versions read here (`dbversion.version_number`): 14 is pegasus-wms
#: 5.x's CURRENT_DB_VERSION; 13 added invocation.maxrss and avg_cpu, read below. An
#: older database is upgraded in place by `pegasus-db-admin update`.
SUPPORTED_VERSIONS = range(13, 15)
#: table -> the columns read from it
COLUMNS: dict[str, tuple[str, ...]] = {
    "workflow": ("wf_id", "wf_uuid", "dax_label", "parent_wf_id", "root_wf_id"),
    "workflowstate": ("wf_id", "state", "timestamp", "restart_count"),
    "job": ("job_id", "wf_id", "exec_job_id", "type_desc", "clustered", "executable", "argv"),
    "job_instance": (
        "job_instance_id",
        "job_id",
        "host_id",
        "job_submit_seq",
        "site",
        "user",
        "exitcode",
        "subwf_id",
    ),
    "jobstate": ("job_instance_id", "state", "timestamp", "jobstate_submit_seq"),
    "invocation": (
        "job_instance_id",
        "task_submit_seq",
        "remote_duration",
        "remote_cpu_time",
        "exitcode",
        "transformation",
        "executable",
        "argv",
        "maxrss",
        "avg_cpu",
    ),
    "host": ("host_id", "hostname"),
    "job_edge": ("wf_id", "parent_exec_job_id", "child_exec_job_id"),
}
# Pegasus job types (job.type_desc) -> Flow-Bench's `type`
_SUBWORKFLOW_TYPES = {"dax", "dag", "pegasus-plan", "subwf"}
_END_STATES = ("JOB_SUCCESS", "JOB_FAILURE")
_FALLBACK_END_STATES = ("JOB_TERMINATED", "JOB_ABORTED")


@dataclass
class StampedeRead:
    """What one database gave: the jobs table, each run's DAG, and what was left out."""

    url: str  # password hidden
    jobs: pd.DataFrame
    dags: dict[str, dict[str, list[str]]]  # run -> {job: [child, ...]}
    running: list[str] = field(default_factory=list)  # wf_uuids still running: not read
    never_submitted: int = 0  # jobs of finished runs that DAGMan never submitted


def safe_url(url: str) -> str:
    """`url` with its password hidden (for logs and reports)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: shown as given, it holds no parsed password
        return url


def expand_url(url: str) -> str:
    """`${VAR}` in a URL from the environment (keeps passwords out of params.yaml)."""
    missing = [name for name in re.findall(r"\$\{(\w+)\}", url) if name not in os.environ]
    if missing:
        raise DataError(url, f"environment variable {missing[0]} is not set", field="url")
    return os.path.expandvars(url)


def read_stampede(url: str, workflow: str | None = None) -> StampedeRead:
    """Every finished workflow of the stampede database at `url` as runs of the jobs
    table. `workflow` names the workflow for every run (default: each run's `dax_label`)."""
    url = expand_url(url)
    shown = safe_url(url)
    tables = _read_tables(url, shown)
    return _assemble(tables, shown, workflow)


def _read_tables(url: str, shown: str) -> dict[str, pd.DataFrame]:
    """The tables in COLUMNS, read in one transaction; one line for a database that is
    not a stampede database of a known version."""
    import sqlalchemy as sa

    if url.startswith("sqlite:"):  # SQLAlchemy would create an empty file for a bad path
        path = sa.engine.make_url(url).database
        if not path or not os.path.isfile(path):
            raise DataError(shown, "no such database file")
        url = f"sqlite:///file:{os.path.abspath(path)}?mode=ro&uri=true"
    # One snapshot of every table: REPEATABLE READ where the server has it; SQLite's
    # driver is told to leave transactions to us, and BEGIN holds a read snapshot.
    sqlite = url.startswith("sqlite:")
    options: dict[str, Any] = (
        {"connect_args": {"isolation_level": None}}
        if sqlite
        else {"isolation_level": "REPEATABLE READ"}
    )
    try:
        engine = sa.create_engine(url, **options)
    except (ImportError, ModuleNotFoundError) as exc:
        raise DataError(shown, f"no database driver for this URL ({exc}); install it") from None
    except sa.exc.ArgumentError as exc:
        raise DataError(shown, f"not a SQLAlchemy database URL ({exc})") from None
    try:
        with engine.connect() as connection:
            if sqlite:
                connection.exec_driver_sql("BEGIN")
            inspector = sa.inspect(connection)
            present = set(inspector.get_table_names())
            if "dbversion" not in present and "workflow" not in present:
                raise DataError(shown, "not a stampede database (no tables dbversion, workflow)")
            version = _version(connection, present, shown)
            for table, columns in COLUMNS.items():
                if table not in present:
                    raise DataError(
                        shown, f"table '{table}' is missing (stampede schema {version})"
                    )
                have = {c["name"] for c in inspector.get_columns(table)}
                lacking = [c for c in columns if c not in have]
                if lacking:
                    raise DataError(
                        shown,
                        f"table '{table}' lacks column '{lacking[0]}' "
                        f"(stampede schema {version}; read here: "
                        f"{SUPPORTED_VERSIONS.start}-{SUPPORTED_VERSIONS.stop - 1})",
                    )
            tables = {
                table: pd.read_sql_query(
                    sa.text(f"SELECT {', '.join(columns)} FROM {table}"), connection
                )
                for table, columns in COLUMNS.items()
            }
            if sqlite:
                connection.exec_driver_sql("COMMIT")
            return tables
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DataError(shown, f"cannot read the database: {reason}") from None
    finally:
        engine.dispose()


def _version(connection: Any, present: set[str], shown: str) -> int:
    import sqlalchemy as sa

    if "dbversion" not in present:
        raise DataError(shown, "table 'dbversion' is missing: not a stampede database")
    row = connection.execute(
        sa.text("SELECT version_number FROM dbversion ORDER BY id DESC")
    ).first()
    if row is None or row[0] is None:
        raise DataError(shown, "table 'dbversion' is empty: schema version unknown")
    try:
        version = int(float(row[0]))
    except (TypeError, ValueError):
        raise DataError(shown, f"schema version '{row[0]}' is not a number") from None
    if version not in SUPPORTED_VERSIONS:
        raise DataError(
            shown,
            f"stampede schema version {version} is not one flowsentry reads "
            f"({SUPPORTED_VERSIONS.start}-{SUPPORTED_VERSIONS.stop - 1}); "
            "upgrade it with pegasus-db-admin update",
        )
    return version


def _finished(states: pd.DataFrame) -> set[int]:
    """Workflows whose last (re)start was followed by WORKFLOW_TERMINATED."""
    done = set()
    for wf_id, rows in states.groupby("wf_id"):
        rows = rows.sort_values(["timestamp", "restart_count"], kind="stable")
        started = rows.loc[rows["state"] == "WORKFLOW_STARTED", "timestamp"]
        ended = rows.loc[rows["state"] == "WORKFLOW_TERMINATED", "timestamp"]
        if len(ended) and (not len(started) or ended.max() >= started.max()):
            done.add(int(wf_id))
    return done


def _first(states: pd.DataFrame, names: tuple[str, ...], last: bool = False) -> pd.Series:
    """Per job instance, the first (or last) timestamp of any state in `names`."""
    rows = states[states["state"].isin(names)]
    grouped = rows.groupby("job_instance_id")["timestamp"]
    return (grouped.max() if last else grouped.min()).astype("float64")


def _instance_times(states: pd.DataFrame) -> pd.DataFrame:
    """Per job instance: the Flow-Bench timestamps and the time it spent held."""
    states = states.assign(timestamp=pd.to_numeric(states["timestamp"], errors="coerce"))
    end = _first(states, _END_STATES, last=True)
    fallback = _first(states, _FALLBACK_END_STATES, last=True)
    times = pd.DataFrame(
        {
            "pre_script_start": _first(states, ("PRE_SCRIPT_STARTED",), last=True),
            "pre_script_end": _first(states, ("PRE_SCRIPT_SUCCESS", "PRE_SCRIPT_FAILED"), True),
            "submit": _first(states, ("SUBMIT",)),
            "execute_start": _first(states, ("EXECUTE",), last=True),
            "execute_end": end.combine_first(fallback),
            "post_script_start": _first(states, ("POST_SCRIPT_STARTED",), last=True),
            "post_script_end": _first(
                states, ("POST_SCRIPT_SUCCESS", "POST_SCRIPT_FAILED"), last=True
            ),
        }
    )
    # A job with states but no JOB_HELD among them was held for 0 s (recorded, not invented).
    times["held_time"] = _held(states).reindex(times.index).fillna(0.0)
    return times


def _held(states: pd.DataFrame) -> pd.Series:
    """Seconds each instance spent between JOB_HELD and the JOB_RELEASED after it."""
    rows = states[states["state"].isin(("JOB_HELD", "JOB_RELEASED"))].sort_values(
        ["job_instance_id", "timestamp", "jobstate_submit_seq"]
    )
    total: dict[int, float] = {}
    for instance, events in rows.groupby("job_instance_id"):
        held_since = None
        seconds = 0.0
        for state, ts in zip(events["state"], events["timestamp"], strict=True):
            if state == "JOB_HELD" and held_since is None:
                held_since = ts
            elif state == "JOB_RELEASED" and held_since is not None:
                seconds += ts - held_since
                held_since = None
        total[int(instance)] = seconds
    return pd.Series(total, dtype="float64")


_SUMMARY_COLUMNS = (
    "kickstart_executables_cpu_time",
    "kickstart_executables_exitcode",
    "kickstart_transformations",
    "kickstart_executables",
    "kickstart_executables_argv",
    "maxrss",
    "avg_cpu",
)


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def summarize_attempt(invocations: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One attempt's invocations summed up (DAGMan's own pre/post script, whose
    `task_submit_seq` is negative, excluded): CPU time summed, the first non-zero exit
    code, transformations/executables/arguments joined (each once, in task order), the
    largest maxrss, and CPU time over wall time weighted by each task's duration."""
    tasks = sorted(
        (i for i in invocations if _float(i.get("task_submit_seq")) >= 0),
        key=lambda i: _float(i.get("task_submit_seq")),
    )

    def joined(key: str) -> str | None:
        present = (t.get(key) for t in tasks)
        words = dict.fromkeys(str(v) for v in present if v is not None and v == v)  # not NaN
        return " ".join(words) or None

    def numbers(key: str) -> list[float]:
        return [v for t in tasks if not math.isnan(v := _float(t.get(key)))]

    cpu, codes, rss = numbers("remote_cpu_time"), numbers("exitcode"), numbers("maxrss")
    shares, durations = numbers("avg_cpu"), numbers("remote_duration")
    products = (_float(t.get("avg_cpu")) * _float(t.get("remote_duration")) for t in tasks)
    busy = [b for b in products if not math.isnan(b)]
    total = sum(durations) if durations else math.nan
    weighted = sum(busy) / total if busy and total > 0 else math.nan
    return {
        "kickstart_executables_cpu_time": sum(cpu) if cpu else math.nan,
        "kickstart_executables_exitcode": next((int(c) for c in codes if c != 0), 0)
        if codes
        else None,
        "kickstart_transformations": joined("transformation"),
        "kickstart_executables": joined("executable"),
        "kickstart_executables_argv": joined("argv"),
        "maxrss": max(rss) if rss else math.nan,
        "avg_cpu": weighted if not math.isnan(weighted)
        else (sum(shares) / len(shares) if shares else math.nan),
    }  # fmt: skip


def summarize_invocations(invocations: pd.DataFrame) -> pd.DataFrame:
    """`summarize_attempt` of each job instance's invocations, indexed by its id."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for record in invocations.to_dict("records"):
        groups.setdefault(record["job_instance_id"], []).append(record)
    summary = {key: summarize_attempt(records) for key, records in groups.items()}
    return pd.DataFrame.from_dict(summary, orient="index", columns=list(_SUMMARY_COLUMNS))


def _flowbench_type(type_desc: Any) -> str | None:
    """Pegasus's job type as Flow-Bench's: compute, transfer, subwf or auxiliary."""
    if not isinstance(type_desc, str) or not type_desc:
        return None
    if type_desc == "compute":
        return "compute"
    if type_desc.endswith("-tx") or type_desc == "transfer":
        return "transfer"
    if type_desc in _SUBWORKFLOW_TYPES:
        return "subwf"
    return "auxiliary"


def _assemble(
    tables: Mapping[str, pd.DataFrame], shown: str, workflow_name: str | None
) -> StampedeRead:
    workflows = tables["workflow"]
    finished = _finished(tables["workflowstate"])
    running = sorted(
        str(u) for i, u in zip(workflows["wf_id"], workflows["wf_uuid"], strict=True)
        if int(i) not in finished
    )  # fmt: skip
    for uuid in running:
        log.warning("%s: workflow %s is still running: not read (ingest it once it ended)",
                    shown, uuid)  # fmt: skip
    jobs = tables["job"][tables["job"]["wf_id"].astype(int).isin(finished)]
    instances = tables["job_instance"].merge(jobs, on="job_id", how="inner")
    never = int((~jobs["job_id"].isin(instances["job_id"])).sum())
    if instances.empty:
        return StampedeRead(shown, schema.empty_jobs_table(), {}, running, never)

    # One row a job: its last attempt (see the module docstring).
    instances = instances.sort_values(["job_id", "job_submit_seq"])
    instances["retries"] = instances.groupby("job_id").cumcount()
    times = _instance_times(tables["jobstate"])
    instances = instances.join(times, on="job_instance_id")
    instances["_end"] = instances["post_script_end"].combine_first(instances["execute_end"])
    instances["_previous_end"] = instances.groupby("job_id")["_end"].shift()
    last = instances.groupby("job_id").tail(1).copy()

    wf = workflows.set_index("wf_id")
    last["run"] = last["wf_id"].map(wf["wf_uuid"]).astype(str)
    labels = last["wf_id"].map(wf["dax_label"])
    last["workflow"] = workflow_name or labels.fillna("pegasus").astype(str)
    last["ready"] = _ready(last, tables["job_edge"], tables["workflowstate"])
    last = last.join(summarize_invocations(tables["invocation"]), on="job_instance_id")
    hosts = tables["host"].set_index("host_id")["hostname"]
    last["kickstart_hostname"] = last["host_id"].map(hosts)
    table = jobs_table(last)
    dags = _dags(tables["job_edge"], jobs, wf)
    log.info("%s: %d runs, %d jobs (%d still running, not read)", shown,
             table["run"].nunique(), len(table), len(running))  # fmt: skip
    return StampedeRead(shown, table, dags, running, never)


def ready_time(
    parent_ends: list[float], previous_end: float, starts: np.ndarray, submit: float
) -> float:
    """When a job became ready: the latest of its parents' ends, its previous attempt's
    end and the workflow's last (re)start before it was submitted (sorted `starts`)."""
    candidates = [*parent_ends, previous_end]
    if len(starts):
        before = starts[starts <= submit] if not pd.isna(submit) else starts[:1]
        candidates.append(before[-1] if len(before) else starts[0])
    values = [float(c) for c in candidates if not pd.isna(c)]
    return max(values) if values else np.nan


def _ready(last: pd.DataFrame, edges: pd.DataFrame, states: pd.DataFrame) -> pd.Series:
    """`ready_time` of every last attempt, from job_edge and workflowstate."""
    end = {
        (int(w), str(j)): e
        for w, j, e in zip(last["wf_id"], last["exec_job_id"], last["_end"], strict=True)
    }
    parents: dict[tuple[int, str], list[str]] = {}
    for w, parent, child in zip(
        edges["wf_id"], edges["parent_exec_job_id"], edges["child_exec_job_id"], strict=True
    ):
        parents.setdefault((int(w), str(child)), []).append(str(parent))
    starts = states[states["state"] == "WORKFLOW_STARTED"].assign(
        timestamp=lambda f: pd.to_numeric(f["timestamp"], errors="coerce")
    )
    started = {int(w): np.sort(rows["timestamp"].to_numpy()) for w, rows in starts.groupby("wf_id")}
    ready = [
        ready_time(
            [end.get((int(w), p), np.nan) for p in parents.get((int(w), str(job)), [])],
            previous,
            started.get(int(w), np.array([])),
            submit,
        )
        for w, job, submit, previous in zip(
            last["wf_id"], last["exec_job_id"], last["submit"], last["_previous_end"], strict=True
        )
    ]
    return pd.Series(ready, index=last.index, dtype="float64")


def jobs_table(last: pd.DataFrame, sort: bool = True) -> pd.DataFrame:
    """Job attempts as rows of the jobs table (columns and dtypes).

    `last` holds one row an attempt with Pegasus's names (`exec_job_id`, `type_desc`,
    `clustered`, `user`, `site`, `exitcode`, `executable`, `argv`), the state times
    (`pre_script_start/end`, `submit`, `execute_start/end`, `post_script_start/end`),
    `ready`, `retries`, `held_time`, the invocations' summary (`summarize_invocations`)
    and `kickstart_hostname`; a record without state times may carry `local_duration`
    (HTCondor's execute to terminate) for its runtime. The stampede reader and the live
    listener both build their rows here, so the two agree field by field."""
    n = len(last)

    def column(name: str) -> pd.Series:
        return last[name] if name in last else pd.Series(np.nan, index=last.index)

    def number(name: str) -> pd.Series:
        values = column(name)
        return values if values.dtype.kind == "f" else pd.to_numeric(values, errors="coerce")

    out: dict[str, Any] = {
        "workflow": column("workflow"),
        "run": column("run"),
        "job": column("exec_job_id").astype(str),
        "type": column("type_desc").map(_flowbench_type),
        "is_clustered": number("clustered"),
        "kickstart_user": column("user"),
        "kickstart_site": column("site"),
        "kickstart_status": number("exitcode"),
        "kickstart_hostname": column("kickstart_hostname"),
        "kickstart_transformations": column("kickstart_transformations"),
        "kickstart_executables": column("kickstart_executables").fillna(column("executable")),
        "kickstart_executables_argv": column("kickstart_executables_argv").fillna(column("argv")),
        "kickstart_executables_exitcode": number("kickstart_executables_exitcode"),
        "kickstart_executables_cpu_time": number("kickstart_executables_cpu_time"),
        "retries": number("retries"),
    }
    for name in (*schema.TIMESTAMPS, *schema.PEGASUS_FLOATS):
        if name in last:
            out[name] = number(name)
    times = {name: number(name) for name in schema.TIMESTAMPS}
    out["wms_delay"] = times["pre_script_start"].combine_first(times["submit"]) - times["ready"]
    out["pre_script_delay"] = times["pre_script_end"] - times["pre_script_start"]
    out["queue_delay"] = times["execute_start"] - times["submit"]
    out["runtime"] = times["execute_end"] - times["execute_start"]
    if "local_duration" in last:  # monitord's default events carry no state times
        out["runtime"] = out["runtime"].fillna(number("local_duration"))
    out["post_script_delay"] = times["post_script_end"] - times["post_script_start"]
    out["task"] = derive_task(
        out["kickstart_transformations"].astype("string"), out["job"].astype("string")
    )
    out["anomaly_type"] = pd.Series(schema.UNKNOWN, index=last.index)
    out["label"] = pd.Series(pd.NA, index=last.index)
    typed = {}
    for name, dtype in schema.JOBS_COLUMNS.items():
        values = out.get(name)
        if values is None:
            typed[name] = pd.Series(np.full(n, np.nan) if dtype == "float64" else pd.NA,
                                    index=last.index, dtype=dtype)  # fmt: skip
        elif dtype == "float64":
            typed[name] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif dtype == "Int64":
            typed[name] = pd.to_numeric(values, errors="coerce").round().astype("Int64")
        else:
            typed[name] = values.astype("string")
    out = pd.DataFrame(typed, index=last.index)
    if sort:  # by run, then in the order the jobs were submitted
        out = out.sort_values(["run", "submit", "job"], na_position="last", kind="stable")
    return out[list(schema.JOBS_COLUMNS)].reset_index(drop=True)


def _dags(
    edges: pd.DataFrame, jobs: pd.DataFrame, workflows: pd.DataFrame
) -> dict[str, dict[str, list[str]]]:
    """Each finished run's DAG from `job` and `job_edge`: {run: {job: [child, ...]}}."""
    dags: dict[str, dict[str, list[str]]] = {}
    for w, names in jobs.groupby("wf_id")["exec_job_id"]:
        run = str(workflows.loc[w, "wf_uuid"])
        dags[run] = {str(name): [] for name in sorted(names)}
    for w, parent, child in zip(
        edges["wf_id"], edges["parent_exec_job_id"], edges["child_exec_job_id"], strict=True
    ):
        if w in workflows.index and str(workflows.loc[w, "wf_uuid"]) in dags:
            dag = dags[str(workflows.loc[w, "wf_uuid"])]
            dag.setdefault(str(parent), []).append(str(child))
            dag.setdefault(str(child), [])
    return dags
