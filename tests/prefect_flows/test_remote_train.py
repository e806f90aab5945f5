"""Training on a worker that shares no file system with the project: a local Prefect
server, a `process` worker started in a folder of its own, the git repository and the
DVC remote as the only things both sides reach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml


def _git(where: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=where, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def worker(harness, tmp_path_factory):
    """A `process` work pool with the train flow deployed, and a worker polling it
    from an empty folder (the GPU machine)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_URL

    from flowsentry.prefect_flows.retrain import train_flow

    pool = f"gpu-{os.getpid()}"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    prefect = [sys.executable, "-m", "prefect"]
    subprocess.run(
        [*prefect, "work-pool", "create", pool, "--type", "process"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    deployment = train_flow.to_deployment(name="gpu", entrypoint_type=EntrypointType.MODULE_PATH)
    deployment.apply(work_pool_name=pool)
    machine = tmp_path_factory.mktemp("gpu-machine")
    log = (machine / "worker.log").open("w")
    process = subprocess.Popen(
        [*prefect, "worker", "start", "--pool", pool, "--type", "process"],
        cwd=machine,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield machine
    process.kill()  # a test harness: nothing of the worker's needs a clean shutdown
    process.wait(timeout=30)
    log.close()


def test_the_worker_trains_from_a_clone_and_the_dvc_remote(setup, worker):
    from dvc.repo import Repo

    from flowsentry.prefect_flows.retrain import retrain

    write, home = setup
    params = yaml.safe_load((home / "params.yaml").read_text())
    params["train"]["candidates"] = ["gradient_boosting"]
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    (home / ".gitignore").write_text(
        "\n".join(
            ["/data", "/models", "/reports", "/remote", "/flowbench", "/.dvc/cache", "/.dvc/tmp"]
        )
        + "\n"
    )
    _git(home, "init", "--quiet")
    _git(home, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _git(home, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "--quiet", "-m", "project")
    traces = write()

    started = time.monotonic()
    result = retrain(
        project=str(home),
        flowbench_dir=traces,
        train_deployment="flowsentry-train/gpu",
        train_repository=str(home),
    )
    log = (worker / "worker.log").read_text()
    assert result["stages"]["train"]["ran"], log[-3000:]
    assert result["stages"]["train"]["pushed"] > 0  # the worker pushed the model
    assert result["gate"]["decision"] == "promote"
    assert (home / "models" / "candidates" / "gradient_boosting" / "flowsentry.json").exists()
    with Repo(str(home)) as repo:
        assert repo.status() == {}  # dvc.lock from the worker matches what was pulled
    assert not list(worker.glob("*/dvc.yaml"))  # the clone was temporary
    assert time.monotonic() - started < 600


def test_uncommitted_code_is_refused_before_any_stage_runs(setup, worker):
    from flowsentry.prefect_flows.retrain import retrain

    write, home = setup
    _git(home, "init", "--quiet")
    _git(home, "-c", "user.email=t@t", "-c", "user.name=t", "add", "dvc.yaml")
    _git(home, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "--quiet", "-m", "p")
    shutil.copy(home / "dvc.yaml", home / "src" / "extra.yaml")  # a change not committed
    state = retrain(
        project=str(home),
        flowbench_dir=write(),
        train_deployment="flowsentry-train/gpu",
        train_repository=str(home),
        return_state=True,
    )
    assert state.is_failed()
    assert "commit the code first" in str(state.result(raise_on_failure=False))
    assert not (home / "data").exists() and not (home / "models").exists()
