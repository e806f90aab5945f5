"""Split assignment: deterministic, leak-free by run, reproducible from a manifest."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.data.splits import (
    RECORD_CSV,
    RECORD_JSON,
    SPLITS,
    SplitRecord,
    _cut,
    assign_splits,
    read_record,
    record_splits,
    run_strata,
    write_record,
)
from flowsentry.errors import DataError
from flowsentry.reports import PrepareReport, SplitRecordCounts


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


# --- A run's by_run split is decided once (the record of earlier assignments) ---------


def _by_run_before_records(jobs, ratios=(0.8, 0.1, 0.1), seed=42):
    """by_run as it was before split records: the reference a record-less call must equal."""
    rng = np.random.default_rng(seed)
    keys = jobs[["workflow", "run"]].astype(str)
    kind = jobs["anomaly_type"].astype("string").str.strip()
    kind = kind.where(~kind.isin(["None", "none", ""]), pd.NA)
    strata = (
        keys.assign(kind=kind.to_numpy())
        .dropna(subset=["kind"])
        .groupby(["workflow", "run"])["kind"]
        .agg(lambda k: k.value_counts().sort_index().idxmax())
    )
    runs = keys.drop_duplicates().sort_values(["workflow", "run"], kind="stable")
    runs = runs.merge(strata.rename("stratum").reset_index(), on=["workflow", "run"], how="left")
    runs["stratum"] = runs["stratum"].fillna("none")
    parts = []
    for _, group in runs.groupby(["workflow", "stratum"], sort=True):
        group = group.iloc[rng.permutation(len(group))]
        parts.append(group.assign(split=_cut(len(group), ratios)))
    assigned = pd.concat(parts)[["workflow", "run", "split"]]
    merged = keys.merge(assigned, on=["workflow", "run"], how="left")
    return pd.Series(merged["split"].to_numpy(), index=jobs.index)


def _three_kinds(n_runs, workflows=("wfA", "wfB")):
    """Runs r00.. of each workflow; run r carries none, cpu_2 or hdd_5 by r % 3."""
    kinds = ["None", "cpu_2", "hdd_5"]
    return pd.DataFrame(
        [
            {
                "workflow": workflow,
                "run": f"r{r:02d}",
                "job": f"j{j}",
                "anomaly_type": kinds[r % 3] if j == 0 else "None",
            }
            for workflow in workflows
            for r in range(n_runs)
            for j in range(3)
        ]
    )


def _per_run(jobs, split):
    table = jobs[["workflow", "run"]].assign(split=split.to_numpy())
    return table.drop_duplicates(["workflow", "run"]).set_index(["workflow", "run"])["split"]


def test_by_run_without_a_record_is_the_split_it_always_was():
    """Fixed splits written down from the code before records existed (seed 3)."""
    jobs = _three_kinds(30)
    per_run = _per_run(jobs, assign_splits(jobs, "by_run", seed=3, previous=None))
    code = {"train": "T", "val": "V", "test": "E"}
    as_text = per_run.map(code).groupby(level="workflow").agg("".join).to_dict()
    assert as_text == {
        "wfA": "ETTTTVTTETVTTTTTTTTTTTTTTETVTT",
        "wfB": "TTTTTTTTVTTTETTTEEVTTTTTTVTTTT",
    }


def test_adding_runs_moves_no_recorded_run():
    """A retrain with one more run per workflow redrew the split of the old runs."""
    old, both = _three_kinds(12), _three_kinds(13)
    before = _per_run(old, assign_splits(old, "by_run", seed=3))
    redrawn = _per_run(both, assign_splits(both, "by_run", seed=3)).loc[before.index]
    assert (redrawn != before).sum() == 6  # what a record-less assignment does
    record, _ = record_splits(old, assign_splits(old, "by_run", seed=3), (0.8, 0.1, 0.1), 3)
    kept = _per_run(both, assign_splits(both, "by_run", seed=3, previous=record))
    assert kept.loc[before.index].equals(before)


NEW_TYPES = ["None", "cpu_2", "hdd_10"]


@st.composite
def new_runs(draw, prefix):
    """Runs to add: to old workflows and a new one, of old strata and a new one."""
    rows = []
    for w in draw(st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True)):
        for r in range(draw(st.integers(1, 12))):
            kind = draw(st.sampled_from(NEW_TYPES))
            for j in range(draw(st.integers(1, 4))):
                rows.append(
                    {
                        "workflow": f"wf{w}",
                        "run": f"{prefix}{r:03d}",
                        "job": f"job{j}",
                        "anomaly_type": kind if j == 0 else "None",
                    }
                )
    return pd.DataFrame(rows)


RATIOS = [(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.6, 0.2, 0.2)]


@settings(max_examples=25, deadline=None)
@given(
    old=runs_of_jobs(),
    first=new_runs("new"),
    second=new_runs("late"),
    seed=st.integers(0, 2**16),
    ratios=st.sampled_from(RATIOS),
)
def test_a_record_keeps_every_old_run_and_places_new_ones_by_the_ratios(
    old, first, second, seed, ratios
):
    fresh = assign_splits(old, "by_run", ratios, seed)
    assert fresh.equals(_by_run_before_records(old, ratios, seed))  # no record: as always
    record, counts = record_splits(old, fresh, ratios, seed)
    assert counts == {"kept": 0, "new": record.runs.shape[0], "absent": 0}

    for batch in (first, second):  # two retrains, each with new runs
        jobs = pd.concat([old, batch], ignore_index=True)
        split = assign_splits(jobs, "by_run", ratios, seed, previous=record)
        assert split.notna().all()  # every job of every run, old or new, is assigned
        assert (jobs.assign(split=split).groupby(["workflow", "run"])["split"].nunique() == 1).all()
        per_run = _per_run(jobs, split)
        recorded = record.runs.set_index(["workflow", "run"])["split"]
        assert per_run.loc[recorded.index].equals(recorded)  # no old run moved
        # Per (workflow, stratum) each split holds its `_cut` count of runs, give or take
        # one (old runs stay where they are); a stratum of new runs alone, exactly that.
        strata = run_strata(jobs)
        runs = pd.MultiIndex.from_frame(strata[["workflow", "run"]])
        strata["split"] = per_run.loc[runs].to_numpy()
        strata["new"] = ~runs.isin(recorded.index)
        for _, group in strata.groupby(["workflow", "stratum"]):
            target = pd.Series(_cut(len(group), ratios)).value_counts()
            held = group["split"].value_counts()
            gaps = [int(held.get(name, 0)) - int(target.get(name, 0)) for name in SPLITS]
            assert max(map(abs, gaps)) <= (0 if group["new"].all() else 1), gaps
        if batch is first:
            shuffled = jobs.sample(frac=1, random_state=seed % 89)
            again = assign_splits(shuffled, "by_run", ratios, seed, previous=record)
            assert again.reindex(jobs.index).equals(split)  # row order changes nothing
        record, counts = record_splits(jobs, split, ratios, seed, previous=record)
        assert counts["kept"] == len(recorded) and counts["absent"] == 0
        old = jobs


def test_runs_gone_from_the_data_stay_recorded_and_keep_their_split_when_back():
    jobs = _three_kinds(30)
    record, _ = record_splits(jobs, assign_splits(jobs, "by_run", seed=5), (0.8, 0.1, 0.1), 5)
    fewer = jobs[~jobs["run"].isin(["r03", "r07"])]
    split = assign_splits(fewer, "by_run", seed=5, previous=record)
    shrunk, counts = record_splits(fewer, split, (0.8, 0.1, 0.1), 5, previous=record)
    assert counts == {"kept": 56, "new": 0, "absent": 4}
    assert shrunk.runs.equals(record.runs)  # the record still holds the four runs
    back = assign_splits(jobs, "by_run", seed=5, previous=shrunk)
    assert back.equals(assign_splits(jobs, "by_run", seed=5, previous=record))
    assert _per_run(jobs, back).equals(record.runs.set_index(["workflow", "run"])["split"])


@pytest.mark.parametrize(
    "change", [{"seed": 6}, {"ratios": (0.7, 0.15, 0.15)}, {"method": "random"}]
)
def test_a_record_made_under_other_params_is_ignored(change, caplog):
    jobs = _three_kinds(30)
    old = jobs[jobs["run"] < "r20"]
    params = {"seed": 5, "ratios": (0.8, 0.1, 0.1), "method": "by_run"}
    record, _ = record_splits(old, assign_splits(old, "by_run", seed=5), (0.8, 0.1, 0.1), 5)
    record = SplitRecord(**{**params, **change, "runs": record.runs})
    with caplog.at_level(logging.INFO, logger="flowsentry.data.splits"):
        split = assign_splits(jobs, "by_run", (0.8, 0.1, 0.1), 5, previous=record)
    assert split.equals(_by_run_before_records(jobs, (0.8, 0.1, 0.1), 5))
    assert len(caplog.records) == 1 and "ignored" in caplog.records[0].getMessage()


def test_the_record_round_trips_through_its_files(tmp_path, caplog):
    jobs = _three_kinds(30)
    record, _ = record_splits(jobs, assign_splits(jobs, "by_run", seed=5), (0.8, 0.1, 0.1), 5)
    with caplog.at_level(logging.INFO, logger="flowsentry.data.splits"):
        assert read_record(tmp_path) is None
    assert "no split record" in caplog.text
    write_record(record, tmp_path)
    again = read_record(tmp_path)
    assert again is not None and again.params() == record.params()
    assert again.runs.equals(record.runs)
    assert set(pd.read_csv(tmp_path / RECORD_CSV).columns) == {
        "workflow",
        "run",
        "stratum",
        "split",
    }


def _rewrite(name, edit):
    """Damage: the file `name` of the record rewritten by `edit` (text -> text)."""
    return lambda folder: (folder / name).write_text(edit((folder / name).read_text()))


def _no_split(text):
    return text.replace(",train\n", ",holdout\n", 1)


# What can go wrong with the record, and whether the sidecar's sha256 is made to match
# the damaged table afterwards (damage the digest alone would not catch).
DAMAGES = {
    "sidecar not JSON": (_rewrite(RECORD_JSON, lambda text: "{not json"), False),
    "sidecar a list": (_rewrite(RECORD_JSON, lambda text: "[1, 2]"), False),
    "sidecar without params": (_rewrite(RECORD_JSON, lambda text: '{"seed": 5}'), False),
    "sidecar gone": (lambda folder: (folder / RECORD_JSON).unlink(), False),
    "table gone": (lambda folder: (folder / RECORD_CSV).unlink(), False),
    "table edited": (_rewrite(RECORD_CSV, _no_split), False),
    "table binary": (lambda folder: (folder / RECORD_CSV).write_bytes(b"\x00\xff\x00"), True),
    "not a split": (_rewrite(RECORD_CSV, _no_split), True),
    "run twice": (_rewrite(RECORD_CSV, lambda text: text + text.splitlines()[1] + "\n"), True),
    "rows cut": (_rewrite(RECORD_CSV, lambda text: "".join(text.splitlines(True)[:-3])), True),
    "column gone": (_rewrite(RECORD_CSV, lambda text: "workflow,run\nwfA,r00\n"), True),
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_record_is_one_warning_and_a_fresh_assignment(tmp_path, caplog, damage):
    from flowsentry.io import file_digest

    damage, fix_sha = damage
    jobs = _three_kinds(30)
    old = jobs[jobs["run"] < "r20"]
    record, _ = record_splits(old, assign_splits(old, "by_run", seed=5), (0.8, 0.1, 0.1), 5)
    write_record(record, tmp_path)
    damage(tmp_path)
    if fix_sha:  # damage the sidecar's digest does not catch
        sidecar = json.loads((tmp_path / RECORD_JSON).read_text())
        sidecar["sha256"] = file_digest(tmp_path / RECORD_CSV)
        (tmp_path / RECORD_JSON).write_text(json.dumps(sidecar))
    with caplog.at_level(logging.INFO, logger="flowsentry.data.splits"):
        previous = read_record(tmp_path)
        split = assign_splits(jobs, "by_run", seed=5, previous=previous)
    assert previous is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "damaged" in caplog.records[0].getMessage()
    assert split.equals(_by_run_before_records(jobs, seed=5))


def test_a_damaged_record_passed_in_is_one_warning_and_a_fresh_assignment(caplog):
    jobs = _three_kinds(30)
    runs = pd.DataFrame({"workflow": ["wfA", "wfA"], "run": ["r00", "r00"], "split": "train"})
    record = SplitRecord(seed=5, ratios=(0.8, 0.1, 0.1), runs=runs)
    with caplog.at_level(logging.INFO, logger="flowsentry.data.splits"):
        split = assign_splits(jobs, "by_run", seed=5, previous=record)
    assert split.equals(_by_run_before_records(jobs, seed=5))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "listed twice" in caplog.text


def test_random_and_file_ignore_a_record(jobs, tmp_path):
    record, _ = record_splits(jobs, assign_splits(jobs, "by_run", seed=7), (0.8, 0.1, 0.1), 7)
    assert assign_splits(jobs, "random", seed=7, previous=record).equals(
        assign_splits(jobs, "random", seed=7)
    )
    manifest = tmp_path / "split.csv"
    jobs.assign(split="test")[["run", "job", "split"]].to_csv(manifest, index=False)
    assert (assign_splits(jobs, "file", manifest=manifest, previous=record) == "test").all()


def test_prepare_again_with_more_runs_moves_no_old_run(make_flowbench, project, caplog):
    """The retrain the user measured: more runs arrive, prepare runs again on its own
    (persisted) output. Before split records, 5 of these 20 runs changed split."""
    from flowsentry.io import write_parquet
    from flowsentry.stages import ingest, prepare, validate

    cfg = project()
    ingest.run(cfg, make_flowbench(n_runs=24), progress=False)
    validate.run(cfg)
    validated = cfg.paths.validated / "tiny.parquet"
    all_runs = validated.read_bytes()
    # The first prepare sees 20 of the runs: the validated table as it was before the
    # last four arrived (made from the same ingested table, so prepare takes it as current).
    first_runs = pd.read_parquet(validated).query("run < 'tiny-run0020'")
    write_parquet(first_runs, validated, [cfg.paths.jobs / "tiny.parquet"])
    first = prepare.run(cfg)
    assert first.split_record == SplitRecordCounts(kept=0, new=20, absent=0)
    before = pd.read_csv(cfg.paths.prepared / "split.csv").drop_duplicates("run")
    assert before["run"].nunique() == 20

    validated.write_bytes(all_runs)  # four new runs
    with caplog.at_level(logging.INFO, logger="flowsentry"):
        second = prepare.run(cfg)
    assert second.split_record == SplitRecordCounts(kept=20, new=4, absent=0)
    assert "20 runs kept their split, 4 new runs assigned" in caplog.text
    after = pd.read_csv(cfg.paths.prepared / "split.csv").drop_duplicates("run")
    assert after["run"].nunique() == 24 and set(after["split"]) == set(SPLITS)
    moved = before.merge(after, on="run").query("split_x != split_y")
    assert moved.empty, moved
    assert PrepareReport.read(cfg.paths) == second

    (cfg.paths.prepared / RECORD_CSV).write_text("garbage")  # a damaged record: no crash
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flowsentry"):
        third = prepare.run(cfg)
    assert third.split_record == SplitRecordCounts(kept=0, new=24, absent=0)
    assert len(caplog.records) == 1 and "damaged" in caplog.text
