"""The paper's studies, each one command: transfer, catastrophic forgetting, debiasing.

Each prepares its workflows with `dvc.yaml` (ingest, validate, prepare), each in its
workspace under `reports/experiments/work/<workflow>` (`flowsentry.workspace`), fine-tunes with
`flowsentry.models.sft`, and writes `reports/experiments/<name>.json`.
Sample sizes are parameters so a CPU can run them; say what was used when quoting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from flowsentry.config import Config
from flowsentry.data.evidence import Profile, read_profile
from flowsentry.data.splits import stratified_sample
from flowsentry.evaluation import metrics as m
from flowsentry.io import write_json
from flowsentry.models import sft
from flowsentry.models.encoder import SentenceClassifier
from flowsentry.reports import EvaluationReport, TrainReport, as_json
from flowsentry.stages.evaluate import PAPER_SFT_ACCURACY
from flowsentry.text.augmentation import augment, uninformative_inputs
from flowsentry.text.sentences import features_of, sentences
from flowsentry.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    profile: Profile  # fitted on this workflow's training split


def one_workflow(cfg: Config, workflow: str) -> Config:
    """`cfg` reading one Flow-Bench workflow (no other source)."""
    return cfg.model_copy(
        update={
            "ingest": cfg.ingest.model_copy(
                update={"workflows": (workflow,), "text_sources": (), "stampede": (), "live": ()}
            ),
        }
    )


def prepared(cfg: Config, workflow: str, work: Path, flowbench_dir: str | Path | None) -> Splits:
    """`dvc.yaml` through `prepare` for one workflow, in the workspace `work/<workflow>`
    (DVC runs what is stale: nothing, once prepared under the same params and code)."""
    space = Workspace.open(work / workflow, one_workflow(cfg, workflow))
    space.run("prepare", flowbench_dir)
    paths = space.paths
    read = lambda name: pd.read_parquet(paths.split(name))  # noqa: E731
    return Splits(read("train"), read("val"), read("test"), read_profile(paths.profile))


class _Lab:
    """Shared plumbing: sampling, sentences, training, scoring."""

    def __init__(
        self,
        cfg: Config,
        flowbench_dir: str | Path | None,
        n_train: int,
        n_test: int,
        progress: bool,
    ):
        self.cfg, self.flowbench_dir, self.progress = cfg, flowbench_dir, progress
        self.work = cfg.paths.reports / "experiments" / "work"
        self.n_train, self.n_test = n_train, n_test
        self.template = cfg.text.template
        self.features = features_of(cfg.text.feature_set)
        self.seed = cfg.base.seed

    def splits(self, workflow: str) -> Splits:
        """The workflow's train/val/test from the pipeline run in its workspace."""
        return prepared(self.cfg, workflow, self.work, self.flowbench_dir)

    def classifier(self, model: Any, tokenizer: Any, profile: Profile) -> SentenceClassifier:
        """The in-memory model behind the detector contract (threshold 0.5)."""
        metadata = {
            "template": self.template,
            "features": self.features,
            "mode": "full",
            "max_length": self.cfg.train.max_length,
            "profile": profile.to_dict(),
        }
        return SentenceClassifier.from_model(
            model, tokenizer, metadata, device=next(model.parameters()).device.type
        )

    def texts(self, frame: pd.DataFrame, profile: Profile) -> list[str]:
        return sentences(frame, self.template, self.features, profile=profile)

    def train(
        self,
        splits: Splits,
        tag: str,
        mode: str | None = None,
        n: int | None = None,
        model: Any = None,
        tokenizer: Any = None,
        train_frame: pd.DataFrame | None = None,
    ):
        settings = self.cfg.train.model_copy(update={"mode": mode}) if mode else self.cfg.train
        frame = train_frame if train_frame is not None else splits.train
        train = stratified_sample(frame, n or self.n_train, self.seed)
        val = stratified_sample(splits.val, 500, self.seed)
        if "sentence" in train:
            texts = train["sentence"].tolist()
        else:
            texts = self.texts(train, splits.profile)
        started = time.perf_counter()
        model, tokenizer, summary = sft.fine_tune(
            texts,
            train["label"].astype(int).to_numpy(),
            self.texts(val, splits.profile),
            val["label"].astype(int).to_numpy(),
            settings,
            self.work / "checkpoints" / tag,
            data_version=tag,
            progress=self.progress,
            model=model,
            tokenizer=tokenizer,
            seed=self.seed,
            device=self.cfg.base.device,
        )
        summary["seconds"] = round(time.perf_counter() - started, 1)
        return model, tokenizer, summary

    def score(self, model: Any, tokenizer: Any, splits: Splits) -> dict[str, Any]:
        test = stratified_sample(splits.test, self.n_test, self.seed)
        classifier = self.classifier(model, tokenizer, splits.profile)
        scores = classifier.score_texts(self.texts(test, splits.profile))
        return m.binary_metrics(test["label"].astype(int).to_numpy(), scores, 0.5)

    def bias(self, model: Any, tokenizer: Any, profile: Profile) -> dict[str, Any]:
        classifier = self.classifier(model, tokenizer, profile)
        inputs = uninformative_inputs(self.template, self.features)
        return m.bias(dict(zip(inputs, classifier.score_texts(list(inputs.values())), strict=True)))


def _short(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("accuracy", "f1", "roc_auc")}


def transfer(
    cfg: Config,
    source: str,
    target: str,
    flowbench_dir: str | Path | None,
    n_train: int = 2000,
    n_target: int = 500,
    n_test: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune on `source`; test on `target` zero-shot, then after a short fine-tune on it."""
    lab = _Lab(cfg, flowbench_dir, n_train, n_test, progress)
    a, b = lab.splits(source), lab.splits(target)
    model, tokenizer, first = lab.train(a, f"transfer-{source}")
    result: dict[str, Any] = {
        "source": source,
        "target": target,
        "n_train": n_train,
        "n_target": n_target,
        "n_test": n_test,
        "template": lab.template,
        "feature_set": cfg.text.feature_set,
        "source_model": {
            "train_seconds": first["seconds"],
            "on_source": _short(lab.score(model, tokenizer, a)),
        },
    }
    result["zero_shot_on_target"] = _short(lab.score(model, tokenizer, b))
    scratch_model, scratch_tok, scratch = lab.train(b, f"scratch-{target}", n=n_target)
    result["scratch_on_target"] = {
        **_short(lab.score(scratch_model, scratch_tok, b)),
        "train_seconds": scratch["seconds"],
    }
    model, tokenizer, tuned = lab.train(
        b, f"transfer-{source}-{target}", n=n_target, model=model, tokenizer=tokenizer
    )
    result["fine_tuned_on_target"] = {
        **_short(lab.score(model, tokenizer, b)),
        "train_seconds": tuned["seconds"],
    }
    result["source_after_target"] = _short(lab.score(model, tokenizer, a))
    write_json(result, cfg.paths.reports / "experiments" / f"transfer_{source}_{target}.json")
    return result


def forgetting(
    cfg: Config,
    first: str,
    second: str,
    flowbench_dir: str | Path | None,
    n_train: int = 2000,
    n_test: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on `first`, continue on `second` (full / head / per-workflow LoRA adapters)."""
    import copy

    from peft import get_peft_model

    from flowsentry.models.sft import build_model

    lab = _Lab(cfg, flowbench_dir, n_train, n_test, progress)
    d1, d2 = lab.splits(first), lab.splits(second)
    result: dict[str, Any] = {
        "first": first,
        "second": second,
        "n_train": n_train,
        "n_test": n_test,
        "paper": {"sft_d1": 0.8155, "sft_d1_d2_full": 0.7065, "sft_d1_d2_head": 0.7305},
    }
    base_model, tokenizer, s1 = lab.train(d1, f"forget-{first}", mode="full")
    result["sft_d1"] = {
        **_short(lab.score(base_model, tokenizer, d1)),
        "train_seconds": s1["seconds"],
    }
    for mode in ("full", "head"):
        model, tok, s = lab.train(
            d2,
            f"forget-{first}-{second}-{mode}",
            mode=mode,
            model=copy.deepcopy(base_model),
            tokenizer=tokenizer,
        )
        result[f"sft_d1_d2_{mode}"] = {
            "on_first": _short(lab.score(model, tok, d1)),
            "on_second": _short(lab.score(model, tok, d2)),
            "train_seconds": s["seconds"],
            "trainable_parameters": s["trainable_parameters"],
        }

    # One LoRA adapter per workflow over one shared, frozen pretrained encoder.
    lora = sft.lora_config(cfg.train)
    tokenizer, base = build_model(cfg.train.model_copy(update={"mode": "full"}))
    shared = get_peft_model(base, lora, adapter_name=first)
    shared, tokenizer, sa = lab.train(
        d1, f"forget-lora-{first}", mode="lora", model=shared, tokenizer=tokenizer
    )
    before = lab.score(shared, tokenizer, d1)
    shared.add_adapter(second, lora)
    shared.set_adapter(second)
    shared, tokenizer, sb = lab.train(
        d2, f"forget-lora-{second}", mode="lora", model=shared, tokenizer=tokenizer
    )
    on_second = lab.score(shared, tokenizer, d2)
    shared.set_adapter(first)
    after = lab.score(shared, tokenizer, d1)
    result["lora_per_workflow"] = {
        "on_first_before": _short(before),
        "on_first_after_second_adapter": _short(after),
        "on_second": _short(on_second),
        "train_seconds": {first: sa["seconds"], second: sb["seconds"]},
        "trainable_parameters": sb["trainable_parameters"],
        "first_unchanged": before == after,  # every metric and the confusion, exactly
    }
    write_json(result, cfg.paths.reports / "experiments" / f"forgetting_{first}_{second}.json")
    return result


def debias(
    cfg: Config,
    workflow: str,
    flowbench_dir: str | Path | None,
    n_train: int = 2000,
    n_test: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """The same fine-tune with and without augmentation: bias gap, accuracy, early detection."""
    lab = _Lab(cfg, flowbench_dir, n_train, n_test, progress)
    splits = lab.splits(workflow)
    test = stratified_sample(splits.test, n_test, cfg.base.seed)
    result: dict[str, Any] = {
        "workflow": workflow,
        "n_train": n_train,
        "n_test": n_test,
        "augment": cfg.augment.model_dump(),
    }
    plain = splits.train.assign(augmentation="none")
    augmented = augment(
        splits.train,
        lab.template,
        lab.features,
        cfg.base.seed,
        prefix_fraction=max(cfg.augment.prefix_fraction, 0.25),
        empty_fraction=max(cfg.augment.empty_fraction, 0.02),
        permute_fraction=cfg.augment.permute_fraction,
        rebalance=cfg.augment.rebalance,
        profile=splits.profile,
    )
    for name, frame in (("without_augmentation", plain), ("with_augmentation", augmented)):
        model, tokenizer, s = lab.train(splits, f"debias-{name}", train_frame=frame)
        classifier = lab.classifier(model, tokenizer, splits.profile)
        labels = test["label"].astype(int).to_numpy()
        prefix = [classifier.score(test, k=k) for k in range(len(lab.features) + 1)]
        result[name] = {
            "test": _short(m.binary_metrics(labels, prefix[-1], 0.5)),
            "bias": lab.bias(model, tokenizer, splits.profile),
            "online_accuracy_by_k": m.early_detection(labels, prefix, 0.5)["accuracy_by_k"],
            "train_seconds": s["seconds"],
        }
    write_json(result, cfg.paths.reports / "experiments" / f"debias_{workflow}.json")
    return result


def quality(
    cfg: Config, workflow: str, flowbench_dir: str | Path | None, tag: str | None = None
) -> dict[str, Any]:
    """`dvc.yaml` through evaluate on one workflow (params.yaml otherwise), in its own
    workspace; reports every candidate on validation and test under the configured
    split (`--set split.method=random` for the paper's protocol)."""
    method = cfg.split.method
    tag = tag or f"{workflow}_{method}"
    root = cfg.paths.reports / "experiments" / "work" / f"quality-{tag}"
    space = Workspace.open(root, one_workflow(cfg, workflow))
    started = time.perf_counter()
    space.run("evaluate", flowbench_dir)
    trained = TrainReport.read(space.paths)
    report = EvaluationReport.read(space.paths)
    pick = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")
    result = {
        "workflow": workflow,
        "split": report.split.model_dump(),
        "template": cfg.text.template,
        "feature_set": cfg.text.feature_set,
        "features": cfg.train.features,
        "sft_train_jobs": cfg.train.max_train_samples,
        "augment": cfg.augment.model_dump(mode="json"),
        "ranking_on_validation": report.ranking_on_validation,
        "candidates": {
            name: {
                "val": {k: getattr(entry.val, k) for k in pick},
                "test": {k: getattr(entry.test, k) for k in pick},
                "test_jobs": entry.test.jobs,
                "recall_by_anomaly_type": entry.test.recall_by_anomaly_type,
                # scored live: only the siblings finished before each job
                "realtime": as_json(entry.realtime),
                "train_seconds": trained.candidates[name].seconds,
            }
            for name, entry in report.candidates.items()
        },
        "paper_sft_accuracy_random_split": PAPER_SFT_ACCURACY.get(workflow),
        "pipeline_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(result, cfg.paths.reports / "experiments" / f"quality_{tag}.json")
    return result
