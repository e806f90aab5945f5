"""Evidence that travels between workflows: a job and its host against their peers in the run.

Flow-Bench slows whole executor nodes (cores withheld, disk throughput capped), and a
Pegasus installation's bad nodes look the same: every job a node ran is slower than the
same task's jobs on the run's other nodes. That comparison needs no labels and no
knowledge of the workflow: it is a ratio to the run's own jobs, so one model trained on
some workflows reads another's. For each measure `m` in `PEER_MEASURES`:

- `peer_m`: the job's value / the median of its task's jobs in the run;
- `peer_host_m`: the median of `peer_m` over the jobs its host ran in the run;
- `peer_host_m_z`: that host median as a robust z-score among the run's hosts
  ((x - median) / (1.4826 MAD), the spread floored at `Z_FLOOR` so a run of identical
  hosts does not make every small difference huge);
- `peer_host_m_rank`: its rank among the run's hosts (0 the fastest, 1 the slowest).

And two signatures of the injected faults, relative to the task in the run:

- `peer_starved`: wall time per CPU second (runtime / CPU time): a node with cores
  withheld runs as long for the same CPU work; with its host median, z and rank;
- `peer_io`: stage-in plus stage-out delay per byte moved, for a throttled disk.

And against the workflow's own normal, on one scale for every workflow: with a `Profile`
(fitted without labels on the workflow's runs: `Profile.fit(..., labelled=False)`), for
each measure `m` of `evidence.MEASURES`,

- `z_m`: log(value / the task's normal median) / the task's robust spread of log m,
  a robust z-score (a job 3 spreads slower than its task's normal reads 3 in any workflow);
- `host_z_m`, `run_z_m`: its median over the host's jobs in the run and over the run.

`AGNOSTIC_COLUMNS` (the feature set `agnostic`) is both groups: no task code, no
absolute value, nothing a model could tie to one workflow. `add_agnostic` adds them.
Only trace features of the run's jobs are read, never labels. Every value is NaN where
the job (or every job of its group) lacks the measure, never invented.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flowsentry.data.evidence import FLOOR, MEASURES, RATIO_LIMIT, Profile, group_codes

PEER_MEASURES: tuple[str, ...] = (
    "runtime",
    "kickstart_executables_cpu_time",
    "stage_in_delay",
    "stage_out_delay",
    "kickstart_online_utime",
    "kickstart_online_stime",
    "kickstart_online_iowait",
    "queue_delay",
)
SIGNATURES: tuple[str, ...] = ("starved", "io")
Z_FLOOR = 0.05  # the smallest spread of host medians a z-score divides by (5 %)
Z_LIMIT = 1e3


def _names(key: str) -> tuple[str, str, str, str]:
    return (f"peer_{key}", f"peer_host_{key}", f"peer_host_{key}_z", f"peer_host_{key}_rank")


def peer_columns() -> tuple[str, ...]:
    """Every column `add_peers` adds, in order."""
    return tuple(c for key in (*PEER_MEASURES, *SIGNATURES) for c in _names(key))


PEER_COLUMNS: tuple[str, ...] = peer_columns()
Z_COLUMNS: tuple[str, ...] = tuple(
    c for m in MEASURES for c in (f"z_{m}", f"host_z_{m}", f"run_z_{m}")
)
AGNOSTIC_COLUMNS: tuple[str, ...] = PEER_COLUMNS + Z_COLUMNS
#: signature -> the measures it is computed from
SIGNATURE_MEASURES: dict[str, tuple[str, ...]] = {
    "starved": ("runtime", "kickstart_executables_cpu_time"),
    "io": ("stage_in_delay", "stage_out_delay", "stage_in_bytes", "stage_out_bytes"),
}
#: agnostic column -> the recorded measures it reads (what a source must record)
AGNOSTIC_MEASURES: dict[str, tuple[str, ...]] = {
    **{c: (m,) for m in PEER_MEASURES for c in _names(m)},
    **{c: SIGNATURE_MEASURES[key] for key in SIGNATURES for c in _names(key)},
    **{c: (m,) for m in MEASURES for c in (f"z_{m}", f"host_z_{m}", f"run_z_{m}")},
}
#: which profile made a frame's z-scores (a detector with another recomputes them)
Z_PROFILE_COLUMN = "z_profile"


def _signatures(jobs: pd.DataFrame) -> dict[str, pd.Series]:
    def column(name: str) -> pd.Series:
        if name in jobs.columns:
            return pd.to_numeric(jobs[name], errors="coerce").astype("float64")
        return pd.Series(np.nan, index=jobs.index)

    runtime, cpu = column("runtime"), column("kickstart_executables_cpu_time")
    starved = runtime / cpu.where(cpu > 0)
    moved = column("stage_in_bytes").fillna(0) + column("stage_out_bytes").fillna(0)
    delay = column("stage_in_delay").add(column("stage_out_delay"), fill_value=0)
    io = delay / moved.where(moved > 0)
    return {"starved": starved, "io": io}


def add_peers(jobs: pd.DataFrame) -> pd.DataFrame:
    """`jobs` plus PEER_COLUMNS (see the module's text)."""
    run = [jobs[c] for c in ("workflow", "run") if c in jobs.columns] or [
        np.zeros(len(jobs))  # no run columns: the jobs are one run
    ]
    task = jobs["task"] if "task" in jobs.columns else pd.Series("?", index=jobs.index)
    host = (
        jobs["kickstart_hostname"]
        if "kickstart_hostname" in jobs.columns
        else pd.Series(pd.NA, index=jobs.index, dtype="string")
    )
    values = {
        m: pd.to_numeric(jobs[m], errors="coerce").astype("float64")
        if m in jobs.columns
        else pd.Series(np.nan, index=jobs.index)
        for m in PEER_MEASURES
    } | _signatures(jobs)
    table = pd.DataFrame(values, index=jobs.index)
    new: dict[str, Any] = {}
    if len(table):
        median = table.groupby(group_codes(*run, task)).transform("median")
        ratio = (table / median.where(median > 0)).clip(-RATIO_LIMIT, RATIO_LIMIT)
        host_codes = group_codes(*run, host)
        host_median = ratio.groupby(host_codes).transform("median").where(host.notna(), axis=0)
        # One row per (run, host): the host's standing among the run's hosts.
        run_codes = group_codes(*run)
        hosts = host_median.assign(_run=run_codes, _host=host_codes)[host.notna().to_numpy()]
        hosts = hosts.drop_duplicates("_host").set_index("_host")
        by_run = hosts.groupby("_run")
        centre = by_run.transform("median")
        spread = (hosts.drop(columns="_run") - centre).abs()
        spread = spread.assign(_run=hosts["_run"]).groupby("_run").transform("median") * 1.4826
        z = ((hosts.drop(columns="_run") - centre) / spread.clip(lower=Z_FLOOR)).clip(
            -Z_LIMIT, Z_LIMIT
        )
        rank = by_run.rank(pct=True, method="average")
        count = by_run.transform("count")
        rank = ((rank * count - 1) / (count - 1).where(count > 1)).fillna(0.5)
        for key in table.columns:
            job, host_col, z_col, rank_col = _names(key)
            new[job] = ratio[key].to_numpy()
            new[host_col] = host_median[key].to_numpy()
            missing = np.isnan(new[host_col])
            for name, standing in ((z_col, z), (rank_col, rank)):
                mapped = pd.Series(host_codes).map(standing[key]).to_numpy("float64", copy=True)
                mapped[missing] = np.nan
                new[name] = mapped
    else:
        new = {name: np.array([], dtype="float64") for name in PEER_COLUMNS}
    return pd.concat(
        [jobs.drop(columns=[c for c in PEER_COLUMNS if c in jobs.columns]),
         pd.DataFrame({name: new[name] for name in PEER_COLUMNS}, index=jobs.index)],
        axis=1,
    )  # fmt: skip


def add_z(jobs: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """`jobs` plus Z_COLUMNS and Z_PROFILE_COLUMN (see the module's text)."""
    run = [jobs[c] for c in ("workflow", "run") if c in jobs.columns] or [np.zeros(len(jobs))]
    host = (
        jobs["kickstart_hostname"]
        if "kickstart_hostname" in jobs.columns
        else pd.Series(pd.NA, index=jobs.index, dtype="string")
    )
    z: dict[str, np.ndarray] = {}
    for measure in MEASURES:
        if measure not in jobs.columns:
            z[measure] = np.full(len(jobs), np.nan)
            continue
        values = pd.to_numeric(jobs[measure], errors="coerce").to_numpy("float64")
        base = np.maximum(profile.medians(jobs, measure), FLOOR)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.log(np.maximum(values, FLOOR) / base)
        z[measure] = np.clip(ratio / profile.spreads(jobs, measure), -Z_LIMIT, Z_LIMIT)
    table = pd.DataFrame(z, index=jobs.index)
    new: dict[str, Any] = {}
    if len(table):
        hosts = table.groupby(group_codes(*run, host)).transform("median")
        hosts = hosts.where(host.notna(), axis=0)
        runs = table.groupby(group_codes(*run)).transform("median")
    else:
        hosts = runs = table
    for measure in MEASURES:
        new[f"z_{measure}"] = table[measure].to_numpy()
        new[f"host_z_{measure}"] = hosts[measure].to_numpy()
        new[f"run_z_{measure}"] = runs[measure].to_numpy()
    columns = {name: new[name] for name in Z_COLUMNS} | {Z_PROFILE_COLUMN: profile.id}
    return pd.concat(
        [jobs.drop(columns=[c for c in columns if c in jobs.columns]),
         pd.DataFrame(columns, index=jobs.index)],
        axis=1,
    )  # fmt: skip


def add_agnostic(jobs: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """`jobs` plus AGNOSTIC_COLUMNS: the peer comparisons and the z-scores to `profile`."""
    return add_z(add_peers(jobs), profile)


def has_agnostic(jobs: pd.DataFrame, profile: Profile) -> bool:
    """Whether `jobs` carries the agnostic columns, its z-scores made by `profile`."""
    if Z_PROFILE_COLUMN not in jobs.columns or not set(AGNOSTIC_COLUMNS) <= set(jobs.columns):
        return False
    return bool(len(jobs) == 0 or (jobs[Z_PROFILE_COLUMN] == profile.id).all())
