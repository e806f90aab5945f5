"""Sibling context after the run and in real time (only the siblings finished so far)."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.data import context
from flowsentry.data.context import (
    AS_OF,
    CONTEXT_COLUMNS,
    add_context,
    context_as_of_finish,
    context_at_moments,
    finish_times,
)
from flowsentry.data.dag import PARENTS, add_dag_evidence, parents_column
from flowsentry.data.evidence import Profile


def _run(runtimes, ends, hosts, run="r1", task="t"):
    return pd.DataFrame(
        {
            "workflow": "wf",
            "run": run,
            "task": task,
            "kickstart_hostname": hosts,
            "runtime": runtimes,
            "execute_end": ends,
            "post_script_end": [e + 1.0 for e in ends],
        }
    )


def test_slow_host_shows_in_its_jobs_ratios():
    jobs = _run([100.0, 100.0, 400.0, 400.0], [1, 2, 3, 4], ["a", "a", "slow", "slow"])
    ctx = add_context(jobs)
    assert ctx["runtime_vs_task"].tolist() == [0.4, 0.4, 1.6, 1.6]  # median 250
    assert ctx["host_runtime_mean"].tolist() == [0.4, 0.4, 1.6, 1.6]


def test_real_time_context_sees_only_the_siblings_finished_before():
    jobs = _run([100.0, 300.0, 900.0], [10.0, 20.0, 30.0], ["a", "b", "c"])
    rt = context_as_of_finish(jobs, jobs.index)
    assert rt["runtime_vs_task"].tolist() == [1.0, 1.5, 1.0 * 900 / 300]  # medians 100, 200, 300
    # the last to finish sees the whole run: post-run context
    last = add_context(jobs).loc[[2], list(CONTEXT_COLUMNS)]
    pd.testing.assert_frame_equal(rt.loc[[2], list(CONTEXT_COLUMNS)], last)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(1, 1e4),
            st.floats(0, 1e3),
            st.sampled_from(["a", "b"]),
            st.sampled_from(["r1", "r2"]),
        ),
        min_size=2,
        max_size=12,
    ),
    st.data(),
)
def test_a_job_never_sees_a_sibling_that_finished_after_it(rows, data):
    """Changing any job that finished later (or in another run) never changes a job's
    real-time context; with the run complete, its context is the post-run one."""
    frame = pd.concat([_run([r], [e], [h], run=run) for r, e, h, run in rows], ignore_index=True)
    target = data.draw(st.integers(0, len(frame) - 1))
    before = context_as_of_finish(frame, pd.Index([target]))
    finished = finish_times(frame)
    later = [
        i
        for i in frame.index
        if finished[i] > finished[target] or frame.at[i, "run"] != frame.at[target, "run"]
    ]
    changed = frame.copy()
    changed.loc[later, "runtime"] = changed.loc[later, "runtime"] * 7 + 1
    after = context_as_of_finish(changed, pd.Index([target]))
    pd.testing.assert_frame_equal(before[list(CONTEXT_COLUMNS)], after[list(CONTEXT_COLUMNS)])


def test_unknown_finish_time_sees_the_whole_run():
    jobs = _run([100.0, 300.0, 900.0], [10.0, np.nan, 30.0], ["a", "b", "c"])
    jobs.loc[1, "post_script_end"] = np.nan
    assert finish_times(jobs)[1] == np.inf
    rt = context_as_of_finish(jobs, pd.Index([1]))
    assert rt.at[1, "runtime_vs_task"] == pytest.approx(1.0)  # median of all three is 300


@st.composite
def _runs_with_dag(draw):
    """Jobs of up to three runs (of one or two workflows, a run name missing at times) over
    a DAG of parent links, some finish times unknown, hosts shared or not."""
    n = draw(st.integers(1, 7))
    ids = [f"j{i}" for i in range(n)]
    rows = []
    for run in draw(st.lists(st.sampled_from(["r0", "r1", None]), min_size=1, max_size=3,
                             unique=True)):  # fmt: skip
        workflow = draw(st.sampled_from(["wf", "other"]))
        for job in ids:
            if job != ids[0] and not draw(st.booleans()):
                continue  # a run may lack jobs
            end = draw(st.one_of(st.none(), st.floats(0, 50)))
            rows.append({
                "workflow": workflow, "run": run, "job": job,
                "task": draw(st.sampled_from(["t", "u"])),
                "kickstart_hostname": draw(st.sampled_from(["a", "b", None])),
                "runtime": draw(st.floats(1, 1e3)), "execute_end": end,
                "post_script_end": None if end is None else end + 1.0,
                "label": draw(st.sampled_from([0, 1])),
            })  # fmt: skip
    jobs = pd.DataFrame(rows).astype({"run": "string", "workflow": "string", "job": "string"})
    dag = {job: ids[i + 1 : i + 1 + draw(st.integers(0, 2))] for i, job in enumerate(ids)}
    jobs[PARENTS] = parents_column(jobs, {"wf": dag, "other": dag})
    return jobs.set_axis(np.arange(len(jobs)) * 3 + 5)  # an index that is not positions


def _one_subset(jobs, seen, profile):
    out = add_context(jobs.loc[seen], profile)
    return add_dag_evidence(out)


@settings(max_examples=25, deadline=None)
@given(jobs=_runs_with_dag(), with_profile=st.booleans(), batch_rows=st.sampled_from([1, 7, 10**6]))
def test_stacked_views_equal_each_view_computed_alone(jobs, with_profile, batch_rows):
    """Real-time context and the augmentation's moments, computed for many views in one
    stacked call, equal `add_context` (+ DAG evidence) on each view alone."""
    profile = Profile.fit(jobs) if with_profile else None
    finished = finish_times(jobs)
    with patch.object(context, "AS_OF_BATCH_ROWS", batch_rows):
        live = context_as_of_finish(jobs, jobs.index, profile)
        moments = context_at_moments(jobs, 2, np.random.default_rng(0), profile)
    run_of = dict(zip(jobs.index, zip(jobs["workflow"], jobs["run"].fillna("-"), strict=True),
                      strict=True))  # fmt: skip
    for index in jobs.index:
        same_run = pd.Index([i for i in jobs.index if run_of[i] == run_of[index]])
        seen = same_run[finished.loc[same_run].to_numpy() <= finished.loc[index]]
        alone = _one_subset(jobs, seen, profile).loc[[index]]
        pd.testing.assert_frame_equal(live.loc[[index]], alone[live.columns], check_exact=True)
    assert set(moments.columns) - {AS_OF} == set(live.columns)
    for _, view in moments.groupby(["workflow", moments["run"].fillna("\0"), AS_OF], sort=False):
        alone = _one_subset(jobs, view.index, profile)
        pd.testing.assert_frame_equal(
            view.drop(columns=AS_OF), alone[live.columns], check_exact=True
        )
