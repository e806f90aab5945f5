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
`evidence` adds each measure against its task's normal profile for the job, its host and
its run (`flowsentry.data.evidence`); `levels` prints every number as its decile on the
training split, one token each (`task individuals run 9 9 8 5 cpu 9 9 9 6`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from flowsentry.data import schema
from flowsentry.data.context import CONTEXT_COLUMNS, CONTEXT_MEASURES, HOST_CONTEXT, TASK_RATIOS
from flowsentry.data.dag import DAG_COLUMNS
from flowsentry.data.evidence import (
    EVIDENCE_COLUMNS,
    EVIDENCE_MEASURE,
    MEASURES,
    Profile,
    evidence_columns,
)
from flowsentry.data.peers import AGNOSTIC_COLUMNS, AGNOSTIC_MEASURES

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
    # Everything: context, plus each measure against its task's normal profile
    # (flowsentry.data.evidence) for the job, its host and its run.
    "evidence": ("task", *PAPER_FEATURES, *HOST_CONTEXT, *TASK_RATIOS, *EVIDENCE_COLUMNS),
    # The evidence of the six measures that carry it, grouped by measure (25 features):
    # with the `levels` template about 40 tokens a job, for the language models.
    "evidence_compact": ("task", *(c for m in MEASURES[:6] for c in evidence_columns(m))),
    # Workflow-agnostic (flowsentry.data.peers): each host against the run's other hosts
    # and robust z-scores to the workflow's own normal; no task code, no absolute value:
    # one model for workflows it never saw labelled (docs/results/new-workflow.md).
    "agnostic": AGNOSTIC_COLUMNS,
}
# The agnostic evidence a language model reads (`compact` template, about 70 tokens): each
# host's robust z among the run's hosts, then each job's and its host's z to normal.
_LM_PEERS = ("runtime", "kickstart_executables_cpu_time", "stage_in_delay", "stage_out_delay",
             "starved", "io")  # fmt: skip
_LM_Z = ("runtime", "kickstart_executables_cpu_time", "stage_in_delay", "stage_out_delay")
FEATURE_SETS["agnostic_compact"] = (
    *(f"peer_host_{m}_z" for m in _LM_PEERS),
    *(f"z_{m}" for m in (*_LM_Z, "queue_delay")),
    *(f"host_z_{m}" for m in _LM_Z),
)


def _measures_set(measures: Sequence[str]) -> tuple[str, ...]:
    """A feature set over `measures` only: the task, the values, each one against its
    task in the run and its host's slowdown (where data/context has them), then each
    one against normal for the job, its host and its run (data/evidence)."""
    in_context = [m for m in CONTEXT_MEASURES if m in measures]
    return (
        "task",
        *measures,
        *(f"{m}_vs_task" for m in in_context),
        *(f"host_{m}_{stat}" for m in in_context for stat in ("mean", "median")),
        *(c for m in measures for c in evidence_columns(m)),
    )


# What a Pegasus installation records without Panorama (flowsentry.data.sources): the
# stampede database (and monitord's full event stream) has the three delays, the runtime
# and the CPU time; monitord's default AMQP events only the runtime and the CPU time.
PEGASUS_MEASURES: tuple[str, ...] = (
    "wms_delay",
    "queue_delay",
    "runtime",
    "post_script_delay",
    "kickstart_executables_cpu_time",
)
MONITORD_MEASURES: tuple[str, ...] = ("runtime", "kickstart_executables_cpu_time")
for _name, _measures in (("pegasus", PEGASUS_MEASURES), ("monitord", MONITORD_MEASURES)):
    FEATURE_SETS[_name] = _measures_set(_measures)  # the feature detectors
    FEATURE_SETS[f"{_name}_compact"] = (  # the language model's sentence
        "task",
        *(c for m in _measures for c in evidence_columns(m)),
    )
    # workflow-agnostic, from what that source records (a new Pegasus workflow)
    FEATURE_SETS[f"agnostic_{_name}"] = tuple(
        c for c in AGNOSTIC_COLUMNS if set(AGNOSTIC_MEASURES[c]) <= set(_measures)
    )
# The evidence and what the job's parents and children did in its run (data/dag.py):
# no service request carries a job's parents yet, so the gate never promotes it to serve.
FEATURE_SETS["evidence_dag"] = (*FEATURE_SETS["evidence"], *DAG_COLUMNS)
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
# The `levels` template names each measure once, by a word that is one WordPiece token.
LEVEL_KEYS: dict[str, str] = {
    "stage_in_delay": "in",
    "runtime": "run",
    "kickstart_executables_cpu_time": "cpu",
    "kickstart_online_utime": "user",
    "kickstart_online_stime": "sys",
    "stage_out_delay": "out",
    "queue_delay": "queue",
    "wms_delay": "wms",
    "kickstart_online_iowait": "io",
    "post_script_delay": "post",
}
for _m in MEASURES:
    _key = SHORT_NAMES.get(_m, LEVEL_KEYS[_m])
    for _prefix, _name in zip(("", "h", "hm", "r"), evidence_columns(_m), strict=True):
        SHORT_NAMES[_name] = f"{_prefix}{_key}~"
for _m in (*_LM_PEERS, "queue_delay"):
    _key = {"starved": "slow", "io": "io"}.get(_m) or SHORT_NAMES[_m]
    SHORT_NAMES[f"peer_host_{_m}_z"] = f"p{_key}"
    SHORT_NAMES[f"z_{_m}"] = f"z{_key}"
    SHORT_NAMES[f"host_z_{_m}"] = f"hz{_key}"
# Robust z-scores print with one decimal (`2.3`): the rest is noise to a language model.
Z_FEATURES = frozenset(c for c in FEATURE_SETS["agnostic_compact"])
# Ratios print as whole percents (1.84 -> 184): one WordPiece token with a pretrained
# sense of magnitude, where "1.84" costs three.
RATIO_FEATURES = frozenset(CONTEXT_COLUMNS) | frozenset(EVIDENCE_COLUMNS)
TEMPLATES = ("paper", "compact", "levels")


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


def _compact_value(value: Any, ratio: bool = False, z: bool = False) -> str:
    if isinstance(value, str):
        return value
    number = float(value)
    if ratio:
        return str(round(100 * number))
    if z:
        return f"{number:.1f}".replace("-0.0", "0.0")
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def level_keys(features: Sequence[str]) -> list[str]:
    """The words that name `features` in a `levels` sentence (a measure's key once)."""
    words: list[str] = []
    for name in features:
        measure = EVIDENCE_MEASURE.get(name)
        word = LEVEL_KEYS[measure] if measure else SHORT_NAMES.get(name, name)
        if not words or word != words[-1]:
            words.append(word)
    return words


def _levels(job: Mapping[str, Any], names: Sequence[str], profile: Profile) -> str:
    """`task individuals run 9 9 8 5 cpu ...`: each number as its decile on the training
    split (one token), the evidence of one measure after one key; missing values left out."""
    words: list[str] = []
    group = None
    for name in names:
        value = job.get(name)
        if _missing(value):
            continue
        measure = EVIDENCE_MEASURE.get(name)
        if measure is None or measure != group:
            words.append(LEVEL_KEYS[measure] if measure else SHORT_NAMES.get(name, name))
        group = measure
        if isinstance(value, str):
            words.append(value)
            continue
        level = profile.level(name, float(value))
        words.append(str(level) if level is not None else _compact_value(value))
    return " ".join(words)


def sentence(
    job: Mapping[str, Any],
    template: str = "paper",
    features: Sequence[str] = PAPER_FEATURES,
    k: int | None = None,
    profile: Profile | None = None,
) -> str:
    """One job's sentence from its first `k` features (all when `k` is None).

    A prefix (k < len(features)) is what is known of a job part-way through
    (online detection). Fields absent from `job` count as missing. The `levels`
    template needs the training `profile` (its decile edges).
    """
    names = features if k is None else features[:k]
    if template == "levels":
        if profile is None:
            raise ValueError("the 'levels' template needs a fitted evidence profile")
        return _levels(job, names, profile)
    if template == "paper":
        return " ".join(
            f"{name} is {_paper_value(job.get(name), name in RATIO_FEATURES)}" for name in names
        )
    if template == "compact":
        return " ".join(
            f"{SHORT_NAMES.get(name, name)}="
            f"{_compact_value(job[name], name in RATIO_FEATURES, name in Z_FEATURES)}"
            for name in names
            if not _missing(job.get(name))
        )
    raise ValueError(f"unknown template '{template}' (know {list(TEMPLATES)})")


def sentences(
    jobs: pd.DataFrame,
    template: str = "paper",
    features: Sequence[str] = PAPER_FEATURES,
    k: int | None = None,
    profile: Profile | None = None,
) -> list[str]:
    """Sentences for every row of a jobs table, in row order."""
    present = [name for name in features if name in jobs.columns]
    records = jobs[present].astype(object).to_dict("records")
    return [sentence(record, template, features, k, profile) for record in records]
