"""Sibling context after the run and in real time (only the siblings finished so far)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.data.context import (
    CONTEXT_COLUMNS,
    add_context,
    context_as_of_finish,
    finish_times,
)


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
