"""The feature detectors' scoring paths, side by side in one run:

- one job scored by the random forest (200 trees) on one thread, as `FeatureDetector`
  does below `PARALLEL_ROWS` rows, and with scikit-learn's thread pool (`n_jobs=-1`);
- the online curve (`score_prefixes`: every job scored from its first k features, k = 0
  .. all) in one call over the stacked prefixes, and one `score(jobs, k)` per prefix,
  with the largest difference between the two;

for gradient boosting and the random forest on seeded random records of the paper's
nine fields (no Flow-Bench needed).

    python bench/scoring.py --calls 200 --jobs 300 --out bench/results/scoring.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.io import write_json
from flowsentry.models import baselines
from flowsentry.models.baselines import FeatureDetector
from flowsentry.text.sentences import features_of
from serve import machine  # bench/serve.py: the CPU, its cores, Python

DEFAULT_PARALLEL_ROWS = baselines.PARALLEL_ROWS


def records(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = features_of("paper")
    frame = pd.DataFrame(rng.lognormal(2.0, 1.0, size=(n, len(features))), columns=features)
    frame["workflow"] = "bench"
    labels = (frame["runtime"] * rng.lognormal(0, 0.3, n) > frame["runtime"].median()).astype(int)
    return frame, labels.to_numpy()


def fitted(kind: str, train: pd.DataFrame, labels: np.ndarray) -> FeatureDetector:
    detector = FeatureDetector(kind, features_of("paper"))
    detector.fit_estimator(detector.design(train), labels)
    return detector


def percentiles(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
    }


def one_job(detector: FeatureDetector, jobs: pd.DataFrame, calls: int) -> dict[str, Any]:
    """One-job latency on one thread and with the pool, calls interleaved."""
    times: dict[str, list[float]] = {"one_thread": [], "pool": []}
    rows = jobs.to_dict("records")
    for i in range(calls):
        for setting, parallel_rows in (("one_thread", baselines.PARALLEL_ROWS), ("pool", 0)):
            baselines.PARALLEL_ROWS = parallel_rows
            try:
                started = time.perf_counter()
                detector.score([rows[i % len(rows)]])
                times[setting].append((time.perf_counter() - started) * 1000)
            finally:
                baselines.PARALLEL_ROWS = DEFAULT_PARALLEL_ROWS
    return {setting: percentiles(values) for setting, values in times.items()}


def prefixes(detector: FeatureDetector, jobs: pd.DataFrame, repeats: int = 3) -> dict[str, Any]:
    """`score_prefixes` against one `score` call per prefix, best of `repeats`."""
    ks = range(len(detector.features) + 1)
    seconds: dict[str, float] = {}
    for _ in range(repeats):
        started = time.perf_counter()
        stacked = detector.score_prefixes(jobs)
        seconds["one_call"] = min(seconds.get("one_call", 1e9), time.perf_counter() - started)
        started = time.perf_counter()
        each = [detector.score(jobs, k=k) for k in ks]
        seconds["per_prefix"] = min(seconds.get("per_prefix", 1e9), time.perf_counter() - started)
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(stacked, each, strict=True))
    return {
        "prefixes": len(ks),
        "one_call_ms": round(seconds["one_call"] * 1000, 1),
        "per_prefix_ms": round(seconds["per_prefix"] * 1000, 1),
        "speedup": round(seconds["per_prefix"] / seconds["one_call"], 2),
        "max_abs_difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="one-job scorings per setting")
    parser.add_argument("--jobs", type=int, default=300, help="jobs on the online curve")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    train, labels = records(5000)
    test, _ = records(args.jobs, seed=1)
    results: dict[str, Any] = {}
    for kind in ("gradient_boosting", "random_forest"):
        detector = fitted(kind, train, labels)
        results[kind] = {"prefixes": prefixes(detector, test)}
        if kind == "random_forest":
            results[kind]["one_job"] = one_job(detector, test, args.calls)
        print(kind, json.dumps(results[kind]), flush=True)
    report = {
        "measured": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "calls": args.calls,
        "jobs": args.jobs,
        "results": results,
    }
    if args.out:
        write_json(report, args.out)


if __name__ == "__main__":
    main()
