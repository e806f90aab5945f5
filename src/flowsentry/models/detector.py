"""The detector contract every kind implements: fit, score, threshold, save, load.

Evaluation, the promotion gate, the service and the experiments use any detector
through this class (after pyod and scikit-learn): `from_config(kind, cfg)` builds an
unfitted one from params.yaml, `fit(train, val)` learns from the training split and
chooses `threshold_` on the validation split, `score(jobs, k)` returns P(anomalous) per
job (higher = more anomalous), `predict` applies the threshold. `jobs` is a DataFrame or
a list of dicts with raw Flow-Bench fields; fields a job does not have yet are simply
absent, and `k` keeps only the first k features (online detection). Sibling context is
added here, by one function, wherever a detector scores: evaluation, gate and service
see the same inputs. Which class serves which kind is the registry's
(`flowsentry.models.kinds`); no caller asks a detector what it is.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd

from flowsentry.data.context import CONTEXT_COLUMNS, add_context, has_context
from flowsentry.data.dag import DAG_COLUMNS, add_dag_evidence, has_dag
from flowsentry.data.evidence import (
    EVIDENCE_COLUMNS,
    Profile,
    add_evidence,
    has_evidence,
    profile_of,
)
from flowsentry.data.peers import AGNOSTIC_COLUMNS, add_agnostic, has_agnostic
from flowsentry.errors import FlowsentryError

if TYPE_CHECKING:
    from flowsentry.config import Config

log = logging.getLogger(__name__)

METADATA = "flowsentry.json"
LABELS = {0: "normal", 1: "anomalous"}

Jobs = pd.DataFrame | Sequence[Mapping[str, Any]]
ThresholdSetting = float | Literal["auto"]


def as_frame(jobs: Jobs) -> pd.DataFrame:
    """Job records as a DataFrame (a list of dicts or a DataFrame)."""
    if isinstance(jobs, pd.DataFrame):
        return jobs
    return pd.DataFrame(list(jobs))


def with_context(
    jobs: Jobs, features: Sequence[str], profile: Profile | None = None
) -> pd.DataFrame:
    """`jobs` as a frame, with sibling context added when `features` read it, and the
    evidence relative to `profile` when they read that (unless `profile` made it)."""
    frame = as_frame(jobs)
    reads_evidence = any(name in EVIDENCE_COLUMNS for name in features)
    reads_agnostic = any(name in AGNOSTIC_COLUMNS for name in features)
    if (reads_evidence or reads_agnostic) and profile is None:
        raise FlowsentryError("the features read evidence, but the detector holds no profile")
    if reads_agnostic and not has_agnostic(frame, profile):
        frame = add_agnostic(frame, profile)
    if any(name in CONTEXT_COLUMNS for name in features) and not has_context(frame):
        frame = add_context(frame, profile if reads_evidence else None)
    # the context the frame carries is kept (e.g. real-time context)
    elif reads_evidence and not has_evidence(frame, profile):
        frame = add_evidence(frame, profile)
    if any(name in DAG_COLUMNS for name in features) and not has_dag(frame):
        frame = add_dag_evidence(frame)  # from the `parents` column (all NaN without)
    return frame


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on (validation) labels."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    if len(thresholds) == 0:
        return 0.5
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def choose_threshold(labels: Any, scores: Any, setting: ThresholdSetting = "auto") -> float:
    """The decision threshold, chosen the same way for every kind, on validation only.

    `auto`: the F1-optimal threshold on the validation labels; a number: that number.
    A validation set with one class cannot rank thresholds: 0.5 is kept, with a warning.
    """
    if setting != "auto":
        return float(setting)
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        log.warning("validation holds one class: threshold stays 0.5 (use more runs)")
        return 0.5
    return best_f1_threshold(labels, np.asarray(scores, dtype="float64"))


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """A saved detector's `flowsentry.json`, or a one-line error naming the file."""
    path = Path(folder) / METADATA
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise FlowsentryError(f"{folder}: not a flowsentry model (no {METADATA})") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FlowsentryError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("kind"), str):
        raise FlowsentryError(f"{path}: field 'kind' is missing: not a flowsentry model")
    return metadata


class Detector(ABC):
    """A job-level anomaly detector of any kind (see the module docstring)."""

    kind: str
    #: scores are probabilities (the bias probe and a 0.5 default mean something)
    probabilistic: ClassVar[bool] = True

    features: tuple[str, ...]
    threshold_: float = 0.5
    validation_: dict[str, Any] | None = None
    #: DVC hashes / MD5s of the data it was trained on (set by the train stage)
    data_version: dict[str, Any] | None = None
    #: the training split's normal profile and decile edges (set by the train stage)
    profile: Profile | None = None

    @classmethod
    @abstractmethod
    def from_config(cls, kind: str, cfg: Config) -> Self:
        """An unfitted detector of `kind` (one of this class's kinds), configured by
        params.yaml (`create_detector` calls it for the registry's class of `kind`)."""

    def fit(
        self, train: pd.DataFrame, val: pd.DataFrame, threshold: ThresholdSetting = "auto"
    ) -> Self:
        """Learn from `train`; choose `threshold_` on `val` (labels in column `label`)."""
        from flowsentry.evaluation.metrics import binary_metrics

        self._fit(train, val)
        labels = val["label"].astype(int).to_numpy()
        scores = self.score(val)
        self.threshold_ = choose_threshold(labels, scores, threshold)
        metrics = binary_metrics(labels, scores, self.threshold_)
        self.validation_ = {k: metrics[k] for k in ("jobs", "accuracy", "f1", "roc_auc")}
        log.info(
            "%s: threshold %.4f on %d validation jobs (F1 %.4f)",
            self.kind,
            self.threshold_,
            len(labels),
            metrics["f1"],
        )
        return self

    def reuse(self, fitted: Mapping[str, Detector]) -> None:
        """Take what it can of the detectors the same train stage fitted before it, by
        kind (the hybrid scores with the `sft` candidate); most kinds take nothing."""
        return None

    @abstractmethod
    def _fit(self, train: pd.DataFrame, val: pd.DataFrame) -> None:
        """Learn the model's parameters (the threshold is chosen by `fit`)."""

    @abstractmethod
    def score(self, jobs: Jobs, k: int | None = None, *, progress: bool = False) -> np.ndarray:
        """P(anomalous) per job, shape (n_jobs,). `progress`: draw a progress bar where
        scoring takes a while (the language models' batches); every kind accepts it."""

    def score_prefixes(self, jobs: Jobs) -> list[np.ndarray]:
        """Scores from the first k features, k = 0 .. len(features) (online detection),
        the jobs' context and evidence computed once from their whole records."""
        frame = self.frame(jobs)
        return [self.score(frame, k=k) for k in range(len(self.features) + 1)]

    def predict(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        return (self.score(jobs, k) >= self.threshold_).astype(int)

    def uninformative_scores(self) -> dict[str, float]:
        """P(anomalous) on inputs that carry no evidence, by input name (the bias probe):
        a job record with no field known; a sentence model scores the paper's
        uninformative sentences instead."""
        return {"all_missing": float(self.score([{}])[0])}

    def frame(self, jobs: Jobs) -> pd.DataFrame:
        """`jobs` as this detector reads them (context added by the one function)."""
        return with_context(jobs, self.features, self.profile)

    @property
    def metadata(self) -> dict[str, Any]:
        """What `save` writes to flowsentry.json: kind, features, threshold, and more."""
        return {
            "kind": self.kind,
            "features": list(self.features),
            "threshold": self.threshold_,
            "validation": self.validation_,
            "data_version": self.data_version,
            "profile": None if self.profile is None else self.profile.to_dict(),
            **self._metadata(),
        }

    def _restore(self, metadata: dict[str, Any]) -> None:
        """Set the fitted state every kind saves in its metadata."""
        self.threshold_ = float(metadata.get("threshold", 0.5))
        self.validation_ = metadata.get("validation")
        self.data_version = metadata.get("data_version")
        self.profile = profile_of(metadata, f"{METADATA}: field 'profile'")

    def _metadata(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def save(self, target: str | Path) -> Path:
        """Write the detector into the folder `target`, atomically."""

    @classmethod
    @abstractmethod
    def load(cls, folder: str | Path, device: str = "auto") -> Self:
        """The detector `save` wrote (refusing files it cannot trust)."""
