"""Evidence relative to normal: fitted on the training split only, saved with the model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsentry.data.evidence import (
    EVIDENCE_COLUMNS,
    PROFILE_COLUMN,
    Profile,
    add_evidence,
    read_profile,
)
from flowsentry.errors import FlowsentryError
from flowsentry.io import write_parquet
from flowsentry.models.baselines import FeatureDetector
from flowsentry.models.detector import with_context
from flowsentry.stages import ingest, prepare, validate
from flowsentry.text.sentences import features_of, sentence, sentences


def _jobs(runtimes, hosts, labels, run="r1", task="t", workflow="wf"):
    return pd.DataFrame(
        {
            "workflow": workflow,
            "run": run,
            "task": task,
            "kickstart_hostname": hosts,
            "runtime": [float(r) for r in runtimes],
            "label": labels,
        }
    )


def test_ratios_are_to_the_normal_training_jobs_of_the_task():
    train = pd.concat(
        [
            _jobs([100, 100, 100, 900], ["a", "a", "b", "b"], [0, 0, 0, 1]),
            _jobs([50, 50], ["a", "a"], [0, 0], task="other"),
        ]
    )
    profile = Profile.fit(train)
    assert profile.normal["wf"]["t"]["runtime"] == 100.0  # the anomalous 900 is not normal
    assert profile.normal["wf"]["other"]["runtime"] == 50.0

    # a run where both hosts are slow: its own median moves, the normal profile does not
    run = _jobs([300, 300, 200, 200], ["slow", "slow", "b", "b"], [1, 1, 1, 1], run="r2")
    out = add_evidence(run, profile)
    assert out["runtime_vs_normal"].tolist() == [3.0, 3.0, 2.0, 2.0]
    assert out["host_runtime_vs_normal_mean"].tolist() == [3.0, 3.0, 2.0, 2.0]
    assert out["run_runtime_vs_normal_median"].tolist() == [2.5] * 4
    assert (out[PROFILE_COLUMN] == profile.id).all()


def test_unknown_task_or_workflow_has_no_evidence_but_still_scores():
    profile = Profile.fit(_jobs([100, 100], ["a", "a"], [0, 0]))
    out = add_evidence(_jobs([100], ["a"], [0], task="unseen"), profile)
    assert np.isnan(out["runtime_vs_normal"]).all()
    out = add_evidence(_jobs([100], ["a"], [0], workflow="other"), profile)
    assert np.isnan(out["runtime_vs_normal"]).all()


def test_a_near_zero_median_is_floored_to_one_second():
    profile = Profile.fit(_jobs([0.0, 0.0], ["a", "a"], [0, 0]))
    out = add_evidence(_jobs([3.0], ["a"], [0]), profile)
    assert out["runtime_vs_normal"].tolist() == [3.0]


def test_profile_round_trip_and_malformed_profile_is_one_clear_error(tmp_path):
    profile = Profile.fit(
        _jobs([100, 120, 80, 300], ["a", "a", "b", "b"], [0, 0, 0, 1]),
        ["runtime_vs_normal", "task"],
    )
    assert "task" not in profile.levels and len(profile.levels["runtime_vs_normal"]) >= 1
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile.to_dict()))
    assert read_profile(path) == profile and read_profile(path).id == profile.id
    path.write_text(json.dumps({"normal": {"wf": ["not", "a", "map"]}, "levels": {}}))
    with pytest.raises(FlowsentryError, match="profile.json: not a flowsentry evidence profile"):
        read_profile(path)
    with pytest.raises(FlowsentryError, match="missing; run `flowsentry prepare`"):
        read_profile(tmp_path / "absent.json")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.floats(0, 1e7, allow_nan=False),
)
def test_levels_are_deciles_of_the_training_values(values, value):
    train = pd.DataFrame({"x": values})
    profile = Profile.fit(_jobs([1.0], ["a"], [0]), [])
    edges = sorted(set(np.quantile(values, np.arange(1, 10) / 10)))
    profile = Profile(profile.normal, {"x": edges})
    level = profile.level("x", value)
    assert 0 <= level <= 9
    # monotone: a larger value never gets a lower level
    assert profile.level("x", value * 2 + 1) >= level
    assert profile.level("x", train["x"].min()) <= profile.level("x", train["x"].max())


def test_levels_sentence_is_one_token_per_number_grouped_by_measure():
    train = pd.concat(
        [_jobs(np.linspace(50, 150, 20), ["a", "b"] * 10, [0] * 20, run=f"r{i}") for i in range(3)]
    )
    features = features_of("evidence_compact")
    profile = Profile.fit(train, features)
    job = add_evidence(_jobs([400], ["a"], [1]), profile).iloc[0].to_dict()
    text = sentence(job, "levels", features, profile=profile)
    # task, then one key per measure followed by its levels: job, host mean/median, run
    columns = [c for c in features if c.startswith(("runtime", "host_runtime", "run_runtime"))]
    levels = [str(profile.level(c, job[c])) for c in columns]
    assert text.split() == ["task", "t", "run", *levels] and levels[0] == "9"
    # the training split's host means reach fewer distinct edges: its top level is lower
    assert int(levels[1]) == len(profile.levels["host_runtime_vs_normal_mean"])
    assert sentence(job, "levels", features, k=6, profile=profile) == "task t run 9"
    with pytest.raises(ValueError, match="needs a fitted evidence profile"):
        sentence(job, "levels", features)


def test_prepare_fits_the_profile_on_the_training_split_only(make_flowbench, project):
    """Changing every validation and test job leaves the profile, and the training rows'
    evidence, exactly as they were."""
    cfg = project(split={"method": "by_run"})
    ingest.run(cfg, make_flowbench(n_runs=20, n_jobs=6), progress=False)
    validate.run(cfg)
    prepare.run(cfg)
    before = cfg.paths.profile.read_text()
    train_before = pd.read_parquet(cfg.paths.split("train"))

    held_out = set(pd.read_parquet(cfg.paths.split("val"))["run"]) | set(
        pd.read_parquet(cfg.paths.split("test"))["run"]
    )
    validated = cfg.paths.validated / "tiny.parquet"
    table = pd.read_parquet(validated)
    out = table["run"].isin(held_out)
    table.loc[out, "runtime"] = table.loc[out, "runtime"] * 7.0
    table.loc[out, "label"] = 0
    write_parquet(table, validated, [cfg.paths.jobs / "tiny.parquet"])
    prepare.run(cfg)

    assert cfg.paths.profile.read_text() == before
    pd.testing.assert_frame_equal(pd.read_parquet(cfg.paths.split("train")), train_before)
    test = pd.read_parquet(cfg.paths.split("test"))
    assert test["runtime_vs_normal"].min() > 2.0  # judged against the training normal


def test_detector_saves_its_profile_and_recomputes_evidence_of_another(tmp_path):
    rng = np.random.default_rng(0)
    runs = []
    for r in range(12):
        slow = r % 3 == 0
        runtimes = rng.uniform(90, 110, 8) * np.where(slow, [3, 1] * 4, 1)
        labels = (np.array([1, 0] * 4) * slow).tolist()
        runs.append(_jobs(runtimes, ["a", "b"] * 4, labels, run=f"r{r}"))
    train = pd.concat(runs, ignore_index=True)
    profile = Profile.fit(train, features_of("evidence"))
    detector = FeatureDetector("random_forest", features_of("evidence"))
    detector.profile = profile
    detector.fit(add_evidence(train, profile), add_evidence(train, profile))
    loaded = FeatureDetector.load(detector.save(tmp_path / "rf"))
    assert loaded.profile == profile
    raw = train.drop(columns="label")
    np.testing.assert_array_equal(loaded.score(raw), detector.score(raw))

    other = Profile.fit(train.assign(runtime=train["runtime"] * 10), [])
    stale = add_evidence(train, other)  # evidence made by another profile is recomputed
    frame = with_context(stale, detector.features, profile)
    assert (frame[PROFILE_COLUMN] == profile.id).all()
    np.testing.assert_array_equal(detector.score(stale), detector.score(raw))

    bare = FeatureDetector("random_forest", features_of("evidence"))
    with pytest.raises(FlowsentryError, match="holds no profile"):
        with_context(raw, bare.features, None)


def test_every_evidence_feature_set_prints_with_every_template():
    train = pd.concat([_jobs([100, 110, 90, 300], ["a", "a", "b", "b"], [0, 0, 0, 1])])
    profile = Profile.fit(train, features_of("evidence"))
    jobs = add_evidence(train, profile)
    for template in ("paper", "compact", "levels"):
        for feature_set in ("evidence", "evidence_compact"):
            texts = sentences(jobs, template, features_of(feature_set), profile=profile)
            assert len(texts) == 4 and all(texts)
    assert set(EVIDENCE_COLUMNS) <= set(features_of("evidence"))


def test_bias_probe_names_the_features_as_the_levels_template_does():
    from flowsentry.text.augmentation import uninformative_inputs

    inputs = uninformative_inputs("levels", features_of("evidence_compact"))
    assert inputs["names_only"] == "task in run cpu user sys out"


def test_cli_prints_a_levels_sentence_with_the_saved_profile(tmp_path):
    from typer.testing import CliRunner

    from flowsentry.cli import app

    profile = Profile.fit(_jobs([100, 110, 90, 300], ["a", "a", "b", "b"], [0, 0, 0, 1]))
    profile = Profile(profile.normal, {"runtime_vs_normal": [0.9, 1.0, 1.1]})
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile.to_dict()))
    job = '{"task": "t", "runtime_vs_normal": 1.05}'
    args = ["sentence", job, "--template", "levels", "--feature-set", "evidence_compact"]
    result = CliRunner().invoke(app, [*args, "--profile", str(path)])
    assert result.exit_code == 0 and result.output.strip() == "task t run 2"
    result = CliRunner().invoke(app, args)  # no profile: one clear line, no traceback
    assert result.exit_code == 1 and "needs a fitted evidence profile" in result.output
