"""Prompts for decoder LLMs: the paper's task text, examples, statistics and the budget.

The paper's prompt: a system-administrator task, the categories Normal / Abnormal, the
instruction to answer with the category only, optional per-class feature statistics,
labelled examples (`Instruct: <job>` / `Category: Normal`), then the job. A prompt is
split into a prefix shared by many jobs (task, statistics, examples) and the job's own
suffix, so a scorer can run the shared part once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from flowsentry.errors import FlowsentryError

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
_CATEGORY = re.compile(r"Category:\s*(Normal|Abnormal)\b", re.IGNORECASE)


@dataclass(frozen=True)
class PromptSpec:
    """What goes around the job: per-class statistics (or none) and the token budget."""

    statistics: str | None = None
    max_prompt_tokens: int = 2048


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


def render_example(text: str, label: int | None) -> str:
    """One `Instruct: <job>` / `Category: <answer>` pair; no answer for the job asked."""
    category = "" if label is None else f" {CATEGORIES[int(label)]}"
    return f"Instruct: {text}\nCategory:{category}"


def build_prompt(
    job_text: str,
    examples: Sequence[tuple[str, int]],
    spec: PromptSpec,
    count_tokens: Callable[[str], int],
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


def reasoning_prompt(job_text: str) -> str:
    """The chain-of-thought prompt: reason step by step, end with the category."""
    return f"{COT_TASK}\nInstruct: {job_text}\nReasoning:"


def parse_category(text: str) -> str | None:
    """The last 'Category: X' in generated reasoning, or None when it never says."""
    found = _CATEGORY.findall(text)
    return found[-1].capitalize() if found else None
