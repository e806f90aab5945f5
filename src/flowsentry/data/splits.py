"""Train / val / test assignment (same params, same split, always), and stratified samples.

- `random`: the paper's protocol, jobs shuffled with a seed and cut 80/10/10.
- `by_run` (default): whole DAG runs are assigned, so no run (and no host of a run) is
  in two splits; runs are stratified by workflow and by the anomaly type injected in
  them, so every split holds runs of every type where there are enough.
- `file`: a CSV manifest `run,job,split` (reproduce a published split).

Assignment never depends on the order rows arrive in: jobs are sorted by
(workflow, run, job) before shuffling.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from flowsentry.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_KEYS = ["workflow", "run", "job"]


def _cut(n: int, ratios: tuple[float, float, float]) -> np.ndarray:
    """Split labels for n shuffled items: first train, then val, then test."""
    n_train = round(n * ratios[0])
    n_val = round(n * ratios[1])
    labels = np.array(["test"] * n, dtype=object)
    labels[:n_train] = "train"
    labels[n_train : n_train + n_val] = "val"
    return labels


def assign_splits(
    jobs: pd.DataFrame,
    method: str,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    manifest: str | Path | None = None,
) -> pd.Series:
    """A `split` label per row of `jobs` (index aligned); NA where a manifest omits a job."""
    order = jobs.sort_values(_KEYS, kind="stable").index
    rng = np.random.default_rng(seed)
    if method == "random":
        shuffled = rng.permutation(order.to_numpy())
        return pd.Series(_cut(len(shuffled), ratios), index=shuffled).reindex(jobs.index)
    if method == "by_run":
        runs = run_strata(jobs)
        parts = []
        for _, group in runs.groupby(["workflow", "stratum"], sort=True):
            group = group.iloc[rng.permutation(len(group))]
            parts.append(group.assign(split=_cut(len(group), ratios)))
        assigned = pd.concat(parts)[["workflow", "run", "split"]]
        keys = jobs[["workflow", "run"]].astype(str)
        merged = keys.merge(assigned, on=["workflow", "run"], how="left")
        return pd.Series(merged["split"].to_numpy(), index=jobs.index)
    if method == "file":
        if manifest is None:
            raise ValueError("method 'file' needs a manifest path")
        return _from_manifest(jobs, Path(manifest))
    raise ValueError(f"unknown split method '{method}' (know random, by_run, file)")


def run_strata(jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per (workflow, run), sorted, with its `stratum`: the anomaly type most
    of its anomalous jobs carry (`none` for a run without anomalies)."""
    keys = jobs[["workflow", "run"]].astype(str)
    if "anomaly_type" in jobs:
        kind = jobs["anomaly_type"].astype("string").str.strip()
        kind = kind.where(~kind.isin(["None", "none", ""]), pd.NA)
    else:
        kind = pd.Series(pd.NA, index=jobs.index, dtype="string")
    table = keys.assign(kind=kind.to_numpy())
    strata = (
        table.dropna(subset=["kind"])
        .groupby(["workflow", "run"])["kind"]
        .agg(lambda k: k.value_counts().sort_index().idxmax())
    )
    runs = keys.drop_duplicates().sort_values(["workflow", "run"], kind="stable")
    runs = runs.merge(strata.rename("stratum").reset_index(), on=["workflow", "run"], how="left")
    runs["stratum"] = runs["stratum"].fillna("none")
    return runs.reset_index(drop=True)


def _from_manifest(jobs: pd.DataFrame, path: Path) -> pd.Series:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(path, f"unreadable split manifest: {exc}") from None
    for column in ("run", "job", "split"):
        if column not in table.columns:
            raise DataError(path, "required column missing", field=column)
    bad = ~table["split"].isin(SPLITS)
    if bad.any():
        value = table.loc[bad, "split"].iloc[0]
        raise DataError(path, f"split '{value}' is not one of {list(SPLITS)}", field="split")
    duplicated = table.duplicated(["run", "job"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise DataError(path, f"job '{row['job']}' of run '{row['run']}' listed twice")
    keys = jobs[["run", "job"]].astype(str)
    merged = keys.merge(table[["run", "job", "split"]], on=["run", "job"], how="left")
    split = pd.Series(merged["split"].to_numpy(), index=jobs.index)
    unassigned = int(split.isna().sum())
    if unassigned:
        log.warning("%s: %d jobs are not in the manifest and are left out", path, unassigned)
    unknown = len(table) - (len(jobs) - unassigned)
    if unknown > 0:
        log.warning("%s: %d manifest rows name jobs not in the data", path, unknown)
    return split


def stratified_sample(frame: pd.DataFrame, n: int | None, seed: int, column: str = "label"):
    """At most `n` rows keeping the class shares (all rows when n is None or larger)."""
    from sklearn.model_selection import train_test_split

    if n is None or len(frame) <= n:
        return frame
    labels = frame[column].astype(int)
    stratify = labels if labels.value_counts().min() >= 2 else None
    sample, _ = train_test_split(frame, train_size=n, stratify=stratify, random_state=seed)
    return sample
