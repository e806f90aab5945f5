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

FLOATS = TIMESTAMPS + DELAYS + BYTES + RATES + CPU_TIME + KICKSTART_COUNTERS
# Quantities that can never be negative (seconds, bytes, counters).
NON_NEGATIVE = DELAYS + BYTES + RATES + CPU_TIME + KICKSTART_COUNTERS

# Every column a Flow-Bench CSV must carry (besides the unnamed job-id column).
RAW_COLUMNS = ("anomaly_type", *STRINGS, *INTEGERS, *FLOATS)

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

NORMAL = "none"
# Anomalies injected by Flow-Bench: cpu_K (K cores withheld), hdd_K (disk capped).
# `unspecified` is for sources that carry only a binary label (the paper's text CSVs).
ANOMALY_TYPES = ("none", "cpu_2", "cpu_3", "cpu_4", "hdd_5", "hdd_10", "unspecified")

# The jobs table, in column order, with pandas dtypes.
JOBS_COLUMNS: dict[str, str] = {
    **{name: "string" for name in IDENTITY},
    **{name: "string" for name in STRINGS},
    **{name: "Int64" for name in INTEGERS},
    **{name: "float64" for name in FLOATS},
    "anomaly_type": "string",
    "label": "Int64",
}


def empty_jobs_table():
    """An empty jobs table with the canonical columns and dtypes."""
    import pandas as pd

    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in JOBS_COLUMNS.items()})
