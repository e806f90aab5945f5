"""Evidence relative to what normal looks like: a profile fitted on the training split only.

Flow-Bench slows whole executor nodes, so a job is best judged against the normal jobs of
its task (learned from training runs, not from its own run, whose median shifts when many
of its hosts are slowed) and next to its host's and run's other jobs. A `Profile` holds:

- `normal`: per workflow and task, the median of each of `MEASURES` over the *normal*
  jobs of the training split, or with `labelled=False` over all its jobs, labels unread
  (a workflow nobody labelled: injected or real faults touch a minority of jobs, so the
  median of all of them stays near normal; measured in docs/results/new-workflow.md);
- `spread`: per workflow and task, the robust spread (1.4826 x the median absolute
  deviation) of each measure's log over the same jobs, floored at `MIN_SPREAD`: what
  makes a ratio to normal a z-score comparable between workflows (data/peers.py);
- `levels`: per numeric feature, decile edges on the training split (the `levels`
  sentence template prints a value as its decile, one token: see text/sentences.py).

`add_evidence(jobs, profile)` adds, per measure `m`:

- `m_vs_normal`: the job's value / its task's normal median (a floor of one second
  keeps near-zero medians from making any ratio meaningless);
- `host_m_vs_normal_mean`, `host_m_vs_normal_median`: over the jobs its host ran in
  the run (the node's slowdown);
- `run_m_vs_normal_median`: over the run's jobs.

Only trace features of other jobs are read, never labels. The profile is fitted once in
`prepare` on the training split, saved there and with every model that reads it, so
validation, test and served jobs never change it.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from flowsentry.errors import FlowsentryError

MEASURES: tuple[str, ...] = (
    "stage_in_delay",
    "runtime",
    "kickstart_executables_cpu_time",
    "kickstart_online_utime",
    "kickstart_online_stime",
    "stage_out_delay",
    "queue_delay",
    "wms_delay",
    "kickstart_online_iowait",
    "post_script_delay",
)
FLOOR = 1.0  # seconds: every measure is a time
RATIO_LIMIT = 1e6


def evidence_columns(measure: str) -> tuple[str, str, str, str]:
    """The four evidence columns of one measure: job, host mean, host median, run."""
    ratio = f"{measure}_vs_normal"
    return (ratio, f"host_{ratio}_mean", f"host_{ratio}_median", f"run_{ratio}_median")


EVIDENCE_COLUMNS: tuple[str, ...] = tuple(c for m in MEASURES for c in evidence_columns(m))
EVIDENCE_MEASURE: dict[str, str] = {c: m for m in MEASURES for c in evidence_columns(m)}
#: which profile made a frame's evidence columns (a detector with another recomputes them)
PROFILE_COLUMN = "evidence_profile"
LEVELS = 10  # deciles
MIN_SPREAD = 0.05  # log units: a task whose jobs barely vary still has a 5 % tolerance


@dataclass(frozen=True)
class Profile:
    """Normal medians per workflow/task/measure and decile edges per feature (train only)."""

    normal: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    levels: dict[str, list[float]] = field(default_factory=dict)
    spread: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, train: pd.DataFrame, level_features: Sequence[str] = (), labelled: bool = True
    ) -> Self:
        """Learn from the training split: medians and spreads of its normal jobs (of all
        its jobs, labels unread, when not `labelled`), then the decile edges of
        `level_features` (numeric ones; evidence columns computed first)."""
        normal: dict[str, dict[str, dict[str, float]]] = {}
        spread: dict[str, dict[str, dict[str, float]]] = {}
        needed = {"workflow", "task"} | ({"label"} if labelled else set())
        if len(train) and needed <= set(train.columns):
            ok = train[train["label"].astype(int) == 0] if labelled else train
            present = [m for m in MEASURES if m in ok.columns]
            keys = [ok["workflow"], ok["task"]]
            medians = ok.groupby(keys)[present].median()
            logs = np.log(ok[present].astype("float64").clip(lower=FLOOR))
            deviation = (logs - logs.groupby(keys).transform("median")).abs()
            spreads = deviation.groupby(keys).median() * 1.4826
            for table, target in ((medians, normal), (spreads, spread)):
                for (workflow, task), row in table.iterrows():
                    values = {m: float(v) for m, v in row.items() if not math.isnan(float(v))}
                    if target is spread:
                        values = {m: max(v, MIN_SPREAD) for m, v in values.items()}
                    target.setdefault(str(workflow), {})[str(task)] = values
        profile = cls(normal, spread=spread)
        if not level_features:
            return profile
        frame = add_evidence(train, profile)
        levels: dict[str, list[float]] = {}
        for name in level_features:
            if name not in frame.columns or name == "task":
                continue
            values = pd.to_numeric(frame[name], errors="coerce").dropna().to_numpy("float64")
            if len(values):
                quantiles = np.quantile(values, np.arange(1, LEVELS) / LEVELS)
                levels[name] = sorted({float(q) for q in quantiles})
        return cls(normal, levels, spread)

    def level(self, name: str, value: float) -> int | None:
        """`value`'s decile of `name` on the training split (0..9); None without edges."""
        edges = self.levels.get(name)
        return None if edges is None else bisect.bisect_right(edges, value)

    def to_dict(self) -> dict[str, Any]:
        return {"normal": self.normal, "levels": self.levels, "spread": self.spread}

    @classmethod
    def from_dict(cls, data: Any, source: str = "profile") -> Self:
        """A profile from its saved form; a one-line error naming `source` if malformed."""

        def table(field: str) -> dict[str, dict[str, dict[str, float]]]:
            return {
                str(wf): {
                    str(task): {str(m): float(v) for m, v in measures.items()}
                    for task, measures in tasks.items()
                }
                for wf, tasks in data[field].items()
            }

        try:
            normal = table("normal")
            levels = {str(k): [float(x) for x in v] for k, v in data["levels"].items()}
            # profiles saved before spreads existed read as none (no z-scores)
            spread = table("spread") if "spread" in data else {}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise FlowsentryError(f"{source}: not a flowsentry evidence profile ({exc})") from None
        return cls(normal, levels, spread)

    @functools.cached_property
    def id(self) -> str:
        """A short content hash: which profile made a frame's evidence."""
        from flowsentry.io import digest

        return digest(self.to_dict())[:16]

    @staticmethod
    def _index(source: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[Any, float]]:
        """measure -> {(workflow, task): value}: built once, read per request."""
        table: dict[str, dict[Any, float]] = {}
        for wf, tasks in source.items():
            for task, values in tasks.items():
                for measure, value in values.items():
                    table.setdefault(measure, {})[(wf, task)] = value
        return table

    @functools.cached_property
    def _by_measure(self) -> dict[str, dict[Any, float]]:
        return self._index(self.normal)

    @functools.cached_property
    def _spread_by_measure(self) -> dict[str, dict[Any, float]]:
        return self._index(self.spread)

    def medians(self, jobs: pd.DataFrame, measure: str) -> np.ndarray:
        """Each job's normal median of `measure` (NaN for an unknown workflow or task)."""
        return self._lookup(self._by_measure.get(measure, {}), jobs)

    def spreads(self, jobs: pd.DataFrame, measure: str) -> np.ndarray:
        """Each job's robust spread of log `measure` (NaN for an unknown workflow or task)."""
        return self._lookup(self._spread_by_measure.get(measure, {}), jobs)

    @staticmethod
    def _lookup(table: dict[Any, float], jobs: pd.DataFrame) -> np.ndarray:
        workflows = jobs["workflow"] if "workflow" in jobs else pd.Series("", index=jobs.index)
        tasks = jobs["task"] if "task" in jobs else pd.Series("", index=jobs.index)
        keys = zip(workflows.astype(object), tasks.astype(object), strict=True)
        return np.array([table.get(key, np.nan) for key in keys], dtype="float64")


def group_codes(*keys: Any) -> np.ndarray:
    """One integer a distinct combination of `keys` (missing values a group of their
    own, as groupby's dropna=False): grouping by it skips pandas' per-key checks, which
    cost more than the medians on a service request's few hundred jobs."""
    codes = np.zeros(len(keys[0]) if keys else 0, dtype=np.int64)
    for key in keys:
        part, uniques = pd.factorize(np.asarray(key, dtype=object), use_na_sentinel=False)
        codes = codes * (len(uniques) + 1) + part
    return pd.factorize(codes)[0]


def add_evidence(jobs: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """`jobs` plus EVIDENCE_COLUMNS and PROFILE_COLUMN (NaN where a job has no value, no
    profiled task or no host)."""
    run = [jobs[c] for c in ("workflow", "run") if c in jobs.columns]
    host = (
        jobs["kickstart_hostname"]
        if "kickstart_hostname" in jobs.columns
        else pd.Series(pd.NA, index=jobs.index, dtype="string")
    )
    new: dict[str, Any] = {}
    ratios: dict[str, pd.Series] = {}
    for measure in MEASURES:
        if measure not in jobs.columns or not len(jobs):
            for name in evidence_columns(measure):
                new[name] = np.full(len(jobs), np.nan)
            continue
        values = pd.to_numeric(jobs[measure], errors="coerce").astype("float64")
        base = np.maximum(profile.medians(jobs, measure), FLOOR)
        ratios[measure] = (values / base).clip(upper=RATIO_LIMIT)
    if ratios:  # every measure's groups at once: one grouping a kind, not one a measure
        table = pd.DataFrame(ratios, index=jobs.index)
        by_host = table.groupby(group_codes(*run, host))
        host_means = by_host.transform("mean").where(host.notna(), axis=0)
        host_medians = by_host.transform("median").where(host.notna(), axis=0)
        whole = run or [np.zeros(len(table))]  # no run columns: the jobs are one run
        run_medians = table.groupby(group_codes(*whole)).transform("median")
        for measure in ratios:
            ratio_name, host_mean, host_median, run_median = evidence_columns(measure)
            new[ratio_name] = table[measure].to_numpy()
            new[host_mean] = host_means[measure].to_numpy()
            new[host_median] = host_medians[measure].to_numpy()
            new[run_median] = run_medians[measure].to_numpy()
    names = [n for m in MEASURES for n in evidence_columns(m)]  # in the usual order
    columns = {name: new[name] for name in names} | {PROFILE_COLUMN: profile.id}
    # One concatenation: inserting ~40 columns one by one cost more than computing them.
    return pd.concat(
        [jobs.drop(columns=[c for c in columns if c in jobs.columns]),
         pd.DataFrame(columns, index=jobs.index)],
        axis=1,
    )  # fmt: skip


def has_evidence(jobs: pd.DataFrame, profile: Profile) -> bool:
    """Whether `jobs` carries evidence columns made by `profile`."""
    if PROFILE_COLUMN not in jobs.columns or not set(EVIDENCE_COLUMNS) <= set(jobs.columns):
        return False
    made_by = jobs[PROFILE_COLUMN]
    return bool(len(jobs) == 0 or (made_by == profile.id).all())


def read_profile(path: str | Path) -> Profile:
    """The evidence profile `prepare` wrote (`paths.profile`), or a one-line error."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FlowsentryError(f"{path}: missing; run `flowsentry prepare` first") from None
    except (OSError, ValueError) as exc:
        raise FlowsentryError(f"{path}: unreadable ({exc})") from None
    return Profile.from_dict(data, str(path))


def profile_of(metadata: Mapping[str, Any], source: str) -> Profile | None:
    """The profile a saved detector's metadata holds (None when it reads no evidence)."""
    data = metadata.get("profile")
    return None if data is None else Profile.from_dict(data, source)
