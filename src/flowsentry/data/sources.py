"""Which measures each kind of source records, and which a detector's features need.

A detector trained on Flow-Bench's full records reads stage-in/out delays and kickstart's
online I/O counters that only Pegasus's Panorama monitoring produces. Scored on records
that lack them, it would read every missing measure as "unknown" on every job and judge
nothing it was trained to judge. The service and the live listener therefore compare the
measures a detector needs with the measures its source records, and refuse a mismatch
in one line rather than score it.

Sources:
- `flowbench`: Flow-Bench's CSVs (Pegasus with Panorama): every measure.
- `stampede`: a stampede database, and pegasus-monitord's full event stream (the property
  `pegasus.catalog.workflow.events = stampede.*`): the job's state times, so the delays
  (wms, pre-script, queue, post-script) and the runtime, and its invocations' CPU time
  (+ maxrss, avg_cpu, retries, held time, which Flow-Bench lacks).
- `monitord`: pegasus-monitord's default AMQP events (`stampede.job_inst.composite`,
  `stampede.inv.end`, ...): no state times, so only the runtime (HTCondor's execute to
  terminate) and the invocations' CPU time.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowsentry.data import schema
from flowsentry.data.context import CONTEXT_MEASURES
from flowsentry.data.dag import DAG_COLUMNS, PARENTS
from flowsentry.data.evidence import EVIDENCE_MEASURE
from flowsentry.data.peers import AGNOSTIC_MEASURES

_STAMPEDE = frozenset(
    {
        "ready",
        "pre_script_start",
        "pre_script_end",
        "submit",
        "execute_start",
        "execute_end",
        "post_script_start",
        "post_script_end",
        "wms_delay",
        "pre_script_delay",
        "queue_delay",
        "runtime",
        "post_script_delay",
        "kickstart_executables_cpu_time",
        *schema.INTEGERS,
        *schema.PEGASUS,
    }
)
SOURCE_MEASURES: dict[str, frozenset[str]] = {
    "flowbench": frozenset({*schema.FLOATS, *schema.INTEGERS}),
    "stampede": _STAMPEDE,
    "monitord": frozenset(
        {
            "runtime",
            "kickstart_executables_cpu_time",
            "kickstart_status",
            "kickstart_executables_exitcode",
            *schema.PEGASUS,
        }
    ),
}
SOURCES = tuple(SOURCE_MEASURES)

# context column -> its measure (data/context: m_vs_task, host_m_mean, host_m_median)
_CONTEXT_MEASURE = {
    name: m
    for m in CONTEXT_MEASURES
    for name in (f"{m}_vs_task", f"host_{m}_mean", f"host_{m}_median")
}


def measures_read(features: Iterable[str]) -> set[str]:
    """The recorded measures a feature list is computed from (the task needs none)."""
    needed = set()
    for name in features:
        if name == "task":
            continue
        if name in AGNOSTIC_MEASURES:
            needed.update(AGNOSTIC_MEASURES[name])
            continue
        if name in DAG_COLUMNS:  # computed from the job's parents in the DAG
            needed.add(PARENTS)
            continue
        needed.add(EVIDENCE_MEASURE.get(name) or _CONTEXT_MEASURE.get(name) or name)
    return needed


def missing_measures(source: str, features: Iterable[str]) -> list[str]:
    """The measures `features` read that `source` never records (sorted; [] = can score)."""
    if source not in SOURCE_MEASURES:
        raise ValueError(f"unknown source '{source}' (know {list(SOURCES)})")
    return sorted(measures_read(features) - SOURCE_MEASURES[source])


def scorable_sources(features: Iterable[str]) -> list[str]:
    """The sources whose records carry every measure `features` read."""
    features = list(features)
    return [source for source in SOURCES if not missing_measures(source, features)]
