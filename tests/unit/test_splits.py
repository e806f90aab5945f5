"""Split assignment: deterministic, leak-free by run, reproducible from a manifest."""

from __future__ import annotations

import pandas as pd
import pytest

from flowsentry.data.splits import assign_splits
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
