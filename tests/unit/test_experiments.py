"""The transfer / forgetting / debias experiments on tiny traces with a tiny encoder."""

from __future__ import annotations

import pytest
from tests.conftest import build_flowbench, project_config

from flowsentry import experiments


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One project for the module, as a user's successive experiments share theirs: each
    workflow's data is prepared once by DVC in its workspace, and found up to date by
    the next experiment (each test alone prepares what it needs)."""
    root = tmp_path_factory.mktemp("experiments")
    build_flowbench(root / "flowbench", "wfa", n_runs=30)
    build_flowbench(root / "flowbench", "wfb", n_runs=30)
    return root


@pytest.fixture
def two_workflows(home, tiny_encoder, monkeypatch):
    monkeypatch.chdir(home)
    cfg = project_config(
        text={"template": "compact", "feature_set": "context"},
        train={
            "model": str(tiny_encoder),
            "epochs": 1,
            "batch_size": 16,
            "learning_rate": 1e-3,
        },
    )
    return cfg, home / "flowbench"


def test_forgetting_keeps_the_first_adapter_intact(two_workflows):
    cfg, root = two_workflows
    result = experiments.forgetting(cfg, "wfa", "wfb", root, n_train=100, n_test=30, progress=False)
    lora = result["lora_per_workflow"]
    assert lora["first_unchanged"]
    assert lora["on_first_before"] == lora["on_first_after_second_adapter"]
    head, full = result["sft_d1_d2_head"], result["sft_d1_d2_full"]
    assert head["trainable_parameters"] < full["trainable_parameters"]
    assert (cfg.paths.reports / "experiments" / "forgetting_wfa_wfb.json").exists()


def test_transfer_and_debias_report_their_numbers(two_workflows):
    cfg, root = two_workflows
    result = experiments.transfer(
        cfg, "wfa", "wfb", root, n_train=100, n_target=40, n_test=30, progress=False
    )
    import json

    saved = cfg.paths.reports / "experiments" / "transfer_wfa_wfb.json"
    assert json.loads(saved.read_text()) == json.loads(json.dumps(result))
    for key in ("zero_shot_on_target", "scratch_on_target", "fine_tuned_on_target"):
        correct = result[key]["accuracy"] * 30  # measured on the 30 test jobs asked for
        assert correct == pytest.approx(round(correct), abs=0.01)  # accuracy has 4 decimals
    debiased = experiments.debias(cfg, "wfa", root, n_train=100, n_test=30, progress=False)
    for name in ("without_augmentation", "with_augmentation"):
        assert len(debiased[name]["online_accuracy_by_k"]) == 18 + 1  # context: 18 features


def test_quality_runs_the_pipeline_in_its_own_workspace(two_workflows):
    cfg, root = two_workflows
    # the workspace and its reports, not the kinds (tests/unit/test_model_stages.py):
    # an encoder and a tree
    candidates = ["sft", "gradient_boosting"]
    cfg = cfg.model_copy(
        update={
            "train": cfg.train.model_copy(
                update={"max_train_samples": 100, "candidates": tuple(candidates)}
            ),
            "evaluate": cfg.evaluate.model_copy(update={"online_max_jobs": 20}),
        }
    )
    result = experiments.quality(cfg, "wfb", root)
    assert result["workflow"] == "wfb" and result["split"]["method"] == "by_run"
    assert set(result["candidates"]) == set(cfg.train.candidates)
    assert sorted(result["ranking_on_validation"]) == sorted(cfg.train.candidates)
    for entry in result["candidates"].values():
        assert set(entry["val"]) == set(entry["test"]) >= {"accuracy", "f1", "roc_auc"}
    assert not (cfg.paths.jobs / "wfb.parquet").exists()  # the main pipeline is untouched
    assert (cfg.paths.reports / "experiments" / "quality_wfb_by_run.json").exists()
