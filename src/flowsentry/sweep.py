"""A sweep: candidates (workflow x model x mode), each trained and evaluated on its own.

The data of each workflow is prepared once under `paths.sweep/<workflow>/data`; each
candidate writes its model and reports under `paths.sweep/<workflow>/<model>-<mode>`.
`flows/sweep.py` runs the candidates in parallel on a Dask cluster and sends the best
(by the gate's primary metric) through the gate. Everything here is the same stage
functions `dvc.yaml` runs, on other paths.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsentry import pipeline
from flowsentry.config import Config
from flowsentry.errors import FlowsentryError
from flowsentry.experiments import workspace


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
    trained, report = ran["train"], ran["evaluate"]
    keep = ("accuracy", "f1", "roc_auc", "pr_auc")
    return {
        "candidate": candidate.name,
        "workflow": candidate.workflow,
        "model": candidate.model,
        "mode": candidate.mode,
        "val": {k: report["candidates"]["sft"]["val"].get(k) for k in keep},
        "test": {k: report["candidates"]["sft"]["test"].get(k) for k in keep},
        "train_seconds": trained.get("total_seconds"),
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
