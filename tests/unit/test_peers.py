"""Workflow-agnostic evidence (data/peers.py), the label-free profile and the unsupervised
kinds that read it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsentry.data.evidence import MIN_SPREAD, Profile
from flowsentry.data.peers import (
    AGNOSTIC_COLUMNS,
    PEER_COLUMNS,
    Z_COLUMNS,
    add_agnostic,
    add_peers,
    has_agnostic,
)
from flowsentry.errors import FlowsentryError
from flowsentry.models.baselines import FeatureDetector
from flowsentry.models.loading import load_detector
from flowsentry.new_workflow import _weighted, alert_rate_threshold, markdown
from flowsentry.text.sentences import features_of


def _run(run: str, slow_hosts: dict[str, float], n_hosts: int = 6, per_host: int = 4,
         workflow: str = "wf", seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """One run: `per_host` jobs of task `t` on each host; a slow host's runtime is scaled,
    its CPU time not (cores withheld)."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(n_hosts):
        host = f"h{h}"
        for j in range(per_host):
            cpu = 100.0 * rng.uniform(0.95, 1.05)
            rows.append({
                "workflow": workflow, "run": run, "job": f"{host}-{j}", "task": "t",
                "kickstart_hostname": host, "runtime": cpu * slow_hosts.get(host, 1.0),
                "kickstart_executables_cpu_time": cpu, "stage_in_delay": 5.0,
                "stage_in_bytes": 1000.0, "label": int(host in slow_hosts),
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_a_slowed_host_stands_out_among_the_run_s_hosts():
    jobs = add_peers(_run("r1", {"h2": 3.0}))
    slow = jobs[jobs["kickstart_hostname"] == "h2"]
    other = jobs[jobs["kickstart_hostname"] != "h2"]
    assert (slow["peer_host_runtime_rank"] == 1.0).all()
    assert (slow["peer_host_runtime_z"] > 10).all()
    assert other["peer_host_runtime_z"].abs().max() < 3
    # cores withheld: wall time per CPU second, not CPU time, gives it away
    assert (slow["peer_host_starved"] > 2.5).all()
    assert slow["peer_host_kickstart_executables_cpu_time"].between(0.9, 1.1).all()


def test_peers_are_per_run_and_nan_where_nothing_is_known():
    jobs = pd.concat([_run("r1", {"h0": 2.0}), _run("r2", {})], ignore_index=True)
    jobs.loc[0, "kickstart_hostname"] = None
    out = add_peers(jobs)
    assert set(PEER_COLUMNS) <= set(out.columns)
    assert np.isnan(out.loc[0, "peer_host_runtime_z"])  # no host: no host standing
    assert out.loc[out["run"] == "r2", "peer_host_runtime_z"].abs().max() < 3
    # no queue delay anywhere: every peer column of it is unknown, never invented
    assert out["peer_queue_delay"].isna().all()
    assert out[[c for c in PEER_COLUMNS if "queue_delay" in c]].isna().all().all()
    assert len(add_peers(jobs.iloc[:0])) == 0


def test_a_profile_without_labels_reads_none():
    runs = pd.concat([_run(f"r{i}", {"h1": 2.0} if i % 2 else {}, seed=i) for i in range(6)])
    hidden = runs.drop(columns=["label"])
    unlabelled = Profile.fit(hidden, labelled=False)
    assert unlabelled == Profile.fit(runs.assign(label=1 - runs["label"]), labelled=False)
    labelled = Profile.fit(runs)
    # normal runtime near 100 either way: the slowed host is a minority of the jobs
    assert unlabelled.normal["wf"]["t"]["runtime"] == pytest.approx(
        labelled.normal["wf"]["t"]["runtime"], rel=0.05
    )
    assert unlabelled.spread["wf"]["t"]["stage_in_delay"] == MIN_SPREAD  # constant: floored
    assert Profile.from_dict(unlabelled.to_dict()) == unlabelled


def test_a_profile_saved_before_spreads_still_loads():
    old = {"normal": {"wf": {"t": {"runtime": 10.0}}}, "levels": {}}
    profile = Profile.from_dict(old)
    assert profile.spread == {} and profile.normal["wf"]["t"]["runtime"] == 10.0
    with pytest.raises(FlowsentryError, match="not a flowsentry evidence profile"):
        Profile.from_dict({"normal": {}, "levels": {}, "spread": [1]})


def test_z_scores_put_every_workflow_on_one_scale():
    a = _run("r1", {"h0": 2.0}, workflow="a")
    b = _run("r1", {"h0": 2.0}, workflow="b")
    b[["runtime", "kickstart_executables_cpu_time"]] *= 1000  # another workflow's scale
    jobs = pd.concat([a, b], ignore_index=True)
    profile = Profile.fit(jobs, labelled=False)
    out = add_agnostic(jobs, profile)
    assert has_agnostic(out, profile) and not has_agnostic(out, Profile())
    by_wf = out.groupby("workflow")["host_z_runtime"].max()
    assert by_wf["a"] == pytest.approx(by_wf["b"], rel=0.02)
    unknown = add_agnostic(jobs.assign(workflow="new"), profile)  # its first run: no profile
    assert unknown[list(Z_COLUMNS)].isna().all().all()
    assert unknown["peer_host_runtime_z"].notna().all()  # the run's own hosts still speak


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "run": st.sampled_from(["r1", "r2"]),
                "task": st.sampled_from(["a", "b"]),
                "kickstart_hostname": st.one_of(st.none(), st.sampled_from(["h1", "h2", "h3"])),
                "runtime": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                "kickstart_executables_cpu_time": st.one_of(st.none(), st.floats(-1e300, 1e300)),
                "stage_in_delay": st.one_of(st.none(), st.floats(0, 1e12)),
                "stage_in_bytes": st.one_of(st.none(), st.floats(0, 1e15)),
            }
        ),
        max_size=30,
    )
)
def test_any_records_give_the_columns_and_no_infinity(records):
    jobs = pd.DataFrame(records, columns=["run", "task", "kickstart_hostname", "runtime",
                                          "kickstart_executables_cpu_time", "stage_in_delay",
                                          "stage_in_bytes"]).assign(workflow="wf")  # fmt: skip
    profile = Profile.fit(jobs, labelled=False)
    out = add_agnostic(jobs, profile)
    assert len(out) == len(jobs) and set(AGNOSTIC_COLUMNS) <= set(out.columns)
    values = out[[c for c in AGNOSTIC_COLUMNS if not c.endswith("_z") and "z_" not in c]]
    assert not np.isneginf(values.to_numpy("float64")).any()
    z = out[[c for c in AGNOSTIC_COLUMNS if c.endswith("_z") or "z_" in c]].to_numpy("float64")
    assert not np.isinf(z).any()
    ranks = out[[c for c in AGNOSTIC_COLUMNS if c.endswith("_rank")]].to_numpy("float64")
    assert ((ranks[~np.isnan(ranks)] >= 0) & (ranks[~np.isnan(ranks)] <= 1)).all()


@pytest.mark.parametrize("kind", ["ecod", "copod", "hbos"])
def test_pyod_kinds_learn_without_labels_and_round_trip(kind, tmp_path):
    train = pd.concat([_run(f"r{i}", {"h1": 3.0} if i == 0 else {}, seed=i) for i in range(8)])
    profile = Profile.fit(train, labelled=False)
    detector = FeatureDetector(kind, features_of("agnostic"))
    detector.profile = profile
    detector.fit(train.assign(label=1 - train["label"]), train)  # labels never read: ...
    twin = FeatureDetector(kind, features_of("agnostic"))
    twin.profile = profile
    twin.fit(train, train)
    test = _run("t", {"h4": 3.0}, seed=99)
    scores = detector.score(test)
    np.testing.assert_allclose(scores, twin.score(test))  # ... same model either way
    assert scores[test["label"] == 1].min() > scores[test["label"] == 0].max()
    loaded = load_detector(detector.save(tmp_path / kind))
    np.testing.assert_allclose(loaded.score(test), scores)
    assert not loaded.probabilistic


def test_alert_rate_threshold_alerts_that_share():
    scores = np.arange(1000, dtype="float64")
    threshold = alert_rate_threshold(scores, 0.2)
    assert np.mean(scores >= threshold) == pytest.approx(0.2, abs=0.002)
    with pytest.raises(FlowsentryError, match="no scores"):
        alert_rate_threshold(np.array([np.nan]), 0.2)


def test_each_workflow_weighs_the_same_and_the_k_runs_their_share():
    pool = pd.concat([_run("a1", {}, workflow="a"), _run("b1", {}, workflow="b", per_host=12)])
    target = _run("n1", {}, workflow="new")
    out = _weighted(pool, target, 0.25)
    mass = out.groupby("workflow")["sample_weight"].sum() / out["sample_weight"].sum()
    assert mass["new"] == pytest.approx(0.25)
    assert mass["a"] == pytest.approx(mass["b"])
    alone = _weighted(pool, target.iloc[:0], 0.25)
    assert alone["sample_weight"].sum() == pytest.approx(len(pool))


def test_the_table_reads_mean_spread_and_the_supervised_row():
    table = pd.DataFrame({
        "workflow": ["w"] * 2, "kind": ["gradient_boosting"] * 2, "k": [0, 2],
        "roc_auc": [0.8, 0.9], "roc_auc_std": [0.0, 0.05], "f1": [0.5, 0.6], "f1_std": [0, 0],
        "f1_at_alert_rate": [0.4, 0.5], "draws": [1, 3], "supervised_f1": [0.95] * 2,
        "supervised_roc_auc": [0.99] * 2,
    })  # fmt: skip
    text = markdown(table)
    assert "| w | gradient_boosting | 0.800 (0.500) | 0.900 ±0.050 (0.600) |" in text
    assert "| w | supervised, all its labels | 0.990 (0.950) |" in text


def test_each_source_gets_the_agnostic_features_it_can_feed():
    from flowsentry.data.sources import SOURCE_MEASURES, measures_read

    for name, source in (("agnostic", "flowbench"), ("agnostic_pegasus", "stampede"),
                         ("agnostic_monitord", "monitord")):  # fmt: skip
        features = features_of(name)
        assert "task" not in features and measures_read(features) <= SOURCE_MEASURES[source]
    assert not measures_read(features_of("agnostic")) <= SOURCE_MEASURES["stampede"]
    assert set(features_of("agnostic_monitord")) < set(features_of("agnostic_pegasus"))
    assert {"peer_host_starved_z", "host_z_runtime"} <= set(features_of("agnostic_monitord"))
