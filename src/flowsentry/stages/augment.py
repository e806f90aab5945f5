"""Augment: the prepared training split -> the augmented training set."""

from __future__ import annotations

import logging

from flowsentry.config import Config
from flowsentry.data.evidence import read_profile
from flowsentry.io import read_table, write_parquet
from flowsentry.reports import AugmentReport
from flowsentry.text.augmentation import augment
from flowsentry.text.sentences import features_of

log = logging.getLogger(__name__)


def run(cfg: Config) -> AugmentReport:
    """Write `paths.augmented/train.parquet`; returns (and writes) the counts per
    augmentation kind."""
    source = cfg.paths.split("train")
    train = read_table(source, remedy="flowsentry prepare")
    params = cfg.augment
    if params.permute_fraction > 0 and cfg.text.template != "compact":
        log.warning("permuting feature order with the '%s' template", cfg.text.template)
    out = augment(
        train,
        cfg.text.template,
        features_of(cfg.text.feature_set),
        cfg.base.seed,
        record_features=features_of(cfg.train.features),
        profile=read_profile(cfg.paths.profile),
        prefix_fraction=params.prefix_fraction,
        empty_fraction=params.empty_fraction,
        permute_fraction=params.permute_fraction,
        rebalance=params.rebalance,
        realtime_fraction=params.realtime_fraction,
    )
    write_parquet(out, cfg.paths.augmented / "train.parquet", [source, cfg.paths.profile])
    kinds = out["augmentation"].value_counts()
    report = AugmentReport(
        jobs=len(train),
        rows=len(out),
        by_kind={str(k): int(v) for k, v in kinds.items()},
        anomalous_fraction=round(float(out["label"].mean()), 4),
    )
    report.write(cfg.paths)
    log.info("augmented %d jobs to %d rows %s", len(train), len(out), report.by_kind)
    return report
