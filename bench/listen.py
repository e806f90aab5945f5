"""Live-listener benchmark: real monitord events through a real broker, as fast as it goes.

    python bench/listen.py --model MODEL_FOLDER --runs 400 --out bench/results/listen.json

Events are recorded once from the real pegasus-monitord replaying `process_wf_success`
(`flowsentry.live.replay`, the full stream); the default stream is the subset monitord
publishes by default. For each stream, `--runs` copies of the run (each under a new
`xwf_id`) are published by a separate process as fast as the broker takes them, into
a local RabbitMQ node started here, while `flowsentry listen`'s consumer (in this
process) scores them. Reported per stream and batch size: events/s and jobs/s end to end
(first publish to last stored result), and the delay from each job's last event being
published to its result line being on disk (p50, p99; lines are polled every 5 ms).
Loopback only; every phase is bounded in time. Writes JSON with the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from flowsentry.io import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import machine

DEFAULT_EVENTS = {
    "stampede.wf.plan",
    "stampede.inv.end",
    "stampede.job_inst.composite",
    "stampede.job_inst.tag",
}
EXCHANGE = "pegasus-events"


def record(submit_dir: Path, work: Path) -> list[dict]:
    from flowsentry.live.replay import replay

    target = work / "events.json"
    replay(submit_dir, str(target), full_stream=True, work=work)
    return [json.loads(line) for line in target.read_text().splitlines() if line.strip()]


def last_event(events: list[dict], stream: str) -> dict[tuple, int]:
    """Per job instance, the index of the event that completes it in `stream`."""
    name = "stampede.job_inst.composite" if stream == "default" else "stampede.job_inst.post.end"
    return {(e["job_id"], e["job_inst_id"]): n for n, e in enumerate(events) if e["event"] == name}


def publisher(url: str, events: list[dict], runs: int, ends: dict, rate: float, out) -> None:
    """Publish `runs` copies of the stream (each under a new run id), as fast as the
    broker takes them or (`rate` > 0) paced to offer that many jobs a second; report when
    each job's completing event went out."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    last = set(ends.values())
    published = {"_first": time.time()}
    start = time.monotonic()
    for copy in range(runs):
        if rate > 0:  # copy k is due when k * jobs-per-run jobs have been offered
            due = start + copy * len(ends) / rate
            time.sleep(max(0.0, due - time.monotonic()))
        run = str(uuid.uuid4())
        for n, event in enumerate(events):
            body = json.dumps({**event, "xwf_id": run, "root_xwf_id": run}).encode()
            channel.basic_publish(EXCHANGE, event["event"], body)
            if n in last:
                published[f"{run}/{event['job_id']}/{event['job_inst_id']}"] = time.time()
    connection.process_data_events(0)
    connection.close()
    out.put(published)


def tail(path: Path, seen: dict[str, float], stop: threading.Event) -> None:
    """When each live result line appeared on disk."""
    offset = 0
    while not stop.is_set():
        if path.exists():
            with path.open() as stream:
                stream.seek(offset)
                chunk = stream.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            offset += len(complete.encode())
            now = time.time()
            for line in complete.splitlines():
                result = json.loads(line)
                if result["phase"] == "live":
                    seen[result["id"].rsplit("/", 1)[0]] = now
        time.sleep(0.005)


def _declare(url: str, queue: str) -> None:
    """The queue as the listener declares it (so events published first wait in it)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue, EXCHANGE, routing_key="stampede.#")
    connection.close()


def _delete_queue(url: str, queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_delete(queue)
    connection.close()


def one(broker, model, events, stream, runs, batch_size, rate, work: Path, prefill=False) -> dict:
    from flowsentry.config import ListenParams
    from flowsentry.live.listener import Listener, Scorers, consume, resolve_model

    chosen = events if stream == "full" else [e for e in events if e["event"] in DEFAULT_EVENTS]
    ends = last_event(chosen, stream)
    queue = f"bench-{stream}-{batch_size}-{rate:g}{'-prefill' if prefill else ''}"
    params = ListenParams(
        url=broker.url(), queue=queue, output=work / queue / "live", inbox=work / queue / "inbox",
        model=str(model), prefect_events=False, batch_size=batch_size, run_idle_seconds=3600,
    )  # fmt: skip
    listener = Listener(params, Scorers(resolve_model(str(model)), None))
    stop = threading.Event()
    seen: dict[str, float] = {}
    consumer = threading.Thread(target=consume, args=(listener, params, stop), daemon=True)
    out = multiprocessing.Queue()
    sender = multiprocessing.Process(
        target=publisher, args=(broker.url(EXCHANGE), chosen, runs, ends, rate, out)
    )
    if prefill:  # the consumer alone: every event waits in the queue before it starts
        _declare(broker.url(), queue)
        sender.start()
        published = out.get(timeout=600)
        sender.join()
        time.sleep(2.0)  # the broker has them all
        started = time.time()
        consumer.start()
    else:
        consumer.start()
        time.sleep(2.0)  # connected and the queue declared
    watcher = threading.Thread(
        target=tail, args=(params.output / "results.jsonl", seen, stop), daemon=True
    )
    watcher.start()
    if not prefill:
        sender.start()
        published = out.get(timeout=600)
        sender.join()
        started = published["_first"]
    published.pop("_first")
    expected = runs * len(ends)
    deadline = time.time() + 600
    while len(seen) < expected and time.time() < deadline:
        time.sleep(0.05)
    if len(seen) < expected:
        print(f"{stream}: {expected - len(seen)} jobs not scored in time", file=sys.stderr)
    stop.set()
    consumer.join(timeout=30)
    listener.close()
    _delete_queue(broker.url(), queue)  # it would keep taking every later run's events
    done = max(seen.values()) - started
    delays = np.array([seen[k] - published[k] for k in published if k in seen]) * 1000
    return {
        "stream": stream,
        "batch_size": batch_size,
        "offered_jobs_per_second": "all queued before the listener starts"
        if prefill
        else (rate or "as fast as the broker takes them"),
        "runs": runs,
        "events": runs * len(chosen),
        "jobs": expected,
        "jobs_scored": len(seen),
        "seconds": round(done, 2),
        "events_per_second": round(runs * len(chosen) / done),
        "jobs_per_second": round(len(seen) / done),
        "delay_ms_p50": None if prefill else round(float(np.percentile(delays, 50)), 1),
        "delay_ms_p99": None if prefill else round(float(np.percentile(delays, 99)), 1),
    }


def main() -> None:
    from flowsentry.live.broker import Broker

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="A monitord-features model.")
    parser.add_argument(
        "--submit-dir", type=Path, default=Path("../shared/pegasus/process_wf_success")
    )
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--streams", nargs="+", default=["default", "full"])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[0, 200],
        help="Offered jobs/s (0: as fast as the broker takes them).",
    )  # fmt: skip
    parser.add_argument(
        "--prefill", action="store_true",
        help="Publish everything first, then start the listener: the consumer alone.",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench/results/listen.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-listen-"))
    events = record(args.submit_dir, work)
    broker = Broker(work / "rabbitmq").start()
    try:
        rows = []
        for stream in args.streams:
            for batch_size in args.batch_sizes:
                for rate in args.rates:
                    row = one(broker, args.model, events, stream, args.runs, batch_size, rate,
                              work, args.prefill)  # fmt: skip
                    print(json.dumps(row))
                    rows.append(row)
    finally:
        broker.stop()
    result = {
        "machine": machine(),
        "model": str(args.model),
        "submit_dir": str(args.submit_dir),
        "measured": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    write_json(result, args.out)


if __name__ == "__main__":
    main()
