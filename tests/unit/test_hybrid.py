"""The hybrid's folds: whole runs, every fold used, the same deal for the same seed."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.errors import FlowsentryError
from flowsentry.models.hybrid import run_folds


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["w", "x"]), st.integers(0, 30)), min_size=1, max_size=80),
    st.integers(2, 5),
    st.integers(0, 3),
)
def test_folds_deal_whole_runs_and_use_every_fold(rows, folds, seed):
    jobs = pd.DataFrame(rows, columns=["workflow", "run"]).astype({"run": str})
    runs = jobs.drop_duplicates().shape[0]
    if runs < folds:
        with pytest.raises(FlowsentryError, match="cannot make"):
            run_folds(jobs, folds, seed)
        return
    fold = run_folds(jobs, folds, seed)
    assert len(fold) == len(jobs) and set(fold) == set(range(folds))
    # a run (of a workflow) lies in one fold; the same run id in two workflows may not
    assert (jobs.assign(fold=fold).groupby(["workflow", "run"])["fold"].nunique() == 1).all()
    sizes = pd.Series(fold).groupby(jobs["workflow"] + "/" + jobs["run"]).first().value_counts()
    assert sizes.max() - sizes.min() <= 1  # runs dealt evenly
    assert (run_folds(jobs, folds, seed) == fold).all()
