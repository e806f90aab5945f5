"""prefect.yaml: every deployment points at a real flow with parameters it accepts."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def _flow(entrypoint: str):
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_points_at_a_flow_that_takes_its_parameters(name):
    from prefect import Flow

    deployment = DEPLOYMENTS[name]
    flow = _flow(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(deployment.get("parameters", {})) <= accepted
    assert deployment["work_pool"]["name"] in {"flowsentry-cpu", "flowsentry-gpu"}


def test_nightly_is_scheduled_and_trains_on_the_gpu_pool():
    from prefect.client.schemas.schedules import CronSchedule

    nightly = DEPLOYMENTS["nightly"]
    (schedule,) = nightly["schedules"]
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # a valid cron
    flow_name, deployment = nightly["parameters"]["train_deployment"].split("/")
    target = DEPLOYMENTS[deployment]
    assert _flow(target["entrypoint"]).name == flow_name
    assert target["work_pool"]["name"] == "flowsentry-gpu"
    assert "CUDA_VISIBLE_DEVICES" in target["work_pool"]["job_variables"]["env"]
    assert nightly["concurrency_limit"] == 1


def test_every_flow_is_deployed():
    entrypoints = {d["entrypoint"] for d in SPEC["deployments"]}
    for flow in (
        "flows/deployments.py:retrain",
        "flows/deployments.py:train_flow",
        "flows/deployments.py:sweep",
    ):
        assert flow in entrypoints
