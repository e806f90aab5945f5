"""A local RabbitMQ node started from the system's `rabbitmq-server` (Debian's package),
with its own name, ports, data and Erlang cookie, so it never meets a site's broker: for
the tests, the benchmark, and trying `flowsentry listen` on one machine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

SBIN = Path("/usr/lib/rabbitmq/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return (SBIN / "rabbitmq-server").exists() or shutil.which("rabbitmq-server") is not None


class Broker:
    """One RabbitMQ node: `start`, `restart` (the broker application), `stop`."""

    def __init__(self, root: Path, vhost: str = "pegasus") -> None:
        self.root = root
        self.vhost = vhost
        self.port = _free_port()
        self.node = f"fs{uuid.uuid4().hex[:8]}@localhost"
        self.env = {
            **os.environ,
            "HOME": str(root),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
        }
        self.process: subprocess.Popen | None = None

    def _bin(self, name: str) -> str:
        return str(SBIN / name) if (SBIN / name).exists() else name

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self._bin("rabbitmqctl"), "-q", "-n", self.node, *args],
            env=self.env, capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip

    def start(self) -> Broker:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        log = (self.root / "server.log").open("a")
        self.process = subprocess.Popen(
            [self._bin("rabbitmq-server")], env=self.env, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        self.wait()
        self.ctl("add_vhost", self.vhost)
        self.ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        return self

    def wait(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.ctl("status", check=False).returncode == 0
                and self.ctl("list_vhosts", check=False).returncode == 0
            ):
                return
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.5)
        log = (self.root / "server.log").read_text()[-2000:]
        raise RuntimeError(f"rabbitmq-server did not start:\n{log}")

    def restart(self) -> None:
        """Stop and start the broker (every connection drops; durable queues stay)."""
        self.ctl("stop_app")
        self.ctl("start_app")
        self.wait()

    def url(self, exchange: str | None = None) -> str:
        base = f"amqp://guest:guest@127.0.0.1:{self.port}/{self.vhost}"
        return f"{base}/{exchange}" if exchange else base

    def stop(self) -> None:
        self.ctl("stop", check=False)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
