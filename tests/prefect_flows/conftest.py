"""Shared by the flow tests: the project root importable (for `flows`), one Prefect
test server for the session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def harness(shared_folder):
    """One Prefect server for the test session, whatever the number of pytest-xdist
    workers: the first flow test starts it (its own home and SQLite database, in a
    process group of its own) and the session's end stops it (tests/conftest.py); each
    worker points its Prefect settings at it, as `prefect_test_harness` does for the
    server it would start per worker (one start is ~20 CPU-seconds, and each server
    polls while it waits)."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = (shared_folder(SERVER, _start_server) / "url").read_text()
    with (
        temporary_settings(updates={PREFECT_API_URL: url}),
        prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()),
    ):
        yield url


SERVER = "prefect-server"


def _start_server(folder: Path) -> None:
    """`prefect server start` on a free loopback port; waits until it answers."""
    import os
    import socket
    import subprocess
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(folder / "home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{folder / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    with (folder / "server.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    (folder / "server.pid").write_text(str(server.pid))
    url = f"http://127.0.0.1:{port}/api"
    # the first start migrates its database: minutes on a cold CI machine
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the Prefect server exited: {(folder / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                (folder / "url").write_text(url)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the Prefect server did not answer within 300 s: {folder / 'server.log'}")


@pytest.fixture
def setup(harness, make_flowbench, project, tiny_encoder, tmp_path, bento_home):
    """A fresh DVC project (this repository's dvc.yaml, the default params with a tiny
    encoder and easy gate floors) in tmp_path, with a local DVC remote."""
    import shutil

    from dvc.repo import Repo

    home = tmp_path
    for name in ("dvc.yaml", "bentofile.yaml", "requirements.lock", "labels.csv"):
        shutil.copy(ROOT / name, home / name)
    shutil.copytree(ROOT / "src", home / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "gx" / "expectations", home / "gx" / "expectations")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"]["workflows"] = ["tiny"]
    params["text"].update(template="compact", feature_set="context")
    params["train"].update(
        # the flows orchestrate whatever trains: one quick kind (the sweep test trains
        # encoders through DVC; the kinds themselves are tested in tests/unit)
        candidates=["gradient_boosting"],
        model=str(tiny_encoder),
        epochs=1,
        batch_size=16,
        learning_rate=1e-3,
        max_train_samples=150,
    )
    params["base"]["device"] = "cpu"
    params["evaluate"].update(online_max_jobs=20, latency_calls=10)
    params["gate"].update(min_f1=0.0, min_roc_auc=0.0, max_bias_gap=1.0, max_p99_latency_ms=10000)
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    Repo.init(str(home), no_scm=True)
    with Repo(str(home)) as repo, repo.config.edit() as conf:
        conf["core"]["remote"] = "local"
        conf["remote"]["local"] = {"url": str(home / "remote")}

    def write(workflow_edit=None):
        return str(make_flowbench(n_runs=30, edit=workflow_edit, root=home / "flowbench"))

    return write, home
