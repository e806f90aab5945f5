"""`flowsentry listen` against the real parts: the real pegasus-monitord replaying the real
submit directories into a real RabbitMQ broker, the listener as a real process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from tests.pegasus.conftest import DATABASES

from flowsentry.data.arrivals import read_run_table
from flowsentry.data.stampede import read_stampede
from flowsentry.live.replay import replay
from flowsentry.models.loading import load_detector
from flowsentry.stages import inbox as inbox_stage
from flowsentry.stages import ingest

ROOT = Path(__file__).resolve().parents[2]
EXCHANGE = "pegasus-events"
SUBMIT_DIRS = ("process_wf_success", "process_wf_failure", "hierarchical_wf_success")


def declare_queue(broker, queue: str) -> None:
    """The listener's queue, declared as the listener declares it (so a replay published
    before the listener starts waits in it)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(broker.url()))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(queue, EXCHANGE, routing_key="stampede.#")
    connection.close()


def publish(broker, messages: list[tuple[str, bytes]]) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(broker.url()))
    channel = connection.channel()
    channel.confirm_delivery()
    for key, body in messages:
        channel.basic_publish(EXCHANGE, key, body)
    connection.close()


def start_listener(tmp: Path, broker, queue: str, model: Path, *sets: str, idle_exit=4.0):
    command = [
        sys.executable, "-m", "flowsentry.cli", "listen", "--params", str(ROOT / "params.yaml"),
        "--idle-exit", str(idle_exit),
        "--set", f"listen.url={broker.url()}", "--set", f"listen.queue={queue}",
        "--set", f"listen.output={tmp / 'live'}", "--set", f"listen.inbox={tmp / 'inbox'}",
        "--set", f"listen.model={model}", "--set", "listen.prefect_events=false",
        "--set", "listen.run_idle_seconds=2",
    ]  # fmt: skip
    for item in sets:
        command += ["--set", item]
    log = (tmp / "listener.log").open("a")
    return subprocess.Popen(command, cwd=tmp, stdout=log, stderr=log)


def finish(process: subprocess.Popen, tmp: Path, timeout: float = 180) -> None:
    code = process.wait(timeout=timeout)
    assert code == 0, (tmp / "listener.log").read_text()[-3000:]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_results(path: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {count} results after {timeout} s")


@pytest.fixture(scope="module")
def instances(pegasus_dir, monitord_ready, tmp_path_factory) -> dict[str, set[tuple]]:
    """Each submit directory's job instances, as the real monitord announces them (one
    composite event per finished instance), from a replay into a JSON file."""
    out = {}
    for name in SUBMIT_DIRS:
        target = tmp_path_factory.mktemp("json") / f"{name}.json"
        replay(pegasus_dir / name, str(target), full_stream=True)
        events = [json.loads(line) for line in target.read_text().splitlines()]
        out[name] = {
            (e["xwf_id"], e["job_id"], e["job_inst_id"])
            for e in events
            if e["event"] == "stampede.job_inst.composite"
        }
    return out


def test_full_stream_replay_is_scored_once_and_matches_the_stampede_database(
    pegasus_dir, broker, monitord_model, monitord_ready, tmp_path
):
    declare_queue(broker, "full")
    replay(pegasus_dir / "process_wf_success", broker.url(EXCHANGE), full_stream=True)
    finish(start_listener(tmp_path, broker, "full", monitord_model), tmp_path)

    results = lines(tmp_path / "live" / "results.jsonl")
    live = [r for r in results if r["phase"] == "live"]
    final = [r for r in results if r["phase"] == "final"]
    batch = read_stampede(f"sqlite:///{pegasus_dir / DATABASES['process_wf_success']}").jobs
    assert len(live) == len({r["id"] for r in live}) == len(batch) == 5  # each once
    assert {r["stream"] for r in results} == {"full"}
    assert {r["job"] for r in final} == set(batch["job"])
    # the final phase (the whole run as context) is the batch score of the database's run
    detector = load_detector(monitord_model)
    expected = dict(zip(batch["job"], detector.score(batch), strict=True))
    for result in final:
        assert result["score"] == pytest.approx(expected[result["job"]], abs=1e-6)
        assert result["threshold"] == pytest.approx(detector.threshold_, abs=1e-6)
    # the run landed in the inbox, unlabelled, field for field the database's rows
    (run,) = batch["run"].unique()
    inbox = read_run_table(tmp_path / "inbox" / "process" / f"{run}.csv", "process")
    inbox = inbox.set_index("job").sort_index()
    database = batch.set_index("job").sort_index()
    for column in database.columns:
        assert inbox[column].equals(database[column]), column
    assert (inbox["anomaly_type"] == "unknown").all()
    assert (tmp_path / "live" / "alerts.jsonl").exists()
    status = json.loads((tmp_path / "live" / "status.json").read_text())
    assert status["models"]["full"] == str(monitord_model.resolve())
    assert status["counters"].get("set_aside", 0) == 0

    # the next retrain: the inbox accepts the run of a live workflow, ingest reads it
    cfg = _project(tmp_path)
    report = inbox_stage.run(cfg, tmp_path / "inbox")
    assert [r.run for r in report.accepted] == [run]
    table = ingest.run(cfg, None, progress=False).tables["live_process"]
    assert (table.runs, table.jobs, table.unlabelled) == (1, 5, 5)


def _project(tmp_path: Path):
    from flowsentry.config import config_from_dict

    root = tmp_path / "project"
    return config_from_dict(
        {
            "ingest": {"workflows": [], "live": ["process"]},
            "paths": {
                **{k: str(root / k) for k in ("raw", "jobs", "quarantine", "reports")},
                "labels": str(root / "labels.csv"),
                "gx_suite": str(ROOT / "gx" / "expectations" / "flowbench_jobs.json"),
            },
        }
    )


def test_default_stream_is_scored_from_what_it_carries(
    pegasus_dir, broker, monitord_model, pegasus_model, monitord_ready, tmp_path
):
    declare_queue(broker, "default")
    replay(pegasus_dir / "process_wf_success", broker.url(EXCHANGE))  # monitord's defaults
    finish(start_listener(tmp_path, broker, "default", monitord_model), tmp_path)
    results = lines(tmp_path / "live" / "results.jsonl")
    assert {r["stream"] for r in results} == {"default"}
    assert len([r for r in results if r["phase"] == "live"]) == 5
    # no event announces the run's end: it was closed when idle, and went to the inbox
    (csv,) = (tmp_path / "inbox" / "process").glob("*.csv")
    jobs = read_run_table(csv, "process").set_index("job")
    path = pegasus_dir / DATABASES["process_wf_success"]
    with sqlite3.connect(path) as db:
        local = dict(db.execute(
            "SELECT j.exec_job_id, i.local_duration FROM job_instance i JOIN job j USING (job_id)"
        ).fetchall())  # fmt: skip
    batch = read_stampede(f"sqlite:///{path}").jobs.set_index("job")
    for job, row in jobs.iterrows():
        assert row["runtime"] == local[job]  # HTCondor's execute -> terminate
        assert (
            row["kickstart_executables_cpu_time"]
            == batch.loc[job, "kickstart_executables_cpu_time"]
        )
        assert row["maxrss"] == batch.loc[job, "maxrss"]
        assert row["kickstart_hostname"] == batch.loc[job, "kickstart_hostname"]
        assert pd.isna(row["queue_delay"])  # never in the default events: missing, not 0

    # a model reading what the default events lack is refused at start, in one line
    refused = subprocess.run(
        [sys.executable, "-m", "flowsentry.cli", "listen", "--params", str(ROOT / "params.yaml"),
         "--set", f"listen.model={pegasus_model}", "--set", f"listen.url={broker.url()}",
         "--set", f"listen.output={tmp_path / 'refused'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "never carries" in refused.stderr and "train.features=monitord" in refused.stderr
    assert "Traceback" not in refused.stderr


def _all_instances_once(tmp_path: Path, expected: set[tuple]) -> None:
    live = [r for r in lines(tmp_path / "live" / "results.jsonl") if r["phase"] == "live"]
    keys = [(r["run"], r["job"], r["attempt"]) for r in live]
    assert len(keys) == len(set(keys)), "a job instance was scored twice"
    assert set(keys) == expected, "a job instance was lost"
    assert not lines(tmp_path / "live" / "dead-letters.jsonl") if (
        tmp_path / "live" / "dead-letters.jsonl").exists() else True  # fmt: skip


def test_killed_mid_stream_and_restarted_it_loses_no_job_and_scores_none_twice(
    pegasus_dir, broker, monitord_model, instances, tmp_path
):
    declare_queue(broker, "killed")
    for name in SUBMIT_DIRS:
        replay(pegasus_dir / name, broker.url(EXCHANGE), full_stream=True)
    slow = start_listener(tmp_path, broker, "killed", monitord_model, "listen.batch_size=1")
    wait_for_results(tmp_path / "live" / "results.jsonl", 3)
    os.kill(slow.pid, signal.SIGKILL)
    slow.wait()
    before = len(lines(tmp_path / "live" / "results.jsonl"))
    finish(start_listener(tmp_path, broker, "killed", monitord_model), tmp_path)
    expected = set().union(*instances.values())
    assert before < len(expected)  # it was killed mid-stream
    _all_instances_once(tmp_path, expected)


def test_broker_restarted_mid_stream_the_listener_reconnects_and_goes_on(
    pegasus_dir, broker, monitord_model, instances, tmp_path
):
    declare_queue(broker, "restarted")
    for name in SUBMIT_DIRS:
        replay(pegasus_dir / name, broker.url(EXCHANGE), full_stream=True)
    listener = start_listener(
        tmp_path, broker, "restarted", monitord_model, "listen.batch_size=1", idle_exit=8
    )
    wait_for_results(tmp_path / "live" / "results.jsonl", 3)
    broker.restart()
    finish(listener, tmp_path)
    assert "reconnecting" in (tmp_path / "listener.log").read_text()
    _all_instances_once(tmp_path, set().union(*instances.values()))


def test_bad_messages_are_set_aside_with_their_reason_and_counted(
    pegasus_dir, broker, monitord_model, monitord_ready, tmp_path
):
    """Damaged copies of real events, then the real replay: the listener goes on."""
    json_replay = tmp_path / "replay.json"
    replay(pegasus_dir / "process_wf_success", str(json_replay), full_stream=True)
    events = [json.loads(line) for line in json_replay.read_text().splitlines()]
    main_start = next(e for e in events if e["event"] == "stampede.job_inst.main.start")
    post_end = next(e for e in events if e["event"] == "stampede.job_inst.post.end")
    bad = {
        "not JSON": ("stampede.job_inst.main.start", b"{not json"),
        "not an event pegasus-monitord sends": ("stampede.job_inst.teleport", b"{}"),
        "'job_id' is missing": (
            "stampede.job_inst.main.start",
            json.dumps({k: v for k, v in main_start.items() if k != "job_id"}).encode(),
        ),
        "never announced": (
            "stampede.job_inst.main.start",
            json.dumps({**main_start, "job_id": "ghost_ID9", "job_inst_id": 99}).encode(),
        ),
        "is not a plausible epoch time": (
            "stampede.job_inst.main.start", json.dumps({**main_start, "ts": 12}).encode(),
        ),
        "over listen.max_message_bytes": (
            "stampede.job_inst.main.start", b'{"x": "' + b"a" * 5000 + b'"}',
        ),
    }  # fmt: skip
    late = {  # the run already ended (its xwf.end came first): an event out of order
        "already ended": ("stampede.job_inst.post.end",
                          json.dumps({**post_end, "job_inst_id": 42}).encode()),
    }  # fmt: skip
    declare_queue(broker, "bad")
    publish(broker, list(bad.values()))
    publish(broker, [(e["event"], json.dumps(e).encode()) for e in events])
    publish(broker, list(late.values()))
    bad |= late
    finish(
        start_listener(tmp_path, broker, "bad", monitord_model, "listen.max_message_bytes=4096"),
        tmp_path,
    )
    dead = lines(tmp_path / "live" / "dead-letters.jsonl")
    reasons = " | ".join(d["reason"] for d in dead)
    for reason in bad:
        assert reason in reasons, reason
    status = json.loads((tmp_path / "live" / "status.json").read_text())
    assert status["counters"]["set_aside"] == len(dead)
    live = [r for r in lines(tmp_path / "live" / "results.jsonl") if r["phase"] == "live"]
    assert len(live) == 5  # the real jobs all scored despite the damaged messages
