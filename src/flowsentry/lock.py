"""The project lock: one writer of the data and the registry at a time.

Every command that writes them (the stages, the inbox, labels, the registry's promote
and rollback) and the retraining and sweep flows take `paths.lock` (params.yaml) for
as long as they run. A second one waits up to `--wait` seconds (or
FLOWSENTRY_LOCK_WAIT; 0 by default: it stops at once) and then stops with one line
naming the holder and since when.

The lock is an OS file lock (filelock: `flock` on Linux), so a holder that is killed
releases it with its process; the holder's note (`<lock>.holder`: pid, command, since)
it leaves behind is reported as recovered by the next run. Processes a holder starts
(the stages `dvc repro` runs under the retraining flow) inherit FLOWSENTRY_LOCK_HELD
and run under their parent's lock instead of waiting for it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from flowsentry.errors import FlowsentryError

log = logging.getLogger(__name__)

HELD_ENV = "FLOWSENTRY_LOCK_HELD"
WAIT_ENV = "FLOWSENTRY_LOCK_WAIT"


class LockHeld(FlowsentryError):
    """Another flowsentry run holds the project lock."""


def wait_seconds(wait_s: float | None) -> float:
    """`wait_s`, else FLOWSENTRY_LOCK_WAIT, else 0 (stop at once)."""
    if wait_s is not None:
        return wait_s
    text = os.environ.get(WAIT_ENV, "").strip()
    try:
        return float(text) if text else 0.0
    except ValueError:
        raise FlowsentryError(f"{WAIT_ENV}={text!r}: not a number of seconds") from None


def _holder_note(path: Path) -> Path:
    return path.with_name(path.name + ".holder")


def _read_note(note: Path) -> dict | None:
    try:
        value = json.loads(note.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _describe(note: dict | None) -> str:
    if not note:
        return "another flowsentry run"
    return (
        f"pid {note.get('pid')} on {note.get('host')} (`{note.get('command')}`) since "
        f"{note.get('since')}"
    )


def _alive(pid: object) -> bool:
    try:
        os.kill(int(pid), 0)  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):
        return False
    return True


def _held_elsewhere(path: Path) -> bool:
    """Whether another open file (the holder's) holds the lock at `path` right now."""
    probe = FileLock(str(path), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    probe.release()
    return False


def _program() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return "flowsentry" if name in ("__main__.py", "flowsentry") else name


@contextmanager
def project_lock(path: str | Path, wait_s: float | None = None) -> Iterator[None]:
    """Hold the project lock at `path` for the block (see the module docstring)."""
    path = Path(path).resolve()
    if os.environ.get(HELD_ENV) == str(path):  # our parent says it holds it for us
        if _held_elsewhere(path):
            yield
            return
        log.warning("%s: %s names this lock but nobody holds it: taking it", path, HELD_ENV)
    wait = wait_seconds(wait_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=wait if wait >= 0 else -1)
    note = _holder_note(path)
    try:
        lock.acquire()
    except Timeout:
        waited = f"after waiting {wait:g} s" if wait > 0 else "(no wait asked)"
        raise LockHeld(
            f"{path}: {_describe(_read_note(note))} holds the project lock {waited}; let it "
            f"finish, or wait for it with --wait SECONDS ({WAIT_ENV})"
        ) from None
    try:
        left = _read_note(note)
        if left and not (left.get("host") == socket.gethostname() and _alive(left.get("pid"))):
            log.warning("%s: recovered the lock left by %s, which ended without releasing it",
                        path, _describe(left))  # fmt: skip
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([_program(), *sys.argv[1:]]),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        note.write_text(json.dumps(mine) + "\n")
        try:
            with held_for(path):  # what this process starts runs under this lock
                yield
        finally:
            note.unlink(missing_ok=True)
    finally:
        lock.release()


@contextmanager
def held_for(path: str | Path | None) -> Iterator[None]:
    """Run the block under the lock at `path`, which this process or its caller holds
    (a deployment the holder started and waits for): processes started in it inherit
    FLOWSENTRY_LOCK_HELD. None: nothing held, each stage takes the lock itself."""
    if path is None:
        yield
        return
    before = os.environ.get(HELD_ENV)
    os.environ[HELD_ENV] = str(Path(path).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HELD_ENV, None)
        else:
            os.environ[HELD_ENV] = before
