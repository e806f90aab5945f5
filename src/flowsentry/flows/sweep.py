"""Prefect sweep flow: candidates trained in parallel on a Dask cluster, the best gated.

    flowsentry sweep --flowbench-dir ../shared/flowbench            # local, 2 workers
    flowsentry sweep --address tcp://scheduler:8786                 # a running cluster

Candidates are params.yaml `sweep`: workflows x models x modes. Each workflow's data is
prepared once (one task per workflow), then every candidate trains and evaluates in its
own task on a Dask worker (prefect-dask's DaskTaskRunner: a local cluster of
`sweep.n_workers` processes, or the scheduler at `sweep.address`). The candidate with the
best gate metric then goes through the same gate as the retraining flow, and is packaged
as a Bento when promoted. Every step is a `flowsentry.sweep` / `flowsentry.stages` call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from flowsentry import sweep as sweeps
from flowsentry.config import Config, load_config
from flowsentry.lock import project_lock
from flowsentry.stages import gate, package

prepare_task = task(sweeps.prepare_data, name="prepare workflow", retries=1)
candidate_task = task(sweeps.train_and_evaluate, name="candidate")


def task_runner(cfg: Config, address: str | None = None) -> DaskTaskRunner:
    """A runner on the scheduler at `address` (or sweep.address), else a local cluster."""
    address = address or cfg.sweep.address
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.sweep.n_workers,
            "threads_per_worker": cfg.sweep.threads_per_worker,
            "processes": True,
            "dashboard_address": None,
        }
    )


@flow(name="flowsentry-sweep-candidates")
def run_candidates(cfg: Config, flowbench_dir: str | None) -> list[dict[str, Any]]:
    """Prepare each workflow once, then train every candidate; all on the task runner."""
    prepared = {
        w: prepare_task.submit(cfg, w, flowbench_dir) for w in dict.fromkeys(cfg.sweep.workflows)
    }
    futures = [
        candidate_task.submit(cfg, c, wait_for=[prepared[c.workflow]])
        for c in sweeps.candidates(cfg)
    ]
    return [f.result() for f in futures]


@flow(name="flowsentry-sweep", log_prints=True)
def sweep(
    params: str = "params.yaml",
    flowbench_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    address: str | None = None,
    bentofile: str = "bentofile.yaml",
    lock_timeout_s: float = 3600,
) -> dict[str, Any]:
    """Train the sweep's candidates in parallel; gate the best; package it when promoted."""
    logger = get_run_logger()
    cfg = load_config(Path(params), overrides)
    source = flowbench_dir or os.environ.get("FLOWBENCH_DIR")
    runner = task_runner(cfg, address)
    results = run_candidates.with_options(task_runner=runner)(cfg, source)
    metric = cfg.gate.primary_metric
    winner = sweeps.best(results, metric)
    logger.info("best of %d candidates by %s: %s", len(results), metric, winner["candidate"])
    chosen = sweeps.config_of(cfg, winner)
    # The registry is shared with the retraining flow: the same lock.
    with project_lock(cfg.paths.lock, lock_timeout_s):
        decision = gate.run(chosen)
        promoted = decision["decision"] == "promote"
        bento = package.run(chosen, Path(bentofile))["bento"] if promoted else None
    create_table_artifact(
        key="sweep-candidates",
        table=[
            {
                "candidate": r["candidate"],
                **{f"val_{k}": v for k, v in r["val"].items()},
                **{f"test_{k}": v for k, v in r["test"].items()},
                "train_seconds": r["train_seconds"],
                "best": r is winner,
            }
            for r in results
        ],
        description=f"Sweep candidates; the best by validation {metric} went to the gate: "
        f"{decision['decision']}",
    )
    return {"candidates": results, "best": winner, "gate": decision, "bento": bento}
