"""Training-set augmentation for debiasing."""

from __future__ import annotations

import pandas as pd

from flowsentry.text.augmentation import augment, uninformative_inputs
from flowsentry.text.sentences import PAPER_FEATURES, sentences


def _train(n=100):
    frame = pd.DataFrame(
        {
            "workflow": "wf",
            "run": "r",
            "job": [f"j{i}" for i in range(n)],
            "task": "t",
            "anomaly_type": ["cpu_2" if i % 4 == 0 else "none" for i in range(n)],
            "label": [1 if i % 4 == 0 else 0 for i in range(n)],
            **{f: [float(i + j) for i in range(n)] for j, f in enumerate(PAPER_FEATURES)},
        }
    )
    frame["sentence"] = sentences(frame)
    return frame


def test_no_options_returns_the_originals_shuffled():
    train = _train()
    out = augment(train, "paper", PAPER_FEATURES, seed=1)
    assert len(out) == 100 and set(out["augmentation"]) == {"none"}
    assert sorted(out["sentence"]) == sorted(train["sentence"])


def test_prefixes_keep_the_full_jobs_label():
    train = _train()
    out = augment(train, "paper", PAPER_FEATURES, seed=1, prefix_fraction=0.5)
    prefixes = out[out["augmentation"] == "prefix"]
    assert len(prefixes) == 50
    full = dict(zip(train["job"], train["sentence"], strict=True))
    labels = dict(zip(train["job"], train["label"], strict=True))
    for _, row in prefixes.iterrows():
        assert full[row["job"]].startswith(row["sentence"]) and row["sentence"] != full[row["job"]]
        assert row["label"] == labels[row["job"]]


def test_empty_rows_are_label_balanced():
    out = augment(_train(), "paper", PAPER_FEATURES, seed=1, empty_fraction=0.1)
    empty = out[out["augmentation"] == "empty"]
    assert len(empty) == 10 and empty["label"].sum() == 5
    assert empty["sentence"].map(lambda s: s.count(" is ") <= 1).all()


def test_rebalance_reaches_parity_and_permute_keeps_pairs():
    out = augment(_train(), "compact", PAPER_FEATURES, seed=1, rebalance=True, permute_fraction=0.2)
    originals_and_rebalanced = out[out["augmentation"].isin(["none", "rebalanced"])]
    assert originals_and_rebalanced["label"].value_counts().to_dict() == {0: 75, 1: 75}
    permuted = out[out["augmentation"] == "permuted"]
    assert len(permuted) == 20
    assert all(len(s.split()) == 9 for s in permuted["sentence"])


def test_same_seed_same_augmentation():
    a = augment(_train(), "paper", PAPER_FEATURES, seed=3, prefix_fraction=0.3)
    b = augment(_train(), "paper", PAPER_FEATURES, seed=3, prefix_fraction=0.3)
    pd.testing.assert_frame_equal(a, b)


def test_uninformative_inputs():
    inputs = uninformative_inputs("paper", PAPER_FEATURES)
    assert inputs["empty"] == "" and inputs["all_missing"].startswith("wms_delay is nan")


def test_realtime_rows_carry_the_context_of_their_run_at_a_moment_before_it_ended():
    """A realtime row sees only the siblings finished by its moment (`as_of`), never the
    whole run (unless the moment is its end): exactly `add_context` on those jobs."""
    from flowsentry.data.context import AS_OF, add_context

    train = _train(40)
    train["kickstart_hostname"] = ["a" if i % 2 else "b" for i in range(40)]
    train["execute_end"] = [float(100 + i) for i in range(40)]  # job i finishes i-th
    train["runtime"] = [float(10 + (i % 7)) for i in range(40)]
    train = add_context(train)
    features = (*PAPER_FEATURES, "runtime_vs_task", "host_runtime_mean")
    train["sentence"] = sentences(train, "paper", features)
    out = augment(train, "paper", features, seed=3, realtime_fraction=0.5)
    live = out[out["augmentation"] == "realtime"]
    assert 0 < len(live) <= 20 and live[AS_OF].nunique() <= 4
    assert (live["execute_end"] <= live[AS_OF]).all()  # finished by its moment
    for moment, rows in live.groupby(AS_OF):
        expected = add_context(train[train["execute_end"] <= moment]).set_index("job")
        for name in ("runtime_vs_task", "host_runtime_mean"):
            assert rows[name].tolist() == expected.loc[rows["job"], name].tolist()
        assert rows["sentence"].tolist() == sentences(
            expected.loc[rows["job"]].reset_index(), "paper", features
        )
    full = train.set_index("job")
    assert (live["label"].to_numpy() == full.loc[live["job"], "label"].to_numpy()).all()
    early = live[AS_OF].min()
    assert early < 139.0  # a moment before the run ended: less context than after it
    assert augment(train, "paper", features, seed=3)["augmentation"].eq("none").all()
