"""The sweep: candidates (workflow x model x mode) trained in parallel on a Dask cluster,
the best gated.

    flowsentry sweep --flowbench-dir ../shared/flowbench            # local, 2 workers
    flowsentry sweep --address tcp://scheduler:8786                 # a running cluster

Candidates are params.yaml `sweep`: workflows x models x modes. Every step is `dvc.yaml`
run by DVC in a workspace (`flowsentry.workspace`): each workflow's data is prepared once,
through `augment`, in `paths.sweep/<workflow>/data` (one task per workflow); then every
candidate runs `dvc repro evaluate` in its own workspace,
`paths.sweep/<workflow>/<model>-<mode>`, in its own task on a Dask worker (prefect-dask's
DaskTaskRunner: a local cluster of `sweep.n_workers` processes, or the scheduler at
`sweep.address`), its data checked out of the shared DVC cache. The candidate with the
best gate metric on validation then runs the gate stage in its workspace (the same gate
as the retraining flow), and the package stage when promoted.
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

from flowsentry.config import Config, load_config
from flowsentry.errors import FlowsentryError
from flowsentry.experiments import one_workflow
from flowsentry.lock import project_lock
from flowsentry.reports import EvaluationReport, GateReport, PackageReport, TrainReport, as_json
from flowsentry.workspace import DVC_FILE, Workspace, stage_order


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


def data_workspace(cfg: Config, workflow: str) -> Workspace:
    """The workflow's shared data: its workspace at `paths.sweep/<workflow>/data`."""
    return Workspace.open(cfg.paths.sweep / workflow / "data", one_workflow(cfg, workflow))


def candidate_workspace(cfg: Config, candidate: Candidate) -> Workspace:
    """The candidate's workspace: its own model, checkpoints and reports."""
    own = (
        cfg.paths.sweep / candidate.workflow / candidate.name.removeprefix(f"{candidate.workflow}-")
    )
    settings = one_workflow(cfg, candidate.workflow)
    settings = settings.model_copy(
        update={
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
    return Workspace.open(own, settings)


def data_stages(space: Workspace) -> list[str]:
    """The stages a workflow's candidates share: `dvc.yaml` up to `augment`."""
    order = stage_order(space.root / DVC_FILE)
    return order[: order.index("augment") + 1]


def prepare_data(cfg: Config, workflow: str, flowbench_dir: str | Path | None) -> list[str]:
    """`dvc repro augment` in the workflow's data workspace (shared by its candidates);
    the stages that were stale and ran."""
    return data_workspace(cfg, workflow).run("augment", flowbench_dir)


def train_and_evaluate(
    cfg: Config, candidate: Candidate, flowbench_dir: str | Path | None = None
) -> dict[str, Any]:
    """`dvc repro evaluate` in the candidate's workspace, its data checked out of the
    workflow's (from DVC's cache: nothing is prepared twice); its metrics and model."""
    data = data_workspace(cfg, candidate.workflow)
    space = candidate_workspace(cfg, candidate)
    space.seed(data, data_stages(data))
    space.run("evaluate", flowbench_dir)  # the traces only if DVC found the data stale
    trained = TrainReport.read(space.paths)
    evaluated = EvaluationReport.read(space.paths)
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
        "workspace": str(space.root),  # its reports' paths are relative to it
        "model_dir": str(space.paths.models / "sft"),
        "trained_on": f"{socket.gethostname()}:{os.getpid()}",  # which worker
    }


def best(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The candidate with the highest `metric` on validation, never test (ties: the
    first in sweep order)."""
    scored = [r for r in results if r["val"].get(metric) is not None]
    if not scored:
        raise FlowsentryError(f"sweep: no candidate reported '{metric}' on validation")
    return max(scored, key=lambda r: r["val"][metric])


def workspace_of(cfg: Config, result: dict[str, Any]) -> Workspace:
    return candidate_workspace(cfg, Candidate(result["workflow"], result["model"], result["mode"]))


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
        candidate_task.submit(cfg, c, flowbench_dir, wait_for=[prepared[c.workflow]])
        for c in candidates(cfg)
    ]
    return [f.result() for f in futures]


@flow(name="flowsentry-sweep", log_prints=True)
def sweep(
    params: str = "params.yaml",
    flowbench_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    address: str | None = None,
    lock_timeout_s: float = 3600,
) -> dict[str, Any]:
    """Train the sweep's candidates in parallel; gate the best in its workspace (`dvc repro`
    of the gate, then of package when promoted)."""
    logger = get_run_logger()
    cfg = load_config(Path(params), overrides)
    source = flowbench_dir or os.environ.get("FLOWBENCH_DIR")
    runner = task_runner(cfg, address)
    results = run_candidates.with_options(task_runner=runner)(cfg, source)
    metric = cfg.gate.primary_metric
    winner = best(results, metric)
    logger.info("best of %d candidates by %s: %s", len(results), metric, winner["candidate"])
    chosen = workspace_of(cfg, winner)
    # The registry is shared with the retraining flow: the same lock.
    # The gate decides now, against today's champion (forced: DVC would skip it when the
    # candidate is unchanged); the Bento is built only for a promotion.
    with project_lock(cfg.paths.lock, lock_timeout_s):
        chosen.run("gate", force_only=True)
        decision = GateReport.read(chosen.paths)
        if decision.promoted:
            chosen.run("package", force_only=True)
    bento = PackageReport.read(chosen.paths).bento if decision.promoted else None
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
