"""The in-context-learning detector (kind `icl`): a decoder LLM classifying from prompts.

Prompts come from `flowsentry.text.prompts`, examples from `flowsentry.models.examples`,
scores from `flowsentry.models.likelihood` and decoder LoRA from
`flowsentry.models.decoder_lora`; this class puts them behind the detector contract:
`fit(train, val)` takes the example pool (and per-class statistics) from `train`, runs
decoder LoRA when asked, and chooses the threshold on `val`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from flowsentry.config import ICLParams
from flowsentry.data.splits import stratified_sample
from flowsentry.errors import FlowsentryError
from flowsentry.io import atomic_dir
from flowsentry.models.detector import METADATA, Detector, Jobs, read_metadata
from flowsentry.models.examples import ExamplePicker
from flowsentry.models.likelihood import LikelihoodScorer
from flowsentry.text.prompts import (
    PromptSpec,
    build_prompt,
    class_statistics,
    parse_category,
    reasoning_prompt,
)
from flowsentry.text.sentences import features_of, sentences

if TYPE_CHECKING:
    from flowsentry.config import Config

log = logging.getLogger(__name__)


class ICLDetector(Detector):
    """A decoder LLM behind the detector contract, configured by the `icl` section.

    `params.examples` / `params.n_examples` choose each prompt's examples; decoder LoRA
    (`params.lora`) runs in `fit` when `checkpoints` names a folder for it.
    """

    kind = "icl"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        train: pd.DataFrame,
        params: ICLParams,
        device: str = "cpu",
        seed: int = 42,
        checkpoints: str | Path | None = None,
    ) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.params, self.seed = params, seed
        self.checkpoints = Path(checkpoints) if checkpoints else None
        self.features = tuple(features_of(params.feature_set))
        self.scorer = LikelihoodScorer(model, tokenizer, device, params.batch_size)
        self.examples_kept: list[int] = []
        self._set_pool(train)

    @classmethod
    def from_config(cls, kind: str, cfg: Config) -> Self:
        """`icl.model` loaded on `base.device`, prompting per the `icl` section; the
        example pool comes from the training split in `fit`, decoder LoRA checkpoints go
        to `paths.icl_checkpoints`."""
        from flowsentry.models.pretrained import load_decoder

        model, tokenizer, device = load_decoder(cfg.icl.model, cfg.base.device)
        return cls(
            model,
            tokenizer,
            pd.DataFrame(),
            cfg.icl,
            device,
            cfg.base.seed,
            checkpoints=cfg.paths.icl_checkpoints,
        )

    def with_examples(self, examples: str, n_examples: int, model: Any = None) -> ICLDetector:
        """The same detector (same pool and decoder, or `model`) prompting with other examples."""
        params = self.params.model_copy(update={"examples": examples, "n_examples": n_examples})
        twin = ICLDetector(
            self.model if model is None else model,
            self.tokenizer,
            self.picker.train,
            params,
            self.device,
            self.seed,
        )
        twin.threshold_, twin.profile = self.threshold_, self.profile
        return twin

    def _set_pool(self, train: pd.DataFrame) -> None:
        p = self.params
        self.picker = ExamplePicker(train, self.features, self.seed)
        statistics = class_statistics(train, self.features) if p.statistics and len(train) else None
        self.spec = PromptSpec(statistics, p.max_prompt_tokens)

    def _fit(self, train: pd.DataFrame, val: pd.DataFrame) -> None:
        from flowsentry.models.decoder_lora import fine_tune_decoder

        self._set_pool(train)
        lora = self.params.lora
        if not lora.enabled or self.checkpoints is None:
            return
        sample = stratified_sample(train, lora.train_samples, self.seed)
        prefixes, suffixes = self.with_examples(lora.examples, lora.n_examples).prompts(
            sample, from_train=True
        )
        self.model = fine_tune_decoder(
            self.model,
            self.tokenizer,
            prefixes,
            suffixes,
            sample["label"].astype(int).tolist(),
            lora,
            self.checkpoints,
            seed=self.seed,
            device=self.device,
        )
        self.scorer = LikelihoodScorer(
            self.model, self.tokenizer, self.device, self.params.batch_size
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "model": self.params.model,
            "template": self.params.template,
            "examples": self.params.examples,
            "n_examples": self.params.n_examples,
            "workflows": sorted(set(self.picker.train.get("workflow", pd.Series()).dropna())),
        }

    def _examples(self, job: pd.DataFrame, exclude: Any = None) -> list[tuple[str, int]]:
        p = self.params
        chosen = (
            self.picker.nearest(job, p.n_examples, exclude)
            if p.examples == "nearest"
            else self.picker.fixed(p.examples, p.n_examples)
        )
        texts = sentences(chosen, p.template, self.features)
        return list(zip(texts, chosen["label"].astype(int).tolist(), strict=True))

    def prompts(
        self, jobs: Jobs, k: int | None = None, from_train: bool = False
    ) -> tuple[list[str], list[str]]:
        """(prefixes, suffixes) per job. `from_train`: the jobs are rows of the training
        split (index kept), and a job is never its own nearest example."""
        frame = self.frame(jobs)
        labels = list(frame.index) if from_train else [None] * len(frame)
        frame = frame.reset_index(drop=True)
        texts = sentences(frame, self.params.template, self.features, k)
        fixed = None if self.params.examples == "nearest" else self._examples(frame.iloc[:1])
        prefixes, suffixes, self.examples_kept = [], [], []
        for i, text in enumerate(texts):
            examples = fixed if fixed is not None else self._examples(frame.iloc[[i]], labels[i])
            prefix, suffix, kept = build_prompt(text, examples, self.spec, self.scorer.count_tokens)
            prefixes.append(prefix)
            suffixes.append(suffix)
            self.examples_kept.append(kept)
        return prefixes, suffixes

    def score(self, jobs: Jobs, k: int | None = None, *, progress: bool = False) -> np.ndarray:
        """P(anomalous) per job, shape (n_jobs,); `progress`: a bar over the batches."""
        prefixes, suffixes = self.prompts(jobs, k)
        return self.scorer.score(prefixes, suffixes, progress=progress)

    def save(self, target: str | Path) -> Path:
        """Params, the example pool and any LoRA adapters (safetensors), swapped in
        atomically. The decoder itself is referenced by name, not copied."""
        pool = self.picker.train
        columns = [c for c in dict.fromkeys((*self.features, "label", "workflow")) if c in pool]
        metadata = {
            **self.metadata,
            "params": self.params.model_dump(mode="json"),
            "seed": self.seed,
            "adapter": hasattr(self.model, "peft_config"),
        }
        target = Path(target)
        with atomic_dir(target) as tmp:
            pool[columns].reset_index(drop=True).to_parquet(tmp / "examples.parquet")
            if metadata["adapter"]:
                self.model.save_pretrained(tmp / "adapter", safe_serialization=True)
            (tmp / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
        return target

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> Self:
        """The detector `save` wrote: the named decoder, its adapters, the example pool."""
        from pydantic import ValidationError

        from flowsentry.models.pretrained import load_decoder

        folder = Path(folder)
        meta_path = folder / METADATA
        metadata = read_metadata(folder)
        if metadata.get("kind") != "icl":
            raise FlowsentryError(f"{meta_path}: kind is '{metadata.get('kind')}', not 'icl'")
        try:
            params = ICLParams.model_validate(metadata.get("params"))
        except ValidationError as exc:
            raise FlowsentryError(f"{meta_path}: params: {exc.errors()[0]['msg']}") from None
        model, tokenizer, placed = load_decoder(params.model, device)
        if metadata.get("adapter"):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder / "adapter").eval()
        pool = pd.read_parquet(folder / "examples.parquet")
        detector = cls(model, tokenizer, pool, params, placed, int(metadata.get("seed", 42)))
        detector._restore(metadata)
        return detector

    def explain(self, job: dict[str, Any], max_new_tokens: int = 160) -> dict[str, Any]:
        """Chain of thought: generated reasoning and the category it ends with (or None)."""
        import torch

        text = sentences(self.frame([job]), self.params.template, self.features)[0]
        ids = self.tokenizer(reasoning_prompt(text), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        reasoning = self.tokenizer.decode(
            out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
        )
        category = parse_category(reasoning)
        return {
            "reasoning": reasoning.strip(),
            "category": category,
            "parsed": category is not None,
        }
