"""Job record -> sentence. Pure and deterministic.

`paper` is exactly the paper's sentence: `<feature> is <value>` for its nine
features in order, values printed as Python prints the float (`6.0`), a missing
value as `nan` (the CSV's empty cell; never invented).

`compact` carries the same values in fewer tokens: short keys, `key=value`, whole
numbers without `.0`, missing fields left out (the keys keep the rest unambiguous).

Feature sets: `paper` (nine features), `extended` (the job's task kind first,
then the nine, then the kickstart I/O counters) and `context` (the task kind, the
nine, then the host's slowdown factors in the run from `flowsentry.data.context`).
Context ratios print as whole percents of the task's median (`184` = 1.84x).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from flowsentry.data import schema
from flowsentry.data.context import CONTEXT_COLUMNS, HOST_CONTEXT, TASK_RATIOS

# The paper's nine features, in the order a job produces them (online detection).
PAPER_FEATURES: tuple[str, ...] = (
    "wms_delay",
    "queue_delay",
    "runtime",
    "post_script_delay",
    "stage_in_delay",
    "stage_out_delay",
    "stage_in_bytes",
    "stage_out_bytes",
    "kickstart_executables_cpu_time",
)
# The kickstart I/O counters (the per-second rates left out: they repeat the counts).
KICKSTART_IO: tuple[str, ...] = schema.KICKSTART_COUNTERS[:7]
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "paper": PAPER_FEATURES,
    "extended": ("task", *PAPER_FEATURES, *KICKSTART_IO),
    # The paper's nine plus the task kind and the host's slowdown in the run
    # (flowsentry.data.context): what a job means next to its siblings.
    "context": ("task", *PAPER_FEATURES, *HOST_CONTEXT),
    # Only relative numbers: the job's own ratios to its task's median, then its host's.
    "relative": ("task", *TASK_RATIOS, *HOST_CONTEXT),
}
SHORT_NAMES: dict[str, str] = {
    "task": "task",
    "wms_delay": "wms",
    "queue_delay": "queue",
    "runtime": "run",
    "post_script_delay": "post",
    "stage_in_delay": "in",
    "stage_out_delay": "out",
    "stage_in_bytes": "inb",
    "stage_out_bytes": "outb",
    "kickstart_executables_cpu_time": "cpu",
    "kickstart_online_iowait": "iowait",
    "kickstart_online_bytes_read": "rb",
    "kickstart_online_bytes_written": "wb",
    "kickstart_online_read_system_calls": "rcalls",
    "kickstart_online_write_system_calls": "wcalls",
    "kickstart_online_utime": "utime",
    "kickstart_online_stime": "stime",
    "runtime_vs_task": "run%",
    "kickstart_executables_cpu_time_vs_task": "cpu%",
    "stage_in_delay_vs_task": "in%",
    "stage_out_delay_vs_task": "out%",
    "host_runtime_mean": "hrun",
    "host_runtime_median": "hrunm",
    "host_kickstart_executables_cpu_time_mean": "hcpu",
    "host_kickstart_executables_cpu_time_median": "hcpum",
    "host_stage_in_delay_mean": "hin",
    "host_stage_in_delay_median": "hinm",
    "host_stage_out_delay_mean": "hout",
    "host_stage_out_delay_median": "houtm",
}
# Ratios print as whole percents (1.84 -> 184): one WordPiece token with a pretrained
# sense of magnitude, where "1.84" costs three.
RATIO_FEATURES = frozenset(CONTEXT_COLUMNS)
TEMPLATES = ("paper", "compact")


def features_of(feature_set: str) -> tuple[str, ...]:
    """The ordered feature names of a feature set."""
    try:
        return FEATURE_SETS[feature_set]
    except KeyError:
        raise ValueError(
            f"unknown feature set '{feature_set}' (know {sorted(FEATURE_SETS)})"
        ) from None


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _paper_value(value: Any, ratio: bool = False) -> str:
    if _missing(value):
        return "nan"
    if isinstance(value, str):
        return value
    return str(round(100 * float(value))) if ratio else str(float(value))


def _compact_value(value: Any, ratio: bool = False) -> str:
    if isinstance(value, str):
        return value
    number = float(value)
    if ratio:
        return str(round(100 * number))
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def sentence(
    job: Mapping[str, Any],
    template: str = "paper",
    features: Sequence[str] = PAPER_FEATURES,
    k: int | None = None,
) -> str:
    """One job's sentence from its first `k` features (all when `k` is None).

    A prefix (k < len(features)) is what is known of a job part-way through
    (online detection). Fields absent from `job` count as missing.
    """
    names = features if k is None else features[:k]
    if template == "paper":
        return " ".join(
            f"{name} is {_paper_value(job.get(name), name in RATIO_FEATURES)}" for name in names
        )
    if template == "compact":
        return " ".join(
            f"{SHORT_NAMES.get(name, name)}={_compact_value(job[name], name in RATIO_FEATURES)}"
            for name in names
            if not _missing(job.get(name))
        )
    raise ValueError(f"unknown template '{template}' (know {list(TEMPLATES)})")


def sentences(
    jobs: pd.DataFrame,
    template: str = "paper",
    features: Sequence[str] = PAPER_FEATURES,
    k: int | None = None,
) -> list[str]:
    """Sentences for every row of a jobs table, in row order."""
    present = [name for name in features if name in jobs.columns]
    records = jobs[present].astype(object).to_dict("records")
    return [sentence(record, template, features, k) for record in records]
