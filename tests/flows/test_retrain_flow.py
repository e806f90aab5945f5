"""The Prefect retraining flow on tiny traces with a tiny encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(harness, make_flowbench, project, tiny_encoder, tmp_path, bento_home):
    cfg = project()

    def write(workflow_edit=None):
        params = {
            "ingest": {"workflows": ["tiny"]},
            "paths": {"gx_suite": str(cfg.paths.gx_suite)},
            "text": {"template": "compact", "feature_set": "context"},
            "train": {
                "model": str(tiny_encoder),
                "epochs": 1,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_train_samples": 150,
                "device": "cpu",
            },
            "evaluate": {"online_max_jobs": 20},
            "gate": {
                "min_f1": 0.0,
                "min_roc_auc": 0.0,
                "max_bias_gap": 1.0,
                "max_p99_latency_ms": 10000,
            },
        }
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        return str(make_flowbench(n_runs=30, edit=workflow_edit))

    return write, tmp_path


def test_retrain_promotes_packages_then_trains_nothing_new(setup):
    from flows.retrain import retrain

    write, home = setup
    traces = write()
    bentofile = str(ROOT / "bentofile.yaml")
    first = retrain(params="params.yaml", flowbench_dir=traces, bentofile=bentofile)
    assert first["gate"]["decision"] == "promote" and first["bento"]
    model_meta = home / "models" / "candidates" / "sft" / "flowsentry.json"
    stamp = model_meta.stat().st_mtime_ns

    second = retrain(params="params.yaml", flowbench_dir=traces, bentofile=bentofile)
    assert model_meta.stat().st_mtime_ns == stamp  # cached: nothing was trained
    assert second["train"] == first["train"]
    assert second["gate"]["decision"] == "reject" and second["bento"] is None
    failed = {c["check"] for c in second["gate"]["checks"] if c["verdict"] == "fail"}
    assert failed == {"beats_champion"}  # the same model cannot beat itself


def test_failed_validation_stops_before_training(setup):
    from flows.retrain import retrain

    write, home = setup

    def unknown_anomaly(_, frame):
        frame["anomaly_type"] = "gpu_9"
        return frame

    traces = write(unknown_anomaly)
    state = retrain(params="params.yaml", flowbench_dir=traces, return_state=True)
    assert state.is_failed()
    assert not (home / "models" / "candidates").exists()  # training never ran


def test_new_traces_are_ingested_once_and_bad_ones_reported(setup, run_frame):
    from flows.retrain import retrain

    make_run = run_frame

    write, home = setup
    traces = write()
    box = home / "inbox" / "tiny"
    box.mkdir(parents=True)
    make_run(200).to_csv(box / "tiny-run0200.csv", index=False)
    make_run(201).drop(columns="runtime").to_csv(box / "tiny-run0201.csv", index=False)
    result = retrain(
        params="params.yaml",
        flowbench_dir=traces,
        inbox_dir=str(home / "inbox"),
        bentofile=str(ROOT / "bentofile.yaml"),
    )
    assert [r["run"] for r in result["inbox"]["accepted"]] == ["tiny-run0200"]
    assert [r["run"] for r in result["inbox"]["quarantined"]] == ["tiny-run0201"]
    assert result["ingest"]["tables"]["tiny"]["runs"] == 31  # 30 + exactly the new one


def test_flow_versions_data_with_dvc_like_dvc_repro(setup, tiny_encoder):
    """In a DVC project the flow records every stage in dvc.lock, pushes to the remote,
    and stamps the model with the same hashes; `dvc status` then finds nothing to redo."""
    import shutil

    from dvc.repo import Repo
    from flows.retrain import retrain

    write, home = setup
    traces = write()
    for name in ("dvc.yaml", "bentofile.yaml", "requirements.lock"):
        shutil.copy(ROOT / name, home / name)
    shutil.copytree(ROOT / "src", home / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "gx" / "expectations", home / "gx" / "expectations")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    tiny = yaml.safe_load((home / "params.yaml").read_text())
    params["paths"]["gx_suite"] = "gx/expectations/flowbench_jobs.json"
    for section in ("ingest", "text", "evaluate", "gate"):
        params[section].update(tiny[section])
    params["train"].update(tiny["train"])
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    Repo.init(str(home), no_scm=True)
    with Repo(str(home)) as repo, repo.config.edit() as conf:
        conf["core"]["remote"] = "local"
        conf["remote"]["local"] = {"url": str(home / "remote")}

    result = retrain(params="params.yaml", flowbench_dir=traces, bentofile="bentofile.yaml")
    assert result["gate"]["decision"] == "promote"
    data = result["data_version"]["data"]
    lock = yaml.safe_load((home / "dvc.lock").read_text())["stages"]
    locked = {o["path"]: o["md5"] for stage in lock.values() for o in stage.get("outs", [])}
    assert (
        locked["data/prepared"] == data["hashes"]["prepared"] == data["committed"]["data/prepared"]
    )
    assert locked["data/raw"] == result["data_version"]["raw"]["hashes"]["raw"]
    assert data["push"]["pushed"] > 0 and any((home / "remote").rglob("*.dir"))
    meta = yaml.safe_load((home / "models" / "candidates" / "sft" / "flowsentry.json").read_text())
    assert meta["data_version"]["raw"] == locked["data/raw"]
    assert meta["data_version"]["prepared"] == locked["data/prepared"]
    models = result["data_version"]["model"]["committed"]["models/candidates"]
    assert locked["models/candidates"] == models
    with Repo(str(home)) as repo:
        assert repo.status() == {}  # `dvc repro` would run nothing: same data, same params


def test_an_overlapping_run_waits_for_the_lock_and_touches_nothing(setup):
    """While one run holds the project lock, another gives up after its timeout without
    reading or writing any data (no half-written tables, no registry change)."""
    from filelock import FileLock
    from flows.retrain import retrain

    write, home = setup
    traces = write()
    with FileLock(str(home / ".flowsentry.lock")):
        state = retrain(
            params="params.yaml", flowbench_dir=traces, lock_timeout_s=1, return_state=True
        )
    assert state.is_failed()
    assert not (home / "data").exists() and not (home / "models").exists()
