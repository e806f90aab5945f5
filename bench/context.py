"""Real-time context, side by side in one run: every view (a run as it stood at one
moment) computed in stacked batches, as `flowsentry.data.context` does, and one view at
a time, as it did before; with the largest difference between the two.

- `context_at_moments`: augment's realtime rows (4 moments a run of the training jobs);
- `context_as_of_finish`: evaluate's online sample (each job as of its own finish).

On Flow-Bench runs of one workflow (FLOWBENCH_DIR), with an evidence profile fitted on
them and their DAG's parent links, as prepare makes them.

    python bench/context.py --workflow 1000genome --runs 40 --out bench/results/context.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.data import context
from flowsentry.data.dag import PARENTS, parents_column
from flowsentry.data.evidence import Profile
from flowsentry.data.flowbench import load_dag, locate, read_workflow
from flowsentry.io import write_json
from serve import machine  # bench/serve.py: the CPU, its cores, Python

STACKED = context._as_of_each


def one_at_a_time(jobs: pd.DataFrame, subsets: list[pd.Index], profile: Profile | None):
    return [context._as_of(jobs.loc[subset], profile) for subset in subsets]


def timed(call, repeats: int) -> tuple[float, Any]:
    """Best of `repeats` seconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def compare(name: str, call, repeats: int) -> dict[str, Any]:
    context._as_of_each = STACKED
    stacked_s, stacked = timed(call, repeats)
    context._as_of_each = one_at_a_time
    try:
        each_s, each = timed(call, repeats)
    finally:
        context._as_of_each = STACKED
    numeric = stacked.select_dtypes("number").columns
    difference = float(
        np.nanmax(np.abs(stacked[numeric].to_numpy("float64") - each[numeric].to_numpy("float64")))
    )
    result = {
        "rows": len(stacked),
        "stacked_s": round(stacked_s, 3),
        "one_at_a_time_s": round(each_s, 3),
        "speedup": round(each_s / stacked_s, 1),
        "max_abs_difference": difference,
    }
    print(name, json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow", default="1000genome")
    parser.add_argument("--runs", type=int, default=40, help="runs of the workflow read")
    parser.add_argument("--online-jobs", type=int, default=200, help="evaluate's online sample")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    source = locate(os.environ.get("FLOWBENCH_DIR", "../shared/flowbench"), args.workflow)
    jobs = read_workflow(source, progress=False, max_runs=args.runs)
    jobs[PARENTS] = parents_column(jobs, {args.workflow: load_dag(source.dag)})
    profile = Profile.fit(jobs)
    targets = jobs.sample(min(args.online_jobs, len(jobs)), random_state=0).index
    results = {
        "context_at_moments": compare(
            "context_at_moments",
            lambda: context.context_at_moments(jobs, 4, np.random.default_rng(0), profile),
            args.repeats,
        ),
        "context_as_of_finish": compare(
            "context_as_of_finish",
            lambda: context.context_as_of_finish(jobs, targets, profile),
            args.repeats,
        ),
    }
    report = {
        "measured": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "workflow": args.workflow,
        "runs": args.runs,
        "jobs": len(jobs),
        "results": results,
    }
    if args.out:
        write_json(report, args.out)


if __name__ == "__main__":
    main()
