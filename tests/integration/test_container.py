"""The service image, built and run as in production: from a packaged Bento (the real
pipeline on a real 1000genome subset, through `package`), with podman, on a loopback
port; its replies must equal the in-process service's.

Needs root, podman, runc and debootstrap (`.ci/run` installs them). Without them these
tests skip, unless FLOWSENTRY_REQUIRE_SYSTEM_PACKAGES=1 (CI sets it), where they fail.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pandas as pd
import pytest
from tests.conftest import EASY_GATE, run_stages

from flowsentry.deploy import container
from flowsentry.errors import FlowsentryError
from flowsentry.serving.schemas import RAW_FIELDS, JobRecord
from flowsentry.serving.scorer import JobScorer
from flowsentry.stages import package

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def tools():
    try:
        container.require_tools("podman", "runc", "debootstrap")
    except FlowsentryError as exc:
        if os.environ.get("FLOWSENTRY_REQUIRE_SYSTEM_PACKAGES") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], env=container.podman_env(), capture_output=True, text=True
    )


def _records(frame: pd.DataFrame) -> list[list[dict]]:
    """The test jobs as a client sends them: one run's jobs a request, raw fields only."""
    fields = list(RAW_FIELDS)
    batches = []
    for _, jobs in frame.groupby("run", sort=True):
        rows = jobs[[f for f in fields if f in jobs]].to_dict("records")
        batches.append([{k: v for k, v in row.items() if pd.notna(v)} for row in rows])
    return batches


def test_the_image_serves_what_the_service_serves_in_process(flowbench_dir, project, bento_home):
    cfg = project(
        ingest={"workflows": ["1000genome"], "max_runs": 30},
        train={"candidates": ["gradient_boosting"]},
        evaluate={"online_max_jobs": 20},
        gate=EASY_GATE,
    )
    run_stages(cfg, "gate", flowbench_dir)
    packaged = package.run(cfg, ROOT / "bentofile.yaml")

    built = container.build(packaged.bento, reports=cfg.paths.reports)
    image = built["image"]
    try:
        assert built["model"] == packaged.model
        assert built["kind"] == "gradient_boosting"
        assert "torch" not in built["requirements"]  # a tree champion serves without it
        assert (cfg.paths.reports / "container.json").is_file()
        # Clean: no package installer or compiler in the image.
        tools = _podman("run", "--rm", image, "sh", "-c", "command -v pip || command -v gcc")
        assert tools.returncode != 0, tools.stdout

        import bentoml

        model = bentoml.models.get(packaged.model)
        local = JobScorer(str(model.tag), model.path, follow_champion=False)
        batches = _records(pd.read_parquet(cfg.paths.prepared / "test.parquet"))
        assert sum(map(len, batches)) >= 100
        with container.running(image) as (url, name):
            assert _podman("exec", name, "id", "-u").stdout.strip() != "0"  # not root
            assert _podman("healthcheck", "run", name).returncode == 0
            info = httpx.post(f"{url}/metadata", json={}, timeout=30).json()
            assert info["tag"] == packaged.model
            for jobs in batches:
                reply = httpx.post(f"{url}/classify", json={"jobs": jobs}, timeout=60)
                assert reply.status_code == 200, reply.text
                expected = local.classify([JobRecord(**job) for job in jobs])
                assert [r["score"] for r in reply.json()] == [e.score for e in expected]
                assert [r["label"] for r in reply.json()] == [e.label for e in expected]
            bad = httpx.post(f"{url}/classify", json={"jobs": [{"runtime": -1.0}]}, timeout=30)
            assert bad.status_code == 400 and "runtime" in bad.text
        assert name not in _podman("ps", "--all", "--format", "{{.Names}}").stdout
    finally:
        _podman("rmi", "--force", image)


def test_a_container_that_cannot_start_is_reported_and_removed():
    base, _ = container.base_image()  # made once and cached; it has no command to run
    name = "flowsentry-test-broken"
    with pytest.raises(FlowsentryError, match="podman run"):
        container.start(base, port=container.free_port(), name=name, timeout_s=30)
    assert name not in _podman("ps", "--all", "--format", "{{.Names}}").stdout
