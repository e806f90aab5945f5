"""Stampede databases -> the jobs table, on the real databases a Pegasus installation wrote."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from tests.pegasus.conftest import DATABASES

from flowsentry.config import config_from_dict
from flowsentry.data import schema
from flowsentry.data.stampede import read_stampede
from flowsentry.errors import DataError
from flowsentry.stages import ingest, prepare, validate


def sql(path, query: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


FINISHED = """
    SELECT wf_id FROM workflow w WHERE EXISTS (
        SELECT 1 FROM workflowstate s WHERE s.wf_id = w.wf_id AND s.state = 'WORKFLOW_TERMINATED'
          AND s.timestamp >= (SELECT MAX(timestamp) FROM workflowstate t
                              WHERE t.wf_id = w.wf_id AND t.state = 'WORKFLOW_STARTED'))
"""


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_every_real_database_ingests_with_the_counts_sql_gives(pegasus_dir, name):
    path = pegasus_dir / DATABASES[name]
    read = read_stampede(f"sqlite:///{path}")
    # one row a job that was submitted at least once, of the workflows that ended
    (jobs,) = sql(
        path,
        f"""SELECT COUNT(DISTINCT j.job_id) FROM job j
        JOIN job_instance i ON i.job_id = j.job_id WHERE j.wf_id IN ({FINISHED})""",
    )[0]
    (runs,) = sql(
        path,
        f"""SELECT COUNT(DISTINCT j.wf_id) FROM job j
        JOIN job_instance i ON i.job_id = j.job_id WHERE j.wf_id IN ({FINISHED})""",
    )[0]
    (running,) = sql(path, f"SELECT COUNT(*) FROM workflow WHERE wf_id NOT IN ({FINISHED})")[0]
    assert len(read.jobs) == jobs and jobs > 0
    assert read.jobs["run"].nunique() == runs
    assert len(read.running) == running
    assert list(read.jobs.columns) == list(schema.JOBS_COLUMNS)
    # nobody labelled these runs: unknown, never normal
    assert (read.jobs["anomaly_type"] == schema.UNKNOWN).all()
    assert read.jobs["label"].isna().all()
    # what the database does not record is missing, never 0
    for column in (*schema.BYTES, "stage_in_delay", "stage_out_delay", *schema.KICKSTART_COUNTERS):
        assert read.jobs[column].isna().all(), column
    assert not read.jobs.duplicated(["run", "job"]).any()


def test_delays_equal_those_computed_by_hand_from_jobstate_log(pegasus_dir):
    """process_wf_success/jobstate.log, by hand (epoch seconds - 1677911000):
    DAGMAN_STARTED 23; create_dir: SUBMIT 24, EXECUTE 28, JOB_SUCCESS 34, POST 34 -> 39;
    ls: SUBMIT 44, EXECUTE 59, JOB_SUCCESS 64, POST 64 -> 69 (parent create_dir ends 39);
    stage_out: SUBMIT 74, EXECUTE 74, SUCCESS 79, POST 79 -> 84 (parent ls ends 69);
    cleanup and register: SUBMIT 89, EXECUTE 90, SUCCESS 94, POST 94 -> 100 (parent 84)."""
    read = read_stampede(f"sqlite:///{pegasus_dir / DATABASES['process_wf_success']}")
    jobs = read.jobs.set_index("job")
    expected = {  # wms_delay, queue_delay, runtime, post_script_delay, ready - 1677911000
        "create_dir_process_0_local": (1, 4, 6, 5, 23),
        "ls_ID0000001": (5, 15, 5, 5, 39),
        "stage_out_local_local_0_0": (5, 0, 5, 5, 69),
        "cleanup_process_0_local": (5, 1, 4, 6, 84),
        "register_local_0_0": (5, 1, 4, 6, 84),
    }
    assert set(jobs.index) == set(expected)
    for job, (wms, queue, runtime, post, ready) in expected.items():
        row = jobs.loc[job]
        assert (row.wms_delay, row.queue_delay, row.runtime, row.post_script_delay) == (
            wms, queue, runtime, post,
        ), job  # fmt: skip
        assert row.ready == 1677911000 + ready, job
    assert jobs.loc["ls_ID0000001", "task"] == "ls"
    assert jobs.loc["ls_ID0000001", "type"] == "compute"
    assert jobs.loc["create_dir_process_0_local", "type"] == "auxiliary"
    assert jobs.loc["stage_out_local_local_0_0", "type"] == "transfer"
    assert jobs.loc["ls_ID0000001", "kickstart_executables_cpu_time"] == pytest.approx(0.005)
    assert jobs.loc["register_local_0_0", "kickstart_executables_cpu_time"] == pytest.approx(4.001)
    assert jobs.loc["register_local_0_0", "maxrss"] == 155648
    assert jobs.loc["create_dir_process_0_local", "avg_cpu"] == pytest.approx(0.221 / 2.222, 1e-3)
    assert (jobs["kickstart_hostname"] == "workflow.isi.edu").all()
    assert (jobs["retries"] == 0).all() and (jobs["held_time"] == 0).all()
    # the DAG from job_edge
    (dag,) = read.dags.values()
    assert dag["stage_out_local_local_0_0"] == ["cleanup_process_0_local", "register_local_0_0"]


def test_a_retried_job_is_its_last_attempt(pegasus_dir):
    path = pegasus_dir / DATABASES["process_wf_failure"]
    read = read_stampede(f"sqlite:///{path}")
    ls = read.jobs.set_index("job").loc["ls_ID0000001"]
    attempts = sql(
        path,
        """SELECT i.exitcode FROM job_instance i JOIN job j USING (job_id)
                            WHERE j.exec_job_id = 'ls_ID0000001' ORDER BY job_submit_seq""",
    )
    assert ls.retries == len(attempts) - 1 == 1
    assert ls.kickstart_status == attempts[-1][0] == 256
    assert read.never_submitted == 3  # the jobs after the failure never ran


def test_a_workflow_still_running_is_named_and_none_of_it_is_stored(pegasus_dir, caplog):
    path = pegasus_dir / DATABASES["hierarchical_wf_success"]
    read = read_stampede(f"sqlite:///{path}")
    (root,) = sql(path, "SELECT wf_uuid FROM workflow WHERE parent_wf_id IS NULL")[0]
    assert read.running == [root]
    assert root not in set(read.jobs["run"])  # its finished sub-workflow is a run of its own
    assert read.jobs["workflow"].unique().tolist() == ["blackdiamond"]
    assert f"workflow {root} is still running" in caplog.text


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("UPDATE dbversion SET version_number = 3", "stampede schema version 3 is not one"),
        ("DROP TABLE job_edge", "table 'job_edge' is missing"),
        ("ALTER TABLE invocation DROP COLUMN maxrss", "table 'invocation' lacks column 'maxrss'"),
        ("DELETE FROM dbversion", "table 'dbversion' is empty"),
    ],
)
def test_a_database_of_another_shape_is_one_line_and_nothing_is_stored(
    db_copy, tmp_path, damage, message
):
    path = db_copy(DATABASES["process_wf_success"])
    with sqlite3.connect(path) as connection:
        connection.execute(damage)
    cfg = _config(tmp_path, [f"sqlite:///{path}"])
    with pytest.raises(DataError, match=message) as error:
        ingest.run(cfg, None, progress=False)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert not cfg.paths.jobs.exists()


def test_not_a_database_and_no_such_file_are_one_line(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DataError, match="cannot read the database|not a stampede database"):
        read_stampede(f"sqlite:///{junk}")
    with pytest.raises(DataError, match="no such database file"):
        read_stampede(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()  # never created by reading
    with pytest.raises(DataError, match="environment variable FLOWSENTRY_NO_SUCH_VAR"):
        read_stampede("mysql+pymysql://u:${FLOWSENTRY_NO_SUCH_VAR}@h/stampede")


def _config(tmp_path, urls, **ingest_extra):
    root = tmp_path / "project"
    suite = __import__("pathlib").Path(__file__).resolve().parents[2] / "gx/expectations"
    return config_from_dict(
        {
            "base": {"device": "cpu"},
            "ingest": {"workflows": [], "stampede": urls, **ingest_extra},
            "paths": {
                **{k: str(root / k) for k in ("raw", "jobs", "validated", "quarantine")},
                **{k: str(root / k) for k in ("prepared", "reports", "augmented")},
                "labels": str(root / "labels.csv"),
                "gx_suite": str(suite / "flowbench_jobs.json"),
            },
        }
    )


def test_all_databases_through_ingest_and_validation(pegasus_dir, tmp_path):
    urls = [{"url": f"sqlite:///{pegasus_dir / p}", "name": n} for n, p in DATABASES.items()]
    cfg = _config(tmp_path, urls)
    summary = ingest.run(cfg, None, progress=False)
    report = validate.run(cfg)
    assert report.success
    for name in DATABASES:
        table = summary.tables[f"pegasus_{name}"]
        assert table.unlabelled == table.jobs > 0
        assert report.tables[f"pegasus_{name}"].quarantined == 0
    assert summary.tables["pegasus_hierarchical_wf_success"].still_running_not_read
    dags = (cfg.paths.jobs / "pegasus_process_wf_success.dags.json").read_text()
    assert "ls_ID0000001" in dags


def test_operator_labels_reach_the_splits_and_unlabelled_jobs_only_give_context(
    pegasus_dir, tmp_path
):
    """The monitoring database's four hello_world runs, labelled by an operator: its runs
    join the splits; a run left unlabelled gives no training job."""
    from flowsentry.data.labels import add_labels

    url = f"sqlite:///{pegasus_dir / DATABASES['monitoring']}"
    cfg = _config(tmp_path, [url], max_runs=None)
    cfg = cfg.model_copy(
        update={
            "split": cfg.split.model_copy(update={"method": "random"}),
            "text": cfg.text.model_copy(update={"template": "paper", "feature_set": "paper"}),
            "train": cfg.train.model_copy(update={"features": "paper"}),
        }
    )
    jobs = read_stampede(url).jobs
    runs = sorted(jobs["run"].unique())
    labelled, unlabelled = runs[:3], runs[3]
    failed = jobs[(jobs["run"].isin(labelled)) & (jobs["kickstart_status"] != 0)]
    entries = [
        {"workflow": "hello_world", "run": r, "job": j, "label": "anomalous", "note": "failed"}
        for r, j in zip(failed["run"], failed["job"], strict=True)
    ]
    entries += [{"workflow": "hello_world", "run": r, "job": "*", "label": "normal"}
                for r in labelled]  # fmt: skip
    assert add_labels(cfg.paths.labels, entries) == len(entries)

    summary = ingest.run(cfg, None, progress=False)
    table = summary.tables["pegasus_monitoring-rest-api-master"]  # named after the file
    in_labelled = int(jobs["run"].isin(labelled).sum())
    assert table.operator_labels_applied == in_labelled
    assert table.unlabelled == len(jobs) - in_labelled
    assert table.anomalous == len(failed) > 0
    validate.run(cfg)
    report = prepare.run(cfg)
    assert report.unlabelled_jobs_as_context_only == len(jobs) - in_labelled
    splits = pd.concat(pd.read_parquet(cfg.paths.split(s)) for s in ("train", "val", "test"))
    assert len(splits) == in_labelled and unlabelled not in set(splits["run"])
    assert splits["label"].notna().all()


def test_the_example_site_params_ingest_every_database(pegasus_dir, tmp_path, monkeypatch):
    """examples/pegasus-site.yaml (the guide's commands) on the real databases."""
    import shutil
    from pathlib import Path

    from flowsentry.config import load_config

    root = Path(__file__).resolve().parents[2]
    project = tmp_path / "main"
    project.mkdir()
    (tmp_path / "shared").symlink_to(pegasus_dir.parent)  # ../shared beside the project
    shutil.copytree(root / "gx", project / "gx")
    monkeypatch.chdir(project)
    cfg = load_config(root / "examples" / "pegasus-site.yaml")
    summary = ingest.run(cfg, None, progress=False)
    assert {name for name, t in summary.tables.items() if t.jobs} == {
        "pegasus_process-0", "pegasus_process-failure", "pegasus_hierarchical-workflow-0",
        "pegasus_monitoring-rest-api-master",
    }  # fmt: skip
    assert validate.run(cfg).success
