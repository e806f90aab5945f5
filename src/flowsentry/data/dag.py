"""Evidence from the DAG: what a job's parents and children did in the same run.

A slowed executor node slows every job it runs, so a job's parents and children tell
something about it: were they slow too (against their own task's normal), did they run
on the same host, and how long after its last parent ended did this job become ready
(a late `ready` points at the workflow system, not the node). Flow-Bench ships each
workflow's DAG (`adjacency_list_dags/<workflow>.json`, `{job: [child, ...]}`);
`prepare` writes each job's parents into the column `parents` (space-separated job ids,
empty for a root), so the evidence can be computed from the jobs of a run alone: the
whole run after it ended, or the jobs finished so far while it runs.

`add_dag_evidence(jobs)` adds `DAG_COLUMNS`, per job of a run (NaN where a job has no
parent or child among the jobs given):

- `dag_parents`, `dag_children`: how many of its parents / children are among them;
- `parents_m_vs_normal_max`, `children_m_vs_normal_median` for m in `DAG_MEASURES`: its
  parents' worst and its children's typical slowdown against their tasks' normal
  (the `m_vs_normal` evidence columns, which must be present);
- `parents_same_host`, `children_same_host`: the share that ran on its host;
- `ready_lag`: seconds from its last parent's end to its own `ready`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from flowsentry.data.context import finish_times

PARENTS = "parents"
DAG_MEASURES: tuple[str, ...] = ("runtime", "stage_in_delay", "stage_out_delay")
DAG_COLUMNS: tuple[str, ...] = (
    "dag_parents",
    "dag_children",
    *(f"parents_{m}_vs_normal_max" for m in DAG_MEASURES),
    *(f"children_{m}_vs_normal_median" for m in DAG_MEASURES),
    "parents_same_host",
    "children_same_host",
    "ready_lag",
)
_RUN = ("workflow", "run")


def parents_column(
    jobs: pd.DataFrame, dags: Mapping[str, Mapping[str, Sequence[str]]]
) -> pd.Series:
    """Each job's parents as space-separated job ids, from its workflow's DAG
    (`{job: [child, ...]}`); missing (NA) for a workflow without a DAG."""
    parents: dict[str, dict[str, list[str]]] = {}
    for workflow, dag in dags.items():
        of = parents.setdefault(workflow, {})
        for parent, children in dag.items():
            for child in children:
                of.setdefault(str(child), []).append(str(parent))
    known = jobs["workflow"].isin(parents)
    values = [
        " ".join(sorted(parents[w].get(str(j), []))) if k else pd.NA
        for w, j, k in zip(jobs["workflow"], jobs["job"], known, strict=True)
    ]
    return pd.Series(values, index=jobs.index, dtype="string")


def has_dag(jobs: pd.DataFrame) -> bool:
    return PARENTS in jobs.columns and all(c in jobs.columns for c in DAG_COLUMNS)


def add_dag_evidence(jobs: pd.DataFrame) -> pd.DataFrame:
    """`jobs` with `DAG_COLUMNS`, from the parent links among `jobs` of the same run
    (all NaN without a `parents` column)."""
    out = jobs.drop(columns=[c for c in DAG_COLUMNS if c in jobs.columns])
    new = pd.DataFrame(np.nan, index=jobs.index, columns=list(DAG_COLUMNS))
    if PARENTS not in jobs.columns or jobs.empty:
        return pd.concat([out, new], axis=1)
    keys = [c for c in _RUN if c in jobs.columns]
    row = pd.Series(np.arange(len(jobs)), index=jobs.index)
    links = (
        jobs[PARENTS].astype("string").fillna("").str.split().rename("parent").to_frame()
        .assign(child_row=row, **{k: jobs[k] for k in keys})
        .explode("parent").dropna(subset=["parent"])
    )  # fmt: skip
    unknown = jobs[PARENTS].isna().to_numpy()  # a workflow without a DAG: unknown
    if links.empty:
        new[["dag_parents", "dag_children"]] = 0.0
        new.loc[unknown] = np.nan
        return pd.concat([out, new], axis=1)
    lookup = jobs[[*keys, "job"]].assign(parent_row=row.to_numpy())
    lookup = lookup.rename(columns={"job": "parent"})
    lookup["parent"] = lookup["parent"].astype(str)
    links["parent"] = links["parent"].astype(str)
    pairs = links.merge(lookup, on=[*keys, "parent"], how="inner")  # parents among `jobs`
    child, parent = pairs["child_row"].to_numpy(), pairs["parent_row"].to_numpy()

    host = (
        jobs["kickstart_hostname"].astype("string").to_numpy()
        if "kickstart_hostname" in jobs.columns
        else np.full(len(jobs), pd.NA, dtype=object)
    )
    same = pd.Series(
        [
            np.nan if pd.isna(a) or pd.isna(b) else float(a == b)
            for a, b in zip(host[child], host[parent], strict=True)
        ],
        dtype="float64",
    )
    finish = finish_times(jobs).replace(np.inf, np.nan).to_numpy("float64")
    by_child, by_parent = pd.Series(child), pd.Series(parent)
    count = np.zeros(len(jobs))
    np.add.at(count, child, 1)
    new["dag_parents"] = count
    count = np.zeros(len(jobs))
    np.add.at(count, parent, 1)
    new["dag_children"] = count

    def spread(values: pd.Series, at: pd.Series, how: str) -> np.ndarray:
        result = np.full(len(jobs), np.nan)
        grouped = values.groupby(at.to_numpy()).agg(how)
        result[grouped.index.to_numpy()] = grouped.to_numpy()
        return result

    for m in DAG_MEASURES:
        column = f"{m}_vs_normal"
        values = (
            pd.to_numeric(jobs[column], errors="coerce").to_numpy("float64")
            if column in jobs.columns
            else np.full(len(jobs), np.nan)
        )
        new[f"parents_{m}_vs_normal_max"] = spread(pd.Series(values[parent]), by_child, "max")
        new[f"children_{m}_vs_normal_median"] = spread(
            pd.Series(values[child]), by_parent, "median"
        )
    new["parents_same_host"] = spread(same, by_child, "mean")
    new["children_same_host"] = spread(same, by_parent, "mean")
    if "ready" in jobs.columns:
        last_parent = spread(pd.Series(finish[parent]), by_child, "max")
        ready = pd.to_numeric(jobs["ready"], errors="coerce").to_numpy("float64")
        new["ready_lag"] = ready - last_parent
    new.loc[unknown] = np.nan
    return pd.concat([out, new], axis=1)
