"""The canonical jobs table: one source of truth for the reader and the GX suite.

A Flow-Bench CSV holds one DAG run; each row is one job. The jobs table adds the
identity columns (`workflow, run, job, task`), keeps every raw column with a proper
dtype, normalises `anomaly_type` (`None` -> `none`) and adds the binary `label`.
"""

from __future__ import annotations

# Identity of a job, then what the job is.
IDENTITY = ("workflow", "run", "job", "task")

TIMESTAMPS = (
    "ready",
    "pre_script_start",
    "pre_script_end",
    "submit",
    "stage_in_start",
    "stage_in_end",
    "execute_start",
    "execute_end",
    "stage_out_start",
    "stage_out_end",
    "post_script_start",
    "post_script_end",
)
DELAYS = (
    "wms_delay",
    "pre_script_delay",
    "queue_delay",
    "runtime",
    "post_script_delay",
    "stage_in_delay",
    "stage_out_delay",
)
BYTES = ("stage_in_bytes", "stage_out_bytes")
RATES = ("stage_in_effective_bytes_per_sec", "stage_out_effective_bytes_per_sec")
CPU_TIME = ("kickstart_executables_cpu_time",)
KICKSTART_COUNTERS = (
    "kickstart_online_iowait",
    "kickstart_online_bytes_read",
    "kickstart_online_bytes_written",
    "kickstart_online_read_system_calls",
    "kickstart_online_write_system_calls",
    "kickstart_online_utime",
    "kickstart_online_stime",
    "kickstart_online_bytes_read_per_second",
    "kickstart_online_bytes_written_per_second",
)
INTEGERS = ("is_clustered", "kickstart_status", "kickstart_executables_exitcode")
STRINGS = (
    "type",
    "kickstart_user",
    "kickstart_site",
    "kickstart_hostname",
    "kickstart_transformations",
    "kickstart_executables",
    "kickstart_executables_argv",
)

# What a Pegasus installation records and Flow-Bench lacks (stampede database and
# monitord events; missing in Flow-Bench tables): the largest resident set of the job's
# invocations (KiB), its CPU time over wall time, its earlier attempts, and the seconds
# HTCondor held it.
PEGASUS_FLOATS = ("maxrss", "avg_cpu", "held_time")
PEGASUS_INTEGERS = ("retries",)
PEGASUS = PEGASUS_FLOATS + PEGASUS_INTEGERS

FLOATS = TIMESTAMPS + DELAYS + BYTES + RATES + CPU_TIME + KICKSTART_COUNTERS
# Quantities that can never be negative (seconds, bytes, counters).
NON_NEGATIVE = DELAYS + BYTES + RATES + CPU_TIME + KICKSTART_COUNTERS + PEGASUS_FLOATS

# Measures a Flow-Bench job always records, learned from the eight released workflows
# (3,721 runs): the measures no job of any workflow lacks, which
# tests/integration/test_real_traces.py checks workflow by workflow. A job without one is
# damaged. (`post_script_delay`, for one, is missing in predict_future_sales.)
FLOWBENCH_REQUIRED = (
    "ready",
    "submit",
    "execute_start",
    "execute_end",
    "wms_delay",
    "queue_delay",
    "runtime",
    "kickstart_executables_cpu_time",
)


def required_measures(kind: str) -> tuple[str, ...]:
    """The measures a job of a source `kind` always records (validate's content
    expectations): Flow-Bench's eight; none for the other sources, whose records vary
    with the installation (a stampede database, monitord's events, a text source)."""
    return FLOWBENCH_REQUIRED if kind == "flowbench" else ()


# Every column a Flow-Bench CSV must carry (besides the unnamed job-id column).
RAW_COLUMNS = ("anomaly_type", *STRINGS, *INTEGERS, *FLOATS)
# Columns a run CSV may carry besides (a Pegasus run written by `flowsentry listen`).
OPTIONAL_COLUMNS = PEGASUS

# (earlier, later): where both are present, later >= earlier.
TIMESTAMP_ORDER = (
    ("ready", "submit"),
    ("submit", "execute_start"),
    ("pre_script_start", "pre_script_end"),
    ("stage_in_start", "stage_in_end"),
    ("execute_start", "execute_end"),
    ("stage_out_start", "stage_out_end"),
    ("post_script_start", "post_script_end"),
    ("execute_end", "post_script_start"),
)

# Plausible ranges: epoch seconds between 2000-01-01 and 2100-01-01; no single
# delay longer than 30 days.
TIMESTAMP_MIN = 946_684_800.0
TIMESTAMP_MAX = 4_102_444_800.0
MAX_DELAY_SECONDS = 30 * 24 * 3600.0
# Upper bounds for every other measure a detector reads, far above anything a job on a
# cluster node does (Flow-Bench's largest values are 4-6 orders of magnitude below) yet
# far below where float32 features and sentences break (a job of 30 days on 4,096
# cores; a petabyte; a terabyte a second; 10^13 system calls).
MAX_CPU_SECONDS = MAX_DELAY_SECONDS * 4096
MAX_BYTES = 1e15
MAX_BYTES_PER_SECOND = 1e12
MAX_CALLS = 1e13
UPPER_BOUNDS: dict[str, float] = {
    **{name: MAX_DELAY_SECONDS for name in DELAYS},
    **{name: MAX_BYTES for name in BYTES},
    **{name: MAX_BYTES_PER_SECOND for name in RATES},
    "kickstart_executables_cpu_time": MAX_CPU_SECONDS,
    "kickstart_online_iowait": MAX_CPU_SECONDS,
    "kickstart_online_utime": MAX_CPU_SECONDS,
    "kickstart_online_stime": MAX_CPU_SECONDS,
    "kickstart_online_bytes_read": MAX_BYTES,
    "kickstart_online_bytes_written": MAX_BYTES,
    "kickstart_online_read_system_calls": MAX_CALLS,
    "kickstart_online_write_system_calls": MAX_CALLS,
    "kickstart_online_bytes_read_per_second": MAX_BYTES_PER_SECOND,
    "kickstart_online_bytes_written_per_second": MAX_BYTES_PER_SECOND,
    "maxrss": MAX_BYTES / 1024,  # KiB
    "avg_cpu": 4096.0,  # cores busy on average
    "held_time": MAX_DELAY_SECONDS,
}
# Whole-number columns: clustering is a flag; statuses and exit codes are small integers.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "is_clustered": (0, 1),
    "kickstart_status": (-(2**31), 2**31 - 1),
    "kickstart_executables_exitcode": (-(2**31), 2**31 - 1),
    "retries": (0, 1_000_000),
}

NORMAL = "none"
# A job nobody labelled yet (a Pegasus installation's runs): its `label` is missing.
UNKNOWN = "unknown"
# Anomalies injected by Flow-Bench: cpu_K (K cores withheld), hdd_K (disk capped).
# `unspecified` is for sources that carry only a binary label (the paper's text CSVs, and
# a job an operator marked anomalous).
ANOMALY_TYPES = ("none", "cpu_2", "cpu_3", "cpu_4", "hdd_5", "hdd_10", "unspecified", UNKNOWN)

# The jobs table, in column order, with pandas dtypes.
JOBS_COLUMNS: dict[str, str] = {
    **{name: "string" for name in IDENTITY},
    **{name: "string" for name in STRINGS},
    **{name: "Int64" for name in INTEGERS},
    **{name: "float64" for name in FLOATS},
    **{name: "float64" for name in PEGASUS_FLOATS},
    **{name: "Int64" for name in PEGASUS_INTEGERS},
    "anomaly_type": "string",
    "label": "Int64",
}


def empty_jobs_table():
    """An empty jobs table with the canonical columns and dtypes."""
    import pandas as pd

    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in JOBS_COLUMNS.items()})
