"""augment -> train -> evaluate -> gate on tiny traces: every kind, one tournament."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.conftest import TOURNAMENT_KINDS, tournament_settings

from flowsentry.data.splits import stratified_sample
from flowsentry.errors import FlowsentryError
from flowsentry.models.detector import choose_threshold
from flowsentry.models.loading import load_detector
from flowsentry.reports import GateReport
from flowsentry.stages import gate

KINDS = TOURNAMENT_KINDS


@pytest.fixture
def trained(tiny_tournament, project, tiny_encoder, bento_home):
    """A copy of the session's trained and evaluated tournament in this test's project
    folder (tests rewrite it)."""
    shutil.copytree(tiny_tournament, Path.cwd(), dirs_exist_ok=True)
    return project(**tournament_settings(tiny_encoder))


def evaluated(cfg) -> dict:
    """The report the module's evaluate run wrote, as JSON (tests rewrite it)."""
    return json.loads(cfg.paths.evaluate_report.read_text())


def test_every_kind_chooses_its_threshold_on_validation(trained):
    cfg = trained
    val = stratified_sample(pd.read_parquet(cfg.paths.prepared / "val.parquet"), 60, cfg.base.seed)
    test = pd.read_parquet(cfg.paths.prepared / "test.parquet")
    for kind in KINDS:
        detector = load_detector(cfg.paths.models / kind, device="cpu")
        assert detector.kind == kind
        expected = choose_threshold(val["label"], detector.score(val))
        assert detector.threshold_ == pytest.approx(expected, rel=1e-6), kind
        on_test = choose_threshold(test["label"], detector.score(test))
        if on_test != pytest.approx(expected):
            break
    else:
        pytest.fail("test and validation thresholds agree for every kind: the check is blind")


def test_evaluate_scores_every_candidate_on_val_and_test(trained):
    cfg = trained
    report = evaluated(cfg)
    assert report["split"]["method"] == "by_run"
    assert set(report["candidates"]) == set(KINDS)
    assert sorted(report["ranking_on_validation"]) == sorted(KINDS)
    test_jobs = len(pd.read_parquet(cfg.paths.prepared / "test.parquet"))
    for kind, entry in report["candidates"].items():
        assert entry["kind"] == kind
        assert entry["test"]["jobs"] == test_jobs and entry["val"]["jobs"] > 0
        assert set(entry["test"]["recall_by_anomaly_type"]) <= {"cpu_2"}
        latency = entry["test"]["latency_ms"]  # evaluate.latency_calls jobs, one at a time
        assert latency["calls"] == min(cfg.evaluate.latency_calls, test_jobs) == 10
        assert 0 < latency["p50"] <= latency["p99"]
        assert (
            len(report["online"][kind]["accuracy_by_k"])
            == len(report["online"][kind]["features"]) + 1
        )
    assert set(report["candidates"]["sft"]["test"]["bias"]["p_anomalous"]) == {
        "empty",
        "all_missing",
        "names_only",
    }
    assert report["candidates"]["isolation_forest"]["test"]["bias"] is None
    # The host-slowdown context makes the synthetic anomalies easy for boosting.
    assert report["candidates"]["gradient_boosting"]["test"]["f1"] > 0.9
    # Real time: the same online jobs, each with only the siblings finished before it
    # (the synthetic runs' jobs finish one after another, so early jobs see few).
    online = report["online"]["gradient_boosting"]
    assert online["realtime"]["jobs"] == online["post_run"]["jobs"] == min(40, test_jobs)
    assert online["post_run"]["accuracy"] == pytest.approx(online["accuracy_by_k"][-1], abs=1e-3)
    assert any(report["online"][k]["realtime"] != report["online"][k]["post_run"] for k in KINDS)

    out = cfg.paths.reports / "evaluate"
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == test_jobs
    for kind in KINDS:
        assert {f"score_{kind}", f"prediction_{kind}"} <= set(predictions.columns)
        assert (out / "png" / f"confusion_{kind}.png").stat().st_size > 1000
        for plot in ("roc", "precision_recall", "confusion"):
            assert (out / "live" / "plots" / "sklearn" / plot / f"{kind}.json").exists()
    for name in ("roc.png", "precision_recall.png", "reliability.png", "early_detection.png"):
        assert (out / "png" / name).stat().st_size > 1000
    assert (out / "live" / "plots" / "custom" / "early_detection.json").exists()


def test_the_service_runs_the_onnx_artifact_that_was_evaluated(
    trained, register_champion, tmp_path
):
    """The language model is exported to ONNX after training; evaluate scored that file,
    and the service (in-process and the real `bentoml serve`) answers with the very same
    scores."""
    import os

    import httpx

    from flowsentry.serving.local import local_server
    from flowsentry.serving.schemas import RAW_FIELDS, JobRecord
    from flowsentry.serving.scorer import JobScorer

    cfg = trained
    folder = cfg.paths.models / "sft"
    assert (folder / "model.onnx").is_file() and (folder / "model.safetensors").is_file()
    runtime = json.loads((folder / "flowsentry.json").read_text())["runtime"]
    assert runtime["engine"] == "onnxruntime" and set(runtime["validation"]) == {"fp32", "int8"}
    assert load_detector(folder).model is None  # no torch weights loaded to score

    evaluated = pd.read_csv(cfg.paths.reports / "evaluate" / "predictions.csv")
    test = pd.read_parquet(cfg.paths.prepared / "test.parquet")
    fields = list(RAW_FIELDS)
    runs = [
        [{k: v for k, v in row.items() if k in fields and pd.notna(v)} for row in
         jobs.to_dict("records")]
        for _, jobs in test.groupby("run", sort=False)
    ]  # fmt: skip
    expected = evaluated.set_index(["run", "job"])["score_sft"]

    service = JobScorer("sft:1", folder, follow_champion=False)
    for jobs in runs:
        served = service.classify([JobRecord(**job) for job in jobs])
        assert [s.score for s in served] == [expected[j["run"], j["job"]] for j in jobs]
    assert service.info().runtime["engine"] == "onnxruntime"

    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "1"}
    register_champion(folder, env)
    with local_server(env) as url:
        meta = httpx.post(f"{url}/metadata", json={}, timeout=30).json()
        assert meta["runtime"]["int8"] == runtime["int8"]
        for jobs in runs[:3]:
            reply = httpx.post(f"{url}/classify", json={"jobs": jobs}, timeout=60).json()
            assert [r["score"] for r in reply] == [expected[j["run"], j["job"]] for j in jobs]


def test_gate_promotes_the_best_on_validation_whatever_its_kind(trained):
    from flowsentry.registry import store

    cfg = trained
    report = evaluated(cfg)
    result = gate.run(cfg)
    best = report["ranking_on_validation"][0]
    assert result.winner == best
    assert result.decision == "promote"
    assert store.get(result.promoted_tag).info.labels["kind"] == best
    assert [row.candidate for row in result.candidates] == report["ranking_on_validation"]
    assert all("lost on validation" in row.why for row in result.candidates[1:])
    # The same candidate again cannot beat itself: the champion stays.
    again = gate.run(cfg)
    assert again.decision == "reject" and store.champion_tag() == result.promoted_tag
    assert GateReport.read(cfg.paths).decision == "reject"


def test_gate_picks_the_better_of_two_candidates_by_validation(trained, monkeypatch):
    """Whatever the test figures say, the gate ranks on validation."""
    cfg = trained
    report = evaluated(cfg)
    path = cfg.paths.evaluate_report
    for entry in report["candidates"].values():
        entry["val"]["f1"] = 0.5
    report["candidates"]["random_forest"]["val"]["f1"] = 0.9  # best on validation
    report["candidates"]["random_forest"]["test"]["f1"] = 0.71  # not best on test
    report["candidates"]["gradient_boosting"]["test"]["f1"] = 0.99
    path.write_text(json.dumps(report))
    result = gate.run(cfg)
    assert result.winner == "random_forest"
    assert result.candidate.metrics["f1"] == 0.71  # floors are checked on test


@pytest.mark.parametrize(
    ("rule", "value", "check"),
    [
        ("min_f1", 0.9999, "min_f1"),
        ("min_roc_auc", 0.9999, "min_roc_auc"),
        ("max_p99_latency_ms", 0.0001, "max_p99_latency_ms"),
    ],
)
def test_gate_rejects_the_winner_on_each_failed_floor(trained, rule, value, check):
    from flowsentry.registry import store

    cfg = trained
    strict = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={rule: value})})
    path = cfg.paths.evaluate_report
    report = json.loads(path.read_text())
    for entry in report["candidates"].values():  # nobody is perfect
        entry["test"]["f1"] = min(entry["test"]["f1"], 0.99)
        entry["test"]["roc_auc"] = min(entry["test"]["roc_auc"] or 0.5, 0.99)
    path.write_text(json.dumps(report))
    result = gate.run(strict)
    failed = {c.check for c in result.checks if c.verdict == "fail"}
    assert result.decision == "reject" and failed == {check}
    assert store.champion_tag() is None


def test_gate_without_evaluation_never_promotes(trained):
    trained.paths.evaluate_report.unlink()
    result = gate.run(trained)
    assert result.decision == "reject" and result.winner is None
    assert np.all([c.verdict == "fail" for c in result.checks])


def test_the_hybrid_stacks_on_scores_from_encoders_that_never_saw_the_run(trained, monkeypatch):
    """Each fold's encoder is fine-tuned on other runs than those it scores for the trees;
    the encoder that scores at run time is the sft candidate fitted beside it."""
    from flowsentry.models.hybrid import HybridDetector
    from flowsentry.models.loading import create_detector

    cfg = trained
    seen: list[tuple[set, set]] = []
    real = HybridDetector._fold_scores

    def spy(self, rest, held, val, settings, fold):
        seen.append((set(rest["run"]), set(held["run"])))
        assert settings.max_train_samples == cfg.train.hybrid.fold_samples
        return real(self, rest, held, val, settings, fold)

    monkeypatch.setattr(HybridDetector, "_fold_scores", spy)
    augmented = pd.read_parquet(cfg.paths.augmented / "train.parquet")
    val = pd.read_parquet(cfg.paths.prepared / "val.parquet")
    sft = load_detector(cfg.paths.models / "sft", device="cpu")
    hybrid = create_detector("hybrid", cfg)
    hybrid.profile = sft.profile
    hybrid.reuse({"sft": sft})
    assert hybrid.encoder is sft
    hybrid.fit(augmented, val)
    assert len(seen) == cfg.train.hybrid.folds
    for rest, held in seen:
        assert held and rest and not rest & held
    assert set().union(*(held for _, held in seen)) <= set(augmented["run"])
    assert hybrid.out_of_fold_["rows"] == cfg.train.hybrid.stack_samples
    # A differently configured sft is not taken for its encoder.
    other = create_detector("hybrid", cfg)
    other.encoder.params = other.encoder.params.model_copy(update={"epochs": 9.0})
    other.reuse({"sft": sft})
    assert other.encoder is not sft


def test_the_hybrid_is_saved_evaluated_and_served_with_the_same_scores(trained, tmp_path):
    from flowsentry.deploy.container import requirements_for
    from flowsentry.serving.schemas import RAW_FIELDS, JobRecord
    from flowsentry.serving.scorer import JobScorer

    cfg = trained
    folder = cfg.paths.models / "hybrid"
    metadata = json.loads((folder / "flowsentry.json").read_text())
    # it scores with the sft candidate's ONNX file, so it serves without torch
    assert (folder / "encoder" / "model.onnx").read_bytes() == (
        cfg.paths.models / "sft" / "model.onnx"
    ).read_bytes()
    assert metadata["runtime"]["engine"] == "onnxruntime"
    assert "torch" not in requirements_for("hybrid", metadata["runtime"])
    assert metadata["out_of_fold"]["folds"] == 2

    expected = pd.read_csv(cfg.paths.reports / "evaluate" / "predictions.csv").set_index(
        ["run", "job"]
    )["score_hybrid"]
    test = pd.read_parquet(cfg.paths.prepared / "test.parquet")
    loaded = load_detector(folder)
    on_file = expected.loc[list(zip(test.run, test.job, strict=True))].to_numpy()
    assert loaded.score(test) == pytest.approx(on_file, abs=1e-6)  # the file keeps 6 decimals
    # online detection: each distinct sentence prefix is scored once, to the same scores
    few = test.head(12)
    prefixes = loaded.score_prefixes(few)
    assert len(prefixes) == len(loaded.features) + 1
    for k, scores in enumerate(prefixes):
        assert scores == pytest.approx(loaded.score(few, k=k), abs=1e-9)
    fields = list(RAW_FIELDS)
    service = JobScorer("hybrid:1", folder, follow_champion=False)
    for _, jobs in list(test.groupby("run", sort=False))[:3]:
        records = [
            {k: v for k, v in row.items() if k in fields and pd.notna(v)}
            for row in jobs.to_dict("records")
        ]
        served = service.classify([JobRecord(**job) for job in records])
        assert [s.score for s in served] == pytest.approx(
            [expected[j["run"], j["job"]] for j in records], abs=1e-6
        )
    # a damaged stacker is refused in one line, never unpickled
    (folder / "stacker" / "model.skops").write_bytes(b"not a skops file")
    with pytest.raises(FlowsentryError, match="not a skops model file"):
        load_detector(folder)


def test_gate_ranks_on_the_real_time_figure_when_asked(trained):
    """Each candidate's live figures stand beside its post-run ones in gate.json; with
    gate.rank_on real_time the live validation figure decides the ranking."""
    cfg = trained
    report = evaluated(cfg)
    for entry in report["candidates"].values():
        live = entry["realtime"]
        assert live["val"]["jobs"] == min(40, entry["val"]["jobs"])
        assert live["test"]["jobs"] == min(40, entry["test"]["jobs"])
    post_run = gate.run(cfg)
    assert post_run.rank_on == "post_run"
    assert (
        post_run.candidates[0].realtime.model_dump()
        == report["candidates"][post_run.winner]["realtime"]
    )
    path = cfg.paths.evaluate_report
    loser = post_run.candidates[-1].candidate
    for name, entry in report["candidates"].items():
        entry["realtime"]["val"]["f1"] = 0.99 if name == loser else 0.1
    path.write_text(json.dumps(report))
    live_cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"rank_on": "real_time"})})
    live = gate.run(live_cfg)
    assert live.winner == loser and live.rank_on == "real_time"
    assert "(real time)" in live.candidates[1].why
    # the post-run validation figures are still reported, unchanged
    assert live.candidates[0].val["f1"] == report["candidates"][loser]["val"]["f1"]
