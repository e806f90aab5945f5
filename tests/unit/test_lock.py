"""The project lock: two writers at once, a bounded wait, a holder killed mid-run, and the
stages a holder runs itself."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from flowsentry.lock import HELD_ENV, LockHeld, project_lock

HOLD = textwrap.dedent(
    """
    import sys, time
    from flowsentry.lock import project_lock
    with project_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def _holder(lock: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the lock for `seconds` (started once it holds it)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_stops_in_one_line_naming_the_holder(tmp_path):
    lock = tmp_path / ".flowsentry.lock"
    holder = _holder(lock, 30)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeld) as err, project_lock(lock):
            pass
        assert time.monotonic() - started < 5  # no wait asked: at once
        message = str(err.value)
        assert f"pid {holder.pid}" in message and " since " in message and "--wait" in message
        assert "\n" not in message
        with pytest.raises(LockHeld, match="after waiting 1 s"), project_lock(lock, wait_s=1):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_bounded_wait_gets_the_lock_when_the_holder_ends(tmp_path):
    lock = tmp_path / ".flowsentry.lock"
    holder = _holder(lock, 1.5)
    started = time.monotonic()
    with project_lock(lock, wait_s=30):
        assert time.monotonic() - started > 1.0  # got it only once the holder let go
        holder.wait(timeout=30)
        note = json.loads((tmp_path / ".flowsentry.lock.holder").read_text())
        assert note["pid"] == os.getpid()
    assert not (tmp_path / ".flowsentry.lock.holder").exists()


def test_a_lock_left_by_a_killed_process_is_recovered(tmp_path, caplog):
    lock = tmp_path / ".flowsentry.lock"
    holder = _holder(lock, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING), project_lock(lock):
        pass
    assert f"recovered the lock left by pid {holder.pid}" in caplog.text


def test_a_child_of_the_holder_runs_under_its_lock(tmp_path, monkeypatch):
    lock = tmp_path / ".flowsentry.lock"
    with project_lock(lock):
        assert os.environ[HELD_ENV] == str(lock.resolve())
        child = subprocess.run(
            [sys.executable, "-c", HOLD, str(lock), "0"], capture_output=True, text=True, timeout=60
        )
        assert child.returncode == 0 and child.stdout.strip() == "held"
    assert HELD_ENV not in os.environ
    monkeypatch.setenv(HELD_ENV, str(lock.resolve()))  # says so, but its holder is gone
    with project_lock(lock):
        assert (tmp_path / ".flowsentry.lock.holder").exists()  # taken for real
    monkeypatch.setenv(HELD_ENV, str(tmp_path / "another.lock"))  # another project's lock
    holder = _holder(lock, 30)
    try:
        with pytest.raises(LockHeld), project_lock(lock):
            pass
    finally:
        holder.kill()
        holder.wait()


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flowsentry.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )


def test_two_inbox_commands_at_once(make_flowbench, project, run_frame, tmp_path):
    """Last round the loser died with a FileNotFoundError traceback while moving a file the
    winner had moved. Now the second waits (--wait) or stops in one line, and every file
    is sorted exactly once."""
    from flowsentry.stages import ingest

    cfg = project()
    ingest.run(cfg, make_flowbench(n_runs=3, n_jobs=6), progress=False)
    suite = Path(__file__).resolve().parents[1].parent / "gx" / "expectations"
    params = {
        "base": {"device": "cpu"},
        "ingest": {"workflows": ["tiny"]},
        "paths": {"gx_suite": str(suite / "flowbench_jobs.json")},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    box = tmp_path / "inbox" / "tiny"
    box.mkdir(parents=True)
    for r in range(100, 108):
        run_frame(r, 6).to_csv(box / f"tiny-run{r:04d}.csv", index=False)

    first = _cli("inbox", "inbox", "--wait", "600", cwd=tmp_path)
    second = _cli("inbox", "inbox", "--wait", "600", cwd=tmp_path)
    third = _cli("inbox", "inbox", cwd=tmp_path)  # no wait: stops if the lock is taken
    outputs = [p.communicate(timeout=900) for p in (first, second, third)]
    codes = [p.returncode for p in (first, second, third)]
    assert codes[:2] == [0, 0], outputs
    for _, err in outputs:
        assert "Traceback" not in err
    if codes[2] != 0:
        assert "holds the project lock" in outputs[2][1] and " since " in outputs[2][1]
    accepted = sorted(p.name for p in (cfg.paths.raw / "new_runs" / "tiny").glob("*.csv"))
    assert accepted == [f"tiny-run{r:04d}.csv" for r in range(100, 108)]
    assert not list(box.glob("*.csv")) and not list(box.glob(".skipped/*"))
    accepted_counts = [int(m) for _, err in outputs for m in re.findall(r"accepted (\d+),", err)]
    assert sum(accepted_counts) == 8  # over the commands that ran: each file once
