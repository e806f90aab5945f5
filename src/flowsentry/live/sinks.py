"""Where results and alerts go: JSON lines in a folder, Prefect events, a webhook.

`results.jsonl` holds one line per score (each attempt when it ends, phase `live`, and
each job of a run once the run ended, phase `final`); `alerts.jsonl` one line per alert
(a score at or above the threshold), naming the workflow, run, job, host, score,
threshold, model and the evidence behind it. Lines are appended and flushed to disk
before the listener acknowledges the messages that made them; the listener's state
records which lines are written, so a crash never writes a line twice or loses one.

Each alert is also sent as a Prefect event `flowsentry.job.anomalous` (a Prefect
automation can notify from it; sent only where a Prefect API is configured) and, when a
URL is set, POSTed as JSON to a webhook (best effort: three tries, then a log line).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
ALERTS = "alerts.jsonl"
DEAD_LETTERS = "dead-letters.jsonl"
PREFECT_EVENT = "flowsentry.job.anomalous"


def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append JSON lines and flush them to disk (fsync) before returning."""
    lines = list(lines)
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()
        os.fsync(stream.fileno())


def ids_in(path: Path) -> set[str]:
    """The `id` of every line already in a JSON-lines file (a torn last line ignored)."""
    if not path.exists():
        return set()
    ids = set()
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                continue
    return ids


def read_alerts(folder: str | Path) -> list[dict[str, Any]]:
    """Every alert the listener wrote into `folder`."""
    path = Path(folder) / ALERTS
    if not path.exists():
        return []
    alerts = []
    with path.open(encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                alerts.append(json.loads(line))
            except ValueError:
                continue
    return alerts


class Notifier:
    """Sends each alert as a Prefect event and to the webhook (if any)."""

    def __init__(self, webhook: str | None, prefect_events: bool = True) -> None:
        self.webhook = webhook
        self.prefect_events = prefect_events
        self._warned = False

    def send(self, alerts: Iterable[dict[str, Any]]) -> None:
        for alert in alerts:
            if self.prefect_events:
                self._prefect(alert)
            if self.webhook:
                self._post(alert)

    def _prefect(self, alert: dict[str, Any]) -> None:
        try:
            from prefect.events import emit_event

            sent = emit_event(
                event=PREFECT_EVENT,
                resource={
                    "prefect.resource.id": f"flowsentry.job.{alert['run']}.{alert['job']}",
                    "prefect.resource.name": str(alert["job"]),
                    "flowsentry.workflow": str(alert["workflow"]),
                    "flowsentry.host": str(alert.get("host") or ""),
                },
                payload=alert,
            )
        except Exception as exc:  # an events client that fails must not stop the listener
            sent = None
            log.debug("Prefect event not sent: %s", exc)
        if sent is None and not self._warned:
            self._warned = True
            log.info("no Prefect API configured (PREFECT_API_URL): alerts go to files only")

    def _post(self, alert: dict[str, Any]) -> None:
        data = json.dumps(alert).encode()
        request = urllib.request.Request(
            self.webhook, data=data, headers={"Content-Type": "application/json"}
        )
        for attempt in range(3):
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    if reply.status < 300:
                        return
            except (urllib.error.URLError, OSError) as exc:
                reason = exc
            else:
                reason = f"HTTP {reply.status}"
            time.sleep(0.5 * (attempt + 1))
        log.warning("webhook %s: alert %s not delivered (%s)", self.webhook, alert["id"], reason)
