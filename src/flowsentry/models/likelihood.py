"""P(anomalous) from a decoder's log-probabilities of the category continuations.

A job is scored by the model's log-probability of each category continuation
(" Normal", " Abnormal") after its prompt, normalised into P(anomalous): it never fails
to parse and gives ROC-AUC and a threshold. The part of the prompt shared by every job
(task, statistics, fixed examples) is run once and its key/value cache reused.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from flowsentry.text.prompts import CATEGORIES


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
        self._keeps_logits = accepts_logits_to_keep(model)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def score(
        self, prefixes: Sequence[str], suffixes: Sequence[str], progress: bool = False
    ) -> np.ndarray:
        """P(Abnormal) per (prefix, suffix); `progress`: a bar over the batches.

        The longest token prefix common to every prompt (the task and statistics, and the
        examples too when they are fixed) is run once and its key/value cache reused. When
        every category is one token, one forward pass per job reads both log-probabilities
        at the last position; otherwise each category gets its own row.
        """
        import torch
        from tqdm.auto import tqdm

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
        starts = range(0, len(suffixes), self.batch_size)
        for start in tqdm(starts, desc="score", unit="batch", disable=not progress):
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


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward can project only some positions onto the vocabulary.

    A PEFT-wrapped decoder (LoRA adapters) declares `**kwargs` and hands them to the model
    it wraps, so the wrapped model's own forward is what says.
    """
    inner = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


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
