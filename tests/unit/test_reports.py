"""The typed stage reports: what is written is what is read, and a broken report is
refused in one line naming the file, the field and the reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.config import Paths
from flowsentry.errors import DataError
from flowsentry.reports import (
    Check,
    EvaluationReport,
    GateReport,
    PackageReport,
    TrainReport,
)

unit = st.floats(0, 1, allow_nan=False)
count = st.integers(0, 10**6)


@st.composite
def metrics(draw, with_workflows: bool = True, test: bool = False) -> dict:
    out = {
        "jobs": draw(count),
        **{k: draw(unit) for k in ("accuracy", "precision", "recall", "f1", "threshold")},
        "roc_auc": draw(st.none() | unit),
        "pr_auc": draw(st.none() | unit),
        "confusion": {k: draw(count) for k in ("tn", "fp", "fn", "tp")},
    }
    if with_workflows:
        out["recall_by_anomaly_type"] = draw(
            st.dictionaries(st.sampled_from(["cpu_2", "hdd_5"]), unit)
        )
        out["by_workflow"] = draw(
            st.dictionaries(st.sampled_from(["1000genome", "montage"]), metrics(False), max_size=2)
        )
    if test:
        out["jobs_per_second"] = draw(st.floats(0, 1e6))
        out["bias"] = draw(
            st.none()
            | st.builds(
                lambda p: {"p_anomalous": {"empty": p}, "gap": {"empty": abs(2 * p - 1)},
                           "mean_gap": abs(2 * p - 1)},
                unit,
            )
        )  # fmt: skip
        out["latency_ms"] = {
            "p50": draw(st.floats(0, 1e4)),
            "p99": draw(st.floats(0, 1e4)),
            "calls": 100,
        }
    return out


def short(draw) -> dict:
    return {"jobs": draw(count), "accuracy": draw(unit), "f1": draw(unit), "roc_auc": draw(unit)}


@st.composite
def evaluation(draw) -> dict:
    kinds = draw(
        st.lists(st.sampled_from(["sft", "hybrid", "gradient_boosting"]), min_size=1, unique=True)
    )
    return {
        "split": {"method": "by_run", "note": "whole runs held out"},
        "workflows": ["1000genome"],
        "primary_metric": "f1",
        "ranking_on_validation": kinds,
        "candidates": {
            kind: {
                "kind": kind,
                "model": {"workflows": ["1000genome"]},
                "threshold": draw(unit),
                "val": draw(metrics()),
                "test": draw(metrics(test=True)),
                "realtime": draw(st.none() | st.just({"val": short(draw), "test": short(draw)})),
            }
            for kind in kinds
        },
        "online": {
            kind: {
                "features": ["runtime"],
                "jobs": 3,
                "accuracy_by_k": [0.5, 0.7],
                "first_correct_k_mean": None,
                "first_correct_k_median": 1.0,
                "first_correct_k_histogram": {"0": 1, "1": 2},
                "anomalous_detected_by_k": [0.0, 1.0],
                "post_run": short(draw),
                "realtime": short(draw),
            }
            for kind in kinds
        },
        "paper_sft_accuracy_random_split": {"1000genome": 0.8155},
    }


@settings(max_examples=25, deadline=None)
@given(payload=evaluation())
def test_an_evaluation_report_reads_back_as_written(tmp_path_factory, payload):
    paths = Paths().under(tmp_path_factory.mktemp("reports"))
    report = EvaluationReport.model_validate(payload)
    written = report.write(paths)
    assert written == paths.evaluate_report
    assert EvaluationReport.read(paths) == report
    # The file is the DVC metrics file: the same keys the stage always wrote.
    on_disk = json.loads(written.read_text())
    assert set(on_disk) == set(payload)
    for kind, entry in payload["candidates"].items():
        assert on_disk["candidates"][kind]["test"]["f1"] == entry["test"]["f1"]


def test_gate_train_and_package_reports_read_back(tmp_path):
    paths = Paths().under(tmp_path)
    gate = GateReport(
        decision="reject", primary_metric="f1", rank_on="post_run", workflow=None, split=None,
        winner=None, checks=[Check(check="min_f1", value=None, threshold=0.7, verdict="fail",
        note="no candidate")], candidates=[],
        candidate={"name": None, "model_dir": None, "metrics": None},
        champion={"tag": None, "metrics": None, "note": None}, promoted_tag=None,
    )  # fmt: skip
    gate.write(paths)
    assert GateReport.read(paths) == gate and not GateReport.read(paths).promoted
    train = TrainReport(
        split_method="by_run",
        candidates={"gradient_boosting": {"threshold": 0.4, "seconds": 1.5, "path": "m",
                    "val": {"jobs": 10, "accuracy": 0.9, "f1": 0.8, "roc_auc": None}}},
        total_seconds=2.0,
    )  # fmt: skip
    train.write(paths)
    assert TrainReport.read(paths) == train
    assert PackageReport.read_or_none(paths) is None  # no package stage has run


@pytest.mark.parametrize(
    ("content", "field", "reason"),
    [
        (b"{", None, "Invalid JSON"),
        (b"[]", None, "should be an object"),
        (b'{"split_method": "by_run", "candidates": {}}', "total_seconds", "Field required"),
        (
            b'{"split_method": "by_run", "total_seconds": 1, "candidates": {"gb": '
            b'{"threshold": "high", "seconds": 1, "path": "m", "val": {"jobs": 1, '
            b'"accuracy": 1, "f1": 1, "roc_auc": null}}}}',
            "candidates.gb.threshold",
            "valid number",
        ),
        (
            b'{"split_method": "by_run", "total_seconds": 1, "candidates": {}, "extra": 1}',
            "extra",
            "Extra inputs",
        ),
    ],
)
def test_a_broken_report_is_refused_naming_file_and_field(tmp_path, content, field, reason):
    paths = Paths().under(tmp_path)
    paths.train_report.parent.mkdir(parents=True)
    paths.train_report.write_bytes(content)
    with pytest.raises(DataError, match=reason) as error:
        TrainReport.read(paths)
    assert error.value.path == str(paths.train_report)
    assert error.value.field == field


def test_a_missing_report_names_its_file(tmp_path):
    paths = Paths().under(tmp_path)
    with pytest.raises(DataError, match="cannot read the report") as error:
        EvaluationReport.read(paths)
    assert error.value.path == str(paths.evaluate_report)


def test_each_report_lies_where_params_yaml_names_it_and_dvc_tracks_it():
    """One `paths` key per report (params.yaml and the typed config agree), no two reports
    on one file, and each stage's report is a metrics file of its dvc.yaml stage."""
    from pathlib import Path

    import yaml

    from flowsentry import reports

    root = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((root / "params.yaml").read_text())["paths"]
    kinds = [
        cls
        for cls in vars(reports).values()
        if isinstance(cls, type) and issubclass(cls, reports._Report) and cls is not reports._Report
    ]
    keys = [cls.path_key for cls in kinds]
    assert len(set(keys)) == len(keys) == 10
    for key in keys:
        assert str(getattr(Paths(), key)) == params[key], key
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    stages |= yaml.safe_load((root / "pipelines" / "icl" / "dvc.yaml").read_text())["stages"]
    metrics = {
        name: [next(iter(m)) if isinstance(m, dict) else m for m in stage.get("metrics", [])]
        for name, stage in stages.items()
    }
    written_by = {"ingest": "ingest_report", "validate": "validation_report",
                  "prepare": "prepare_report", "augment": "augment_report",
                  "train": "train_report", "evaluate": "evaluate_report",
                  "icl": "icl_report"}  # fmt: skip
    for stage, key in written_by.items():
        assert f"${{paths.{key}}}" in metrics[stage], stage
