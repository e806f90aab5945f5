"""Supervised fine-tuning of a pretrained encoder on job sentences (transformers Trainer).

Modes: `full` (every parameter), `lora` (peft LoRA adapters + the classifier head),
`head` (encoder frozen, only the classification head learns: the paper's answer to
catastrophic forgetting). The Trainer does the loop: device and mixed precision,
dynamic padding, per-epoch validation, early stopping, best-checkpoint reload and
resume from the last checkpoint.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from flowsentry.config import TrainParams
from flowsentry.io import digest
from flowsentry.models.detector import LABELS

log = logging.getLogger(__name__)

# Parameter names of classification heads across architectures.
HEAD_MODULES = ("classifier", "score", "pre_classifier")


class _Encoded:
    """A torch Dataset of pre-tokenised sentences (padding happens per batch)."""

    def __init__(self, tokenizer: Any, texts: list[str], labels: np.ndarray, max_length: int):
        self.encoded = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encoded.items()}
        item["labels"] = int(self.labels[i])
        return item


def build_model(settings: TrainParams) -> tuple[Any, Any]:
    """Tokenizer and a 2-class model for `settings.mode`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from flowsentry.models.pretrained import resolve

    source = resolve(settings.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        # float32 master weights whatever the checkpoint holds (fp16/bf16 copies are
        # common); mixed precision on a GPU comes from autocast, not from the weights.
        dtype=torch.float32,
        num_labels=2,
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
    )
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, apply_mode(model, settings)


def apply_mode(model: Any, settings: TrainParams) -> Any:
    """Make only the parameters of `settings.mode` trainable."""
    if settings.mode == "full":
        for parameter in model.parameters():
            parameter.requires_grad = True
        return model
    if settings.mode == "head":
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.split(".")[0] in HEAD_MODULES
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"no classification head found (looked for {HEAD_MODULES})")
        return model
    if settings.mode == "lora":
        from peft import PeftModel, get_peft_model

        if isinstance(model, PeftModel):  # adapters attached already: the active one trains
            return model

        config = lora_config(settings)
        return get_peft_model(model, config)
    raise ValueError(f"unknown mode '{settings.mode}' (know full, lora, head)")


def lora_config(settings: TrainParams) -> Any:
    """peft LoRA settings for sequence classification (the classifier head trains too)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=list(settings.lora.target_modules),
    )


def trainable_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _metrics(eval_prediction: Any) -> dict[str, float]:
    from scipy.special import softmax
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    scores = softmax(logits, axis=-1)[:, 1]
    predicted = (scores >= 0.5).astype(int)
    result = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
    }
    if len(np.unique(labels)) == 2:
        result["roc_auc"] = float(roc_auc_score(labels, scores))
    return result


def _fingerprint(settings: TrainParams, seed: int, data_version: str) -> str:
    return digest(
        {"settings": settings.model_dump(mode="json"), "seed": seed, "data": data_version}
    )[:16]


def fine_tune(
    train_texts: list[str],
    train_labels: np.ndarray,
    val_texts: list[str],
    val_labels: np.ndarray,
    settings: TrainParams,
    checkpoint_dir: Path,
    data_version: str = "",
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
    seed: int = 42,
    device: str = "auto",
) -> tuple[Any, Any, dict[str, Any]]:
    """Fine-tune; returns (model with the best weights, tokenizer, training summary).

    Resumes from the last checkpoint in `checkpoint_dir` when it was written for the
    same settings and data; otherwise starts afresh. Pass `model`/`tokenizer` to continue
    training an already fine-tuned model (transfer, forgetting). `device`: auto, cpu,
    cuda or mps.
    """
    from transformers import (
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from flowsentry.models import device as devices

    set_seed(seed)
    placement = devices.select(device)
    if model is None or tokenizer is None:
        tokenizer, model = build_model(settings)
    else:
        model = apply_mode(model, settings)
    trainable, total = trainable_parameters(model)
    log.info(
        "fine-tuning %s (%s): %d of %d parameters trainable, %d jobs, on %s%s",
        settings.model,
        settings.mode,
        trainable,
        total,
        len(train_texts),
        placement.device,
        " (bf16)" if placement.bf16 else " (fp16)" if placement.fp16 else "",
    )

    fingerprint = _fingerprint(settings, seed, data_version)
    stamp = checkpoint_dir / "fingerprint"
    if checkpoint_dir.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(checkpoint_dir)  # written for other settings or data: never resume it
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    for partial in checkpoint_dir.glob("checkpoint-*"):
        # the Trainer writes trainer_state.json last: without it the save was cut short
        # (a crash or kill -9 mid-save); resuming from it would fail or load half a model
        if not (partial / "trainer_state.json").exists():
            log.warning("%s: incomplete checkpoint (save was interrupted); removed", partial)
            shutil.rmtree(partial)
    resume = any(checkpoint_dir.glob("checkpoint-*"))

    train_set = _Encoded(tokenizer, train_texts, train_labels, settings.max_length)
    val_set = _Encoded(tokenizer, val_texts, val_labels, settings.max_length)
    steps_per_epoch = max(1, -(-len(train_set) // settings.batch_size))
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size * 2,
        learning_rate=(
            settings.lora.learning_rate
            if settings.mode == "lora" and settings.lora.learning_rate
            else settings.learning_rate
        ),
        weight_decay=settings.weight_decay,
        warmup_steps=int(settings.warmup_fraction * steps_per_epoch * settings.epochs),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        logging_steps=max(1, steps_per_epoch // 10),
        seed=seed,
        data_seed=seed,
        use_cpu=placement.device == "cpu",
        bf16=placement.bf16,
        fp16=placement.fp16,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience)],
    )
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_RateProgress(settings.batch_size))
    else:  # the Trainer would print its logs to stdout: our log (stderr) takes them
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(_LogCallback())
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - started
    best = trainer.evaluate()
    summary = {
        "mode": settings.mode,
        "train_jobs": len(train_set),
        "val_jobs": len(val_set),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_seconds": round(seconds, 1),
        "train_samples_per_second": round(output.metrics.get("train_samples_per_second", 0.0), 2),
        "resumed": resume,
        "device": placement.device,
        "val": {k.removeprefix("eval_"): v for k, v in best.items() if k.startswith("eval_")},
        "best_checkpoint": trainer.state.best_model_checkpoint,
    }
    return trainer.model, tokenizer, summary


class _LogCallback:
    """The Trainer's logs (loss, evaluation) into this module's log, not onto stdout."""

    def __new__(cls):
        from transformers import TrainerCallback

        class LogCallback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs:
                    log.info("step %d: %s", state.global_step, logs)

        return LogCallback()


class _RateProgress:
    """Trainer progress bar showing loss and samples/s (replaces the default one)."""

    def __new__(cls, batch_size: int):
        from transformers.trainer_callback import ProgressCallback

        class RateProgress(ProgressCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                super().on_train_begin(args, state, control, **kwargs)
                self._mark = (time.perf_counter(), state.global_step)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if self.training_bar is not None and logs and "loss" in logs:
                    now, step = time.perf_counter(), state.global_step
                    then, before = self._mark
                    rate = (step - before) * batch_size / max(now - then, 1e-9)
                    self.training_bar.set_postfix(
                        loss=f"{logs['loss']:.4f}", samples_s=f"{rate:.1f}"
                    )
                    self._mark = (now, step)
                    return
                super().on_log(args, state, control, logs=logs, **kwargs)

        return RateProgress()
