"""The reports the stages hand each other: one pydantic model per report.

A stage returns its report and writes it with `write(paths)`; every reader (the gate, the
CLI, the Prefect flows, the sweep and the studies) loads it with `read(paths)` and reads
fields, not keys. Where a report lies is named once, in params.yaml's `paths`
(`ingest_report`, `validation_report`, `prepare_report`, `augment_report`,
`train_report`, `evaluate_report`, `gate_report`, `package_report`, `icl_report`,
`inbox_report`). The
JSON is the DVC metrics file, so `dvc metrics diff` compares the same fields across runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from flowsentry.config import Paths
from flowsentry.errors import DataError
from flowsentry.io import write_json


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Report(_Model):
    path_key: ClassVar[str]  # the `paths` entry that names the file

    @classmethod
    def location(cls, paths: Paths) -> Path:
        """Where the report lies: its `paths` entry."""
        return getattr(paths, cls.path_key)

    def write(self, paths: Paths) -> Path:
        """Write atomically to its `paths` entry; returns the path."""
        target = self.location(paths)
        write_json(self.model_dump(mode="json"), target)
        return target

    @classmethod
    def read(cls, paths: Paths) -> Self:
        """The report at its `paths` entry; DataError naming the file, the field and the
        reason when it is missing or not this report."""
        target = cls.location(paths)
        try:
            return cls.model_validate_json(target.read_bytes())
        except OSError as exc:
            raise DataError(target, f"cannot read the report ({exc.strerror or exc})") from None
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or None
            raise DataError(target, f"not a {cls.__name__}: {error['msg']}", field) from None

    @classmethod
    def read_or_none(cls, paths: Paths) -> Self | None:
        """The report, or None where no stage has written one yet (a broken one raises)."""
        return cls.read(paths) if cls.location(paths).exists() else None


# Metrics -------------------------------------------------------------------------


class Confusion(_Model):
    tn: int
    fp: int
    fn: int
    tp: int


class Metrics(_Model):
    """evaluation.metrics.binary_metrics: one split's figures at one threshold."""

    jobs: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float | None  # None where the jobs hold one class only
    pr_auc: float | None
    threshold: float
    confusion: Confusion


class SplitMetrics(Metrics):
    """evaluation.metrics.report: + recall per anomaly type and figures per workflow."""

    recall_by_anomaly_type: dict[str, float] = {}
    by_workflow: dict[str, Metrics] = {}

    def on(self, workflow: str | None) -> Metrics | None:
        """These figures, or one workflow's (None where the split holds none of its jobs)."""
        return self if workflow is None else self.by_workflow.get(workflow)


class Bias(_Model):
    """P(anomalous) on inputs without evidence (evaluation.metrics.bias)."""

    p_anomalous: dict[str, float]
    gap: dict[str, float]
    mean_gap: float | None


class Latency(_Model):
    p50: float
    p99: float
    calls: int


class TestMetrics(SplitMetrics):
    """The test split's figures, + what the gate's floors also read."""

    jobs_per_second: float
    bias: Bias | None  # None where scores are not probabilities (isolation forest)
    latency_ms: Latency


class Short(_Model):
    """The headline figures of a sample of jobs."""

    jobs: int
    accuracy: float
    f1: float
    roc_auc: float | None


class RealTime(_Model):
    """A candidate scored live: each job with only the siblings finished before it."""

    val: Short
    test: Short


# ingest --------------------------------------------------------------------------


class IngestedTable(_Model):
    """One jobs table ingest wrote (stages/tables.py: one per source)."""

    kind: Literal["flowbench", "text", "stampede", "live"]
    runs: int
    jobs: int
    anomalous: int
    unlabelled: int
    operator_labels_applied: int  # labels from `flowsentry label` (paths.labels)
    anomaly_types: dict[str, int]
    tasks: int
    source: str | None = None  # a stampede table: the database it was read from
    still_running_not_read: list[str] = []  # a stampede table: wf_uuids not ended yet
    jobs_never_submitted: int = 0  # a stampede table: jobs of ended runs never submitted


class IngestReport(_Report):
    """reports/ingest.json: what each jobs table holds."""

    path_key: ClassVar[str] = "ingest_report"
    source: str | None  # where the Flow-Bench traces came from (None: no Flow-Bench table)
    tables: dict[str, IngestedTable]


# validate ------------------------------------------------------------------------


class ExpectationResult(_Model):
    """One expectation of the GX suite on one table (validation/runner.py)."""

    expectation: str
    column: str | list[str] | None
    level: str  # "row": failing rows are quarantined; "table": the table fails
    success: bool
    unexpected_count: int
    reason: str


class ValidatedTable(_Model):
    jobs: int
    clean: int
    quarantined: int
    quarantined_fraction: float
    quarantine_reasons: dict[str, int]
    expectations: int
    expectations_failed: int
    checks: list[ExpectationResult]


class ValidationReport(_Report):
    """reports/validation.json: each jobs table against the expectation suite."""

    path_key: ClassVar[str] = "validation_report"
    suite: str
    success: bool
    tables: dict[str, ValidatedTable]


# prepare -------------------------------------------------------------------------


class SplitCount(_Model):
    jobs: int
    anomalous: int
    anomalous_fraction: float


class SplitRecordCounts(_Model):
    """by_run: runs that kept the split the record gave them, new runs, recorded runs
    absent from the data (data/splits.record_splits)."""

    kept: int
    new: int
    absent: int


class ProfileNote(_Model):
    id: str
    tasks: int
    level_features: int


class TokenReport(_Model):
    """Tokens per job of the configured sentence (template, feature set), counted by
    `text.tokenizer` on a sample of training jobs."""

    tokenizer: str
    template: str
    feature_set: str
    jobs: int
    mean: float
    max: int


class PrepareReport(_Report):
    """reports/prepare.json: the splits, the profile of normal and sentence lengths."""

    path_key: ClassVar[str] = "prepare_report"
    template: str
    feature_set: str
    split_method: str
    unlabelled_jobs_as_context_only: int
    splits: dict[str, SplitCount]
    split_record: SplitRecordCounts | None  # by_run only
    profile: ProfileNote
    tokens_per_job: TokenReport


# augment -------------------------------------------------------------------------


class AugmentReport(_Report):
    """reports/augment.json: the augmented training set."""

    path_key: ClassVar[str] = "augment_report"
    jobs: int  # in the training split
    rows: int  # after augmentation
    by_kind: dict[str, int]
    anomalous_fraction: float


# train ---------------------------------------------------------------------------


class TrainedCandidate(_Model):
    threshold: float
    val: Short  # on the train.max_val_samples jobs its threshold was chosen on
    seconds: float
    path: str


class TrainReport(_Report):
    """reports/train.json: every candidate kind fitted and saved."""

    path_key: ClassVar[str] = "train_report"
    split_method: str
    candidates: dict[str, TrainedCandidate]
    total_seconds: float


# evaluate ------------------------------------------------------------------------


class SplitNote(_Model):
    method: str
    note: str


class EvaluatedCandidate(_Model):
    kind: str
    model: dict[str, Any]  # what it was trained from (base model, mode, data version)
    threshold: float
    val: SplitMetrics
    test: TestMetrics
    realtime: RealTime | None = None


class EarlyDetection(_Model):
    """evaluation.metrics.early_detection over the first k features, + the same jobs
    post-run and live."""

    features: list[str]
    jobs: int
    accuracy_by_k: list[float]
    first_correct_k_mean: float | None
    first_correct_k_median: float | None
    first_correct_k_histogram: dict[str, int]
    anomalous_detected_by_k: list[float]
    post_run: Short
    realtime: Short


class EvaluationReport(_Report):
    """reports/evaluate/metrics.json: every candidate on the same validation and test jobs."""

    path_key: ClassVar[str] = "evaluate_report"
    split: SplitNote
    workflows: list[str]
    primary_metric: str
    ranking_on_validation: list[str]
    candidates: dict[str, EvaluatedCandidate]
    online: dict[str, EarlyDetection]
    paper_sft_accuracy_random_split: dict[str, float]


# gate ----------------------------------------------------------------------------


class Check(_Model):
    check: str
    value: Any
    threshold: Any
    verdict: Literal["pass", "fail"]
    note: str


class RankedCandidate(_Model):
    candidate: str
    kind: str
    rank: int
    val: dict[str, float | None]
    test: dict[str, float | None]
    realtime: RealTime | None
    why: str


class GateCandidate(_Model):
    name: str | None
    model_dir: str | None
    metrics: dict[str, Any] | None


class Champion(_Model):
    tag: str | None
    metrics: dict[str, Any] | None
    note: str | None


class GateReport(_Report):
    """reports/gate.json: the tournament's ranking, checks and decision."""

    path_key: ClassVar[str] = "gate_report"
    decision: Literal["promote", "reject"]
    primary_metric: str
    rank_on: str
    workflow: str | None  # judged on this workflow's labelled runs alone (None: every job)
    split: SplitNote | None
    winner: str | None
    checks: list[Check]
    candidates: list[RankedCandidate]
    candidate: GateCandidate
    champion: Champion
    promoted_tag: str | None

    @property
    def promoted(self) -> bool:
        return self.decision == "promote"


# package -------------------------------------------------------------------------


class PackageReport(_Report):
    """reports/package.json: the Bento built around the registry's champion."""

    path_key: ClassVar[str] = "package_report"
    bento: str
    model: str
    gate_decision: str | None
    path: str
    serve: dict[str, Any]


# icl (pipelines/icl/dvc.yaml) ----------------------------------------------------


class IclRow(_Model):
    """One prompt configuration scored on the test sample (category read at 0.5)."""

    fine_tuned: bool
    examples: str  # none, negative, positive, balanced or nearest
    n_examples: int
    examples_kept_mean: float  # examples that fit the context, per prompt
    accuracy: float
    f1: float
    roc_auc: float | None
    jobs_per_second: float


class IclSaved(_Model):
    """The ICL detector saved for deployment, its threshold chosen on validation."""

    path: str
    examples: str
    threshold: float
    val: Short


class IclReport(_Report):
    """reports/icl/metrics.json: the zero/few-shot table, before and after LoRA."""

    path_key: ClassVar[str] = "icl_report"
    model: str
    template: str
    feature_set: str
    split: str
    test_jobs: int
    workflows: list[str]
    lora_train_seconds: float | None
    saved: IclSaved
    rows: list[IclRow]
    paper_1000genome: dict[str, dict[str, tuple[float, float, float]]]  # accuracy, F1, AUC


# inbox ---------------------------------------------------------------------------


class InboxFile(_Model):
    workflow: str
    run: str
    file: str
    kept_as: str | None = None  # skipped or quarantined: where the file went
    reason: str | None = None  # quarantined: why
    note: str | None = None  # skipped: why


class InboxReport(_Report):
    """reports/inbox.json: each file of the inbox accepted, skipped or quarantined (also
    written when a step failed: then with what was done before, and the error)."""

    path_key: ClassVar[str] = "inbox_report"
    accepted: list[InboxFile] = []
    skipped: list[InboxFile] = []
    quarantined: list[InboxFile] = []
    error: str | None = None


def as_json(report: BaseModel | None) -> dict[str, Any] | None:
    """A report as plain JSON data (Prefect results, artifacts); None stays None."""
    return None if report is None else json.loads(report.model_dump_json())
