"""Training-set augmentation for debiasing (the paper's Debiasing section).

A classifier fine-tuned on full sentences leans to one class when it sees little
(an empty or partial record). Adding such inputs with honest labels pulls it back
to 0.5/0.5 on uninformative input and teaches it to score partial records:

- prefix: a job's first k features (k < all), labelled as the full job;
- empty: empty and near-empty sentences, half labelled normal, half anomalous;
- permute: the job's features in a shuffled order (only where names carry meaning);
- rebalance: minority-class jobs repeated up to parity;
- realtime: a job with the context of its run at a moment after it finished, before the
  run ended (only the siblings finished by then: what a live service knew; the job that
  finished at that moment gets exactly its real-time context), sentence and columns both;
  `REALTIME_MOMENTS` moments a run, one context computation each.

Every added row says which it is in `augmentation`; originals are `none`. Rows keep
the job's columns, with the features a prefix or empty row does not show blanked, so
record-based detectors (gradient boosting, ...) learn from partial records too, cut in
the order of their own features (`record_features`; by default the sentence's). A row's
sentence and its columns are read by different detectors, so each is cut on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from flowsentry.data.evidence import Profile
from flowsentry.text.sentences import level_keys, sentence, sentences

REALTIME_MOMENTS = 4  # moments of each run the realtime rows are drawn from


def _rows(
    base: pd.DataFrame,
    texts: list[str],
    kind: str,
    features: Sequence[str] = (),
    known: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Copies of `base` rows with `texts`; with `known`, each row's features past its
    first `known[i]` are blanked (not known yet, as in the sentence)."""
    out = base.copy().reset_index(drop=True)
    out["sentence"] = texts
    out["augmentation"] = kind
    if known is not None:
        known = np.asarray(known)
        for position, name in enumerate(features):
            if name in out.columns:
                hidden = known <= position
                if hidden.any():
                    out[name] = out[name].astype(object if name == "task" else "float64")
                    out.loc[hidden, name] = None if name == "task" else np.nan
    return out


def augment(
    train: pd.DataFrame,
    template: str,
    features: Sequence[str],
    seed: int,
    prefix_fraction: float = 0.0,
    empty_fraction: float = 0.0,
    permute_fraction: float = 0.0,
    rebalance: bool = False,
    record_features: Sequence[str] | None = None,
    profile: Profile | None = None,
    realtime_fraction: float = 0.0,
) -> pd.DataFrame:
    """`train` (with a `sentence` column) plus augmented rows; shuffled, seeded.
    `profile`: the training split's, for the `levels` template."""
    rng = np.random.default_rng(seed)
    features = tuple(features)
    record_features = features if record_features is None else tuple(record_features)

    def cut(count: int, low: int) -> np.ndarray:
        """How many of the record's features each of `count` rows keeps."""
        return rng.integers(low, max(len(record_features), low + 1), size=count)

    parts = [_rows(train, train["sentence"].tolist(), "none")]
    records = train.astype(object).where(train.notna(), None).to_dict("records")
    n = len(train)

    if prefix_fraction > 0 and len(features) > 1:
        picks = rng.choice(n, size=round(prefix_fraction * n), replace=prefix_fraction > 1)
        ks = rng.integers(1, len(features), size=len(picks))  # 1 .. all-1 features
        texts = [
            sentence(records[i], template, features, int(k), profile)
            for i, k in zip(picks, ks, strict=True)
        ]
        known = ks if record_features == tuple(features) else cut(len(picks), 1)
        parts.append(_rows(train.iloc[picks], texts, "prefix", record_features, known))

    if empty_fraction > 0:
        count = max(2, round(empty_fraction * n))
        count += count % 2
        ks = rng.integers(0, 2, size=count)  # empty, or a single feature
        picks = rng.choice(n, size=count)
        texts = [
            sentence(records[i], template, features, int(k), profile)
            for i, k in zip(picks, ks, strict=True)
        ]
        rows = _rows(train.iloc[picks], texts, "empty", record_features, ks)
        rows["label"] = np.tile([0, 1], count // 2)  # balanced: the input says nothing
        rows["anomaly_type"] = pd.NA
        parts.append(rows)

    if permute_fraction > 0:
        picks = rng.choice(n, size=round(permute_fraction * n), replace=permute_fraction > 1)
        texts = [
            sentence(
                records[i],
                template,
                [features[j] for j in rng.permutation(len(features))],
                profile=profile,
            )
            for i in picks
        ]
        parts.append(_rows(train.iloc[picks], texts, "permuted"))

    if realtime_fraction > 0:
        from flowsentry.data.context import context_at_moments

        moments = context_at_moments(train, REALTIME_MOMENTS, rng, profile)
        count = min(round(realtime_fraction * n), len(moments))
        live = moments.iloc[np.sort(rng.choice(len(moments), size=count, replace=False))]
        texts = sentences(live, template, features, profile=profile)
        parts.append(_rows(live, texts, "realtime"))

    if rebalance:
        counts = train["label"].value_counts()
        if len(counts) == 2 and counts.iloc[0] != counts.iloc[1]:
            minority = counts.idxmin()
            pool = np.flatnonzero((train["label"] == minority).to_numpy())
            picks = rng.choice(pool, size=int(counts.max() - counts.min()))
            parts.append(
                _rows(train.iloc[picks], train["sentence"].iloc[picks].tolist(), "rebalanced")
            )

    out = pd.concat(parts, ignore_index=True)
    out["label"] = out["label"].astype("int64")
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)


def uninformative_inputs(template: str, features: Sequence[str]) -> dict[str, str]:
    """Inputs that carry no evidence either way (the bias probe): nothing, every value
    missing, and the names of the features without values (as the template names them)."""
    names = level_keys(features) if template == "levels" else list(features)
    return {
        "empty": "",
        "all_missing": sentence({}, template, features) if template == "paper" else "",
        "names_only": " ".join(names),
    }
