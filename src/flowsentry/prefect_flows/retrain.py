"""Prefect retraining flow: the DVC pipeline, one Prefect task per `dvc.yaml` stage.

    flowsentry retrain --flowbench-dir ../shared/flowbench     # in the project root

`dvc.yaml` is the one definition of what runs and what is stale: each task runs
`dvc repro --single-item <stage>` in the project, so DVC skips a stage whose
dependencies and params are unchanged and records in `dvc.lock` what it ran (`dvc
status` is clean afterwards because DVC itself ran every stage). Prefect adds what DVC
does not: a task per stage with its own state, retries for the I/O-bound ones, the
inbox of new traces before ingest, a Data Docs link when validation fails, a summary
artifact, a project lock against overlapping runs, and the push of the data to the DVC
remote. Ingest is always forced: new traces under `FLOWBENCH_DIR` or accepted from the
inbox are not dependencies DVC can see; when they change nothing, the jobs tables hash
the same and every later stage is skipped.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from flowsentry import versioning, workspace
from flowsentry.config import Paths, load_config
from flowsentry.errors import FlowsentryError
from flowsentry.io import atomic_path
from flowsentry.lock import held_for, project_lock
from flowsentry.reports import (
    EvaluationReport,
    GateReport,
    IngestReport,
    PackageReport,
    TrainReport,
    as_json,
)
from flowsentry.stages import inbox
from flowsentry.workspace import StageFailed, stage_order


def repro(
    root: Path, stage: str, force: bool = False, flowbench_dir: str | None = None
) -> dict[str, Any]:
    """`dvc repro --single-item <stage>` in `root`; returns whether the stage ran."""
    ran = workspace.repro(root, stage, single_item=True, force=force, flowbench_dir=flowbench_dir)
    return {"stage": stage, "ran": bool(ran)}


# Stages that read from outside the project (traces, downloads): retried on I/O errors.
RETRIED = {"ingest": 2}


def stage_task(stage: str):
    """The Prefect task that runs one `dvc.yaml` stage (`dvc repro --single-item`)."""

    @task(name=stage, retries=RETRIED.get(stage, 0), retry_delay_seconds=10)
    def run(root: Path, force: bool = False, flowbench_dir: str | None = None) -> dict[str, Any]:
        logger = get_run_logger()
        result = repro(root, stage, force=force, flowbench_dir=flowbench_dir)
        logger.info("%s: %s", stage, "ran" if result["ran"] else "up to date (skipped by DVC)")
        return result

    return run


inbox_task = task(inbox.run, name="inbox", retries=2, retry_delay_seconds=10)


@task(name="push data", retries=2, retry_delay_seconds=10)
def push_task(root: Path) -> dict[str, Any]:
    """Send what DVC cached to the DVC remote (skipped with a note when none is set)."""
    try:
        return versioning.push(root)
    except FlowsentryError as exc:
        get_run_logger().warning("not pushed: %s", exc)
        return {"remote": None, "url": None, "pushed": 0, "note": str(exc)}


def _locked_outputs(root: Path) -> dict[str, str]:
    """{output path: hash} as dvc.lock records them (the data version of this run)."""
    import yaml

    lock = yaml.safe_load((root / "dvc.lock").read_text()) if (root / "dvc.lock").exists() else {}
    return {
        out["path"]: out.get("md5", "")
        for stage in (lock or {}).get("stages", {}).values()
        for out in stage.get("outs", [])
    }


def _summary(paths: Paths, stages: dict[str, Any], push: dict[str, Any]) -> None:
    """Prefect table artifacts: the stages (run or up to date) and the candidates by rank,
    the gate's decision and the DVC push in the description."""
    report = EvaluationReport.read_or_none(paths)
    decision = GateReport.read_or_none(paths)
    outcome = (
        f"gate: {decision.decision if decision else None} "
        f"{(decision.promoted_tag if decision else None) or ''}; "
        f"DVC remote: {push.get('remote')} ({push.get('pushed', 0)} files pushed)"
    )
    create_table_artifact(
        key="retrain-stages",
        table=[{"stage": name, "ran": s["ran"]} for name, s in stages.items()],
        description=f"Stages run by DVC (False: up to date); {outcome}",
    )
    create_table_artifact(
        key="retrain-candidates",
        table=[
            {
                "rank": rank,
                "detector": name,
                "val_f1": report.candidates[name].val.f1,
                "test_accuracy": report.candidates[name].test.accuracy,
                "test_f1": report.candidates[name].test.f1,
            }
            for rank, name in enumerate(report.ranking_on_validation if report else [], start=1)
        ],
        description=f"Candidates by validation rank; {outcome}",
    )


# The stages whose outputs the train stage reads (pulled from the DVC remote by a worker
# without the project's file system).
TRAIN_INPUTS = ("prepare", "augment")


@flow(name="flowsentry-train", log_prints=True, persist_result=True)
def train_flow(
    project: str = ".",
    repository: str | None = None,
    revision: str | None = None,
    params: str | None = None,
    lock: str | None = None,
    lock_held: str | None = None,
) -> dict[str, Any]:
    """`dvc repro train` alone, for a GPU work pool (prefect.yaml).

    Without `repository`, in `project`: a folder the worker shares with the retraining flow,
    which holds the project lock at `lock_held` for it while it waits. With it, nothing is
    shared but the git repository, the DVC remote and Prefect: the worker clones
    `repository` at `revision` into a temporary folder, puts in the retraining run's
    params.yaml and dvc.lock (`params`, `lock`: their text), pulls the stage's inputs from
    the DVC remote, runs the stage, pushes the models to the remote, and returns the new
    dvc.lock text and the uncached outputs (reports/train.json). That is the flow's result:
    Prefect's result storage must be a place both machines reach (e.g.
    PREFECT_DEFAULT_RESULT_STORAGE_BLOCK=s3-bucket/results).
    """
    if repository is None:
        with held_for(lock_held):
            return stage_task("train")(Path(project).resolve())
    if not (revision and params and lock):
        raise FlowsentryError("train_flow: a repository needs revision, params and lock")
    logger = get_run_logger()
    with tempfile.TemporaryDirectory(prefix="flowsentry-train-") as scratch:
        root = Path(scratch) / "project"
        _git(Path(scratch), "clone", "--quiet", repository, str(root))
        _git(root, "checkout", "--quiet", revision)
        (root / "params.yaml").write_text(params)
        (root / "dvc.lock").write_text(lock)
        pulled = versioning.pull(root, TRAIN_INPUTS)
        logger.info("pulled the training inputs from the DVC remote: %d files", pulled)
        result = stage_task("train")(root)
        pushed = push_task(root)
        return {
            **result,
            "pushed": pushed["pushed"],
            "lock": (root / "dvc.lock").read_text(),
            "uncached": versioning.uncached_outputs(root, "train"),  # reports/train.json
        }


def _git(where: Path, *args: str) -> str:
    """Run git in `where`; a failure names the command and git's own message."""
    done = subprocess.run(
        ["git", *args], cwd=where, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise FlowsentryError(f"git {' '.join(args)}: {message[-1] if message else 'failed'}")
    return done.stdout.strip()


def _code_committed(root: Path) -> None:
    """A worker that clones the repository trains the committed code: refuse otherwise."""
    changed = _git(root, "status", "--porcelain", "--", "src", "dvc.yaml")
    if changed:
        raise FlowsentryError(
            f"{root}: commit the code first: the training worker clones the repository "
            f"and would not see these changes:\n{changed}"
        )


@flow(name="flowsentry-retrain", log_prints=True)
def retrain(
    project: str = ".",
    flowbench_dir: str | None = None,
    inbox_dir: str | None = None,
    push: bool = True,
    train_deployment: str | None = None,
    train_repository: str | None = None,
    lock_timeout_s: float = 3600,
) -> dict[str, Any]:
    """Run the DVC pipeline of `project` stage by stage; push the data to the DVC remote.

    flowbench_dir: the Flow-Bench data/ folder (else FLOWBENCH_DIR, else the download
    URL in params.yaml). inbox_dir: sort new run CSVs into the raw data first.
    train_deployment: run the train stage as that deployment (e.g. "flowsentry-train/gpu").
    train_repository: the git URL that deployment's worker clones (no shared file
    system: inputs and models travel through the DVC remote); None: the worker shares
    the project folder.
    """
    logger = get_run_logger()
    root = Path(project).resolve()
    if not versioning.is_dvc_project(root):
        raise FlowsentryError(f"{root}: not a DVC project (needs dvc.yaml and .dvc/)")
    if train_deployment and train_repository is not None:
        _code_committed(root)  # before any stage runs, not after the data stages
    source = str(Path(flowbench_dir).resolve()) if flowbench_dir else None
    cfg = load_config(root / "params.yaml").under(root)
    stages: dict[str, Any] = {}
    with project_lock(cfg.paths.lock, lock_timeout_s):
        arrivals = inbox_task(cfg, Path(inbox_dir)) if inbox_dir else None
        if arrivals and arrivals.quarantined:
            create_markdown_artifact(
                key="inbox-quarantine",
                markdown="\n".join(
                    f"- {q.workflow}/{q.run}: {q.reason}" for q in arrivals.quarantined
                ),
                description="New trace files put in quarantine",
            )
        for stage in stage_order(root / "dvc.yaml"):  # dvc.yaml's order, nothing of ours
            if stage == "train" and train_deployment:
                stages[stage] = _remote_train(train_deployment, root, train_repository)
                continue
            try:
                stages[stage] = stage_task(stage)(
                    root, force=stage == "ingest", flowbench_dir=source
                )
            except StageFailed:
                if stage == "validate":
                    docs = (cfg.paths.reports / "data_docs").resolve()
                    create_link_artifact(
                        key="data-docs",
                        link=f"file://{docs}",
                        description="Validation failed: Great Expectations Data Docs",
                    )
                raise
        pushed = push_task(root) if push else {"remote": None, "pushed": 0}
    decision = GateReport.read_or_none(cfg.paths)
    promoted = stages["gate"]["ran"] and decision is not None and decision.promoted
    package = PackageReport.read_or_none(cfg.paths)
    bento = package.bento if package and promoted and stages["package"]["ran"] else None
    logger.info("gate: %s; bento: %s", decision.decision if decision else None, bento)
    _summary(cfg.paths, stages, pushed)
    return {
        "inbox": as_json(arrivals),
        "stages": stages,
        "ingest": as_json(IngestReport.read_or_none(cfg.paths)),
        "train": as_json(TrainReport.read_or_none(cfg.paths)),
        "evaluate": as_json(EvaluationReport.read_or_none(cfg.paths)),
        "gate": as_json(decision),
        "bento": bento,
        "push": pushed,
        "data_version": _locked_outputs(root),
    }


@task(name="train on the GPU pool")
def _remote_train(deployment: str, root: Path, repository: str | None = None) -> dict[str, Any]:
    """Run the `train` flow's deployment (a GPU work pool) on this project and wait.

    With `repository`: push the training inputs to the DVC remote, let the worker train
    from its own clone (see `train_flow`), then take its dvc.lock and pull the models.
    """
    from prefect.deployments import run_deployment

    cfg = load_config(root / "params.yaml").under(root)
    parameters: dict[str, Any] = {"project": str(root), "lock_held": str(cfg.paths.lock)}
    if repository is not None:
        _code_committed(root)  # again: the code may have changed while the data stages ran
        versioning.push(root)  # the worker pulls the training inputs from the remote
        parameters = {
            "repository": repository,
            "revision": _git(root, "rev-parse", "HEAD"),
            "params": (root / "params.yaml").read_text(),
            "lock": (root / "dvc.lock").read_text(),
        }
    run = run_deployment(deployment, parameters=parameters, timeout=None)
    if not run.state or not run.state.is_completed():
        raise StageFailed(f"training deployment {deployment}: flow run {run.name} {run.state}")
    result = run.state.result()
    if repository is not None:
        for relative, text in result.pop("uncached").items():
            target = (root / relative).resolve()
            if not target.is_relative_to(root.resolve()):
                raise FlowsentryError(f"training worker: output {relative} is outside {root}")
            with atomic_path(target) as tmp:
                tmp.write_text(text)
        with atomic_path(root / "dvc.lock", ".lock") as tmp:
            tmp.write_text(result.pop("lock"))
        versioning.pull(root, ("train",))  # the models the worker pushed
    return result
