"""The fine-tuned encoder detector (kind `sft`): job sentences -> P(anomalous).

Modes full, LoRA and head (see `flowsentry.models.sft` for the training loop). It
follows the detector contract of `flowsentry.models.detector`; sentences are built
from the job records (context added by the one shared function) with the template and
features saved in its metadata, so evaluation, gate and service read identical text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from flowsentry.config import TrainParams
from flowsentry.data.splits import stratified_sample
from flowsentry.errors import FlowsentryError
from flowsentry.io import atomic_dir, digest
from flowsentry.models.detector import LABELS, METADATA, Detector, Jobs, read_metadata
from flowsentry.text.sentences import features_of, sentences


class SentenceClassifier(Detector):
    """A fine-tuned sequence classifier over job sentences (full, LoRA or head mode)."""

    kind = "sft"

    def __init__(
        self,
        params: TrainParams | None = None,
        template: str = "compact",
        feature_set: str = "context",
        seed: int = 42,
        checkpoints: str | Path | None = None,
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        """An unfitted detector: `fit` fine-tunes `params.model` per `params`."""
        self.params = params or TrainParams()
        self.template = template
        self.feature_set = feature_set
        self.features = tuple(features_of(feature_set))
        self.seed = seed
        self.checkpoints = Path(checkpoints) if checkpoints else None
        self.batch_size = batch_size
        self.max_length = self.params.max_length
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = device  # where `fit` trains; then where the model is
        self.threshold_ = 0.5
        self._metadata_saved: dict[str, Any] = {}

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, metadata: dict[str, Any], device: str = "cpu"
    ) -> Self:
        """A detector around an in-memory model (experiments, tests, `load`)."""
        detector = cls.__new__(cls)
        detector.params = TrainParams(**metadata["params"]) if "params" in metadata else None
        detector.template = metadata["template"]
        detector.feature_set = metadata.get("feature_set", "")
        detector.features = tuple(metadata["features"])
        detector.seed = int(metadata.get("seed", 42))
        detector.checkpoints = None
        detector.batch_size = 64
        detector.max_length = int(metadata.get("max_length", 256))
        detector.model = model.eval()
        detector.tokenizer = tokenizer
        detector.device = device
        detector._restore(metadata)
        detector._metadata_saved = dict(metadata)
        return detector

    def _metadata(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in self._metadata_saved.items()
            if key not in ("kind", "features", "threshold", "validation", "data_version", "profile")
        } | {"template": self.template, "max_length": self.max_length}

    def _fit(self, train: pd.DataFrame, val: pd.DataFrame) -> None:
        """Fine-tune on `train` (sentences in column `sentence`, e.g. augmented rows;
        at most `params.max_train_samples` of them), early-stopping on `val`."""
        from flowsentry.models import device as devices
        from flowsentry.models import sft
        from flowsentry.models.pretrained import resolve

        p = self.params.on(devices.select(self.device).device)  # the GPU profile on cuda
        if self.checkpoints is None:
            raise FlowsentryError("sft: fit needs a checkpoint folder (paths.checkpoints)")
        sample = stratified_sample(train, p.max_train_samples, self.seed)
        texts = sample["sentence"].tolist() if "sentence" in sample else self.sentences(sample)
        model, tokenizer, summary = sft.fine_tune(
            texts,
            sample["label"].astype(int).to_numpy(),
            self.sentences(val),
            val["label"].astype(int).to_numpy(),
            p,
            self.checkpoints,
            data_version=digest(sample),
            seed=self.seed,
            device=self.device,
        )
        self.model, self.tokenizer, self.device = model.eval(), tokenizer, summary["device"]
        self._metadata_saved = {
            "base_model": p.model,
            "base_model_path": resolve(p.model),
            "mode": p.mode,
            "feature_set": self.feature_set,
            "labels": {str(k): v for k, v in LABELS.items()},
            "workflows": sorted(set(sample["workflow"].dropna())),
            "params": p.model_dump(mode="json"),
            "seed": self.seed,
            "training": summary,
        }

    def save(self, target: str | Path) -> Path:
        """Weights (safetensors), tokenizer and metadata, swapped in atomically."""
        target = Path(target)
        with atomic_dir(target) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            (tmp / METADATA).write_text(json.dumps(self.metadata, indent=2, default=str) + "\n")
        return target

    @classmethod
    def load(
        cls, folder: str | Path, device: str = "auto", batch_size: int = 64, int8: bool = False
    ) -> Self:
        """Load a model `save` wrote (safetensors only).

        `int8`: on CPU, quantise the linear layers to int8 (dynamic); measured 2.3x the
        jobs/s of float32 on a 2-core CPU, with scores that differ slightly.
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from flowsentry.models import device as devices
        from flowsentry.models.pretrained import resolve

        model_dir = Path(folder)
        metadata = read_metadata(model_dir)
        if metadata["kind"] != "sft":
            raise FlowsentryError(
                f"{model_dir / METADATA}: kind is '{metadata['kind']}', not 'sft'"
            )
        placement = devices.select(device)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if metadata["mode"] == "lora":
            from peft import PeftModel

            base = AutoModelForSequenceClassification.from_pretrained(
                resolve(metadata["base_model"]), num_labels=2, use_safetensors=True
            )
            model = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, use_safetensors=True
            )
        model.to(placement.device)
        if int8 and placement.device == "cpu":
            import warnings

            import torch

            with warnings.catch_warnings():  # eager dynamic quantisation is deprecated, not gone
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
            metadata = {**metadata, "int8": True}
        detector = cls.from_model(model, tokenizer, metadata, placement.device)
        detector.batch_size = batch_size
        return detector

    def sentences(self, jobs: Jobs, k: int | None = None) -> list[str]:
        """The sentences this model reads for `jobs` (context added when needed)."""
        return sentences(self.frame(jobs), self.template, self.features, k, self.profile)

    def score(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        """P(anomalous) per job, shape (n_jobs,)."""
        return self.score_texts(self.sentences(jobs, k))

    def score_texts(self, texts: Iterable[str], progress: bool = False) -> np.ndarray:
        """P(anomalous) for ready-made sentences, in batches, shape (n,)."""
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.empty(len(texts), dtype=np.float64)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="score", unit="batch", disable=not progress):
            batch = texts[start : start + self.batch_size]
            encoded = self.tokenizer(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**encoded).logits.float()
            out[start : start + len(batch)] = torch.softmax(logits, -1)[:, 1].cpu().numpy()
        return out
