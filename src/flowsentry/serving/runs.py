"""What the service has seen of each run: the job records that give a job its siblings.

Jobs of a run finish one by one and are sent as they finish, yet a job's context (the
other jobs of its task, of its host, of its run) is what detects the anomaly. The
service therefore keeps, per (workflow, run), the records it has seen, and scores each
request against them: a job sent alone gets the context of every sibling seen so far, and
once a run is complete its jobs score as they would in one batch (the aggregates are
medians, so the records are kept rather than running totals).

Bounded three ways (`serve` in params.yaml, carried into the Bento): at most `max_runs`
runs (the least recently used is dropped), at most `max_jobs_per_run` jobs a run (later
jobs are scored against the ones held but not kept), and a run not touched for
`run_idle_seconds` is dropped. A job sent again (a finished job after its partial
record) replaces its fields, newer values winning.

`MemoryRunStore` serves one worker process; with several workers or replicas the store
must be shared: `RedisRunStore` keeps the same state in Redis behind the same interface.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pandas as pd

from flowsentry.errors import FlowsentryError

log = logging.getLogger(__name__)

Record = dict[str, Any]


class RunStore:
    """The bounds every store keeps, and what the service asks of one."""

    kind: str

    def __init__(
        self, max_runs: int, max_jobs_per_run: int, idle_seconds: float, clock: Callable[[], float]
    ) -> None:
        self.max_runs = max_runs
        self.max_jobs_per_run = max_jobs_per_run
        self.idle_seconds = idle_seconds
        self._clock = clock

    def merge(self, workflow: str, run: str, records: list[Record]) -> list[Record]:
        """Add `records` (each with a `job`) to the run; return every record held for the
        run afterwards, the merged ones included."""
        raise NotImplementedError

    def occupancy(self) -> tuple[int, int]:
        """(runs held, jobs scored but not kept because their run was full)."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Bounds and occupancy, for /metadata."""
        held, not_kept = self.occupancy()
        return {
            "kind": self.kind,
            "max_runs": self.max_runs,
            "max_jobs_per_run": self.max_jobs_per_run,
            "run_idle_seconds": self.idle_seconds,
            "runs_held": held,
            "jobs_not_kept": not_kept,
        }


def _merged(old: Record | None, new: Record) -> Record:
    return new if old is None else {**old, **new}


class MemoryRunStore(RunStore):
    """One process's run store: a least-recently-used map of runs (thread-safe)."""

    kind = "memory"

    def __init__(
        self,
        max_runs: int,
        max_jobs_per_run: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_runs, max_jobs_per_run, idle_seconds, clock)
        self._runs: OrderedDict[tuple[str, str], tuple[float, dict[str, Record]]] = OrderedDict()
        self._lock = threading.Lock()
        self.not_kept = 0  # jobs scored but not kept: their run was full

    def merge(self, workflow: str, run: str, records: list[Record]) -> list[Record]:
        now = self._clock()
        key = (workflow, run)
        with self._lock:
            self._expire(now)
            _, jobs = self._runs.pop(key, (now, {}))
            for record in records:
                job = str(record["job"])
                if job in jobs or len(jobs) < self.max_jobs_per_run:
                    jobs[job] = _merged(jobs.get(job), record)
                else:
                    self.not_kept += 1
            self._runs[key] = (now, jobs)  # the most recently used, last
            while len(self._runs) > self.max_runs:
                dropped, _ = self._runs.popitem(last=False)
                log.info("run store full: dropped run %s/%s (least recently used)", *dropped)
            return list(jobs.values())

    def _expire(self, now: float) -> None:
        while self._runs:
            key, (touched, _) = next(iter(self._runs.items()))
            if now - touched <= self.idle_seconds:
                break
            del self._runs[key]

    def occupancy(self) -> tuple[int, int]:
        with self._lock:
            return len(self._runs), self.not_kept


# Write one run's (already merged) records atomically: jobs are a hash (job -> JSON
# record), the runs a sorted set by last use; idle runs expire by TTL, the least recently
# used beyond max_runs are dropped. KEYS: [runs zset, run hash]; ARGV: [now, idle,
# max_runs, max_jobs, prefix, member, job1, record1, job2, record2, ...].
_WRITE = """
local runs, key = KEYS[1], KEYS[2]
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_runs, max_jobs = tonumber(ARGV[3]), tonumber(ARGV[4])
local prefix, member = ARGV[5], ARGV[6]
local not_kept = 0
for _, old in ipairs(redis.call('ZRANGEBYSCORE', runs, '-inf', now - idle)) do
  redis.call('DEL', prefix .. old)
end
redis.call('ZREMRANGEBYSCORE', runs, '-inf', now - idle)
for i = 7, #ARGV, 2 do
  if redis.call('HEXISTS', key, ARGV[i]) == 1 or redis.call('HLEN', key) < max_jobs then
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  else
    not_kept = not_kept + 1
  end
end
redis.call('ZADD', runs, now, member)
redis.call('EXPIRE', key, math.ceil(idle))
local extra = redis.call('ZCARD', runs) - max_runs
if extra > 0 then
  local popped = redis.call('ZPOPMIN', runs, extra)
  for i = 1, #popped, 2 do redis.call('DEL', prefix .. popped[i]) end
end
if not_kept > 0 then redis.call('INCRBY', runs .. ':not_kept', not_kept) end
return redis.call('HVALS', key)
"""


class RedisRunStore(RunStore):
    """The run store in Redis, shared by every worker and replica that points at it."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        max_runs: int,
        max_jobs_per_run: int,
        idle_seconds: float,
        prefix: str = "flowsentry:runs",
        clock: Callable[[], float] = time.time,
    ) -> None:
        import redis

        super().__init__(max_runs, max_jobs_per_run, idle_seconds, clock)
        self.url = url
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise FlowsentryError(f"run store: Redis at {url} does not answer: {exc}") from None
        self._write = self._client.register_script(_WRITE)

    def merge(self, workflow: str, run: str, records: list[Record]) -> list[Record]:
        member = json.dumps([workflow, run])
        args: list[Any] = [
            self._clock(),
            self.idle_seconds,
            self.max_runs,
            self.max_jobs_per_run,
            f"{self.prefix}:run:",
            member,
        ]
        key = f"{self.prefix}:run:{member}"
        jobs = [str(record["job"]) for record in records]
        # Merged here, written by the script: Redis's Lua JSON would round the numbers.
        # Two workers updating the same job at once: the last write wins.
        held = self._client.hmget(key, jobs) if jobs else []
        for job, record, old in zip(jobs, records, held, strict=True):
            merged = _merged(None if old is None else json.loads(old), record)
            args += [job, json.dumps(merged, allow_nan=False)]
        values = self._write(keys=[self.prefix, key], args=args)
        return [json.loads(value) for value in values]

    def occupancy(self) -> tuple[int, int]:
        not_kept = self._client.get(f"{self.prefix}:not_kept")
        return int(self._client.zcard(self.prefix)), int(not_kept or 0)


def make_run_store(
    kind: str,
    max_runs: int,
    max_jobs_per_run: int,
    idle_seconds: float,
    redis_url: str | None = None,
) -> RunStore | None:
    """The store `kind` names (`none` keeps no runs: context from each request alone)."""
    if kind == "none":
        return None
    if kind == "memory":
        return MemoryRunStore(max_runs, max_jobs_per_run, idle_seconds)
    if kind == "redis":
        if not redis_url:
            raise FlowsentryError("run store 'redis' needs serve.redis_url (redis://host:port/db)")
        return RedisRunStore(redis_url, max_runs, max_jobs_per_run, idle_seconds)
    raise FlowsentryError(f"run store '{kind}' is unknown (know none, memory, redis)")


def storable(record: Record) -> Record:
    """A record as stored: its known values only (a frame's NaN and NA are unknowns)."""
    return {
        k: v
        for k, v in record.items()
        if v is not None and v is not pd.NA and not (isinstance(v, float) and not math.isfinite(v))
    }
