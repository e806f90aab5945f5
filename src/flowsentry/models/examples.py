"""Labelled examples for prompts: fixed sets from the training split, or each job's nearest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

EXAMPLE_SETS = ("balanced", "negative", "positive", "random", "nearest")


@dataclass
class ExamplePicker:
    """Examples drawn from `train` (labels in column `label`), reproducibly by `seed`."""

    train: pd.DataFrame
    features: Sequence[str]
    seed: int = 42
    _index: Any = field(default=None, init=False, repr=False)

    def fixed(self, how: str, n: int) -> pd.DataFrame:
        """The same n examples for every job: one class only, both halves, or random."""
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
