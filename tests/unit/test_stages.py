"""The ingest -> validate -> prepare stages on tiny synthetic traces."""

from __future__ import annotations

import zipfile

import pandas as pd
import pytest
from typer.testing import CliRunner

from flowsentry.cli import app
from flowsentry.errors import ConfigError, DataError, ValidationFailed
from flowsentry.models.pretrained import load_tokenizer
from flowsentry.reports import IngestReport, PrepareReport, ValidationReport
from flowsentry.stages import ingest, prepare, validate


def test_pipeline_on_tiny_traces(make_flowbench, project):
    cfg = project(text={"template": "paper", "feature_set": "paper"})
    root = make_flowbench(n_runs=20, n_jobs=6)

    summary = ingest.run(cfg, root, progress=False)
    assert summary.tables["tiny"].model_dump(exclude_defaults=True) == {
        "kind": "flowbench",
        "unlabelled": 0,
        "operator_labels_applied": 0,
        "runs": 20,
        "jobs": 120,
        "anomalous": 21,
        "anomaly_types": {"none": 99, "cpu_2": 21},
        "tasks": 3,
    }
    assert IngestReport.read(cfg.paths) == summary  # the report written is the one returned
    assert (cfg.paths.raw / "tiny.zip").exists()  # a versioned copy of the raw traces

    report = validate.run(cfg)
    assert report.success and report.tables["tiny"].quarantined == 0
    assert (cfg.paths.reports / "data_docs" / "index.html").exists()
    assert "tiny" in (cfg.paths.reports / "data_docs" / "index.html").read_text()  # one site
    assert ValidationReport.read(cfg.paths) == report

    prepared = prepare.run(cfg)
    counts = {name: s.jobs for name, s in prepared.splits.items()}
    assert PrepareReport.read(cfg.paths) == prepared
    assert counts == {"train": 96, "val": 12, "test": 12}
    train = pd.read_parquet(cfg.paths.prepared / "train.parquet")
    assert train["sentence"].str.startswith("wms_delay is 5.0 queue_delay is 20.0").all()
    # tokens per job of the sentences the encoder reads, as its own tokenizer counts them
    tokens = prepared.tokens_per_job
    assert (tokens.template, tokens.feature_set) == (cfg.text.template, cfg.text.feature_set)
    counted = load_tokenizer(cfg.text.tokenizer)(train["sentence"].tolist())["input_ids"]
    lengths = [len(ids) for ids in counted]
    assert tokens.jobs == 96 and tokens.max == max(lengths)
    assert tokens.mean == pytest.approx(sum(lengths) / len(lengths), abs=0.01)
    manifest = pd.read_csv(cfg.paths.prepared / "split.csv")
    assert len(manifest) == 120 and set(manifest.columns) == {"workflow", "run", "job", "split"}


def test_same_params_same_split(make_flowbench, project):
    cfg = project(split={"method": "by_run"})
    ingest.run(cfg, make_flowbench(n_runs=20), progress=False)
    validate.run(cfg)
    prepare.run(cfg)
    first = (cfg.paths.prepared / "split.csv").read_text()
    prepare.run(cfg)
    assert (cfg.paths.prepared / "split.csv").read_text() == first


def test_a_split_left_empty_is_one_clear_error_and_nothing_is_written(make_flowbench, project):
    cfg = project(split={"method": "by_run"})
    ingest.run(cfg, make_flowbench(n_runs=4), progress=False)  # too few runs for val
    validate.run(cfg)
    with pytest.raises(
        ConfigError, match=r"val, test would hold no jobs \(4 runs.*ingest more labelled runs"
    ):
        prepare.run(cfg)
    assert not (cfg.paths.prepared / "train.parquet").exists()


def test_failed_ingest_keeps_what_was_already_ingested(make_flowbench, project, tmp_path):
    cfg = project()
    root = make_flowbench(n_runs=5)
    ingest.run(cfg, root, progress=False)
    table_before = (cfg.paths.jobs / "tiny.parquet").read_bytes()
    raw_before = (cfg.paths.raw / "tiny.zip").read_bytes()

    with zipfile.ZipFile(root / "tiny.zip", "a") as archive:  # a new, broken run arrives
        archive.writestr("tiny-run0100.csv", "job,anomaly_type\nx,None\n")
    with pytest.raises(DataError, match="tiny-run0100.csv"):
        ingest.run(cfg, root, progress=False)
    assert (cfg.paths.jobs / "tiny.parquet").read_bytes() == table_before
    assert (cfg.paths.raw / "tiny.zip").read_bytes() == raw_before

    root = make_flowbench(n_runs=5)  # the good traces again
    dag = root / "adjacency_list_dags" / "tiny.json"
    stored_dag = cfg.paths.raw / "adjacency_list_dags" / "tiny.json"
    dag_before = stored_dag.read_bytes()
    dag.write_text("{}")  # a DAG with no jobs never replaces the stored one
    with pytest.raises(DataError, match="tiny.json: the DAG has no jobs"):
        ingest.run(cfg, root, progress=False)
    assert stored_dag.read_bytes() == dag_before
    assert (cfg.paths.jobs / "tiny.parquet").read_bytes() == table_before


def test_bad_rows_are_quarantined_and_counted(make_flowbench, project):
    def negative_runtime(run, frame):
        if run == 4:
            frame.loc[2, "runtime"] = -3.0
        return frame

    cfg = project()
    ingest.run(cfg, make_flowbench(n_runs=30, edit=negative_runtime), progress=False)
    report = validate.run(cfg)
    table = report.tables["tiny"]
    assert table.quarantined == 1 and table.clean == 179
    assert table.quarantine_reasons == {
        "runtime is negative or above its plausible maximum (2,592,000)": 1
    }
    quarantine = pd.read_parquet(cfg.paths.quarantine / "tiny.parquet")
    assert quarantine.loc[0, "run"] == "tiny-run0004" and "runtime" in quarantine.loc[0, "reason"]


def test_too_much_quarantine_stops_and_writes_nothing(make_flowbench, project):
    def unknown_anomaly(run, frame):
        frame["anomaly_type"] = "gpu_9"
        return frame

    cfg = project()
    ingest.run(cfg, make_flowbench(edit=unknown_anomaly), progress=False)
    with pytest.raises(ValidationFailed, match="unknown anomaly_type"):
        validate.run(cfg)
    assert not (cfg.paths.validated / "tiny.parquet").exists()


runner = CliRunner()


def test_cli_help_lists_the_stages():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for stage in ("ingest", "validate", "prepare"):
        assert stage in result.output


def test_cli_without_data_gives_one_line_naming_flowbench_dir(project, monkeypatch, tmp_path):
    project()
    (tmp_path / "params.yaml").write_text(
        f"ingest:\n  workflows: [tiny]\n  source_url: {(tmp_path / 'offline').as_uri()}\n"
    )
    monkeypatch.delenv("FLOWBENCH_DIR", raising=False)
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "FLOWBENCH_DIR" in lines[0] and "Traceback" not in result.output


def test_cli_bad_override_is_one_clear_line(project, tmp_path):
    project()
    (tmp_path / "params.yaml").write_text("base:\n  seed: 1\n")
    result = runner.invoke(app, ["prepare", "--set", "split.method=alphabetical"])
    assert result.exit_code == 1 and "split.method" in result.output


def test_cli_sentence(project):
    result = runner.invoke(app, ["sentence", '{"wms_delay": 6, "queue_delay": 22}', "--k", "2"])
    assert result.exit_code == 0
    assert result.output.strip() == "wms_delay is 6.0 queue_delay is 22.0"


def test_a_stage_refuses_inputs_older_than_their_source(make_flowbench, project, tmp_path):
    """A stage run by hand after its input moved on (a failed or skipped step) stops with
    the command to run, instead of working on the older tables."""
    from flowsentry.stages import augment, train

    cfg = project()
    ingest.run(cfg, make_flowbench(n_runs=12), progress=False)
    validate.run(cfg)
    prepare.run(cfg)
    augment.run(cfg)
    reseeded = project(base={"seed": 7})
    prepare.run(reseeded)  # a new split: the augmented table is now stale
    with pytest.raises(DataError, match=r"stale: .*run `flowsentry augment` first"):
        train.run(reseeded, progress=False)

    validated = (cfg.paths.validated / "tiny.parquet").read_bytes()

    def broken(run, frame):
        frame["runtime"] = -1.0  # every job breaks an expectation
        return frame

    ingest.run(cfg, make_flowbench(n_runs=12, edit=broken, root=tmp_path / "v2"), progress=False)
    with pytest.raises(ValidationFailed):
        validate.run(cfg)
    assert (cfg.paths.validated / "tiny.parquet").read_bytes() == validated  # kept
    with pytest.raises(DataError, match=r"stale: .*run `flowsentry validate` first"):
        prepare.run(cfg)
