"""pegasus-monitord's events -> job records: the same rows the stampede reader derives.

monitord publishes one JSON event per thing that happens (routing key = event name;
keys with `.` written as `_`: `xwf_id`, `job_inst_id`, ...). A job instance is
(`xwf_id`, `job_id`, `job_inst_id`); `xwf_id` is the run (a sub-workflow is a run of its
own, as in `flowsentry.data.stampede`). Two streams reach a listener:

- **default** (what monitord publishes unless told otherwise): `stampede.wf.plan`,
  `stampede.inv.end` (each invocation: CPU time, duration, maxrss) and one
  `stampede.job_inst.composite` per finished instance (host, job type, exit code,
  HTCondor's execute-to-terminate `local_dur`; no submit/execute/post-script times). The
  instance is complete at its composite event; its runtime is `local_dur`. No event
  announces a run's end: a run is closed when it has been idle for a while (the listener).
- **full** (`pegasus.catalog.workflow.events = stampede.*`): every state change
  (`job_inst.submit.*`, `main.*`, `post.*`, `pre.*`, `held.*`), the DAG (`job.edge`), the
  run's start and end (`xwf.start/end`). An instance is complete at `post.end` (or at
  `main.end` when it has no post script: monitord sends `main.end` after the post script
  ended, never before), and its row is derived exactly as from the stampede database.

Events are applied to an `Assembler` one at a time. An event that cannot be applied
raises `BadEvent` with the reason (missing or mistyped fields, a job never announced,
an event after its instance or run ended); nothing of it is kept. Duplicates (a message
delivered again after a crash) are the caller's to drop (the state store keys events).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.data import schema
from flowsentry.data.stampede import jobs_table, ready_time, summarize_attempt

PREFIX = "stampede."
#: every event pegasus-monitord emits (pegasus-wms 5.1.3); others are set aside
KNOWN_EVENTS = frozenset(
    PREFIX + name
    for name in (
        "wf.plan", "wf.map.file", "wf.map.task_job", "static.start", "static.end",
        "static.meta.start", "static.meta.end", "xwf.meta", "xwf.start", "xwf.end",
        "xwf.map.subwf_job", "task.info", "task.edge", "task.meta", "task.monitoring",
        "job.info", "job.edge", "job_inst.pre.start", "job_inst.pre.term", "job_inst.pre.end",
        "job_inst.submit.start", "job_inst.submit.end", "job_inst.held.start",
        "job_inst.held.end", "job_inst.main.start", "job_inst.main.term", "job_inst.main.end",
        "job_inst.post.start", "job_inst.post.term", "job_inst.post.end",
        "job_inst.host.info", "job_inst.image.info", "job_inst.abort.info",
        "job_inst.grid.submit.start", "job_inst.grid.submit.end",
        "job_inst.globus.submit.start", "job_inst.globus.submit.end",
        "job_inst.composite", "job_inst.tag", "inv.start", "inv.end", "int.metric",
        "rc.meta", "rc.pfn",
    )
)  # fmt: skip
#: known events that change nothing the assembler builds (not stored, not checked)
IGNORED_EVENTS = frozenset(
    PREFIX + name
    for name in (
        "wf.map.file", "wf.map.task_job", "static.start", "static.end", "static.meta.start",
        "static.meta.end", "xwf.meta", "xwf.map.subwf_job", "task.info", "task.edge",
        "task.meta", "task.monitoring", "job_inst.image.info", "job_inst.abort.info",
        "job_inst.grid.submit.start", "job_inst.grid.submit.end",
        "job_inst.globus.submit.start", "job_inst.globus.submit.end", "job_inst.tag",
        "inv.start", "int.metric", "rc.meta", "rc.pfn",
    )
)  # fmt: skip
# the events that change a job's record
_STATE = {
    "job_inst.pre.start": "pre_script_start",
    "job_inst.pre.end": "pre_script_end",
    "job_inst.submit.start": "_submit_start",
    "job_inst.submit.end": "submit",
    "job_inst.main.start": "execute_start",
    "job_inst.main.term": "_terminated",
    "job_inst.main.end": "execute_end",
    "job_inst.post.start": "post_script_start",
    "job_inst.post.end": "post_script_end",
}
_ANNOUNCING = {"job_inst.pre.start", "job_inst.submit.start"}
MAX_TEXT = 1000  # characters of an id or a name
#: every field the assembler reads: what the listener keeps of an event for recovery
#: (stdout and stderr texts, often kilobytes, are left out)
USED_FIELDS = frozenset(
    {
        "xwf_id", "job_id", "job_inst_id", "inv_id", "ts", "status", "dax_label", "wf",
        "type_desc", "clustered", "executable", "argv", "parent_job_id", "child_job_id",
        "dur", "remote_cpu_time", "exitcode", "transformation", "maxrss", "avg_cpu", "site",
        "user", "local_dur", "hostname", "jobtype",
    }
)  # fmt: skip


def essentials(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an event the assembler reads (applying them gives the same records)."""
    return {key: value for key, value in body.items() if key in USED_FIELDS}


class BadEvent(ValueError):
    """An event that cannot be applied; the message says why (one line)."""


@dataclass
class Instance:
    """One attempt of one job, as its events arrive."""

    job: str
    inst: int
    times: dict[str, float] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    invocations: dict[int, dict[str, Any]] = field(default_factory=dict)
    held_since: float | None = None
    held_time: float = 0.0
    announced: bool = False  # a submit.start or pre.start was seen (the full stream)
    done: bool = False

    @property
    def stream(self) -> str:
        return "full" if self.announced else "default"

    @property
    def end(self) -> float:
        """When the attempt ended: its post script's end, else its own."""
        return self.times.get("post_script_end", self.times.get("execute_end", math.nan))


@dataclass
class Run:
    """What is known of one run (a workflow, `xwf_id`)."""

    run: str
    workflow: str | None = None
    starts: list[float] = field(default_factory=list)
    ended: bool = False
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job.info
    parents: dict[str, list[str]] = field(default_factory=dict)  # job.edge
    instances: dict[tuple[str, int], Instance] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)  # job -> its last attempt's end
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)  # job -> last row
    finished_attempt: dict[str, int] = field(default_factory=dict)  # job -> its attempt
    last_seen: float = 0.0  # monotonic clock of the last event (idle runs are closed)


def _text(body: Mapping[str, Any], key: str, name: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadEvent(f"{name}: field '{key}' is missing or not a non-empty string")
    if len(value) > MAX_TEXT or "\n" in value:
        raise BadEvent(f"{name}: field '{key}' is over {MAX_TEXT} characters or multi-line")
    return value


def _number(body: Mapping[str, Any], key: str, name: str, required: bool = True) -> float:
    value = body.get(key)
    if value is None and not required:
        return math.nan
    if isinstance(value, bool):
        raise BadEvent(f"{name}: field '{key}' is not a number ({value!r})")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadEvent(f"{name}: field '{key}' is missing or not a number ({value!r})") from None
    if not math.isfinite(number):
        raise BadEvent(f"{name}: field '{key}' is not finite ({value!r})")
    return number


def _epoch(body: Mapping[str, Any], name: str) -> float:
    ts = _number(body, "ts", name)
    if not schema.TIMESTAMP_MIN <= ts <= schema.TIMESTAMP_MAX:
        raise BadEvent(f"{name}: field 'ts' ({ts:g}) is not a plausible epoch time")
    return ts


def _integer(body: Mapping[str, Any], key: str, name: str) -> int:
    number = _number(body, key, name)
    if number != int(number) or abs(number) > 2**31:
        raise BadEvent(f"{name}: field '{key}' is not a whole number ({body.get(key)!r})")
    return int(number)


class Assembler:
    """Applies events in arrival order; hands out the job attempts that ended."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def run(self, run: str) -> Run:
        if run not in self.runs:
            self.runs[run] = Run(run)
        return self.runs[run]

    def apply(self, name: str, body: Mapping[str, Any], now: float = 0.0) -> list[tuple]:
        """Apply one event; returns what it completed: `("job", run, job, inst)` for an
        attempt that ended, `("run", run)` for a run that ended. Raises `BadEvent`."""
        if not isinstance(body, Mapping):
            raise BadEvent(f"{name}: the body is not a JSON object")
        if name not in KNOWN_EVENTS:
            raise BadEvent(f"{name}: not an event pegasus-monitord sends")
        short = name.removeprefix(PREFIX)
        run_id = _text(body, "xwf_id", name)
        run = self.runs.get(run_id)
        if run is not None and run.ended:
            raise BadEvent(f"{name}: run {run_id} already ended (an event out of order)")
        if short == "wf.plan":
            label = body.get("dax_label")
            self.run(run_id).workflow = label if isinstance(label, str) and label else None
        elif short == "xwf.start":
            self.run(run_id).starts.append(_epoch(body, name))
        elif short == "xwf.end":
            _epoch(body, name)
            run = self.run(run_id)
            run.last_seen = now
            return self._close(run)
        elif short == "job.info":
            job = _text(body, "job_id", name)
            self.run(run_id).jobs[job] = {
                "type_desc": body.get("type_desc"),
                "clustered": body.get("clustered"),
                "executable": body.get("executable"),
                "argv": body.get("argv"),
            }
        elif short == "job.edge":
            parent = _text(body, "parent_job_id", name)
            child = _text(body, "child_job_id", name)
            self.run(run_id).parents.setdefault(child, []).append(parent)
        elif short == "inv.end" or short.startswith("job_inst."):
            return self._job_event(run_id, short, name, body, now)
        if run_id in self.runs:
            self.runs[run_id].last_seen = now
        return []

    def _job_event(
        self, run_id: str, short: str, name: str, body: Mapping[str, Any], now: float
    ) -> list[tuple]:
        job = _text(body, "job_id", name)
        inst = _integer(body, "job_inst_id", name)
        run = self.run(run_id)
        run.last_seen = now
        key = (job, inst)
        instance = run.instances.get(key)
        if short == "inv.end" and _integer(body, "inv_id", name) < 0:
            return []  # DAGMan's own pre/post script (after the default stream's composite)
        if instance is not None and instance.done:
            if short == "job_inst.composite" and instance.announced:
                return []  # sent after main.end; a job without post script ended there
            raise BadEvent(f"{name}: job {job} attempt {inst} already ended (out of order)")
        if short == "inv.end":
            inv = _integer(body, "inv_id", name)
            record = {
                "task_submit_seq": inv,
                "remote_duration": _number(body, "dur", name, required=False),
                "remote_cpu_time": _number(body, "remote_cpu_time", name, required=False),
                "exitcode": _number(body, "exitcode", name, required=False),
                "transformation": body.get("transformation"),
                "executable": body.get("executable"),
                "argv": body.get("argv"),
                "maxrss": _number(body, "maxrss", name, required=False),
                "avg_cpu": _number(body, "avg_cpu", name, required=False),
            }
            self._instance(run, key).invocations[inv] = record
            return []
        ts = _epoch(body, name)
        if short in _ANNOUNCING:
            instance = self._instance(run, key)
            instance.announced = True
        elif short == "job_inst.composite":
            return self._composite(run, key, body, ts, name)
        elif instance is None or not instance.announced:
            if short in _STATE or short.startswith(("job_inst.held", "job_inst.host")):
                raise BadEvent(f"{name}: job {job} attempt {inst} was never announced "
                               "(no submit.start or pre.start)")  # fmt: skip
            return []  # tag, image.info, abort.info, grid/globus submit: not used
        instance = self._instance(run, key)
        if short in _STATE:
            return self._state(run, instance, short, body, ts, name)
        if short == "job_inst.held.start" and instance.held_since is None:
            instance.held_since = ts
        elif short == "job_inst.held.end":
            if instance.held_since is None:
                raise BadEvent(f"{name}: job {job} attempt {inst} released but never held")
            instance.held_time += ts - instance.held_since
            instance.held_since = None
        elif short == "job_inst.host.info":
            instance.fields["hostname"] = body.get("hostname")
        return []

    def _instance(self, run: Run, key: tuple[str, int]) -> Instance:
        if key not in run.instances:
            run.instances[key] = Instance(*key)
        return run.instances[key]

    def _state(
        self, run: Run, instance: Instance, short: str, body: Mapping[str, Any], ts: float,
        name: str,
    ) -> list[tuple]:  # fmt: skip
        column = _STATE[short]
        status = body.get("status")
        if short == "job_inst.submit.end" and status not in (0, "0", None):
            column = "_submit_failed"
        if short == "job_inst.main.end" and "execute_start" not in instance.times:
            raise BadEvent(f"{name}: job {instance.job} ended before it started (out of order)")
        if short == "job_inst.post.end" and "post_script_start" not in instance.times:
            raise BadEvent(f"{name}: job {instance.job} post script ended before it started")
        if column in ("submit", "_submit_start") and column in instance.times:
            ts = min(ts, instance.times[column])  # the first submission
        instance.times[column] = ts
        if short == "job_inst.main.end":
            for key in ("site", "user", "exitcode", "local_dur"):
                if key in body:
                    instance.fields[key] = body[key]
        if short == "job_inst.post.end" and "exitcode" in body:
            # the stampede loader keeps the post script's verdict as the instance's exitcode
            instance.fields["exitcode"] = body["exitcode"]
        ended = short == "job_inst.post.end" or (
            short == "job_inst.main.end" and "post_script_start" not in instance.times
        )
        return self._finish(run, instance) if ended else []

    def _composite(
        self, run: Run, key: tuple[str, int], body: Mapping[str, Any], ts: float, name: str
    ) -> list[tuple]:
        instance = self._instance(run, key)
        for source, target in (("hostname", "hostname"), ("jobtype", "jobtype")):
            if body.get(source) is not None:
                instance.fields.setdefault(target, body[source])
        if isinstance(body.get("wf"), str) and run.workflow is None:
            run.workflow = body["wf"]
        if instance.announced:  # the full stream: its post.end completes it
            return []
        for key_ in ("site", "user", "exitcode"):
            if key_ in body:
                instance.fields[key_] = body[key_]
        instance.fields["local_dur"] = _number(body, "local_dur", name, required=False)
        instance.times["execute_end"] = ts  # the composite's time is JOB_SUCCESS/FAILURE
        return self._finish(run, instance)

    def _finish(self, run: Run, instance: Instance) -> list[tuple]:
        instance.done = True
        return [("job", run.run, instance.job, instance.inst)]

    def _close(self, run: Run) -> list[tuple]:
        run.ended = True
        return [("run", run.run)]

    def close_idle(self, now: float, idle_seconds: float) -> list[tuple]:
        """End the runs of the default stream (no `xwf.start` seen: nothing will announce
        their end) untouched for `idle_seconds`; returns their `("run", run)` markers. A
        run of the full stream ends at its `xwf.end`."""
        out = []
        for run in list(self.runs.values()):
            if not run.ended and not run.starts and now - run.last_seen >= idle_seconds:
                out += self._close(run)
        return out

    def touch(self, now: float) -> None:
        """Restart every open run's idle clock (the listener was away: a broker restart
        or its own restart is no run's silence)."""
        for run in self.runs.values():
            run.last_seen = now

    def rows(self, keys: Iterable[tuple[str, str, int]], keep: bool = True) -> pd.DataFrame:
        """The jobs-table rows of ended attempts `(run, job, inst)`, in `keys` order; with
        `keep`, each becomes its job's latest record (a sibling of the run's later jobs)."""
        keys = list(keys)
        if not keys:
            return schema.empty_jobs_table()
        attempts = []
        for run_id, job, inst in keys:
            run = self.runs[run_id]
            instance = run.instances[(job, inst)]
            summary = summarize_attempt(instance.invocations.values())
            attempts.append({**self._attempt(run, instance), **summary})
            run.ends[job] = instance.end
        frame = pd.DataFrame(attempts)
        table = jobs_table(frame, sort=False)
        if not keep:
            return table
        for (run_id, job, inst), record in zip(keys, table.to_dict("records"), strict=True):
            run = self.runs[run_id]
            if inst >= run.finished_attempt.get(job, -1):  # an earlier attempt never replaces
                run.finished[job] = record
                run.finished_attempt[job] = inst
        return table

    def _attempt(self, run: Run, instance: Instance) -> dict[str, Any]:
        """One attempt with Pegasus's names, as `stampede.jobs_table` reads them."""
        job, times, fields = instance.job, instance.times, instance.fields
        info = run.jobs.get(job, {})
        earlier = [i for (j, n), i in run.instances.items() if j == job and n < instance.inst]
        previous = max(earlier, key=lambda i: i.inst).end if earlier else math.nan
        submit = times.get("submit", times.get("_submit_start", math.nan))
        return {
            "workflow": run.workflow or "pegasus",
            "run": run.run,
            "exec_job_id": job,
            "type_desc": info.get("type_desc") or fields.get("jobtype"),
            "clustered": info.get("clustered"),
            "executable": info.get("executable"),
            "argv": info.get("argv"),
            "user": fields.get("user"),
            "site": fields.get("site"),
            "exitcode": fields.get("exitcode"),
            "kickstart_hostname": fields.get("hostname"),
            "pre_script_start": times.get("pre_script_start", math.nan),
            "pre_script_end": times.get("pre_script_end", math.nan),
            "submit": submit,
            "execute_start": times.get("execute_start", math.nan),
            "execute_end": times.get("execute_end", times.get("_terminated", math.nan)),
            "post_script_start": times.get("post_script_start", math.nan),
            "post_script_end": times.get("post_script_end", math.nan),
            "held_time": instance.held_time if instance.announced else math.nan,
            "retries": len(earlier),
            "local_duration": fields.get("local_dur", math.nan),
            "ready": ready_time(
                [run.ends.get(parent, math.nan) for parent in run.parents.get(job, [])],
                previous,
                np.sort(np.asarray(run.starts, dtype="float64")),
                submit,
            ),
        }
