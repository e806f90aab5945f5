"""Train / val / test assignment (same params, same split, always), and stratified samples.

- `random`: the paper's protocol, jobs shuffled with a seed and cut 80/10/10.
- `by_run` (default): whole DAG runs are assigned, so no run (and no host of a run) is
  in two splits; runs are stratified by workflow and by the anomaly type injected in
  them, so every split holds runs of every type where there are enough.
- `file`: a CSV manifest `run,job,split` (reproduce a published split).

Assignment never depends on the order rows arrive in: jobs are sorted by
(workflow, run, job) before shuffling.

A run's `by_run` split is decided once. Prepare keeps a record of every run's split
(`run_splits.csv`, with the params it was made under in `run_splits.json`) and passes it
back as `previous`: runs in it keep their split, new runs fill what each split of their
(workflow, stratum) lacks against the cut of old + new runs. Without a usable record
(none yet, made under other params, or damaged) every run is assigned from scratch, the
same way as always. Only `by_run` is kept stable: `random` (jobs, not runs) and `file`
(the manifest decides) ignore the record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.errors import DataError
from flowsentry.io import file_digest, write_csv, write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_KEYS = ["workflow", "run", "job"]
_RUN_KEYS = ["workflow", "run"]
RECORD_CSV = "run_splits.csv"  # workflow, run, stratum, split: one row per run ever assigned
RECORD_JSON = "run_splits.json"  # the params it was made under and the CSV's sha256


@dataclass(frozen=True)
class SplitRecord:
    """Every run's by_run split as a prepare left it, and the params it was made under.

    `runs` holds one row per (workflow, run) with its `stratum` (when last seen) and
    `split`; runs no longer in the data stay in it, so a run that comes back keeps its split.
    """

    seed: int
    ratios: tuple[float, float, float]
    runs: pd.DataFrame
    method: str = "by_run"

    def params(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "ratios": list(self.ratios)}


def _record_problem(record: Any) -> str | None:
    """What makes `record` unusable as a record (None when it is sound)."""
    if not isinstance(record, SplitRecord) or not isinstance(record.runs, pd.DataFrame):
        return f"not a split record ({type(record).__name__})"
    runs = record.runs
    missing = [c for c in ("workflow", "run", "split") if c not in runs.columns]
    if missing:
        return f"column {missing[0]} missing"
    if runs[_RUN_KEYS].isna().any().any() or (runs[_RUN_KEYS].astype(str) == "").any().any():
        return "a run without a workflow or name"
    bad = ~runs["split"].isin(SPLITS)
    if bad.any():
        return f"split '{runs.loc[bad, 'split'].iloc[0]}' is not one of {list(SPLITS)}"
    twice = runs[_RUN_KEYS].astype(str).duplicated()
    if twice.any():
        workflow, run = runs.loc[twice, _RUN_KEYS].astype(str).iloc[0]
        return f"run '{run}' of '{workflow}' listed twice"
    if not isinstance(record.seed, int) or isinstance(record.seed, bool):
        return f"seed {record.seed!r} is not an integer"
    try:
        ratios = [float(r) for r in record.ratios]
    except (TypeError, ValueError):
        return f"ratios {record.ratios!r} are not numbers"
    if len(ratios) != 3:
        return f"ratios {record.ratios!r} are not three fractions"
    return None


def usable_record(
    previous: SplitRecord | None, method: str, ratios: tuple[float, float, float], seed: int
) -> SplitRecord | None:
    """`previous` when by_run may keep its runs' splits (made under these params, sound);
    None otherwise, saying why in one log line."""
    if previous is None or method != "by_run":
        return None
    problem = _record_problem(previous)
    if problem:
        log.warning("split record is damaged (%s): every run is assigned from scratch", problem)
        return None
    same = (
        previous.method == method
        and previous.seed == seed
        and all(
            math.isclose(a, b, abs_tol=1e-9) for a, b in zip(previous.ratios, ratios, strict=True)
        )
    )
    if not same:
        log.info(
            "split record was made under %s, not method %s, seed %d, ratios %s: ignored, "
            "every run is assigned from scratch",
            previous.params(),
            method,
            seed,
            list(ratios),
        )
        return None
    return previous


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
    previous: SplitRecord | None = None,
) -> pd.Series:
    """A `split` label per row of `jobs` (index aligned); NA where a manifest omits a job.

    `previous` (by_run only): the record of an earlier assignment; its runs keep their
    split when it was made under the same method, seed and ratios (else it is ignored)."""
    order = jobs.sort_values(_KEYS, kind="stable").index
    rng = np.random.default_rng(seed)
    if method == "random":
        shuffled = rng.permutation(order.to_numpy())
        return pd.Series(_cut(len(shuffled), ratios), index=shuffled).reindex(jobs.index)
    if method == "by_run":
        runs = run_strata(jobs)
        previous = usable_record(previous, method, ratios, seed)
        if previous is None:  # from scratch: the assignment every earlier version made
            parts = []
            for _, group in runs.groupby(["workflow", "stratum"], sort=True):
                group = group.iloc[rng.permutation(len(group))]
                parts.append(group.assign(split=_cut(len(group), ratios)))
            assigned = pd.concat(parts)[["workflow", "run", "split"]]
        else:
            assigned = _keep_and_fill(runs, previous, ratios, seed)
        keys = jobs[["workflow", "run"]].astype(str)
        merged = keys.merge(assigned, on=["workflow", "run"], how="left")
        return pd.Series(merged["split"].to_numpy(), index=jobs.index)
    if method == "file":
        if manifest is None:
            raise ValueError("method 'file' needs a manifest path")
        return _from_manifest(jobs, Path(manifest))
    raise ValueError(f"unknown split method '{method}' (know random, by_run, file)")


def _keep_and_fill(
    runs: pd.DataFrame, previous: SplitRecord, ratios: tuple[float, float, float], seed: int
) -> pd.DataFrame:
    """Runs of the record keep their split; per (workflow, stratum) the new runs, in a
    seeded order that depends on nothing but their names, fill each split's deficit
    against the cut `_cut` gives for the stratum's old + new runs."""
    recorded = previous.runs[[*_RUN_KEYS, "split"]].astype(str)
    runs = runs.merge(recorded, on=_RUN_KEYS, how="left")
    split = runs["split"].to_numpy(dtype=object, na_value=None)
    rank = np.array(_rank(runs, seed))
    for where in runs.groupby(["workflow", "stratum"], sort=True).indices.values():
        new = where[np.array([split[i] is None for i in where], dtype=bool)]
        if not len(new):
            continue
        target = _cut(len(where), ratios)
        held = split[where]
        deficits = [max(int((target == s).sum()) - int((held == s).sum()), 0) for s in SPLITS]
        # The deficits add up to at least the number of new runs (targets sum to old +
        # new, old runs' splits to old), so the new runs always fit in them; where a
        # split already holds more than its target (the cut of `test` can shrink by one
        # as a stratum grows), the new runs fill train first, then val, then test.
        counts, left = [], len(new)
        for deficit in deficits:
            counts.append(min(deficit, left))
            left -= counts[-1]
        new = new[np.argsort(rank[new], kind="stable")]
        split[new] = np.repeat(np.array(SPLITS, dtype=object), counts)
    return runs[_RUN_KEYS].assign(split=split)


def _rank(runs: pd.DataFrame, seed: int) -> list[str]:
    """A seeded shuffle key per run from its seed, workflow and name alone: a new run's
    place does not depend on the order rows arrive in, nor on which other runs are new."""
    return [
        hashlib.sha256(f"{seed}\x1f{workflow}\x1f{run}".encode()).hexdigest()
        for workflow, run in zip(runs["workflow"], runs["run"], strict=True)
    ]


def record_splits(
    jobs: pd.DataFrame,
    split: pd.Series,
    ratios: tuple[float, float, float],
    seed: int,
    previous: SplitRecord | None = None,
) -> tuple[SplitRecord, dict[str, int]]:
    """The record after a by_run assignment `split` of `jobs`, and how many of its runs
    `kept` the split `previous` (the record the assignment used, or None) gave them, how
    many were `new` and how many of the record's runs are `absent` from `jobs` (they stay)."""
    runs = run_strata(jobs)
    per_run = (
        jobs[_RUN_KEYS]
        .astype(str)
        .assign(split=split.to_numpy())
        .dropna(subset=["split"])
        .drop_duplicates(_RUN_KEYS)
    )
    runs = runs.merge(per_run, on=_RUN_KEYS, how="inner")
    counts = {"kept": 0, "new": len(runs), "absent": 0}
    if previous is not None:
        old = previous.runs.astype({"workflow": str, "run": str})
        seen = pd.MultiIndex.from_frame(runs[_RUN_KEYS])
        recorded = pd.MultiIndex.from_frame(old[_RUN_KEYS])
        absent = old[~recorded.isin(seen)]
        if "stratum" not in absent.columns:
            absent = absent.assign(stratum="")
        kept = int(seen.isin(recorded).sum())
        counts = {"kept": kept, "new": len(runs) - kept, "absent": len(absent)}
        runs = pd.concat([runs, absent[runs.columns]], ignore_index=True)
    runs = runs.sort_values(_RUN_KEYS, kind="stable").reset_index(drop=True)
    return SplitRecord(seed=seed, ratios=tuple(float(r) for r in ratios), runs=runs), counts


def write_record(record: SplitRecord, folder: str | Path) -> None:
    """`folder/run_splits.csv` and, last, `folder/run_splits.json` (params and the CSV's
    sha256, so a CSV the JSON does not describe is never taken for the record)."""
    folder = Path(folder)
    write_csv(record.runs[["workflow", "run", "stratum", "split"]], folder / RECORD_CSV)
    sidecar = {**record.params(), "runs": len(record.runs)}
    write_json({**sidecar, "sha256": file_digest(folder / RECORD_CSV)}, folder / RECORD_JSON)


def read_record(folder: str | Path) -> SplitRecord | None:
    """The record a previous prepare left in `folder`; None (and one log line) when there
    is none or it is damaged: a damaged record never stops prepare."""
    folder = Path(folder)
    table, sidecar = folder / RECORD_CSV, folder / RECORD_JSON
    if not table.exists() and not sidecar.exists():
        log.info("no split record in %s: every run is assigned from scratch", folder)
        return None
    try:
        params = json.loads(sidecar.read_text())
        if file_digest(table) != params["sha256"]:
            raise ValueError(f"{table.name} is not the file {sidecar.name} describes")
        runs = pd.read_csv(table, dtype=str, keep_default_na=False)
        record = SplitRecord(
            method=params["method"],
            seed=params["seed"],
            ratios=tuple(params["ratios"]),
            runs=runs,
        )
        problem = _record_problem(record)
        if problem is None and len(runs) != params["runs"]:
            problem = f"{len(runs)} runs, {params['runs']} recorded"
        if problem:
            raise ValueError(problem)
    except Exception as exc:  # whatever is wrong with it, the record is simply not used
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning(
            "split record in %s is damaged (%s): every run is assigned from scratch",
            folder,
            reason,
        )
        return None
    return record


def run_strata(jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per (workflow, run), sorted, with its `stratum`: the anomaly type most
    of its anomalous jobs carry (`none` for a run without anomalies)."""
    keys = jobs[["workflow", "run"]].astype(str)
    if "anomaly_type" in jobs:
        kind = jobs["anomaly_type"].astype("string").str.strip()
        kind = kind.where(~kind.isin(["None", "none", ""]), pd.NA)
    else:
        kind = pd.Series(pd.NA, index=jobs.index, dtype="string")
    table = keys.assign(kind=kind.to_numpy()).dropna(subset=["kind"])
    # The most frequent type per run, ties to the alphabetically first (one sort, no
    # Python call per run: prepare and the property tests call this on many runs).
    counts = table.groupby(["workflow", "run", "kind"]).size().rename("n").reset_index()
    counts = counts.sort_values(
        ["workflow", "run", "n", "kind"], ascending=[True, True, False, True], kind="stable"
    )
    strata = counts.drop_duplicates(["workflow", "run"]).rename(columns={"kind": "stratum"})
    runs = keys.drop_duplicates().sort_values(["workflow", "run"], kind="stable")
    runs = runs.merge(strata[["workflow", "run", "stratum"]], on=["workflow", "run"], how="left")
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
