"""The promotion gate and the registry (promote, reject per check, first champion, rollback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowsentry.config import GateParams
from flowsentry.errors import FlowsentryError
from flowsentry.registry import store
from flowsentry.registry.promotion import decide, rank

GOOD = {"accuracy": 0.9, "f1": 0.85, "roc_auc": 0.95, "bias_gap": 0.1, "p99_latency_ms": 40.0}
RULES = GateParams()  # the defaults, as params.yaml sets them


def _failed(decision):
    return {c["check"] for c in decision["checks"] if c["verdict"] == "fail"}


def test_first_model_promotes_when_it_passes_the_floors():
    decision = decide(GOOD, None, RULES)
    assert decision["promote"] and not _failed(decision)
    assert "first model" in decision["checks"][-1]["note"]


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"f1": 0.5}, "min_f1"),
        ({"roc_auc": 0.6}, "min_roc_auc"),
        ({"bias_gap": 0.9}, "max_bias_gap"),
        ({"p99_latency_ms": 900.0}, "max_p99_latency_ms"),
    ],
)
def test_each_failed_floor_rejects(change, check):
    decision = decide({**GOOD, **change}, None, RULES)
    assert not decision["promote"] and _failed(decision) == {check}
    failing = next(c for c in decision["checks"] if c["check"] == check)
    assert failing["value"] == next(iter(change.values()))  # value and threshold reported


def test_must_beat_the_champion_by_the_margin():
    assert decide(GOOD, {**GOOD, "f1": 0.80}, RULES)["promote"]
    tie = decide(GOOD, {**GOOD, "f1": 0.848}, RULES)
    assert not tie["promote"] and _failed(tie) == {"beats_champion"}


def test_a_candidate_its_source_cannot_feed_never_promotes():
    decision = decide(GOOD, None, RULES, ["queue_delay", "wms_delay"], "monitord")
    assert not decision["promote"] and _failed(decision) == {"servable_from_source"}
    check = next(c for c in decision["checks"] if c["check"] == "servable_from_source")
    assert check["value"] == ["queue_delay", "wms_delay"] and check["threshold"] == "monitord"
    assert decide(GOOD, None, RULES, [], "monitord")["promote"]


def test_missing_metrics_never_promote():
    assert not decide(None, None, RULES)["promote"]
    assert not decide({}, None, RULES)["promote"]
    partial = decide({k: v for k, v in GOOD.items() if k != "roc_auc"}, None, RULES)
    assert not partial["promote"] and "min_roc_auc" in _failed(partial)


def test_rank_orders_by_validation_metric_missing_last_ties_in_order():
    val = {
        "sft": {"f1": 0.7},
        "gradient_boosting": {"f1": 0.8},
        "random_forest": {"f1": 0.8},
        "isolation_forest": {"f1": None},
        "icl": None,
    }
    assert rank(val, "f1") == [
        "gradient_boosting",
        "random_forest",
        "sft",
        "isolation_forest",
        "icl",
    ]


def test_a_floor_marked_not_applicable_passes_with_a_note():
    """IsolationForest's scores are not probabilities: no bias gap to check."""
    candidate = {**GOOD, "bias_gap": None, "not_applicable": ["bias_gap"]}
    decision = decide(candidate, None, RULES)
    bias = next(c for c in decision["checks"] if c["check"] == "max_bias_gap")
    assert decision["promote"] and bias["verdict"] == "pass" and "not applicable" in bias["note"]
    # Only the metrics named there: any other missing one still fails.
    unnamed = decide({**candidate, "roc_auc": None}, None, RULES)
    assert not unnamed["promote"] and _failed(unnamed) == {"min_roc_auc"}


def _model_dir(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "flowsentry.json").write_text(
        json.dumps(
            {
                "kind": "sft",
                "mode": "full",
                "workflows": ["1000genome"],
                "data_version": {"augmented": "abc"},
            }
        )
    )
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def test_register_promote_list_and_rollback(bento_home, tmp_path):
    first = store.register(_model_dir(tmp_path, "a"), {"f1": 0.8}, {"seed": 1})
    second = store.register(_model_dir(tmp_path, "b"), {"f1": 0.9}, {"seed": 2})
    assert store.champion_tag() is None
    store.promote(first)
    store.promote(second)
    assert store.champion_tag() == second
    rows = store.listing()
    assert {r["tag"] for r in rows} == {first, second}
    champion = next(r for r in rows if r["champion"])
    assert champion["tag"] == second and champion["labels"]["workflows"] == "1000genome"
    assert champion["labels"]["data_version"] == "abc" and champion["metrics"]["f1"] == 0.9
    assert (Path(store.get(second).path) / "model.safetensors").read_bytes() == b"weights"
    store.rollback()
    assert store.champion_tag() == first
    with pytest.raises(FlowsentryError, match="no earlier champion"):
        store.rollback()


def test_unknown_tag_is_a_clear_error(bento_home):
    with pytest.raises(FlowsentryError, match="not in the BentoML store"):
        store.promote("flowsentry-detector:nope")
