"""The service serves whichever kind is champion: a gradient-boosting champion over HTTP."""

from __future__ import annotations

import os

import httpx
import numpy as np
import pandas as pd
import pytest

from flowsentry.errors import FlowsentryError
from flowsentry.models.baselines import FeatureDetector
from flowsentry.models.loading import load_detector
from flowsentry.serving.local import local_server
from flowsentry.serving.schemas import EXAMPLE
from flowsentry.text.sentences import features_of

FEATURES = features_of("context")


def _jobs(n: int, seed: int = 0) -> list[dict]:
    """Three runs of one workflow; host worker0 is slow in every run (the anomaly)."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        host = f"worker{i % 3}"
        slow = 4.0 if host == "worker0" else 1.0
        runtime = float(rng.uniform(100, 200) * slow)
        jobs.append(
            dict(
                EXAMPLE,
                run=f"run{i % 4}",
                job=f"individuals_ID{i:07d}",
                kickstart_hostname=host,
                runtime=runtime,
                kickstart_executables_cpu_time=round(runtime * 0.9, 1),
            )
        )
    return jobs


@pytest.fixture(scope="module")
def gb_server(tmp_path_factory, register_champion):
    jobs = pd.DataFrame(_jobs(240))
    jobs["label"] = (jobs["kickstart_hostname"] == "worker0").astype(int)
    folder = tmp_path_factory.mktemp("models") / "gradient_boosting"
    FeatureDetector("gradient_boosting", FEATURES).fit(jobs.iloc[:180], jobs.iloc[180:]).save(
        folder
    )
    home = tmp_path_factory.mktemp("bentoml")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    tag = register_champion(folder, env)
    try:
        with local_server(env) as url:
            yield {"url": url, "tag": tag, "folder": folder}
    except FlowsentryError as exc:
        pytest.fail(str(exc))


def test_gradient_boosting_champion_answers_like_in_process(gb_server):
    url = gb_server["url"]
    meta = httpx.post(f"{url}/metadata", json={}, timeout=30).json()
    assert meta["kind"] == "gradient_boosting" and meta["tag"] == gb_server["tag"]
    assert meta["template"] is None and meta["features"] == list(FEATURES)
    jobs = _jobs(24, seed=1)
    reply = httpx.post(f"{url}/classify", json={"jobs": jobs}, timeout=60)
    assert reply.status_code == 200, reply.text
    results = reply.json()
    local = load_detector(gb_server["folder"])
    np.testing.assert_allclose([r["score"] for r in results], local.score(jobs), atol=1e-6)
    assert {r["model"] for r in results} == {gb_server["tag"]}
    flagged = {r["job"] for r in results if r["label"] == "anomalous"}
    assert flagged == {j["job"] for j in jobs if j["kickstart_hostname"] == "worker0"}


def test_partial_works_and_explain_is_a_clear_409(gb_server):
    url = gb_server["url"]
    partial = {"workflow": "1000genome", "run": "r1", "job": "j1", "task": "individuals"}
    reply = httpx.post(f"{url}/classify_partial", json={"job": partial}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["known_features"] == 1
    reply = httpx.post(f"{url}/explain", json={"job": EXAMPLE}, timeout=60)
    assert reply.status_code == 409 and "gradient_boosting" in reply.json()["error"]


def test_request_limits_are_4xx_with_the_reason(gb_server):
    from flowsentry.serving.guard import MAX_BODY_BYTES
    from flowsentry.serving.schemas import MAX_BATCH

    url = gb_server["url"]
    huge = b'{"jobs": [' + b" " * (MAX_BODY_BYTES + 1) + b"]}"
    reply = httpx.post(f"{url}/classify", content=huge, timeout=60)
    assert reply.status_code == 413 and "limit" in reply.json()["error"]

    def chunks():  # no content-length: the limit holds while the body streams in
        yield b'{"jobs": ['
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    reply = httpx.post(f"{url}/classify", content=chunks(), timeout=60)
    assert reply.status_code == 413

    deep = "[" * 5000 + "]" * 5000
    reply = httpx.post(f"{url}/classify", content=f'{{"jobs": {deep}}}', timeout=60)
    assert reply.status_code == 400 and "recursion limit" in reply.text

    reply = httpx.post(f"{url}/classify", json={"jobs": [EXAMPLE] * (MAX_BATCH + 1)}, timeout=60)
    assert reply.status_code == 400 and "at most 1024" in reply.text
    reply = httpx.post(f"{url}/classify", json={"jobs": [EXAMPLE], "extra": 1}, timeout=60)
    assert reply.status_code == 400, reply.text


def test_the_openapi_contract_holds_under_schemathesis(gb_server, tmp_path):
    """Every schemathesis check, bounded: no server error, every reply as documented."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    url = gb_server["url"]
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    config = Path(__file__).with_name("schemathesis.toml")
    done = subprocess.run(
        [
            cli,
            "--config-file",
            str(config),
            "run",
            f"{url}/docs.json",
            "--url",
            url,
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        cwd=tmp_path,  # its cache, never in the repository
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
