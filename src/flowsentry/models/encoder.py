"""The fine-tuned encoder detector (kind `sft`): job sentences -> P(anomalous).

Modes full, LoRA and head (see `flowsentry.models.sft` for the training loop). It
follows the detector contract of `flowsentry.models.detector`; sentences are built
from the job records (context added by the one shared function) with the template and
features saved in its metadata, so evaluation, gate and service read identical text.

After fine-tuning, the model is exported to ONNX (float32, and int8 where that
scores validation faster with no F1 loss beyond `train.int8_max_f1_loss`: static
quantisation, so a job scores the same whatever it is batched with); the chosen
file is what chooses the threshold, what `save` writes as `model.onnx` beside the
safetensors weights, and what `load` runs with onnxruntime: the artifact evaluate and the
gate judge is the one the service runs.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from flowsentry.config import TrainParams
from flowsentry.data.splits import stratified_sample
from flowsentry.errors import FlowsentryError
from flowsentry.io import atomic_dir, digest
from flowsentry.models.detector import LABELS, METADATA, Detector, Jobs, read_metadata
from flowsentry.text.augmentation import uninformative_inputs
from flowsentry.text.sentences import features_of, sentences

if TYPE_CHECKING:
    from flowsentry.config import Config

ONNX_FILE = "model.onnx"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CALIBRATION_SENTENCES = 256  # training sentences that fix the int8 activation scales


class OnnxModel:
    """An exported classifier run by onnxruntime: token ids in, logits out."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.path = Path(path)
        options = ort.SessionOptions()
        threads = os.environ.get("OMP_NUM_THREADS", "").strip()
        if threads.isdigit() and int(threads) > 0:  # onnxruntime ignores it: pass it on
            options.intra_op_num_threads = int(threads)  # (serving/threads.py sets it)
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def logits(self, encoded: Any) -> np.ndarray:
        feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(["logits"], feed)[0]


def export_onnx(
    model: Any,
    tokenizer: Any,
    target: Path,
    calibration: list[str] | None = None,
    max_length: int = 128,
) -> dict[str, Path]:
    """Write `model` (a sequence classifier; LoRA merged) to `target`/model.fp32.onnx and,
    given `calibration` sentences, its static int8 quantisation to model.int8.onnx.

    Static, not dynamic: dynamic quantisation scales each batch's activations by that
    batch's range, so a job's score would depend on the jobs scored beside it (measured:
    up to 0.0013 on MiniLM) and served scores could not equal evaluated ones. Static
    scales are fixed by the calibration sentences: a job scores the same in any batch."""
    import copy
    import warnings

    import torch

    model = copy.deepcopy(model).to("cpu").float().eval()  # tracing may alter a model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    example = tokenizer(["wms_delay is 6", "a longer example sentence"], padding=True,
                        return_tensors="pt")  # fmt: skip
    names = [name for name in ONNX_INPUTS if name in example]

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True))).logits

    files = {"fp32": target / "model.fp32.onnx"}
    axes = {name: {0: "batch", 1: "tokens"} for name in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
        torch.onnx.export(
            Logits(),
            tuple(example[name] for name in names),
            str(files["fp32"]),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    if calibration:
        import logging

        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Batches(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = (
                    tokenizer(calibration[i : i + 32], padding=True, truncation=True,
                              max_length=max_length, return_tensors="np")
                    for i in range(0, len(calibration), 32)
                )  # fmt: skip

            def get_next(self) -> dict[str, np.ndarray] | None:
                batch = next(self.batches, None)
                if batch is None:
                    return None
                return {name: np.asarray(batch[name], dtype=np.int64) for name in names}

        files["int8"] = target / "model.int8.onnx"
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "consider pre-processing" advice, once per call
        try:
            # The matrix products only, weights per output channel: quantising every op
            # (layer norms, softmax, embeddings) with per-tensor scales cost MiniLM 0.35
            # of validation F1 on 1000genome; this costs 0.003 (measured).
            quantize_static(
                files["fp32"],
                files["int8"],
                Batches(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        finally:
            quiet.setLevel(level)
    return files


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
        self.onnx: OnnxModel | None = None  # what scores, once exported (or loaded)
        self._exported: Any = None  # the temporary folder of the exported files

    @classmethod
    def from_config(cls, kind: str, cfg: Config) -> Self:
        """An unfitted encoder: `train` settings, the `text` section's sentence, fine-tuned
        with checkpoints in `paths.checkpoints`."""
        return cls(
            cfg.train,
            cfg.text.template,
            cfg.text.feature_set,
            cfg.base.seed,
            cfg.paths.checkpoints,
            device=cfg.base.device,
        )

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
        detector.model = None if model is None else model.eval()
        detector.onnx = None
        detector._exported = None
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
        """Fine-tune (`fine_tune_only`), then export to ONNX and choose its runtime."""
        p, calibration = self.fine_tune_only(train, val)
        self._metadata_saved["runtime"] = self._choose_runtime(val, p, calibration)

    def fine_tune_only(
        self, train: pd.DataFrame, val: pd.DataFrame
    ) -> tuple[TrainParams, list[str]]:
        """Fine-tune on `train` (sentences in column `sentence`, e.g. augmented rows;
        at most `params.max_train_samples` of them), early-stopping on `val`; the model
        stays in torch. Returns the settings applied and sentences to calibrate int8 with."""
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
        return p, texts[:: max(1, len(texts) // CALIBRATION_SENTENCES)]

    def _choose_runtime(
        self, val: pd.DataFrame, p: TrainParams, calibration: list[str]
    ) -> dict[str, Any]:
        """Export to ONNX and pick float32 or static int8 on validation (`train.int8`):
        int8 under `auto` only where it scores faster and loses at most
        `int8_max_f1_loss` of F1 (each at its own F1-optimal threshold)."""
        import logging
        import tempfile
        import time

        from sklearn.metrics import f1_score

        from flowsentry.models.detector import best_f1_threshold

        self._exported = tempfile.TemporaryDirectory(prefix="flowsentry-onnx-")
        files = export_onnx(
            self.model,
            self.tokenizer,
            Path(self._exported.name),
            calibration if p.int8 != "off" else None,
            self.max_length,
        )
        texts, labels = self.sentences(val), val["label"].astype(int).to_numpy()
        measured: dict[str, dict[str, float]] = {}
        for name, path in files.items():
            self.onnx = OnnxModel(path)
            started = time.perf_counter()
            scores = self.score_texts(texts)
            seconds = time.perf_counter() - started
            threshold = best_f1_threshold(labels, scores)
            measured[name] = {
                "f1": round(float(f1_score(labels, scores >= threshold, zero_division=0)), 4),
                "jobs_per_s": round(len(texts) / max(seconds, 1e-9), 1),
            }
        int8 = p.int8 == "on" or (
            p.int8 == "auto"
            and "int8" in measured
            and measured["int8"]["jobs_per_s"] > measured["fp32"]["jobs_per_s"]
            and measured["int8"]["f1"] >= measured["fp32"]["f1"] - p.int8_max_f1_loss
        )
        self.onnx = OnnxModel(files["int8" if int8 else "fp32"])
        logging.getLogger(__name__).info(
            "ONNX on validation (%d jobs): %s -> serving %s", len(texts), measured,
            "int8" if int8 else "float32",
        )  # fmt: skip
        return {"engine": "onnxruntime", "int8": int8, "validation": measured, "setting": p.int8}

    def save(self, target: str | Path) -> Path:
        """Weights (safetensors), tokenizer and metadata, swapped in atomically."""
        target = Path(target)
        with atomic_dir(target) as tmp:
            if self.model is not None:
                self.model.save_pretrained(tmp, safe_serialization=True)
            elif self.onnx is not None:  # loaded from ONNX: carry the weights over
                for source in self.onnx.path.parent.iterdir():
                    if source.is_file() and source.name not in (METADATA, ONNX_FILE):
                        shutil.copy(source, tmp / source.name)
            if self.onnx is not None:
                shutil.copy(self.onnx.path, tmp / ONNX_FILE)
            self.tokenizer.save_pretrained(tmp)
            (tmp / METADATA).write_text(json.dumps(self.metadata, indent=2, default=str) + "\n")
        return target

    @classmethod
    def load(
        cls, folder: str | Path, device: str = "auto", batch_size: int = 64, runtime: str = "auto"
    ) -> Self:
        """Load a model `save` wrote: its ONNX file with onnxruntime where there is one
        (what was evaluated), else (or with runtime="torch") the safetensors weights."""
        from transformers import AutoTokenizer

        from flowsentry.models import device as devices

        model_dir = Path(folder)
        metadata = read_metadata(model_dir)
        if metadata["kind"] != "sft":
            raise FlowsentryError(
                f"{model_dir / METADATA}: kind is '{metadata['kind']}', not 'sft'"
            )
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if runtime == "auto" and (model_dir / ONNX_FILE).is_file():
            detector = cls.from_model(None, tokenizer, metadata, "cpu")
            detector.onnx = OnnxModel(model_dir / ONNX_FILE)
            detector.batch_size = batch_size
            return detector
        from transformers import AutoModelForSequenceClassification

        from flowsentry.models.pretrained import resolve

        placement = devices.select(device)
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
        detector = cls.from_model(model, tokenizer, metadata, placement.device)
        detector.batch_size = batch_size
        return detector

    def sentences(self, jobs: Jobs, k: int | None = None) -> list[str]:
        """The sentences this model reads for `jobs` (context added when needed)."""
        return sentences(self.frame(jobs), self.template, self.features, k, self.profile)

    def score(self, jobs: Jobs, k: int | None = None, *, progress: bool = False) -> np.ndarray:
        """P(anomalous) per job, shape (n_jobs,); `progress`: a bar over the batches."""
        return self.score_texts(self.sentences(jobs, k), progress=progress)

    def uninformative_scores(self) -> dict[str, float]:
        """P(anomalous) on the paper's uninformative sentences (this model's template and
        features, no evidence), by name."""
        inputs = uninformative_inputs(self.template, self.features)
        names = list(inputs)
        return dict(zip(names, self.score_texts([inputs[n] for n in names]), strict=True))

    def score_texts(self, texts: Iterable[str], progress: bool = False) -> np.ndarray:
        """P(anomalous) for ready-made sentences, in batches, shape (n,)."""
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.empty(len(texts), dtype=np.float64)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="score", unit="batch", disable=not progress):
            batch = texts[start : start + self.batch_size]
            if self.onnx is not None:
                encoded = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length,
                    return_tensors="np",
                )  # fmt: skip
                logits = self.onnx.logits(encoded).astype(np.float64)
            else:  # the torch weights (runtime="torch", or before the export)
                import torch

                encoded = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)  # fmt: skip
                with torch.inference_mode():
                    logits = self.model(**encoded).logits.double().cpu().numpy()
            logits -= logits.max(axis=1, keepdims=True)  # softmax, numerically stable
            probabilities = np.exp(logits)
            out[start : start + len(batch)] = probabilities[:, 1] / probabilities.sum(axis=1)
        return out
