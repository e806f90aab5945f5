"""What the listener keeps across crashes: one SQLite file (WAL).

- `events`: every applied event of the runs still open, keyed by a hash of (name, body),
  so a message delivered again after a crash is recognised and applied once;
- `results`: every score written, keyed (run, job, attempt, phase), with whether its
  JSON line is already in the results file (exported);
- `ended`, `ended_events`: the runs already closed and the ids of their events (a late
  event for one is set aside; one delivered again is recognised);
- `counters`: messages seen, set aside (by reason), ignored, duplicates.

A batch of messages is one transaction: its events, its results and its counters are
stored together, and only then are the messages acknowledged to the broker.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, run TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_run ON events (run, seq);
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY, run TEXT NOT NULL, alert INTEGER NOT NULL, line TEXT NOT NULL,
    exported INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS results_unexported ON results (exported);
CREATE TABLE IF NOT EXISTS ended (run TEXT PRIMARY KEY, workflow TEXT, ended REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ended_events (id TEXT PRIMARY KEY, run TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def event_id(name: str, body: bytes) -> str:
    """The identity of one event: the same message delivered twice has the same id."""
    return hashlib.sha256(name.encode() + b"\0" + body).hexdigest()[:32]


def result_id(run: str, job: str, inst: int, phase: str) -> str:
    return f"{run}/{job}/{inst}/{phase}"


class State:
    """The listener's SQLite state (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
        self.db.executescript(_SCHEMA)
        (self.seq,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()

    def close(self) -> None:
        self.db.close()

    def known_event_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT id FROM events")}

    def open_events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """The stored events of runs still open, in the order they were applied."""
        for name, body in self.db.execute("SELECT name, body FROM events ORDER BY seq"):
            yield name, json.loads(body)

    def ended_runs(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT run FROM ended")}

    def seen_after_end(self, event: str) -> bool:
        """Whether `event` belonged to a run already ended (a redelivery, not news)."""
        return (
            self.db.execute("SELECT 1 FROM ended_events WHERE id = ?", (event,)).fetchone()
            is not None
        )

    def result_ids(self, alerts_only: bool = False) -> set[str]:
        """The ids of the results (or alerts) of the runs still open."""
        query = "SELECT id FROM results WHERE run NOT IN (SELECT run FROM ended)"
        if alerts_only:
            query += " AND alert = 1"
        return {row[0] for row in self.db.execute(query)}

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters").fetchall())

    def commit_batch(
        self,
        events: Iterable[tuple[str, str, str, bytes]],
        results: Iterable[tuple[str, str, bool, str]],
        ended: Iterable[tuple[str, str | None]],
        counts: dict[str, int],
    ) -> None:
        """Store one batch in one transaction: events (id, run, name, body), results
        (id, run, alert, JSON line), ended runs (run, workflow; their events dropped)
        and counter increments."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = []
            for event, run, name, body in events:
                self.seq += 1
                rows.append((event, run, self.seq, name, body.decode("utf-8")))
            db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT OR IGNORE INTO results (id, run, alert, line) VALUES (?, ?, ?, ?)",
                [(i, run, int(alert), line) for i, run, alert, line in results],
            )
            now = time.time()
            for run, workflow in ended:
                db.execute("INSERT OR REPLACE INTO ended VALUES (?, ?, ?)", (run, workflow, now))
                db.execute(
                    "INSERT OR IGNORE INTO ended_events SELECT id, run FROM events WHERE run = ?",
                    (run,),
                )
                db.execute("DELETE FROM events WHERE run = ?", (run,))
            for name, value in counts.items():
                db.execute(
                    "INSERT INTO counters VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, value),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def unexported(self) -> list[tuple[str, bool, str]]:
        """Results whose line may not be in the results file yet: (id, alert, line)."""
        return [
            (i, bool(a), line)
            for i, a, line in self.db.execute(
                "SELECT id, alert, line FROM results WHERE exported = 0 ORDER BY rowid"
            )
        ]

    def mark_exported(self) -> None:
        """Every stored result's line is in the files now."""
        self.db.execute("UPDATE results SET exported = 1 WHERE exported = 0")

    def forget(self, older_than_seconds: float) -> int:
        """Drop ended runs (and their exported results) closed longer ago than that."""
        cutoff = time.time() - older_than_seconds
        runs = [r for (r,) in self.db.execute("SELECT run FROM ended WHERE ended < ?", (cutoff,))]
        for run in runs:
            self.db.execute("DELETE FROM results WHERE run = ? AND exported = 1", (run,))
            self.db.execute("DELETE FROM ended WHERE run = ?", (run,))
            self.db.execute("DELETE FROM ended_events WHERE run = ?", (run,))
        return len(runs)
