"""`flowsentry listen`: pegasus-monitord's events from RabbitMQ -> scored jobs and alerts.

The listener declares monitord's topic exchange (durable, as monitord does) and a durable
quorum queue of its own bound to `stampede.#` (a quorum queue keeps its messages on disk,
so a broker restart loses none that reached it, although monitord publishes them
transient). It takes messages in batches (`listen.batch_size`, or what arrived within
`listen.batch_seconds`), and for each batch:

1. applies each event to the job records being built (`live.events`); a message that is
   not JSON, not a monitord event, lacks a field, names a job never announced or comes
   after its job or run ended is set aside in `dead-letters.jsonl` with its reason and
   counted, and the batch goes on; a message seen before (redelivered) is skipped;
2. scores every job attempt that ended, with every sibling of its run seen so far as
   context (the serving run store's rule), with the model of its stream (`listen.model`
   for the default events, `listen.model_full` for the full stream); when a run ends
   (`stampede.xwf.end`, or idle for `listen.run_idle_seconds`), scores its jobs once
   more with the whole run as context (phase `final`: what scoring the run's stampede
   database in batch gives) and writes the run into the inbox, unlabelled;
3. stores the batch's events, results and counters in one SQLite transaction
   (`live.state`), appends the result and alert lines, and only then acknowledges the
   messages. Killed at any point, it restarts from the state and the broker redelivers
   what was not acknowledged: no job is lost and none is scored twice.

A lost broker connection is retried with backoff; the batch in hand is dropped unacked
(the broker redelivers it).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.config import ListenParams
from flowsentry.data.flowbench import write_run_csv
from flowsentry.data.sources import missing_measures
from flowsentry.data.stampede import expand_url, safe_url
from flowsentry.errors import FlowsentryError
from flowsentry.io import write_json
from flowsentry.live import sinks
from flowsentry.live.events import IGNORED_EVENTS, Assembler, BadEvent, essentials
from flowsentry.live.state import State, event_id, result_id
from flowsentry.models.detector import Detector

log = logging.getLogger(__name__)

ROUTING_KEY = "stampede.#"
STREAMS = {"default": "monitord", "full": "stampede"}  # stream -> source it must score


@dataclass(frozen=True)
class Model:
    tag: str
    detector: Detector


def resolve_model(name: str | None) -> Model:
    """A registry tag, a model folder, or (None) the registry's champion."""
    from flowsentry.models.loading import load_detector
    from flowsentry.registry import store

    if name is not None and Path(name).is_dir():
        return Model(str(Path(name).resolve()), load_detector(name))
    tag = name or store.champion_tag()
    if tag is None:
        raise FlowsentryError(
            "listen: no model (listen.model is null and the registry has no champion: "
            "run `make run`, or give listen.model)"
        )
    return Model(tag, load_detector(store.get(tag).path))


class Scorers:
    """The model for each stream; each refused at start if its stream lacks its measures."""

    def __init__(self, default: Model | None, full: Model | None) -> None:
        if default is None and full is None:
            raise FlowsentryError("listen: give listen.model or listen.model_full")
        self.by_stream: dict[str, Model] = {}
        for stream, model in (("default", default), ("full", full)):
            if model is None:
                continue
            missing = missing_measures(STREAMS[stream], model.detector.features)
            if missing:
                raise FlowsentryError(
                    f"listen: {model.tag} reads {', '.join(missing)}, which monitord's "
                    f"{stream} event stream never carries; train a model with "
                    f"train.features={'monitord' if stream == 'default' else 'pegasus'} "
                    f"for listen.{'model' if stream == 'default' else 'model_full'}"
                )
            self.by_stream[stream] = model
        # A model that reads only what the default events carry scores the full stream too.
        if "full" not in self.by_stream:
            self.by_stream["full"] = self.by_stream["default"]

    def for_stream(self, stream: str) -> Model | None:
        return self.by_stream.get(stream)

    def describe(self) -> dict[str, str | None]:
        return {stream: (m.tag if m else None) for stream, m in self.by_stream.items()}


class Listener:
    """Applies, scores, stores and writes batches of monitord messages."""

    def __init__(self, params: ListenParams, scorers: Scorers) -> None:
        self.params = params
        self.scorers = scorers
        self.output = Path(params.output)
        self.state = State(self.output / "state.db")
        for name in (sinks.RESULTS, sinks.ALERTS):  # there from the start, empty or not
            (self.output / name).touch()
        self.assembler = Assembler()
        self.notifier = sinks.Notifier(params.webhook, params.prefect_events)
        self.seen: dict[str, set[str]] = {}  # run -> event ids applied
        self.state.forget(params.forget_after_days * 86400)
        self._forgotten_at = time.monotonic()
        self.ended = self.state.ended_runs()
        self.scored: dict[str, set[str]] = {}  # run -> result ids (runs still open)
        for result in self.state.result_ids():
            self.scored.setdefault(result.split("/", 1)[0], set()).add(result)
        self.alerted: set[tuple[str, ...]] = set()
        self._recover()

    # -- recovery -------------------------------------------------------------------

    def _recover(self) -> None:
        """Rebuild the open runs from the stored events; write result lines the last run
        stored but had not yet written (a crash between the two)."""
        alerts = self.state.result_ids(alerts_only=True)
        self.alerted = {tuple(i.split("/")[:2]) for i in alerts}
        finished = []
        replayed = 0
        for name, body in self.state.open_events():
            replayed += 1
            finished += [c for c in self.assembler.apply(name, body, time.monotonic())
                         if c[0] == "job"]  # fmt: skip
        for event, run in self.state.db.execute("SELECT id, run FROM events"):
            self.seen.setdefault(run, set()).add(event)
        self.assembler.rows(k[1:] for k in finished)  # their siblings' records again
        if replayed:
            log.info("recovered %d events of %d open runs", replayed, len(self.assembler.runs))
        self._export(self.state.unexported(), check_files=True)

    # -- one batch --------------------------------------------------------------------

    def handle(self, messages: Sequence[tuple[str, bytes]]) -> dict[str, int]:
        """Apply, score, store and write one batch of (routing key, body) messages;
        returns the batch's counts. Acknowledge the messages only after it returns."""
        counts: Counter[str] = Counter()
        new_events: list[tuple[str, str, str, bytes]] = []
        dead: list[str] = []
        completed: list[tuple] = []
        now = time.monotonic()
        for name, body in messages:
            counts["messages"] += 1
            try:
                outcome = self._apply(name, body, now, new_events)
            except BadEvent as exc:
                counts["set_aside"] += 1
                dead.append(self._dead_letter(name, body, str(exc)))
                continue
            if outcome is None:
                counts["duplicates"] += 1
                continue
            completed += outcome
        completed += self.assembler.close_idle(now, self.params.run_idle_seconds)
        results, alerts, ended = self._score(completed, counts)
        sinks.append_lines(self.output / sinks.DEAD_LETTERS, dead)
        for run in ended:  # the inbox before the commit: a rerun rewrites the same file
            self._to_inbox(run)
        self.state.commit_batch(
            new_events,
            [(r["id"], r["run"], r["alert"], json.dumps(r)) for r in results],
            [(run.run, run.workflow) for run in ended],
            dict(counts),
        )
        for run in ended:  # nothing more is asked of an ended run: forget it in memory
            self.ended.add(run.run)
            self.seen.pop(run.run, None)
            self.scored.pop(run.run, None)
            self.alerted = {key for key in self.alerted if key[0] != run.run}
            self.assembler.runs.pop(run.run, None)
        if time.monotonic() - self._forgotten_at > 3600:  # drop runs ended days ago
            self.state.forget(self.params.forget_after_days * 86400)
            self._forgotten_at = time.monotonic()
        self._export([(r["id"], r["alert"], json.dumps(r)) for r in results])
        self.notifier.send(a for a in alerts)
        if messages or ended:
            self._status(counts)
        return dict(counts)

    def _apply(self, name: str, body: bytes, now: float, new_events: list) -> list[tuple] | None:
        """One message; None for a duplicate. Raises BadEvent to set it aside."""
        if name in IGNORED_EVENTS:  # known, and nothing is built from it
            return []
        if len(body) > self.params.max_message_bytes:
            limit = self.params.max_message_bytes
            raise BadEvent(f"{name}: a body of {len(body)} bytes is over "
                           f"listen.max_message_bytes ({limit})")  # fmt: skip
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadEvent(f"{name}: not JSON ({exc})") from None
        run = data.get("xwf_id") if isinstance(data, dict) else None
        run = run if isinstance(run, str) else None  # the assembler says what is wrong
        event = event_id(name, body)
        if isinstance(run, str) and event in self.seen.get(run, ()):
            return None
        if run in self.ended:
            if self.state.seen_after_end(event):
                return None
            raise BadEvent(f"{name}: run {run} already ended (an event out of order)")
        outcome = self.assembler.apply(name, data, now)
        self.seen.setdefault(run, set()).add(event)
        new_events.append((event, run, name, json.dumps(essentials(data)).encode()))
        return outcome

    def _dead_letter(self, name: str, body: bytes, reason: str) -> str:
        log.warning("set aside: %s", reason)
        text = body[:4096].decode("utf-8", errors="replace")
        return json.dumps({"routing_key": name, "reason": reason, "body": text,
                           "at": datetime.now(UTC).isoformat(timespec="seconds")})  # fmt: skip

    # -- scoring ----------------------------------------------------------------------

    def _score(self, completed: list[tuple], counts: Counter[str]):
        """Results and alerts of the attempts and runs `completed` ended: each attempt
        (phase `live`) against every sibling of its run seen so far, each job of an
        ended run (phase `final`) against the whole run; one frame a model for all."""
        jobs = [c[1:] for c in completed if c[0] == "job"]
        runs = [self.assembler.runs[c[1]] for c in completed if c[0] == "run"]
        self.assembler.rows(jobs)  # the attempts' records, now their jobs' latest
        requests: dict[str, list[tuple[str, str, tuple[str, str, int]]]] = {}
        for key in jobs:
            stream = self.assembler.runs[key[0]].instances[key[1:]].stream
            model = self.scorers.for_stream(stream)
            if model is None:
                counts["unscored_no_model"] += 1
                continue
            requests.setdefault(model.tag, []).append(("live", stream, key))
        for run in runs:
            stream = "full" if any(i.announced for i in run.instances.values()) else "default"
            model = self.scorers.for_stream(stream)
            if model is not None:
                requests.setdefault(model.tag, []).extend(
                    ("final", stream, (run.run, job, run.finished_attempt[job]))
                    for job in run.finished
                )
        models = {m.tag: m for m in self.scorers.by_stream.values()}
        results = [
            r for tag, asked in requests.items() for r in self._score_keys(models[tag], asked)
        ]
        kept, alerts = [], []
        for result in results:
            done = self.scored.setdefault(result["run"], set())
            if result["id"] in done:  # scored before a crash: never twice
                continue
            key = (result["run"], result["job"])
            result["alert"] = result["label"] == "anomalous" and key not in self.alerted
            if result["alert"]:
                self.alerted.add(key)
                alerts.append(result)
            done.add(result["id"])
            kept.append(result)
        counts["scored"] += sum(r["phase"] == "live" for r in kept)
        counts["alerts"] += len(alerts)
        return kept, alerts, runs

    def _score_keys(
        self, model: Model, requests: list[tuple[str, str, tuple[str, str, int]]]
    ) -> list[dict[str, Any]]:
        """Results of `requests` (phase, stream, (run, job, attempt)), each scored with
        every job its run holds as context: one frame for all their runs (the context is
        computed per run). An attempt superseded by a later one of its job within the
        same batch is scored against the others alone."""
        if not requests:
            return []
        detector = model.detector
        runs = list(dict.fromkeys(key[0] for _, _, key in requests))
        records = [r for run in runs for r in self.assembler.runs[run].finished.values()]
        framed = detector.frame(pd.DataFrame(records))
        scores = np.asarray(detector.score(framed), dtype="float64")
        evidence = [c for c in detector.features
                    if ("_vs_" in c or c.startswith("host_")) and c in framed]  # fmt: skip
        values = framed[evidence].to_numpy(dtype="float64", na_value=np.nan)
        position = {key: n for n, key in enumerate(zip(framed["run"], framed["job"], strict=True))}
        out = []
        for phase, stream, (run, job, inst) in requests:
            if self.assembler.runs[run].finished_attempt.get(job) == inst:
                n = position[(run, job)]
                record, score, numbers = records[n], float(scores[n]), values[n]
            else:  # rare: retried within one batch
                record, score, numbers = self._superseded(detector, run, job, inst, evidence)
            found = {c: round(float(v), 3) for c, v in zip(evidence, numbers, strict=True)
                     if not math.isnan(v)}  # fmt: skip
            out.append(self._result(phase, stream, model, record, inst, score, found))
        return out

    def _superseded(self, detector: Detector, run: str, job: str, inst: int, evidence):
        """An attempt a later attempt of its job replaced as the job's record."""
        others = [r for j, r in self.assembler.runs[run].finished.items() if j != job]
        record = self.assembler.rows([(run, job, inst)], keep=False).to_dict("records")[0]
        framed = detector.frame(pd.DataFrame([*others, record]))
        score = float(detector.score(framed)[-1])
        numbers = framed[evidence].to_numpy(dtype="float64", na_value=np.nan)[-1]
        return record, score, numbers

    def _result(
        self, phase: str, stream: str, model: Model, row: dict[str, Any], inst: int,
        score: float, evidence: dict[str, float],
    ) -> dict[str, Any]:  # fmt: skip
        threshold = float(model.detector.threshold_)
        finished = next((row[c] for c in ("post_script_end", "execute_end")
                         if not pd.isna(row.get(c))), None)  # fmt: skip
        task, host = row.get("task"), row.get("kickstart_hostname")
        return {
            "id": result_id(str(row["run"]), str(row["job"]), int(inst), phase),
            "phase": phase,
            "stream": stream,
            "workflow": str(row["workflow"]),
            "run": str(row["run"]),
            "job": str(row["job"]),
            "attempt": int(inst),
            "task": None if pd.isna(task) else str(task),
            "host": None if pd.isna(host) else str(host),
            "score": round(score, 6),
            "threshold": round(threshold, 6),
            "label": "anomalous" if score >= threshold else "normal",
            "model": model.tag,
            "finished_at": None if finished is None else float(finished),
            "scored_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "evidence": evidence,
        }

    # -- output -----------------------------------------------------------------------

    def _export(self, results: Iterable[tuple[str, bool, str]], check_files: bool = False):
        """Append result and alert lines; with `check_files`, only those not yet there."""
        results = list(results)
        if not results:
            return
        written = alerted = set()
        if check_files:
            written = sinks.ids_in(self.output / sinks.RESULTS)
            alerted = sinks.ids_in(self.output / sinks.ALERTS)
        sinks.append_lines(self.output / sinks.RESULTS,
                           [line for i, _, line in results if i not in written])  # fmt: skip
        sinks.append_lines(self.output / sinks.ALERTS,
                           [line for i, a, line in results if a and i not in alerted])  # fmt: skip
        self.state.mark_exported()

    def _to_inbox(self, run) -> None:
        """An ended run's jobs (last attempts), unlabelled, as a run CSV in the inbox."""
        if not run.finished:
            return
        records = list(run.finished.values())
        workflow = run.workflow or "pegasus"
        path = write_run_csv(records, Path(self.params.inbox) / workflow / f"{run.run}.csv")
        log.info("run %s (%s) ended: %d jobs written to %s", run.run, workflow, len(records), path)

    def _status(self, counts: Counter[str]) -> None:
        """status.json: the models, the stream each scores, counters, runs open."""
        write_json(
            {
                "models": self.scorers.describe(),
                "runs_open": len(self.assembler.runs),
                "counters": self.state.counters(),
                "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            self.output / "status.json",
        )

    def close(self) -> None:
        self.state.close()


# -- the AMQP loop -----------------------------------------------------------------------


def consume(
    listener: Listener,
    params: ListenParams,
    stop: threading.Event | None = None,
    on_batch: Callable[[dict[str, int]], None] | None = None,
    idle_exit: float | None = None,
) -> None:
    """Consume until `stop` is set (or SIGTERM/SIGINT, or `idle_exit` seconds without a
    message): declare the exchange and the queue, take batches, handle each, then
    acknowledge it; reconnect when the broker goes away."""
    import pika

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    url = expand_url(params.url)
    backoff = 1.0
    while not stop.is_set():
        try:
            connection = pika.BlockingConnection(pika.URLParameters(url))
        except pika.exceptions.AMQPConnectionError as exc:
            log.warning("broker %s unreachable (%s); retrying in %.0f s", safe_url(url),
                        type(exc).__name__, backoff)  # fmt: skip
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        try:
            channel = connection.channel()
            channel.exchange_declare(params.exchange, "topic", durable=True, auto_delete=False)
            channel.queue_declare(params.queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(params.queue, params.exchange, routing_key=ROUTING_KEY)
            # two batches in flight: the next one arrives while this one is scored
            channel.basic_qos(prefetch_count=min(2 * params.batch_size, 65535))
            log.info("listening on %s exchange %s queue %s", safe_url(url), params.exchange,
                     params.queue)  # fmt: skip
            listener.assembler.touch(time.monotonic())
            backoff = 1.0
            _batches(channel, listener, params, stop, on_batch, idle_exit)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code in (403, 404, 406):  # permissions, vhost, a queue of other kind
                raise FlowsentryError(f"listen: the broker refused: {exc.reply_text}") from None
            log.warning("channel closed by the broker (%s); reconnecting", exc.reply_text)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
                pika.exceptions.StreamLostError, ConnectionError) as exc:  # fmt: skip
            log.warning("broker connection lost (%s); reconnecting", type(exc).__name__)
            stop.wait(backoff)
        finally:
            try:
                if connection.is_open:
                    connection.close()
            except Exception:  # closing a dead connection may fail: nothing to keep
                pass


def _batches(channel, listener: Listener, params: ListenParams, stop, on_batch, idle_exit) -> None:
    batch: list[tuple[int, str, bytes]] = []
    deadline = math.inf
    last_message = time.monotonic()
    for method, _properties, body in channel.consume(
        params.queue, inactivity_timeout=params.batch_seconds
    ):
        if method is not None:
            last_message = time.monotonic()
            batch.append((method.delivery_tag, method.routing_key, body))
            deadline = min(deadline, time.monotonic() + params.batch_seconds)
        full = len(batch) >= params.batch_size or time.monotonic() >= deadline
        if batch and (method is None or full):
            counts = listener.handle([(key, payload) for _, key, payload in batch])
            channel.basic_ack(batch[-1][0], multiple=True)
            batch, deadline = [], math.inf
            if on_batch is not None:
                on_batch(counts)
        elif method is None:
            listener.handle([])  # idle: close runs that went quiet
            if idle_exit is not None and time.monotonic() - last_message >= idle_exit:
                stop.set()
        if stop.is_set():
            break
    channel.cancel()
