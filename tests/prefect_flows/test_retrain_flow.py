"""The Prefect retraining flow on tiny traces (DVC runs every stage)."""

from __future__ import annotations

import yaml


def test_retrain_runs_every_stage_through_dvc_then_nothing_new(setup):
    """The first run reproduces every stage (dvc.lock records them), promotes and
    packages, pushes to the DVC remote; the second finds nothing new: DVC skips every
    stage after ingest, nothing is trained or promoted, `dvc status` stays clean."""
    import os

    from dvc.repo import Repo

    from flowsentry.prefect_flows.retrain import retrain
    from flowsentry.workspace import stage_order

    write, home = setup
    stages = stage_order(home / "dvc.yaml")
    assert stages == [
        "ingest",
        "validate",
        "prepare",
        "augment",
        "train",
        "evaluate",
        "gate",
        "package",
    ]
    traces = write()
    environment = dict(os.environ)
    first = retrain(project=str(home), flowbench_dir=traces)
    assert dict(os.environ) == environment  # FLOWBENCH_DIR and PATH went to DVC only
    assert all(first["stages"][stage]["ran"] for stage in stages)
    assert first["gate"]["decision"] == "promote" and first["bento"]
    assert first["push"]["pushed"] > 0 and any((home / "remote").rglob("*.dir"))
    lock = yaml.safe_load((home / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(stages)
    locked = {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}
    model_meta = home / "models" / "candidates" / "gradient_boosting" / "flowsentry.json"
    meta = yaml.safe_load(model_meta.read_text())
    assert meta["data_version"]["raw"] == locked["data/raw"] == first["data_version"]["data/raw"]
    assert meta["data_version"]["prepared"] == locked["data/prepared"]
    with Repo(str(home)) as repo:
        assert repo.status() == {}  # DVC ran every stage itself: nothing is stale
    stamp = model_meta.stat().st_mtime_ns

    second = retrain(project=str(home), flowbench_dir=traces)
    assert second["stages"]["ingest"]["ran"]  # always: new traces are not a DVC dependency
    assert not any(second["stages"][stage]["ran"] for stage in stages[1:])
    assert model_meta.stat().st_mtime_ns == stamp and second["bento"] is None
    with Repo(str(home)) as repo:
        assert repo.status() == {}


def test_failed_validation_stops_before_training(setup):
    from flowsentry.prefect_flows.retrain import retrain

    write, home = setup

    def unknown_anomaly(_, frame):
        frame["anomaly_type"] = "gpu_9"
        return frame

    traces = write(unknown_anomaly)
    state = retrain(project=str(home), flowbench_dir=traces, push=False, return_state=True)
    assert state.is_failed()
    assert not (home / "models" / "candidates").exists()  # training never ran


def test_new_traces_are_ingested_once_and_bad_ones_reported(setup, run_frame):
    """Through the command line: `flowsentry retrain --inbox-dir ...`."""
    from typer.testing import CliRunner

    from flowsentry.cli import app
    from flowsentry.config import load_config
    from flowsentry.reports import InboxReport, IngestReport

    make_run = run_frame
    write, home = setup
    traces = write()
    box = home / "inbox" / "tiny"
    box.mkdir(parents=True)
    make_run(200).to_csv(box / "tiny-run0200.csv", index=False)
    make_run(201).drop(columns="runtime").to_csv(box / "tiny-run0201.csv", index=False)
    args = ["retrain", "--project", str(home), "--flowbench-dir", traces]
    args += ["--inbox-dir", str(home / "inbox"), "--no-push"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "package    ran" in done.output
    paths = load_config(home / "params.yaml").under(home).paths
    arrivals = InboxReport.read(paths)
    assert [r.run for r in arrivals.accepted] == ["tiny-run0200"]
    assert [r.run for r in arrivals.quarantined] == ["tiny-run0201"]
    assert IngestReport.read(paths).tables["tiny"].runs == 31  # 30 + exactly the new one


def test_an_overlapping_run_waits_for_the_lock_and_touches_nothing(setup):
    """While one run holds the project lock, another gives up after its timeout without
    reading or writing any data (no half-written tables, no registry change)."""
    from filelock import FileLock

    from flowsentry.prefect_flows.retrain import retrain

    write, home = setup
    traces = write()
    with FileLock(str(home / ".flowsentry.lock")):
        state = retrain(
            project=str(home), flowbench_dir=traces, lock_timeout_s=1, return_state=True
        )
    assert state.is_failed()
    assert not (home / "data").exists() and not (home / "models").exists()
