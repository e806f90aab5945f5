"""Threads per process beside a busy neighbour: scikit-learn's gradient boosting scoring
one job, with the OpenMP runtime's default pool and with one thread, idle and beside a
neighbour process that keeps the other core busy, side by side in one run.

    python bench/threads.py --calls 200 --out bench/results/threads.json

Why the test suite runs each pytest-xdist worker on one thread (tests/conftest.py): two
workers' thread pools on two cores spin against each other. Each setting runs in a fresh
process (the OpenMP pool is sized when the runtime starts); the model is the same seeded
HistGradientBoostingClassifier (300 iterations, 60 features) each time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from flowsentry.io import write_json

MEASURE = """
import json, sys, time
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
rng = np.random.default_rng(0)
x = rng.normal(size=(5000, 60))
model = HistGradientBoostingClassifier(max_iter=300, random_state=0).fit(x, (x[:, 0] > 0))
times = []
for i in range(int(sys.argv[1])):
    started = time.perf_counter()
    model.predict_proba(x[i % 5000 : i % 5000 + 1])
    times.append((time.perf_counter() - started) * 1000)
print(json.dumps({"p50_ms": float(np.percentile(times, 50)),
                  "p99_ms": float(np.percentile(times, 99))}))
"""

NEIGHBOUR = "while True: pass"


def measure(calls: int, threads: str | None) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(calls)],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="one-job scorings per setting")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    rows = []
    for neighbour in (False, True):
        busy = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if neighbour else None
        try:
            if busy:
                time.sleep(0.5)
            for threads in (None, "1"):
                result = measure(args.calls, threads)
                rows.append({"neighbour": neighbour, "omp_threads": threads or "default",
                             **{k: round(v, 2) for k, v in result.items()}})  # fmt: skip
                print(rows[-1], flush=True)
        finally:
            if busy:
                busy.kill()
                busy.wait()
    report = {
        "measured": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
        "calls": args.calls,
        "rows": rows,
    }
    if args.out:
        write_json(report, args.out)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
