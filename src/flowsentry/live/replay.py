"""Replay a finished Pegasus submit directory through the real pegasus-monitord.

monitord's replay mode (`-r`) re-reads a run's `*.dag.dagman.out` as if the run went on
now and emits the events it emitted then, with their original times: the way to check a
broker, a listener and its alerts on real event streams, and what the tests and the
benchmark drive `flowsentry listen` with.

`pegasus-wms` pins SQLAlchemy < 1.4 and cannot share flowsentry's environment: it gets a
virtual environment of its own, made once (about 30 s) under the cache folder
(`FLOWSENTRY_CACHE`, default `~/.cache/flowsentry`) and reused.

DAGMan writes its log times without a zone and monitord reads them in the local zone, so
a replay runs in the zone the run was planned in (braindump's `timestamp` offset): its
events then carry the times the stampede database holds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from flowsentry.errors import FlowsentryError

PEGASUS_WMS = "pegasus-wms==5.1.3"
#: monitord's properties for the full event stream on an AMQP URL given with -d
FULL_STREAM = "pegasus.catalog.workflow.events = stampede.*\n"


def cache_dir() -> Path:
    return Path(os.environ.get("FLOWSENTRY_CACHE", Path.home() / ".cache" / "flowsentry"))


def monitord() -> list[str]:
    """The command that runs pegasus-monitord (its virtual environment made on first use)."""
    home = cache_dir() / f"venv-{PEGASUS_WMS.replace('==', '-')}"
    python = home / "bin" / "python"
    script = next(iter(home.glob("lib/python*/site-packages/Pegasus/cli/pegasus-monitord.py")),
                  None)  # fmt: skip
    if script is None or not (home / ".complete").exists():
        building = home.with_name(home.name + f".building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        venv.EnvBuilder(with_pip=True).create(building)
        done = subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", PEGASUS_WMS],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise FlowsentryError(f"pip install {PEGASUS_WMS} failed: {tail[0]}")
        (building / ".complete").touch()
        shutil.rmtree(home, ignore_errors=True)
        try:
            os.replace(building, home)
        except OSError:  # another process made it first: use theirs
            shutil.rmtree(building, ignore_errors=True)
        script = next(home.glob("lib/python*/site-packages/Pegasus/cli/pegasus-monitord.py"))
    return [str(python), str(script)]


def planned_zone(submit_dir: Path) -> str:
    """A POSIX TZ value for the zone braindump's `timestamp` was written in (UTC if none)."""
    braindump = Path(submit_dir) / "braindump.yml"
    text = braindump.read_text() if braindump.exists() else ""
    found = re.search(r"timestamp:\s*\"?\S*?([+-])(\d\d):?(\d\d)\"?\s*$", text, re.MULTILINE)
    if not found:
        return "UTC0"
    sign, hours, minutes = found.groups()
    west = "-" if sign == "+" else ""  # POSIX counts hours west of Greenwich
    return f"RUN{west}{int(hours)}:{minutes}"


def replay(
    submit_dir: str | Path,
    destination: str,
    full_stream: bool = False,
    work: str | Path | None = None,
    timeout: float = 300.0,
) -> subprocess.CompletedProcess:
    """Replay `submit_dir` (left untouched: a copy is replayed) with pegasus-monitord to
    `destination` (an `amqp://user:pass@host:port/vhost/exchange` URL or a JSON file);
    `full_stream` publishes every event, as `pegasus.catalog.workflow.events = stampede.*`
    does on a site. Returns the finished process (raises with monitord's last line)."""
    submit_dir = Path(submit_dir)
    dagman = sorted(submit_dir.glob("*.dag.dagman.out"))
    if not dagman:
        raise FlowsentryError(f"{submit_dir}: no *.dag.dagman.out: not a Pegasus submit directory")
    scratch = Path(work or tempfile.mkdtemp(prefix="monitord-"))
    copy = scratch / submit_dir.name
    shutil.copytree(submit_dir, copy, symlinks=True)
    for path in [*copy.glob("monitord.*"), copy / "jobstate.log"]:
        path.unlink(missing_ok=True)  # a replay rebuilds them (the copied ones would stop it)
    command = [*monitord(), "-r", "-f", "--no-notifications", "-d", destination]
    if full_stream:
        properties = scratch / "full-stream.properties"
        properties.write_text(FULL_STREAM)
        command += ["--conf", str(properties)]
    if not destination.startswith("amqp"):
        command += ["-e", "json"]
    command.append(str(copy / dagman[0].name))
    home = scratch / "home"  # monitord keeps a dashboard database under $HOME/.pegasus
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "TZ": planned_zone(submit_dir)}
    done = subprocess.run(
        command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        raise FlowsentryError(f"pegasus-monitord replay of {submit_dir} failed: {tail[0]}")
    return done


if __name__ == "__main__":  # python -m flowsentry.live.replay SUBMIT_DIR DESTINATION [--full]
    replay(sys.argv[1], sys.argv[2], full_stream="--full" in sys.argv)
