"""The one predictor contract: job records in, anomaly scores out.

Evaluation, the promotion gate and the service use any detector through this
contract (after pyod): `score(jobs)` returns the probability that each job is
anomalous (higher = more anomalous), `predict(jobs)` applies `threshold`.
`jobs` is a DataFrame or a list of dicts with raw Flow-Bench fields; fields a job
does not have yet are simply absent (online detection).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from flowsentry.data.context import CONTEXT_COLUMNS, add_context, has_context
from flowsentry.errors import FlowsentryError
from flowsentry.text.sentences import sentences

METADATA = "flowsentry.json"
LABELS = {0: "normal", 1: "anomalous"}

Jobs = pd.DataFrame | Sequence[Mapping[str, Any]]


@runtime_checkable
class Predictor(Protocol):
    threshold: float

    def score(self, jobs: Jobs, k: int | None = None) -> np.ndarray: ...

    def predict(self, jobs: Jobs, k: int | None = None) -> np.ndarray: ...

    @property
    def metadata(self) -> dict[str, Any]: ...


def as_frame(jobs: Jobs) -> pd.DataFrame:
    """Job records as a DataFrame (a list of dicts or a DataFrame)."""
    if isinstance(jobs, pd.DataFrame):
        return jobs
    return pd.DataFrame(list(jobs))


class SentenceClassifier:
    """A fine-tuned sequence classifier over job sentences (full, LoRA or head mode)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        metadata: dict[str, Any],
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._metadata = metadata
        self.template: str = metadata["template"]
        self.features: tuple[str, ...] = tuple(metadata["features"])
        self.threshold: float = float(metadata.get("threshold", 0.5))
        self.max_length: int = int(metadata.get("max_length", 256))
        self.device = device
        self.batch_size = batch_size

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    @classmethod
    def load(
        cls, model_dir: str | Path, device: str = "auto", batch_size: int = 64, int8: bool = False
    ):
        """Load a model saved by `flowsentry.models.sft.save` (safetensors only).

        `int8`: on CPU, quantise the linear layers to int8 (dynamic); measured 2.3x the
        jobs/s of float32 on a 2-core CPU, with scores that differ slightly.
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from flowsentry.models import device as devices
        from flowsentry.models.pretrained import resolve

        model_dir = Path(model_dir)
        meta_path = model_dir / METADATA
        if not meta_path.exists():
            raise FlowsentryError(f"{model_dir}: not a flowsentry model (no {METADATA})")
        metadata = json.loads(meta_path.read_text())
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
        return cls(model, tokenizer, metadata, placement.device, batch_size)

    def sentences(self, jobs: Jobs, k: int | None = None) -> list[str]:
        """The sentences this model reads for `jobs` (context added when needed)."""
        frame = as_frame(jobs)
        if any(name in CONTEXT_COLUMNS for name in self.features) and not has_context(frame):
            frame = add_context(frame)
        return sentences(frame, self.template, self.features, k)

    def score(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        """P(anomalous) per job, shape (n_jobs,)."""
        return self.score_texts(self.sentences(jobs, k))

    def predict(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        return (self.score(jobs, k) >= self.threshold).astype(int)

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
