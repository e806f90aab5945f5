"""Train: fine-tune the encoder on the augmented training set; save the model."""

from __future__ import annotations

import logging
import time
from typing import Any

from flowsentry import versioning
from flowsentry.config import Config
from flowsentry.io import write_json
from flowsentry.models import sft
from flowsentry.models.predictor import SentenceClassifier
from flowsentry.models.pretrained import resolve
from flowsentry.stages.validate import read_table
from flowsentry.text.sentences import features_of

log = logging.getLogger(__name__)


def settings_from(cfg: Config) -> sft.TrainSettings:
    t = cfg.train
    return sft.TrainSettings(
        model=t.model,
        mode=t.mode,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_fraction=t.warmup_fraction,
        max_length=t.max_length,
        early_stopping_patience=t.early_stopping_patience,
        device=t.device,
        seed=cfg.base.seed,
        lora=sft.LoraSettings(
            t.lora.r, t.lora.alpha, t.lora.dropout, t.lora.target_modules, t.lora.learning_rate
        ),
    )


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    """Fine-tune per params.yaml `train`; writes `paths.model` and reports/train.json."""
    started = time.perf_counter()
    train_path = cfg.paths.augmented / "train.parquet"
    train = sft.stratified_sample(
        read_table(train_path), cfg.train.max_train_samples, cfg.base.seed
    )
    val = sft.stratified_sample(
        read_table(cfg.paths.prepared / "val.parquet"), cfg.train.max_val_samples, cfg.base.seed
    )
    settings = settings_from(cfg)
    data_version = sft.file_md5(train_path)
    model, tokenizer, summary = sft.fine_tune(
        train["sentence"].tolist(),
        train["label"].to_numpy(),
        val["sentence"].tolist(),
        val["label"].astype(int).to_numpy(),
        settings,
        cfg.paths.checkpoints,
        data_version=data_version,
        progress=progress,
    )
    metadata: dict[str, Any] = {
        "kind": "sft",
        "base_model": settings.model,
        "base_model_path": resolve(settings.model),
        "mode": settings.mode,
        "template": cfg.text.template,
        "feature_set": cfg.text.feature_set,
        "features": list(features_of(cfg.text.feature_set)),
        "max_length": settings.max_length,
        "labels": {str(k): v for k, v in sft.LABELS.items()},
        "workflows": sorted(set(train["workflow"])),
        "data_version": {  # DVC hashes (as in dvc.lock) + the exact files trained on
            **versioning.data_version(cfg),
            "train_md5": data_version,
            "val_md5": sft.file_md5(cfg.paths.prepared / "val.parquet"),
        },
        "params": cfg.train.model_dump(mode="json"),
        "seed": cfg.base.seed,
        "threshold": 0.5,
    }
    classifier = SentenceClassifier(model, tokenizer, metadata, device=summary["device"])
    val_scores = classifier.score_texts(val["sentence"].tolist())
    threshold = (
        sft.best_threshold(val["label"].astype(int).to_numpy(), val_scores)
        if cfg.train.threshold == "auto"
        else float(cfg.train.threshold)
    )
    metadata["threshold"] = threshold
    metadata["training"] = summary
    save_model = model
    sft.save(save_model, tokenizer, cfg.paths.model, metadata)
    summary["threshold"] = threshold
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    write_json(summary, cfg.paths.reports / "train.json")
    log.info(
        "saved %s (val F1 %.4f, threshold %.3f)",
        cfg.paths.model,
        summary["val"].get("f1", float("nan")),
        threshold,
    )
    return summary
