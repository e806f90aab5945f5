"""A workflow nobody labelled, on small real subsets: the user's path and the study.

The path: Flow-Bench workflows with labels plus one read without them
(`ingest.unlabelled`), the workflow-agnostic features and a profile fitted without
labels (`train.profile: all`). The held-out workflow's labels are read only here, to
score what the pipeline made; then an operator's labels of a few of its runs are folded
in by the next ingest. The study: `flowsentry.new_workflow` on two small workflows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from tests.conftest import EASY_GATE, project_config

from flowsentry import new_workflow
from flowsentry.config import AdaptParams
from flowsentry.data import flowbench
from flowsentry.data.evidence import read_profile
from flowsentry.data.labels import add_labels
from flowsentry.models.loading import load_detector
from flowsentry.registry import store
from flowsentry.stages import augment, evaluate, gate, ingest, prepare, train, validate

pytestmark = pytest.mark.integration

LABELLED = ["eht_difmap", "eht_smili"]
NEW = "pycbc_inference"


def _truth(flowbench_dir, max_runs: int) -> pd.DataFrame:
    """The new workflow's real labels, read beside the pipeline, never by it."""
    source = flowbench.locate(flowbench_dir, NEW)
    table = flowbench.read_workflow(source, progress=False, max_runs=max_runs)
    return table[["run", "job", "label"]]


def test_a_workflow_without_labels_is_served_from_the_others(flowbench_dir, project, bento_home):
    cfg = project(
        ingest={"workflows": [*LABELLED, NEW], "unlabelled": [NEW], "max_runs": 30},
        train={"candidates": ["gradient_boosting", "copod"], "features": "agnostic",
               "profile": "all"},
        evaluate={"online_max_jobs": 20},  # the real-time replay is per job: keep it short
        gate=EASY_GATE,
    )  # fmt: skip
    summary = ingest.run(cfg, flowbench_dir, progress=False)
    assert summary.tables[NEW].unlabelled == summary.tables[NEW].jobs > 0
    validate.run(cfg)
    prepare.run(cfg)
    splits = {s: pd.read_parquet(cfg.paths.split(s)) for s in ("train", "val", "test")}
    assert all(NEW not in set(frame["workflow"]) for frame in splits.values())  # no label read
    profile = read_profile(cfg.paths.profile)
    assert NEW in profile.normal and NEW in profile.spread  # its normal, from its runs alone
    augment.run(cfg)
    train.run(cfg, progress=False)

    jobs = pd.read_parquet(cfg.paths.validated / f"{NEW}.parquet")
    assert jobs["label"].isna().all()
    truth = _truth(flowbench_dir, 30)
    scored = jobs.merge(truth, on=["run", "job"], suffixes=("", "_true"))
    assert len(scored) == len(jobs)
    for kind, floor in (("gradient_boosting", 0.8), ("copod", 0.7)):
        detector = load_detector(cfg.paths.models / kind)
        assert detector.features == tuple(detector.features) and "task" not in detector.features
        auc = roc_auc_score(scored["label_true"].astype(int), detector.score(scored))
        assert auc > floor, (kind, auc)
    evaluate.run(cfg, progress=False)
    global_champion = gate.run(cfg).promoted_tag  # judged on the labelled workflows
    assert global_champion

    # An operator marks ten runs (every job, as an alert review would); the next ingest
    # folds them in: those runs, and only those, now take part with their labels.
    runs = sorted(truth["run"].unique())[:10]
    marked = truth[truth["run"].isin(runs)]
    add_labels(
        cfg.paths.labels,
        [
            {"workflow": NEW, "run": r.run, "job": r.job,
             "label": "anomalous" if r.label else "normal", "note": "reviewed"}
            for r in marked.itertuples()
        ],
    )  # fmt: skip
    ingest.run(cfg, flowbench_dir, progress=False)
    validate.run(cfg)
    prepare.run(cfg)
    seen = pd.concat([pd.read_parquet(cfg.paths.split(s)) for s in ("train", "val", "test")])
    ours = seen[seen["workflow"] == NEW]
    assert set(ours["run"]) == set(runs)
    merged = ours.merge(marked, on=["run", "job"], suffixes=("", "_true"))
    assert len(merged) == len(marked)
    assert (merged["label"].astype(int) == merged["label_true"].astype(int)).all()

    # The next retrain adapts the candidates to it (its labelled jobs weigh a quarter) and
    # the gate judges them, and the global champion, on its labelled runs alone.
    adapted = cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update={"adapt": AdaptParams(workflow=NEW)}),
            "gate": cfg.gate.model_copy(update={"workflow": NEW}),
        }
    )
    assert {"val", "test"} <= {s for s in ("train", "val", "test") if NEW in set(
        pd.read_parquet(cfg.paths.split(s))["workflow"])}  # fmt: skip
    augment.run(adapted)
    train.run(adapted, progress=False)
    report = evaluate.run(adapted, progress=False)
    decision = gate.run(adapted)
    assert decision.workflow == NEW and decision.champion.tag == global_champion
    ours_test = report.candidates[decision.winner].test.by_workflow[NEW]
    assert decision.candidate.metrics["f1"] == ours_test.f1
    for row in decision.candidates:
        assert row.val["f1"] == report.candidates[row.candidate].val.by_workflow[NEW].f1
    test_jobs = pd.read_parquet(cfg.paths.split("test"))
    test_jobs = test_jobs[test_jobs["workflow"] == NEW]
    champion = load_detector(store.get(global_champion).path)
    expected = roc_auc_score(test_jobs["label"].astype(int), champion.score(test_jobs))
    assert decision.champion.metrics["roc_auc"] == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def study_home(tmp_path_factory):
    """The study's project, shared by its tests as by a user's successive runs: each
    workflow's data is prepared once by DVC in its workspace (same ingest, text and split
    settings), up to date for the next (each test alone prepares what it needs)."""
    return tmp_path_factory.mktemp("study")


@pytest.fixture
def study(study_home, monkeypatch):
    monkeypatch.chdir(study_home)
    return project_config


def test_the_study_on_two_small_workflows(flowbench_dir, study):
    cfg = study(
        ingest={"workflows": ["eht_smili"], "max_runs": 24},
        new_workflow={
            "workflows": ["eht_smili", NEW],
            "labelled_runs": [0, 2],
            "draws": 2,
            "kinds": ["gradient_boosting", "ecod"],
            "runs_per_workflow": 15,
        },
    )
    results = {name: new_workflow.run_holdout(cfg, name, flowbench_dir) for name in
               cfg.new_workflow.workflows}  # fmt: skip
    for name, result in results.items():
        assert result["trained_on"] == [w for w in cfg.new_workflow.workflows if w != name]
        rows = pd.DataFrame(result["rows"])
        # gradient boosting: k=0 once, k=2 twice; ecod (labels unread) once for each k
        assert sorted(map(tuple, rows[["kind", "k"]].to_numpy())) == sorted(
            [("gradient_boosting", 0), ("gradient_boosting", 2), ("gradient_boosting", 2),
             ("ecod", 0), ("ecod", 2)]
        )  # fmt: skip
        assert rows["roc_auc"].between(0, 1).all()
        assert 0 < result["supervised"]["roc_auc"] <= 1
        saved = json.loads(new_workflow.result_path(cfg, name).read_text())
        assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    # trained on the other one, zero labels: far better than chance on pycbc_inference
    gb = pd.DataFrame(results[NEW]["rows"]).query("kind == 'gradient_boosting' and k == 0")
    assert gb["roc_auc"].iloc[0] > 0.75
    table = new_workflow.summarise(cfg)
    assert set(table["workflow"]) == set(cfg.new_workflow.workflows)
    out = cfg.paths.reports / "new_workflow"
    assert (out / "table.csv").exists() and (out / "curve.png").stat().st_size > 10_000
    text = (out / "table.md").read_text()
    assert "supervised, all its labels" in text and "k=2" in text
    assert np.isfinite(table["roc_auc"]).all()


def test_the_language_models_in_the_study(flowbench_dir, study, tiny_encoder, tiny_decoder_folder):
    cfg = study(
        ingest={"workflows": ["eht_smili"], "max_runs": 24},
        train={"model": str(tiny_encoder), "int8": "off"},
        icl={"model": str(tiny_decoder_folder)},
        new_workflow={
            "workflows": ["eht_smili", NEW],
            "runs_per_workflow": 10,
            "language_models": {
                "workflows": [NEW],
                "labelled_runs": [0, 2],
                "max_train_samples": 200,
                "test_jobs": 40,
                "icl_examples": 2,
            },
        },
    )
    with pytest.raises(Exception, match="language_models.workflows: 'eht_smili' is not listed"):
        new_workflow.run_language_models(cfg, "eht_smili", flowbench_dir)
    result = new_workflow.run_language_models(cfg, NEW, flowbench_dir)
    rows = pd.DataFrame(result["rows"])
    # every kind at each k, all on the same 40 stratified test jobs
    assert sorted(map(tuple, rows[["kind", "k"]].to_numpy())) == sorted(
        (kind, k) for kind in ("gradient_boosting", "sft", "icl") for k in (0, 2)
    )
    assert (rows["jobs"] == 40).all() and result["test_jobs"] == 40
    assert rows["roc_auc"].between(0, 1).all() and rows["f1"].between(0, 1).all()
    # gradient boosting still reads the agnostic evidence well at this size
    assert rows.query("kind == 'gradient_boosting' and k == 0")["roc_auc"].iloc[0] > 0.75
    saved = json.loads(new_workflow.language_models_path(cfg, NEW).read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    table = new_workflow.summarise_language_models(cfg)
    assert set(table["kind"]) == {"gradient_boosting", "sft", "icl"}
    text = (cfg.paths.reports / "new_workflow" / "language_models.md").read_text()
    assert "| pycbc_inference | icl |" in text and "k=2" in text
