"""Serving benchmark: HTTP (`bentoml serve`) and in-process, side by side, per champion kind.

    python bench/serve.py --seconds 20 --out bench/results/serve.json

For each model folder (default: the pipeline's gradient-boosting and MiniLM candidates),
registers it as champion in a private BentoML home, serves it on 127.0.0.1 (a free port)
and sends the test split's jobs as real clients would: several runs in flight at once,
each run's jobs in execution order, batches of 1 to 64 jobs (seeded). Two HTTP phases:
as fast as the clients can (the most jobs/s), then a fixed offered load (`--rate`, per
kind) to read the p99 at that load. Then the same requests in-process (no HTTP). The
steps table scores the language model's test sentences in-process: torch float32, ONNX
float32, ONNX static int8; the paper's long sentence vs the levels one; batch sizes.
Loopback only; every loop is bounded in time and count. Writes JSON with the machine.

    python bench/serve.py --neighbour --seconds 15 --models models/candidates/gradient_boosting \
        --out bench/results/serve_neighbour.json

`--neighbour`: one job sent alone at a time (p50/p99), the service idle and then beside
a neighbour process that loops HistGradientBoosting predict_proba on 50 rows (what a
second worker or replica does), once per threads-per-worker setting (`--threads`,
default: none = the libraries' defaults, then 1), side by side in one run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ORDER = ("execute_start", "stage_in_start", "submit", "ready")  # execution order, first known


def machine() -> dict[str, object]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def client_requests(test: Path, max_jobs: int, seed: int = 0) -> list[list[dict]]:
    """The test jobs as clients send them: runs interleaved (8 in flight), each run's
    jobs in execution order, cut into batches of 1 to 64."""
    from flowsentry.serving.schemas import RAW_FIELDS

    frame = pd.read_parquet(test)
    order = [c for c in ORDER if c in frame]
    runs = [jobs.sort_values(order) for _, jobs in frame.groupby("run", sort=True)]
    rng = np.random.default_rng(seed)
    fields = set(RAW_FIELDS)
    queues = [
        [
            {k: v for k, v in r.items() if k in fields and pd.notna(v)}
            for r in run.to_dict("records")
        ]
        for run in runs
    ]
    requests: list[list[dict]] = []
    active = [queues.pop(0) for _ in range(min(8, len(queues)))]
    sent = 0
    while active and sent < max_jobs:
        i = int(rng.integers(len(active)))
        size = int(rng.integers(1, 65))
        batch, active[i] = active[i][:size], active[i][size:]
        requests.append(batch)
        sent += len(batch)
        if not active[i]:
            active.pop(i)
            if queues:
                active.append(queues.pop(0))
    return requests


def drive(
    send,
    requests: list[list[dict]],
    clients: int,
    seconds: float,
    rate: float | None,
    max_requests: int = 200_000,
):
    """Send `requests` (cycled) from `clients` threads for `seconds`; with `rate`, pace
    the offered load to that many jobs/s. Per request latency; achieved jobs/s."""
    latencies: list[float] = []
    jobs = errors = 0
    lock = threading.Lock()
    start = time.perf_counter()
    stop = start + seconds
    cursor = iter(range(max_requests))  # bounded in count as well as in time
    offered = 0

    def worker() -> None:
        nonlocal jobs, errors, offered
        while True:
            with lock:
                i = next(cursor, None)
                if i is None:
                    return
                batch = requests[i % len(requests)]
                if rate:
                    due = start + offered / rate
                    offered += len(batch)
            now = time.perf_counter()
            if now >= stop:
                return
            if rate and due > now:
                time.sleep(min(due - now, stop - now))
                if time.perf_counter() >= stop:
                    return
            began = time.perf_counter()
            ok = send(batch)
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(elapsed)
                jobs += len(batch)
                errors += not ok

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - start
    return {
        "jobs_per_s": round(jobs / wall, 1),
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "offered_jobs_per_s": rate,
    }


def serve_kind(folder: Path, requests, args, rate: float) -> dict[str, object]:
    import httpx

    from flowsentry.serving.local import local_server
    from flowsentry.serving.runs import make_run_store
    from flowsentry.serving.schemas import JobRecord
    from flowsentry.serving.scorer import JobScorer

    home = Path(tempfile.mkdtemp(prefix="flowsentry-bench-"))
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    register = (
        "import sys; from pathlib import Path; from flowsentry.registry import store; "
        "t = store.register(Path(sys.argv[1]), {}, {}); store.promote(t); print(t)"
    )
    subprocess.run([sys.executable, "-c", register, str(folder)], env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    result: dict[str, object] = {"model": str(folder)}
    with local_server(env) as url:
        client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=args.clients))

        def over_http(batch) -> bool:
            return client.post(f"{url}/classify", json={"jobs": batch}).status_code == 200

        meta = client.post(f"{url}/metadata", json={}).json()
        result["kind"], result["runtime"] = meta["kind"], meta.get("runtime")
        result["run_store"] = meta.get("run_store")
        for batch in requests[:4]:
            over_http(batch)  # warm up
        result["http_max"] = drive(over_http, requests, args.clients, args.seconds, None)
        result["http_at_rate"] = drive(over_http, requests, args.clients, args.seconds, rate)
    # The same requests in-process: the service's job scorer, its run store, no HTTP.
    scorer = JobScorer("bench", folder, follow_champion=False,
                       runs=make_run_store("memory", 2000, 10000, 21600.0))  # fmt: skip

    def in_process(batch) -> bool:
        scorer.classify([JobRecord(**job) for job in batch])
        return True

    result["in_process"] = drive(in_process, requests, 1, args.seconds, None)
    return result


def steps(folder: Path, test: Path, seconds: float) -> list[dict[str, object]]:
    """What each step buys, in-process on the same test jobs: runtime x sentence x batch."""
    from flowsentry.models.encoder import OnnxModel, SentenceClassifier, export_onnx
    from flowsentry.text.sentences import features_of, sentences

    torch_model = SentenceClassifier.load(folder, device="cpu", runtime="torch")
    frame = torch_model.frame(pd.read_parquet(test).head(1024))
    train = pd.read_parquet(test.parent / "train.parquet").sample(256, random_state=0)
    texts = {
        "levels (default)": sentences(frame, torch_model.template, torch_model.features,
                                      profile=torch_model.profile),
        "paper": sentences(frame, "paper", features_of("paper")),
    }  # fmt: skip
    calibration = sentences(torch_model.frame(train), torch_model.template,
                            torch_model.features, profile=torch_model.profile)  # fmt: skip
    target = Path(tempfile.mkdtemp())
    exported = export_onnx(
        torch_model.model, torch_model.tokenizer, target, calibration, torch_model.max_length
    )
    runtimes = {
        "torch float32": None,
        "onnx float32": exported["fp32"],
        "onnx int8": exported["int8"],
    }
    rows = []
    reference = None
    for runtime, path in runtimes.items():
        torch_model.onnx = None if path is None else OnnxModel(path)
        for sentence, batch_texts in texts.items():
            for batch in (1, 16, 64):
                if sentence == "paper" and batch != 64:
                    continue
                torch_model.batch_size = batch
                torch_model.score_texts(batch_texts[:batch])  # warm up
                done, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds and done < len(batch_texts):
                    torch_model.score_texts(batch_texts[done : done + 128])
                    done += 128
                rate = done / (time.perf_counter() - started)
                scores = torch_model.score_texts(texts["levels (default)"][:256])
                if reference is None:
                    reference = scores
                rows.append({
                    "runtime": runtime, "sentence": sentence, "batch": batch,
                    "jobs_per_s": round(rate, 1),
                    "max_score_change_vs_torch": round(float(np.abs(scores - reference).max()), 4),
                })  # fmt: skip
    tokenizer = torch_model.tokenizer
    for name, batch_texts in texts.items():
        lengths = [len(ids) for ids in tokenizer(batch_texts[:512])["input_ids"]]
        rows.append({"sentence": name, "tokens_per_job": round(float(np.mean(lengths)), 1)})
    return rows


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# The neighbour: a separate process scoring with the same kind of model, with the
# libraries' default threads (one per core), looping until its time is up.
NEIGHBOUR = """
import sys, time
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 40))
y = (X[:, 0] + X[:, 1] * X[:, 2] > 0.5).astype(int)
model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(X, y)
rows = X[:50]
print("ready", flush=True)
stop = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < stop:
    model.predict_proba(rows)
    n += 1
print(n, flush=True)
"""


class Neighbour:
    """The neighbour process, running from `__enter__` (once fitted) for at most
    `seconds`; `predictions_per_s` once it is done."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.predictions_per_s: float | None = None

    def __enter__(self) -> Neighbour:
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        self.process = subprocess.Popen(
            [sys.executable, "-c", NEIGHBOUR, str(self.seconds)],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the neighbour process did not start")
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        try:
            out, _ = self.process.communicate(timeout=self.seconds + 60)
            wall = time.perf_counter() - self.started
            self.predictions_per_s = round(int(out.split()[-1]) / wall, 1)
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            self.process.kill()
            self.process.wait()


def single_jobs(test: Path, n: int = 50) -> list[dict]:
    """The first `n` test jobs of a run, in execution order, each to be sent alone."""
    from flowsentry.serving.schemas import RAW_FIELDS

    frame = pd.read_parquet(test)
    order = [c for c in ORDER if c in frame]
    frame = frame.sort_values(["run", *order]).head(n)
    fields = set(RAW_FIELDS)
    return [{k: v for k, v in r.items() if k in fields and pd.notna(v)}
            for r in frame.to_dict("records")]  # fmt: skip


def neighbour_case(folder: Path, jobs: list[dict], args) -> dict[str, object]:
    """Per threads-per-worker setting: single-job latency idle, then beside the
    neighbour; the ratios side by side."""
    import httpx

    from flowsentry.serving.local import local_server

    home = Path(tempfile.mkdtemp(prefix="flowsentry-bench-"))
    base = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    for name in THREAD_VARS:
        base.pop(name, None)  # the service decides (threads_per_worker), nothing inherited
    if args.workers > 1:
        base["BENTOML_CONFIG_OPTIONS"] = f"services.flowsentry.workers={args.workers}"
    register = (
        "import sys; from pathlib import Path; from flowsentry.registry import store; "
        "t = store.register(Path(sys.argv[1]), {}, {}); store.promote(t); print(t)"
    )
    subprocess.run([sys.executable, "-c", register, str(folder)], env=base, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    cases: dict[str, object] = {}
    for threads in args.threads:
        env = {**base, "FLOWSENTRY_THREADS_PER_WORKER": threads}
        print(f"threads_per_worker={threads} ...", file=sys.stderr)
        with local_server(env) as url, httpx.Client(timeout=60) as client:
            meta = client.post(f"{url}/metadata", json={}).json()

            def send(batch) -> bool:
                return client.post(f"{url}/classify", json={"jobs": batch}).status_code == 200

            requests = [[job] for job in jobs]
            for batch in requests:  # warm up; the run store then holds every job's siblings
                send(batch)

            case: dict[str, object] = {
                "threads_per_worker": meta.get("threads_per_worker"),
                "native_threads": meta.get("native_threads"),
                "idle": drive(send, requests, 1, args.seconds, None),
            }
            with Neighbour(args.seconds + 5) as neighbour:
                case["with_neighbour"] = drive(send, requests, 1, args.seconds, None)
            case["neighbour_predictions_per_s"] = neighbour.predictions_per_s
        idle, loaded = case["idle"], case["with_neighbour"]
        case["p50_ratio_neighbour_vs_idle"] = round(loaded["p50_ms"] / idle["p50_ms"], 2)
        case["p99_ratio_neighbour_vs_idle"] = round(loaded["p99_ms"] / idle["p99_ms"], 2)
        cases[threads] = case
    result: dict[str, object] = {"model": str(folder), "workers": args.workers, "cases": cases}
    if "none" in cases and "1" in cases:
        unset, one = cases["none"]["with_neighbour"], cases["1"]["with_neighbour"]
        result["with_neighbour_unset_vs_1"] = {
            "p50_ratio": round(unset["p50_ms"] / one["p50_ms"], 2),
            "p99_ratio": round(unset["p99_ms"] / one["p99_ms"], 2),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", type=Path,
                        default=[Path("models/candidates/gradient_boosting"),
                                 Path("models/candidates/sft")])  # fmt: skip
    parser.add_argument("--test", type=Path, default=Path("data/prepared/test.parquet"))
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-jobs", type=int, default=3000, help="jobs in the request stream")
    parser.add_argument("--rate-trees", type=float, default=3000.0, help="offered jobs/s")
    parser.add_argument("--rate-language", type=float, default=300.0, help="offered jobs/s")
    parser.add_argument("--no-steps", action="store_true", help="skip the steps table")
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve.json"))
    parser.add_argument("--neighbour", action="store_true",
                        help="single-job latency idle and beside a neighbour process, "
                        "per --threads setting (replaces the other phases)")  # fmt: skip
    parser.add_argument("--threads", nargs="+", default=["none", "1"],
                        help="threads_per_worker values for --neighbour (none: unset)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="worker processes (--neighbour)")
    args = parser.parse_args()

    from flowsentry.io import write_json
    from flowsentry.models.detector import read_metadata

    if args.neighbour:
        jobs = single_jobs(args.test)
        report = {
            "machine": machine(),
            "case": "one job sent alone, one request in flight; a neighbour process loops "
            "HistGradientBoosting predict_proba on 50 rows (default threads)",
            "jobs": len(jobs),
            "seconds_per_phase": args.seconds,
            "kinds": {},
        }
        for folder in args.models:
            kind = read_metadata(folder)["kind"]
            print(f"serving {kind} ({folder}) beside a neighbour ...", file=sys.stderr)
            report["kinds"][kind] = neighbour_case(folder, jobs, args)
        write_json(report, args.out)
        print(json.dumps(report, indent=1))
        return

    requests = client_requests(args.test, args.max_jobs)
    results: dict[str, object] = {
        "machine": machine(),
        "requests": {
            "count": len(requests),
            "jobs": sum(map(len, requests)),
            "batch_sizes": "1..64, seeded",
            "runs_in_flight": 8,
        },
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "kinds": {},
    }
    for folder in args.models:
        kind = read_metadata(folder)["kind"]
        rate = args.rate_language if kind in ("sft", "icl") else args.rate_trees
        print(f"serving {kind} ({folder}) ...", file=sys.stderr)
        results["kinds"][kind] = serve_kind(folder, requests, args, rate)
        if kind == "sft" and not args.no_steps:
            print("steps ...", file=sys.stderr)
            results["steps"] = steps(folder, args.test, min(args.seconds, 10.0))
    write_json(results, args.out)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
