"""DAG evidence: what a job's parents and children did in its run (data/dag.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.data.context import context_as_of_finish
from flowsentry.data.dag import DAG_COLUMNS, PARENTS, add_dag_evidence, parents_column
from flowsentry.data.sources import missing_measures
from flowsentry.text.sentences import features_of


@st.composite
def runs(draw):
    """Jobs of one or two runs of a random DAG (edges only from lower to higher ids)."""
    n = draw(st.integers(1, 12))
    ids = [f"j{i}" for i in range(n)]
    dag = {
        job: sorted({ids[c] for c in draw(st.lists(st.integers(i + 1, n - 1), max_size=3))})
        if i < n - 1
        else []
        for i, job in enumerate(ids)
    }
    rows = []
    for run in draw(st.sampled_from([["r0"], ["r0", "r1"]])):
        kept = [j for j in ids if draw(st.booleans()) or j == ids[0]]  # a run may lack jobs
        for job in kept:
            rows.append(
                {
                    "workflow": "w",
                    "run": run,
                    "job": job,
                    "kickstart_hostname": draw(st.sampled_from(["a", "b", None])),
                    "runtime_vs_normal": draw(st.floats(0.1, 50)),
                    "ready": float(draw(st.integers(0, 100))),
                    "execute_end": float(draw(st.integers(0, 100))),
                }
            )
    return pd.DataFrame(rows), dag


@settings(max_examples=60, deadline=None)
@given(runs())
def test_dag_evidence_equals_a_job_by_job_count_over_its_own_run(case):
    jobs, dag = case
    jobs[PARENTS] = parents_column(jobs, {"w": dag})
    out = add_dag_evidence(jobs)
    assert list(out.index) == list(jobs.index) and set(DAG_COLUMNS) <= set(out.columns)
    for i, row in out.iterrows():
        run = jobs[jobs["run"] == row["run"]].set_index("job")
        parents = [p for p, cs in dag.items() if row["job"] in cs and p in run.index]
        children = [c for c in dag[row["job"]] if c in run.index]
        assert row["dag_parents"] == len(parents) and row["dag_children"] == len(children)
        if parents:
            assert (
                row["parents_runtime_vs_normal_max"] == run.loc[parents, "runtime_vs_normal"].max()
            )
            assert row["ready_lag"] == row["ready"] - run.loc[parents, "execute_end"].max()
        else:
            assert np.isnan(row["parents_runtime_vs_normal_max"]) and np.isnan(row["ready_lag"])
        if children:
            expected = run.loc[children, "runtime_vs_normal"].median()
            assert row["children_runtime_vs_normal_median"] == expected
        host = jobs.loc[i, "kickstart_hostname"]
        hosts = [h for h in run.loc[parents, "kickstart_hostname"]]
        if parents and not pd.isna(host) and not any(pd.isna(h) for h in hosts):
            assert row["parents_same_host"] == np.mean([h == host for h in hosts])


def test_a_workflow_without_a_dag_has_unknown_evidence_and_no_parents_means_nan():
    jobs = pd.DataFrame(
        {"workflow": ["w", "x"], "run": "r", "job": ["a", "b"], "runtime_vs_normal": 1.0}
    )
    jobs[PARENTS] = parents_column(jobs, {"w": {"a": []}})
    assert jobs[PARENTS].tolist()[0] == "" and pd.isna(jobs[PARENTS].tolist()[1])
    out = add_dag_evidence(jobs)
    assert out.loc[0, "dag_parents"] == 0 and out.loc[1, DAG_COLUMNS].isna().all()
    assert add_dag_evidence(jobs.drop(columns=PARENTS))[list(DAG_COLUMNS)].isna().all().all()


def test_in_real_time_a_parent_sees_no_children_that_had_not_finished():
    jobs = pd.DataFrame(
        {
            "workflow": "w",
            "run": "r",
            "job": ["p", "c"],
            "task": "t",
            "runtime": [10.0, 20.0],
            "execute_end": [100.0, 200.0],
            "ready": [0.0, 110.0],
            "kickstart_hostname": "h",
        }
    )
    jobs[PARENTS] = parents_column(jobs, {"w": {"p": ["c"], "c": []}})
    live = context_as_of_finish(jobs, jobs.index)
    assert live.loc[0, "dag_children"] == 0 and live.loc[1, "dag_parents"] == 1
    assert live.loc[1, "ready_lag"] == 10.0 and live.loc[1, "parents_same_host"] == 1.0
    assert add_dag_evidence(jobs).loc[0, "dag_children"] == 1  # after the run


def test_no_service_source_records_parents_so_a_dag_model_is_never_served():
    features = features_of("evidence_dag")
    assert set(DAG_COLUMNS) <= set(features)
    for source in ("flowbench", "stampede", "monitord"):
        assert PARENTS in missing_measures(source, features)
