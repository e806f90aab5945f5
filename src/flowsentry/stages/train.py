"""Train: fit every candidate kind in `train.candidates`; save each under `paths.models`.

Each candidate learns from the same augmented training split (the language model reads
its sentences, the feature detectors its records, partial ones included: see
text/augmentation.py) and chooses its threshold the same way, on the same validation jobs
(`train.max_val_samples` of them, stratified).
"""

from __future__ import annotations

import logging
import time

from flowsentry import versioning
from flowsentry.config import Config
from flowsentry.data.evidence import read_profile
from flowsentry.data.splits import stratified_sample
from flowsentry.io import file_digest, read_table
from flowsentry.models.baselines import workflow_weights
from flowsentry.models.detector import Detector
from flowsentry.models.kinds import KINDS
from flowsentry.models.loading import create_detector
from flowsentry.reports import TrainedCandidate, TrainReport

log = logging.getLogger(__name__)


def run(cfg: Config, progress: bool = True) -> TrainReport:
    """Fit and save every candidate; writes its report (`paths.train_report`)."""
    started = time.perf_counter()
    augmented = read_table(
        cfg.paths.augmented / "train.parquet",
        [cfg.paths.split("train")],
        remedy="flowsentry augment",
    )
    val = stratified_sample(
        read_table(cfg.paths.split("val")), cfg.train.max_val_samples, cfg.base.seed
    )
    version = {
        **versioning.data_version(cfg),
        "train_sha256": file_digest(cfg.paths.split("train")),
        "augmented_sha256": file_digest(cfg.paths.augmented / "train.parquet"),
        "val_sha256": file_digest(cfg.paths.split("val")),
    }
    profile = read_profile(cfg.paths.profile)  # fitted on train; saved with every model
    adapt = cfg.train.adapt
    if adapt.workflow is not None:
        if adapt.workflow not in set(augmented["workflow"]):
            log.warning(
                "train.adapt.workflow: no labelled training job of '%s' yet: every workflow "
                "weighs the same", adapt.workflow,
            )  # fmt: skip
        augmented = workflow_weights(augmented, adapt.workflow, adapt.share)
    trained: dict[str, TrainedCandidate] = {}
    fitted: dict[str, Detector] = {}
    # registry order: a kind that builds on another (hybrid on sft) comes after it
    for kind in sorted(cfg.train.candidates, key=list(KINDS).index):
        began = time.perf_counter()
        detector = create_detector(kind, cfg)
        detector.profile = profile
        detector.reuse(fitted)
        log.info("training %s on %d augmented rows", kind, len(augmented))
        detector.fit(augmented, val, cfg.train.threshold)
        detector.data_version = version
        detector.save(cfg.paths.models / kind)
        fitted[kind] = detector
        trained[kind] = TrainedCandidate(
            threshold=round(detector.threshold_, 6),
            val=detector.validation_,
            seconds=round(time.perf_counter() - began, 1),
            path=str(cfg.paths.models / kind),
        )
        log.info("saved %s (val F1 %.4f)", cfg.paths.models / kind, detector.validation_["f1"])
    report = TrainReport(
        split_method=cfg.split.method,
        candidates=trained,
        total_seconds=round(time.perf_counter() - started, 1),
    )
    report.write(cfg.paths)
    return report
