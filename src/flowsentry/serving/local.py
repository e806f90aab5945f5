"""Run the service locally: `bentoml serve` on 127.0.0.1 and a free port (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from flowsentry.errors import FlowsentryError

SERVICE = "flowsentry.serving.service:AnomalyDetector"


@contextlib.contextmanager
def local_server(env: dict[str, str] | None = None, timeout_s: float = 120.0) -> Iterator[str]:
    """Start the service, wait until /readyz answers, yield its URL, stop it afterwards.

    The server's output goes to a temporary log file (never an unread pipe, which would
    block a chatty server); its tail is in the error if the server dies or never gets ready.
    """
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fd, name = tempfile.mkstemp(prefix="flowsentry-serve-", suffix=".log")
    log = Path(name)
    with os.fdopen(fd, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                SERVICE,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env if env is not None else dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                why = (
                    f"exited with code {process.returncode}"
                    if process.poll() is not None
                    else f"was not ready after {timeout_s:.0f} s"
                )
                raise FlowsentryError(f"bentoml serve {why}; last output:\n{tail}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.unlink(missing_ok=True)
