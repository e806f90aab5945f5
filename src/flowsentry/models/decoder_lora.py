"""Decoder LoRA: fine-tune a causal LM on prompt -> category pairs (the paper's FT rows).

The loss is on the answer tokens only (the prompt's labels are -100); peft picks the
adapted modules for the architecture (`q_proj`/`v_proj` on Llama); the Trainer does the
loop, device and mixed precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowsentry.config import ICLLoraParams
from flowsentry.text.prompts import CATEGORIES


def training_rows(
    tokenizer: Any, prefixes: Sequence[str], suffixes: Sequence[str], labels: Sequence[int]
) -> list[dict[str, list[int]]]:
    """Token ids of prompt + answer, labels masked on the prompt; tokenised as the
    scorer tokenises (prefix and suffix apart, then joined)."""
    rows = []
    for prefix, suffix, label in zip(prefixes, suffixes, labels, strict=True):
        prompt = (
            tokenizer(prefix, add_special_tokens=False)["input_ids"]
            + tokenizer(suffix, add_special_tokens=False)["input_ids"]
        )
        answer = tokenizer(f" {CATEGORIES[int(label)]}", add_special_tokens=False)["input_ids"]
        ids = prompt + answer
        mask, targets = [1] * len(ids), [-100] * len(prompt) + answer
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": targets})
    return rows


def fine_tune_decoder(
    model: Any,
    tokenizer: Any,
    prefixes: Sequence[str],
    suffixes: Sequence[str],
    labels: Sequence[int],
    lora: ICLLoraParams,
    output_dir: Path,
    seed: int = 42,
    device: str = "auto",
    batch_size: int = 4,
    progress: bool = True,
) -> Any:
    """`model` with trained LoRA adapters (a peft model, in eval mode)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from flowsentry.models import device as devices

    placement = devices.select(device)
    peft_model = get_peft_model(
        model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.alpha)
    )
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=lora.epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=lora.learning_rate,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=seed,
        use_cpu=placement.device == "cpu",
        bf16=placement.bf16,
        fp16=placement.fp16,
        disable_tqdm=not progress,
        remove_unused_columns=False,
    )
    # Right padding: Llama numbers positions from the left whatever the mask says.
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        Trainer(
            model=peft_model,
            args=args,
            train_dataset=training_rows(tokenizer, prefixes, suffixes, labels),
            data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
        ).train()
    finally:
        tokenizer.padding_side = padding_side
    return peft_model.eval()
