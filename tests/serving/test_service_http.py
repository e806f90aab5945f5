"""Start the real server (`bentoml serve`) on 127.0.0.1 and talk HTTP to it."""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from flowsentry.errors import FlowsentryError
from flowsentry.models.encoder import SentenceClassifier
from flowsentry.serving.local import local_server
from flowsentry.serving.schemas import EXAMPLE, MAX_BATCH
from flowsentry.text.sentences import features_of

FEATURES = list(features_of("context"))


def _save_model(source: Path, target: Path, threshold: float) -> Path:
    import shutil

    shutil.copytree(source, target)
    (target / "flowsentry.json").write_text(
        json.dumps(
            {
                "kind": "sft",
                "mode": "full",
                "base_model": str(source),
                "template": "compact",
                "feature_set": "context",
                "features": FEATURES,
                "threshold": threshold,
                "max_length": 128,
                "workflows": ["1000genome"],
                "data_version": {"augmented": "t"},
            }
        )
    )
    return target


@pytest.fixture(scope="module")
def server(tiny_encoder, tmp_path_factory, register_champion):
    home = tmp_path_factory.mktemp("bentoml")
    models = tmp_path_factory.mktemp("models")
    first = _save_model(tiny_encoder, models / "first", 0.5)
    second = _save_model(tiny_encoder, models / "second", 0.25)
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    tags = [register_champion(folder, env) for folder in (first, second)]
    rollback = "from flowsentry.registry import store; store.rollback()"
    subprocess.run([sys.executable, "-c", rollback], env=env, check=True, timeout=120)
    try:
        with local_server(env) as url:
            yield {"url": url, "tags": tags, "env": env, "models": (first, second), "home": home}
    except FlowsentryError as exc:
        pytest.fail(str(exc))


def _jobs(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(n):
        job = dict(
            EXAMPLE,
            job=f"individuals_ID{i:07d}",
            runtime=float(rng.integers(100, 3000)),
            kickstart_hostname=f"worker{i % 3}",
        )
        jobs.append(job)
    return jobs


def test_health_metadata_and_openapi_example(server):
    url = server["url"]
    assert httpx.get(f"{url}/healthz").status_code == 200
    meta = httpx.post(f"{url}/metadata", json={}).json()
    assert meta["tag"] == server["tags"][0] and meta["workflows"] == ["1000genome"]
    spec = httpx.get(f"{url}/docs.json").json()
    assert "individuals_ID0000047" in json.dumps(spec)  # the example request is documented


def test_classify_matches_the_in_process_model(server):
    jobs = _jobs(12)
    reply = httpx.post(f"{server['url']}/classify", json={"jobs": jobs}, timeout=60)
    assert reply.status_code == 200, reply.text
    results = reply.json()
    assert len(results) == 12 and {r["model"] for r in results} == {server["tags"][0]}
    local = SentenceClassifier.load(server["models"][0], device="cpu")
    np.testing.assert_allclose([r["score"] for r in results], local.score(jobs), atol=1e-4)
    assert all(r["label"] == ("anomalous" if r["score"] >= 0.5 else "normal") for r in results)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobs": [dict(EXAMPLE, runtime="slow")]}, "runtime"),
        ({"jobs": [dict(EXAMPLE, runtime=-5.0)]}, "runtime"),
        ({"jobs": [dict(EXAMPLE, colour="blue")]}, "colour"),
        # context is the service's to compute (the run store), never taken from a client
        ({"jobs": [dict(EXAMPLE, host_runtime_mean=1.0)]}, "host_runtime_mean"),
        ({"jobs": []}, "jobs"),
        ({"jobs": [EXAMPLE] * (MAX_BATCH + 1)}, "jobs"),
        ({"jobs": [dict(EXAMPLE, workflow="montage")]}, "workflow"),
        ({"nothing": 1}, "jobs"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(server, body, field):
    reply = httpx.post(f"{server['url']}/classify", json=body, timeout=60)
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    assert field in reply.text


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_and_infinity_are_rejected(server, value):
    body = json.dumps({"jobs": [dict(EXAMPLE, runtime=value)]})  # NaN / Infinity literals
    reply = httpx.post(
        f"{server['url']}/classify",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert 400 <= reply.status_code < 500, reply.text


def test_concurrent_requests_all_answer(server):
    def call(i):
        return httpx.post(f"{server['url']}/classify", json={"jobs": _jobs(1 + i % 5)}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(call, range(32)))
    assert all(r.status_code == 200 for r in replies), [
        (r.status_code, r.text[:300]) for r in replies if r.status_code != 200
    ][:3]
    assert [len(r.json()) for r in replies] == [1 + i % 5 for i in range(32)]
    assert httpx.get(f"{server['url']}/healthz").status_code == 200  # still alive


def test_partial_and_explain(server):
    partial = {"workflow": "1000genome", "run": "r1", "job": "j1", "wms_delay": 6.0}
    reply = httpx.post(f"{server['url']}/classify_partial", json={"job": partial}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["known_features"] == 0 and body["label"] == "unknown"  # task missing
    assert body["confident"] is False
    reply = httpx.post(f"{server['url']}/explain", json={"job": EXAMPLE}, timeout=60)
    assert 400 <= reply.status_code < 500 and "ICL" in reply.text


def test_hot_swap_is_visible_in_replies(server):
    promote = "import sys; from flowsentry.registry import store; store.promote(sys.argv[1])"
    subprocess.run(
        [sys.executable, "-c", promote, server["tags"][1]],
        env=server["env"],
        check=True,
        timeout=120,
    )
    # The new champion loads in the background; replies switch to it once it is in.
    deadline = time.monotonic() + 60
    while True:
        reply = httpx.post(f"{server['url']}/classify", json={"jobs": _jobs(2)}, timeout=60)
        assert reply.status_code == 200
        models = {r["model"] for r in reply.json()}
        if models == {server["tags"][1]} or time.monotonic() > deadline:
            break
        assert models == {server["tags"][0]}  # the old one answers meanwhile
        time.sleep(0.2)
    assert models == {server["tags"][1]}
    assert {r["threshold"] for r in reply.json()} == {0.25}
