"""Split assignment: deterministic, leak-free by run, reproducible from a manifest."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.data.splits import assign_splits, run_strata
from flowsentry.errors import DataError


@pytest.fixture
def jobs():
    return pd.DataFrame(
        {
            "workflow": "wf",
            "run": [f"run{r:02d}" for r in range(20) for _ in range(10)],
            "job": [f"job{j}" for _ in range(20) for j in range(10)],
        }
    )


def test_random_split_has_paper_ratios_and_is_reproducible(jobs):
    split = assign_splits(jobs, "random", seed=7)
    assert split.value_counts().to_dict() == {"train": 160, "val": 20, "test": 20}
    assert split.equals(assign_splits(jobs, "random", seed=7))
    assert not split.equals(assign_splits(jobs, "random", seed=8))


def test_split_does_not_depend_on_row_order(jobs):
    shuffled = jobs.sample(frac=1, random_state=3)
    a = assign_splits(jobs, "random", seed=1)
    b = assign_splits(shuffled, "random", seed=1).reindex(jobs.index)
    assert a.equals(b)


def test_by_run_puts_each_run_in_one_split(jobs):
    split = assign_splits(jobs, "by_run", seed=2)
    per_run = jobs.assign(split=split).groupby("run")["split"].nunique()
    assert (per_run == 1).all()
    assert jobs.assign(split=split).groupby("split")["run"].nunique().to_dict() == {
        "train": 16,
        "val": 2,
        "test": 2,
    }


def test_file_manifest_reproduces_a_published_split(jobs, tmp_path):
    published = jobs.assign(split=assign_splits(jobs, "by_run", seed=5))
    manifest = tmp_path / "split.csv"
    published[["run", "job", "split"]].to_csv(manifest, index=False)
    assert assign_splits(jobs, "file", manifest=manifest).equals(published["split"])


def test_manifest_errors_name_file_and_field(jobs, tmp_path):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("run,job,split\nrun00,job0,holdout\n")
    with pytest.raises(DataError, match=r"bad\.csv: column 'split': split 'holdout'"):
        assign_splits(jobs, "file", manifest=manifest)
    manifest.write_text("run,job\nrun00,job0\n")
    with pytest.raises(DataError, match="column 'split': required column missing"):
        assign_splits(jobs, "file", manifest=manifest)


def test_jobs_missing_from_manifest_are_counted_not_assigned(jobs, tmp_path):
    manifest = tmp_path / "part.csv"
    manifest.write_text("run,job,split\nrun00,job0,train\nrun00,job1,test\n")
    split = assign_splits(jobs, "file", manifest=manifest)
    assert split.notna().sum() == 2 and split.isna().sum() == 198


ANOMALY_TYPES = ["None", "cpu_2", "cpu_3", "hdd_5", "hdd_10"]


@st.composite
def runs_of_jobs(draw):
    """Jobs of several workflows and runs; each run carries one anomaly type (or none)."""
    rows = []
    for w in range(draw(st.integers(1, 3))):
        for r in range(draw(st.integers(1, 25))):
            kind = draw(st.sampled_from(ANOMALY_TYPES))
            for j in range(draw(st.integers(1, 6))):
                anomalous = kind != "None" and j % 2 == 0
                rows.append(
                    {
                        "workflow": f"wf{w}",
                        "run": f"run{r:03d}",
                        "job": f"job{j}",
                        "anomaly_type": kind if anomalous else "None",
                    }
                )
    return pd.DataFrame(rows)


@settings(max_examples=60, deadline=None)
@given(jobs=runs_of_jobs(), seed=st.integers(0, 2**16))
def test_by_run_splits_never_share_a_run(jobs, seed):
    split = assign_splits(jobs, "by_run", seed=seed)
    assert split.notna().all()  # every job is assigned
    per_run = jobs.assign(split=split).groupby(["workflow", "run"])["split"].nunique()
    assert (per_run == 1).all()  # no run (so no host of a run) on two sides
    shuffled = jobs.sample(frac=1, random_state=seed % 97)
    again = assign_splits(shuffled, "by_run", seed=seed).reindex(jobs.index)
    assert again.equals(split)  # the order rows arrive in changes nothing


def test_by_run_stratifies_runs_by_anomaly_type():
    """Ten runs of each type: every split holds runs of every type."""
    rows = [
        {"workflow": "wf", "run": f"{kind}-{r}", "job": f"j{j}", "anomaly_type": value}
        for kind in ANOMALY_TYPES
        for r in range(10)
        for j in range(4)
        for value in [kind if j % 2 == 0 else "None"]
    ]
    jobs = pd.DataFrame(rows)
    split = assign_splits(jobs, "by_run", seed=11)
    table = jobs.assign(split=split, kind=jobs["run"].str.split("-").str[0])
    per_type = table.groupby(["kind", "split"])["run"].nunique().unstack()
    assert (per_type["train"] == 8).all() and (per_type["val"] == 1).all()
    assert (per_type["test"] == 1).all()
    assert run_strata(jobs).set_index("run")["stratum"].loc["hdd_5-3"] == "hdd_5"
    assert run_strata(jobs).set_index("run")["stratum"].loc["None-3"] == "none"
