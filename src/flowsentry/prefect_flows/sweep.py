"""The sweep: candidates (workflow x model x mode) trained in parallel on a Dask cluster,
the best gated.

    flowsentry sweep --flowbench-dir ../shared/flowbench            # local, 2 workers
    flowsentry sweep --address tcp://scheduler:8786                 # a running cluster

Candidates are params.yaml `sweep`: workflows x models x modes. Each workflow's data is
prepared once under `paths.sweep/<workflow>/data` (one task per workflow); then every
candidate trains and evaluates in its own task on a Dask worker (prefect-dask's
DaskTaskRunner: a local cluster of `sweep.n_workers` processes, or the scheduler at
`sweep.address`), writing its model and reports under
`paths.sweep/<workflow>/<model>-<mode>`. The candidate with the best gate metric on
validation then goes through the same gate as the retraining flow, and is packaged as a
Bento when promoted. Every step is the same stage functions `dvc.yaml` runs, on other
paths.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from flowsentry import pipeline
from flowsentry.config import Config, load_config
from flowsentry.errors import FlowsentryError
from flowsentry.experiments import workspace
from flowsentry.lock import project_lock
from flowsentry.reports import EvaluationReport, TrainReport, as_json
from flowsentry.stages import gate, package


@dataclass(frozen=True)
class Candidate:
    workflow: str
    model: str
    mode: str

    @property
    def name(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.model).name or self.model)
        return f"{self.workflow}-{slug}-{self.mode}"


def candidates(cfg: Config) -> list[Candidate]:
    s = cfg.sweep
    return [Candidate(w, m, mode) for w in s.workflows for m in s.models for mode in s.modes]


def data_config(cfg: Config, workflow: str) -> Config:
    """`cfg` for one workflow's shared data under `paths.sweep/<workflow>/data`."""
    return workspace(cfg, workflow, cfg.paths.sweep / workflow / "data")


def candidate_config(cfg: Config, candidate: Candidate) -> Config:
    """The workflow's data, the candidate's own model, checkpoints and reports."""
    data = data_config(cfg, candidate.workflow)
    own = (
        cfg.paths.sweep / candidate.workflow / candidate.name.removeprefix(f"{candidate.workflow}-")
    )
    return data.model_copy(
        update={
            "paths": data.paths.model_copy(
                update={
                    "models": own / "models",
                    "checkpoints": own / "checkpoints",
                    "reports": own / "reports",
                }
            ),
            "train": cfg.train.model_copy(
                update={
                    "model": candidate.model,
                    "mode": candidate.mode,
                    "max_train_samples": cfg.sweep.max_train_samples,
                    "candidates": ("sft",),
                }
            ),
        }
    )


def prepare_data(cfg: Config, workflow: str, flowbench_dir: str | Path | None) -> dict[str, Any]:
    """ingest -> validate -> prepare -> augment for one workflow (shared by its candidates)."""
    ran = pipeline.run(data_config(cfg, workflow), until="augment", flowbench_dir=flowbench_dir)
    return ran["augment"]


def train_and_evaluate(cfg: Config, candidate: Candidate) -> dict[str, Any]:
    """Fine-tune and evaluate one candidate; its metrics and where its model is."""
    sub = candidate_config(cfg, candidate)
    ran = pipeline.run(sub, start="train", until="evaluate")
    trained: TrainReport = ran["train"]
    evaluated: EvaluationReport = ran["evaluate"]
    keep = ("accuracy", "f1", "roc_auc", "pr_auc")
    sft = evaluated.candidates["sft"]
    return {
        "candidate": candidate.name,
        "workflow": candidate.workflow,
        "model": candidate.model,
        "mode": candidate.mode,
        "val": {k: getattr(sft.val, k) for k in keep},
        "test": {k: getattr(sft.test, k) for k in keep},
        "train_seconds": trained.total_seconds,
        "model_dir": str(sub.paths.models / "sft"),
        "trained_on": f"{socket.gethostname()}:{os.getpid()}",  # which worker
    }


def best(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The candidate with the highest `metric` on validation, never test (ties: the
    first in sweep order)."""
    scored = [r for r in results if r["val"].get(metric) is not None]
    if not scored:
        raise FlowsentryError(f"sweep: no candidate reported '{metric}' on validation")
    return max(scored, key=lambda r: r["val"][metric])


def config_of(cfg: Config, result: dict[str, Any]) -> Config:
    return candidate_config(cfg, Candidate(result["workflow"], result["model"], result["mode"]))


prepare_task = task(prepare_data, name="prepare workflow", retries=1)
candidate_task = task(train_and_evaluate, name="candidate")


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
        candidate_task.submit(cfg, c, wait_for=[prepared[c.workflow]]) for c in candidates(cfg)
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
    winner = best(results, metric)
    logger.info("best of %d candidates by %s: %s", len(results), metric, winner["candidate"])
    chosen = config_of(cfg, winner)
    # The registry is shared with the retraining flow: the same lock.
    with project_lock(cfg.paths.lock, lock_timeout_s):
        decision = gate.run(chosen)
        bento = package.run(chosen, Path(bentofile)).bento if decision.promoted else None
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
        f"{decision.decision}",
    )
    return {"candidates": results, "best": winner, "gate": as_json(decision), "bento": bento}
