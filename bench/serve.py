"""Serving benchmark: HTTP (bentoml serve, adaptive batching) vs. the in-process predictor.

    python bench/serve.py --seconds 20 --clients 8 --batch 16

Serves the registry's champion on 127.0.0.1 (a free port), sends batches of real
test-split jobs from concurrent clients for a bounded time, and reports jobs/s and
per-request p50/p99 latency; then the same batches through the in-process predictor.
Prints the machine it ran on. Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd


def machine() -> dict[str, object]:
    import torch

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
    }


def jobs_from(path: Path, n: int) -> list[dict]:
    from flowsentry.serving.schemas import JobRecord

    frame = pd.read_parquet(path).head(n)
    allowed = set(JobRecord.model_fields)
    records = []
    for row in frame.to_dict("records"):
        records.append(
            {
                k: (None if isinstance(v, float) and np.isnan(v) else v)
                for k, v in row.items()
                if k in allowed and v is not None and not (isinstance(v, float) and np.isnan(v))
            }
        )
    return records


def load(fn, batches: list[list[dict]], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    jobs = 0
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        nonlocal jobs
        i = offset
        while time.perf_counter() < stop:
            batch = batches[i % len(batches)]
            started = time.perf_counter()
            fn(batch)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed * 1000)
                jobs += len(batch)
            i += clients

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - started
    return {
        "jobs_per_s": round(jobs / wall, 1),
        "requests": len(latencies),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="jobs per request")
    parser.add_argument("--test", type=Path, default=Path("data/prepared/test.parquet"))
    parser.add_argument("--int8", action="store_true", help="serve with FLOWSENTRY_INT8=1")
    args = parser.parse_args()

    import httpx

    from flowsentry.models.loading import load_detector
    from flowsentry.registry import store
    from flowsentry.serving.local import local_server

    tag = store.champion_tag()
    if tag is None:
        sys.exit("no champion in the registry: run `dvc repro` (gate) first")
    jobs = jobs_from(args.test, 2000)
    batches = [jobs[i : i + args.batch] for i in range(0, len(jobs), args.batch)]
    results: dict[str, object] = {
        "machine": machine(),
        "model": tag,
        "batch": args.batch,
        "clients": args.clients,
        "seconds": args.seconds,
    }

    env = {**os.environ, "FLOWSENTRY_INT8": "1" if args.int8 else "0"}
    with local_server(env) as url:
        client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=args.clients))

        def over_http(batch):
            reply = client.post(f"{url}/classify", json={"jobs": batch})
            reply.raise_for_status()

        over_http(batches[0])  # warm up
        results["http"] = load(over_http, batches, args.clients, args.seconds)

    predictor = load_detector(store.get(tag).path, int8=args.int8)  # any kind
    predictor.score(batches[0])
    results["in_process"] = load(predictor.score, batches, 1, args.seconds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
