"""Where an alert goes besides its JSON line: a Prefect event and a webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.testing.fixtures import asserting_events_worker, mock_should_emit_events  # noqa: F401

from flowsentry.live.sinks import PREFECT_EVENT, Notifier, ids_in

ALERT = {
    "id": "f00c0056/ls_ID0000001/2/live",
    "workflow": "process",
    "run": "f00c0056",
    "job": "ls_ID0000001",
    "host": "workflow.isi.edu",
    "score": 0.93,
    "threshold": 0.52,
    "evidence": {"runtime_vs_normal": 3.1},
}


def test_an_alert_is_a_prefect_event_an_automation_can_match(
    asserting_events_worker,  # noqa: F811
    mock_should_emit_events,  # noqa: F811
    caplog,
):
    caplog.set_level("DEBUG", logger="flowsentry.live.sinks")
    Notifier(webhook=None).send([ALERT])
    asserting_events_worker.drain()
    client = asserting_events_worker._client
    assert isinstance(client, AssertingEventsClient)
    # why an event was not sent, if it was not (the notifier logs it and goes on)
    (event,) = getattr(client, "events", None) or pytest.fail(caplog.text or "no event")
    assert event.event == PREFECT_EVENT
    assert event.resource.id == "flowsentry.job.f00c0056.ls_ID0000001"
    assert event.resource["flowsentry.workflow"] == "process"
    assert event.payload["score"] == 0.93


@pytest.fixture
def webhook():
    """A real HTTP server on loopback that keeps what it is sent (the first try fails)."""
    received: list[dict] = []
    tries = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            tries["n"] += 1
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if tries["n"] == 1:
                self.send_response(503)  # a busy receiver: the notifier tries again
            else:
                received.append(json.loads(body))
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_an_alert_is_posted_to_the_webhook_and_retried(webhook):
    url, received = webhook
    Notifier(webhook=url, prefect_events=False).send([ALERT])
    assert received == [ALERT]


def test_an_unreachable_webhook_is_a_log_line_not_a_crash(caplog):
    Notifier(webhook="http://127.0.0.1:9/nowhere", prefect_events=False).send([ALERT])
    assert "not delivered" in caplog.text


def test_ids_in_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "sco')
    assert ids_in(path) == {"a", "b"}
