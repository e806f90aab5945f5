"""Context that accumulates across requests: the run store, in memory and in Redis.

The Redis tests start a real `redis-server` (Debian package redis-server) on a free
loopback port; without it they skip, unless FLOWSENTRY_REQUIRE_SYSTEM_PACKAGES=1 (CI).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsentry.models.baselines import FeatureDetector
from flowsentry.serving.runs import MemoryRunStore, RedisRunStore, make_run_store
from flowsentry.serving.schemas import JobRecord
from flowsentry.serving.scorer import JobScorer
from flowsentry.text.sentences import features_of


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = shutil.which("redis-server")
    if server is None:
        message = "redis-server not found (Debian package redis-server)"
        if os.environ.get("FLOWSENTRY_REQUIRE_SYSTEM_PACKAGES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make_store(request):
    """A factory of empty stores of each kind, with a clock the test moves."""
    made = []

    def make(max_runs=100, max_jobs_per_run=100, idle=60.0, clock=None):
        clock = clock or Clock()
        if request.param == "memory":
            return MemoryRunStore(max_runs, max_jobs_per_run, idle, clock=clock)
        url = request.getfixturevalue("redis_url")
        store = RedisRunStore(
            url, max_runs, max_jobs_per_run, idle, prefix=f"t{len(made)}{time.time_ns()}",
            clock=clock,
        )  # fmt: skip
        made.append(store)
        return store

    return make


def _jobs(held):
    return {r["job"]: r for r in held}


def test_a_job_sent_again_is_merged_newer_fields_winning(make_store):
    store = make_store()
    store.merge("w", "r", [{"job": "a", "runtime": 1.5, "task": "t"}])
    held = _jobs(store.merge("w", "r", [{"job": "a", "runtime": 2.25, "queue_delay": 3.0}]))
    assert held == {"a": {"job": "a", "runtime": 2.25, "task": "t", "queue_delay": 3.0}}
    assert _jobs(store.merge("w", "other", [{"job": "a"}])) == {"a": {"job": "a"}}


def test_runs_beyond_the_bound_go_least_recently_used_first(make_store):
    clock = Clock()
    store = make_store(max_runs=2, clock=clock)
    for run in ("r1", "r2"):
        clock.now += 1
        store.merge("w", run, [{"job": "a", "runtime": 1.0}])
    clock.now += 1
    store.merge("w", "r1", [{"job": "b"}])  # r1 used again: r2 is now the oldest
    clock.now += 1
    store.merge("w", "r3", [{"job": "a"}])
    assert store.settings()["runs_held"] == 2
    assert set(_jobs(store.merge("w", "r1", []))) == {"a", "b"}  # kept
    assert _jobs(store.merge("w", "r2", [])) == {}  # dropped


def test_a_full_run_scores_later_jobs_without_keeping_them(make_store):
    store = make_store(max_jobs_per_run=2)
    store.merge("w", "r", [{"job": "a"}, {"job": "b"}])
    assert set(_jobs(store.merge("w", "r", [{"job": "c"}]))) == {"a", "b"}
    assert store.settings()["jobs_not_kept"] == 1
    assert _jobs(store.merge("w", "r", [{"job": "a", "runtime": 5.0}]))["a"]["runtime"] == 5.0


def test_an_idle_run_is_dropped(make_store):
    clock = Clock()
    store = make_store(idle=60.0, clock=clock)
    store.merge("w", "old", [{"job": "a"}])
    clock.now += 30
    store.merge("w", "busy", [{"job": "a"}])
    clock.now += 45  # old: idle 75 s; busy: 45 s
    store.merge("w", "new", [{"job": "a"}])
    assert store.settings()["runs_held"] == 2
    assert _jobs(store.merge("w", "busy", [])) != {}


def test_settings_say_what_is_bounded(make_store):
    settings_ = make_store(max_runs=7, max_jobs_per_run=9, idle=11.0).settings()
    assert settings_["max_runs"] == 7 and settings_["max_jobs_per_run"] == 9
    assert settings_["run_idle_seconds"] == 11.0 and settings_["runs_held"] == 0


def test_unknown_or_unreachable_stores_are_clear_errors():
    from flowsentry.errors import FlowsentryError

    assert make_run_store("none", 1, 1, 1.0) is None
    with pytest.raises(FlowsentryError, match="needs serve.redis_url"):
        make_run_store("redis", 1, 1, 1.0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(FlowsentryError, match="does not answer"):
        make_run_store("redis", 1, 1, 1.0, f"redis://127.0.0.1:{port}/0")


# -- the job scorer with a store: the scores the gate evaluated ------------------------


def _runs(n_runs: int, n_jobs: int, seed: int) -> pd.DataFrame:
    """Runs of two tasks on three hosts; in even runs host h0 is slow (the anomaly).
    Each run has a speed of its own, so only a job's siblings tell slow from normal."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_runs):
        speed = float(rng.uniform(0.4, 2.5))
        for j in range(n_jobs):
            host = f"h{j % 3}"
            slow = r % 2 == 0 and host == "h0"
            task = "individuals" if j % 2 else "sifting"
            runtime = float(
                rng.uniform(95, 105) * speed * (1.8 if slow else 1) * (2 if j % 2 else 1)
            )
            rows.append(
                {
                    "workflow": "1000genome",
                    "run": f"run{seed}-{r}",
                    "job": f"{task}_{j:04d}",
                    "task": task,
                    "kickstart_hostname": host,
                    "wms_delay": 6.0,
                    "queue_delay": float(rng.uniform(10, 30)),
                    "runtime": runtime,
                    "post_script_delay": 5.0,
                    "stage_in_delay": float(rng.uniform(5, 15)),
                    "stage_out_delay": 4.0,
                    "stage_in_bytes": 1e6,
                    "stage_out_bytes": 1e4,
                    "kickstart_executables_cpu_time": round(runtime * 0.9, 1),
                    "label": int(slow),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    # Sibling context only (no profile of normal): alone, a job's numbers say little.
    model = FeatureDetector("gradient_boosting", features_of("context"))
    model.fit(_runs(16, 12, seed=0), _runs(6, 12, seed=1))
    return model.save(tmp_path_factory.mktemp("models") / "gb")


def _records(frame: pd.DataFrame) -> list[dict]:
    fields = list(JobRecord.model_fields)
    return [{k: v for k, v in row.items() if k in fields} for row in frame.to_dict("records")]


def _scores(scorer: JobScorer, records: list[dict]) -> list[float]:
    return [s.score for s in scorer.classify([JobRecord(**r) for r in records])]


@pytest.fixture(params=["memory", "redis"])
def store_kind(request):
    return request.param


def _scorer(folder, kind, redis_url=None, max_jobs=10000):
    if kind == "redis":  # a new service: nothing held yet
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    runs = make_run_store(kind, 100, max_jobs, 3600.0, redis_url)
    return JobScorer("gb:1", folder, follow_champion=False, runs=runs)


def test_a_run_sent_job_by_job_ends_with_the_scores_of_one_batch(model_folder, store_kind, request):
    url = request.getfixturevalue("redis_url") if store_kind == "redis" else None
    run = _records(_runs(1, 12, seed=5))
    batch = _scores(_scorer(model_folder, "none"), run)  # the run as one request
    assert _scores(_scorer(model_folder, store_kind, url), run) == batch

    one_by_one = _scorer(model_folder, store_kind, url)
    alone = [_scores(one_by_one, [job])[0] for job in run]  # in execution order
    assert alone[-1] == batch[-1]  # the last job sees every sibling
    assert alone != batch  # earlier jobs saw fewer siblings (as they would in real time)
    # Once the run is complete every job, sent again, scores as in the batch.
    assert [_scores(one_by_one, [job])[0] for job in run] == batch
    assert _scores(one_by_one, run) == batch
    without_store = _scorer(model_folder, "none")
    assert [_scores(without_store, [job])[0] for job in run] != batch  # no siblings at all


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(12)), cuts=st.sets(st.integers(1, 11), max_size=5))
def test_any_arrival_order_and_batching_ends_with_the_same_scores(model_folder, order, cuts):
    run = _records(_runs(1, 12, seed=7))
    batch = dict(
        zip([r["job"] for r in run], _scores(_scorer(model_folder, "none"), run), strict=True)
    )
    scorer = _scorer(model_folder, "memory")
    arrived = [run[i] for i in order]
    bounds = [0, *sorted(cuts), len(arrived)]
    for start, end in itertools.pairwise(bounds):
        _scores(scorer, arrived[start:end])
    final = dict(zip([r["job"] for r in run], _scores(scorer, run), strict=True))
    assert final == batch


def test_runs_do_not_mix_and_jobs_without_a_run_get_no_siblings(model_folder):
    scorer = _scorer(model_folder, "memory")
    first, second = _records(_runs(1, 12, seed=8)), _records(_runs(1, 12, seed=9))
    batch = _scores(_scorer(model_folder, "none"), first)
    renamed = [dict(job, run="elsewhere") for job in second]
    _scores(scorer, renamed)
    assert _scores(scorer, first) == batch  # another run's jobs changed nothing
    lone = {k: v for k, v in first[0].items() if k != "run"}
    assert _scores(scorer, [lone]) == _scores(_scorer(model_folder, "none"), [lone])
    assert scorer.runs.settings()["runs_held"] == 2


def test_the_service_says_which_store_it_keeps(model_folder):
    info = _scorer(model_folder, "memory").info()
    assert info.run_store["kind"] == "memory" and info.run_store["max_runs"] == 100
    assert _scorer(model_folder, "none").info().run_store is None


def test_partial_records_use_the_store_too(model_folder):
    run = _records(_runs(1, 12, seed=10))
    scorer = _scorer(model_folder, "memory")
    _scores(scorer, run[1:])  # every sibling has finished
    job = run[0]  # still running: no timestamps yet, every measure the model reads known
    informed = scorer.classify_partial(JobRecord(**job))
    alone = _scorer(model_folder, "memory").classify_partial(JobRecord(**job))
    assert informed.score != alone.score  # the finished siblings are its context
