"""Prefect retraining flow over the same stage functions as dvc.yaml.

    python flows/retrain.py --flowbench-dir ../shared/flowbench

ingest -> validate -> prepare -> augment -> train -> evaluate -> gate -> package (when
promoted). Each task wraps one `flowsentry.stages` function. Training and evaluation are
cached on the hashes of their input data and params, so a re-run with nothing new trains
nothing. A file lock keeps two overlapping runs from touching the data or the registry at
once. A failed validation stops the flow before training, with the Data Docs linked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from filelock import FileLock
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from flowsentry import versioning
from flowsentry.config import Config, load_config, parse_overrides
from flowsentry.errors import ValidationFailed
from flowsentry.models.sft import file_md5
from flowsentry.stages import (
    augment,
    evaluate,
    gate,
    inbox,
    ingest,
    package,
    prepare,
    train,
    validate,
)


def _md5(path: Path) -> str:
    return file_md5(path) if path.exists() else "missing"


def _params(cfg: Config, *sections: str) -> str:
    dumped = cfg.model_dump(mode="json", by_alias=True)
    return hashlib.sha256(
        json.dumps([dumped[s] for s in sections], sort_keys=True).encode()
    ).hexdigest()[:16]


def train_key(_context: Any, parameters: dict[str, Any]) -> str:
    """Same training data, validation data and params -> the same model: skip training."""
    cfg: Config = parameters["cfg"]
    return "train-" + "-".join(
        [
            _md5(cfg.paths.augmented / "train.parquet"),
            _md5(cfg.paths.prepared / "val.parquet"),
            _params(cfg, "base", "text", "train"),
        ]
    )


def evaluate_key(_context: Any, parameters: dict[str, Any]) -> str:
    """Same model, test data and params -> the same evaluation."""
    cfg: Config = parameters["cfg"]
    return "evaluate-" + "-".join(
        [
            *(_md5(cfg.paths.models / kind / "flowsentry.json") for kind in cfg.train.candidates),
            _md5(cfg.paths.prepared / "test.parquet"),
            _params(cfg, "base", "evaluate", "gate"),
        ]
    )


def _models_gone(cfg: Config) -> bool:
    """A trained candidate is missing (a cached training result must not stand)."""
    return any(
        not (cfg.paths.models / kind / "flowsentry.json").exists() for kind in cfg.train.candidates
    )


inbox_task = task(inbox.run, name="inbox", retries=2, retry_delay_seconds=10)
ingest_task = task(ingest.run, name="ingest", retries=2, retry_delay_seconds=10)
prepare_task = task(prepare.run, name="prepare")
augment_task = task(augment.run, name="augment")
train_task = task(train.run, name="train", cache_key_fn=train_key, persist_result=True)
evaluate_task = task(evaluate.run, name="evaluate", cache_key_fn=evaluate_key, persist_result=True)
gate_task = task(gate.run, name="gate")
package_task = task(package.run, name="package", retries=1)


@task(name="version", retries=2, retry_delay_seconds=10)
def version_task(cfg: Config, stages: list[str], commit: bool) -> dict[str, Any]:
    """DVC hashes of the data now; with `commit`, record `stages` in dvc.lock and push."""
    logger = get_run_logger()
    result: dict[str, Any] = {"stages": stages, "hashes": versioning.data_version(cfg)}
    if commit:
        root = Path.cwd()
        result["committed"] = versioning.commit(stages, root)
        result["push"] = versioning.push(root)
        logger.info(
            "dvc.lock: %d outputs of %s committed; %d files pushed to DVC remote '%s'",
            len(result["committed"]),
            "/".join(stages),
            result["push"]["pushed"],
            result["push"]["remote"],
        )
    logger.info("data version after %s: %s", "/".join(stages), result["hashes"])
    return result


@task(name="train on the GPU pool")
def remote_train_task(
    deployment: str, cfg: Config, params: str, overrides: dict[str, Any] | None
) -> Any:
    """Run the `train` flow's deployment (a GPU work pool) and wait for it."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        deployment, parameters={"params": params, "overrides": overrides}, timeout=None
    )
    if not run.state or not run.state.is_completed():
        raise RuntimeError(f"training deployment {deployment}: flow run {run.name} {run.state}")
    return json.loads((cfg.paths.reports / "train.json").read_text())


@task(name="validate")
def validate_task(cfg: Config) -> dict[str, Any]:
    """Validate; on failure link the Data Docs before stopping the flow."""
    try:
        return validate.run(cfg)
    except ValidationFailed:
        docs = (cfg.paths.reports / "data_docs").resolve()
        create_link_artifact(
            key="data-docs",
            link=f"file://{docs}",
            description="Validation failed: Great Expectations Data Docs",
        )
        raise


def _summary(
    report: dict[str, Any], decision: dict[str, Any], bento: str | None, data: dict[str, Any]
) -> str:
    rows = [
        f"Split: {report['split']['method']} ({report['split']['note']})",
        "",
        "| detector | val F1 | test accuracy | test F1 | test ROC-AUC |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows += [
        f"| {name} | {c['val']['f1']} | {c['test']['accuracy']} | {c['test']['f1']} | "
        f"{c['test']['roc_auc']} |"
        for name in report["ranking_on_validation"]
        for c in [report["candidates"][name]]
    ]
    checks = ["| check | value | threshold | verdict |", "| --- | --- | --- | --- |"]
    checks += [
        f"| {c['check']} | {c['value']} | {c['threshold']} | {c['verdict']} |"
        for c in decision["checks"]
    ]
    checks += ["", f"Winner on validation: {decision.get('winner')}"]
    return "\n".join(
        [
            "# flowsentry retraining",
            "",
            *rows,
            "",
            f"## Gate: {decision['decision']} {decision.get('promoted_tag') or ''}",
            "",
            *checks,
            "",
            "## Data (DVC hashes)",
            "",
            *[f"- {name}: `{value}`" for name, value in data["hashes"].items()],
            f"- pushed to DVC remote: {data['push']['remote']} ({data['push']['url']})"
            if "push" in data
            else "- not pushed (see the flow log for why dvc.lock was not written)",
            "",
            "Plots: `reports/evaluate/png/` (ROC, precision-recall, confusion, early detection).",
            f"Bento: `{bento}`" if bento else "No new Bento (nothing promoted).",
        ]
    )


def _committable(params: str, overrides: dict[str, Any] | None) -> str | None:
    """Why this run must not write dvc.lock, or None when it may."""
    root = Path.cwd()
    if not versioning.is_dvc_project(root):
        return f"{root} is not a DVC project (no dvc.yaml or .dvc/)"
    if Path(params).resolve() != (root / "params.yaml").resolve():
        return f"params {params} is not the params.yaml dvc.yaml reads"
    if overrides:
        return f"overrides {sorted(overrides)} differ from params.yaml"
    return None


@flow(name="flowsentry-train", log_prints=True)
def train_flow(params: str = "params.yaml", overrides: dict[str, Any] | None = None) -> Any:
    """Fine-tune only: the step a GPU work pool runs for `retrain` (see prefect.yaml)."""
    cfg = load_config(Path(params), overrides)
    model_gone = _models_gone(cfg)
    return train_task.with_options(refresh_cache=model_gone)(cfg, progress=False)


@flow(name="flowsentry-retrain", log_prints=True)
def retrain(
    params: str = "params.yaml",
    flowbench_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    bentofile: str = "bentofile.yaml",
    inbox_dir: str | None = None,
    version_data: bool = True,
    train_deployment: str | None = None,
    lock_timeout_s: float = 3600,
) -> dict[str, Any]:
    """Retrain on the current traces; promote and package only when the gate says so.

    version_data: record each stage's outputs in dvc.lock and push them to the DVC
    remote (in a DVC project with the default params only; the hashes are always
    recorded in the result and the model's metadata). train_deployment: run training
    as that deployment (e.g. "flowsentry-train/gpu" on a GPU work pool) instead of here.
    """
    logger = get_run_logger()
    cfg = load_config(Path(params), overrides)
    source = flowbench_dir or os.environ.get("FLOWBENCH_DIR")
    why_not = _committable(params, overrides) if version_data else "version_data is off"
    if why_not:
        logger.info("not writing dvc.lock: %s", why_not)
    commit = why_not is None
    with FileLock(str(cfg.paths.reports.parent / ".flowsentry.lock"), timeout=lock_timeout_s):
        arrivals = inbox_task(cfg, inbox_dir) if inbox_dir else None
        if arrivals and arrivals["quarantined"]:
            create_markdown_artifact(
                key="inbox-quarantine",
                markdown="\n".join(
                    f"- {q['workflow']}/{q['run']}: {q['reason']}" for q in arrivals["quarantined"]
                ),
                description="New trace files put in quarantine",
            )
        ingested = ingest_task(cfg, source, progress=False)
        raw_version = version_task(cfg, ["ingest"], commit, wait_for=[ingested])
        report = validate_task(cfg, wait_for=[raw_version])
        prepared = prepare_task(cfg, wait_for=[report])
        augmented = augment_task(cfg, wait_for=[prepared])
        data_version = version_task(
            cfg, ["validate", "prepare", "augment"], commit, wait_for=[augmented]
        )
        # A cached result stands only while its artifact does: refresh when it is gone.
        model_gone = _models_gone(cfg)
        if train_deployment:
            trained = remote_train_task(
                train_deployment, cfg, params, overrides, wait_for=[data_version]
            )
        else:
            trained = train_task.with_options(refresh_cache=model_gone)(
                cfg, progress=False, wait_for=[data_version]
            )
        metrics_gone = not (cfg.paths.reports / "evaluate" / "metrics.json").exists()
        evaluated = evaluate_task.with_options(refresh_cache=model_gone or metrics_gone)(
            cfg, progress=False, wait_for=[trained]
        )
        decision = gate_task(cfg, wait_for=[evaluated])
        promoted = decision["decision"] == "promote"
        bento = package_task(cfg, Path(bentofile))["bento"] if promoted else None
        model_version = version_task(
            cfg, ["train", "evaluate", "gate", *(["package"] if promoted else [])], commit
        )
    logger.info("gate: %s; bento: %s", decision["decision"], bento)
    create_markdown_artifact(
        markdown=_summary(evaluated, decision, bento, model_version),
        key="retrain-summary",
        description="Metrics, gate checks and the Bento",
    )
    return {
        "inbox": arrivals,
        "data_version": {"raw": raw_version, "data": data_version, "model": model_version},
        "ingest": ingested,
        "train": trained,
        "evaluate": evaluated,
        "gate": decision,
        "bento": bento,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=retrain.__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--flowbench-dir", default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Override a param."
    )
    args = parser.parse_args()
    retrain(
        params=args.params,
        flowbench_dir=args.flowbench_dir,
        overrides=parse_overrides(args.set) or None,
    )
