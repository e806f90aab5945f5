"""The hybrid detector (kind `hybrid`): the fine-tuned encoder's score as one input among
the evidence numbers of a gradient-boosted tree model (stacking).

The encoder reads the job's sentence (`text` section); the trees read the `train.features`
columns and one more, the encoder's P(anomalous). A stacker trained on scores the encoder
gave its own training rows would learn to trust a model that has already seen the answers,
so the trees learn from *out-of-fold* scores:

1. the training runs are dealt into `train.hybrid.folds` folds, whole runs each (a run's
   jobs and hosts never straddle two folds, as in the by-run split);
2. for each fold, an encoder is fine-tuned on at most `fold_samples` rows of the other
   folds and scores at most `stack_samples / folds` rows of this fold;
3. the trees learn from those rows: their evidence columns and their out-of-fold score.

The encoder that scores at run time is the one fine-tuned on every training row: the
tournament's `sft` candidate when the same train stage fitted it with the same settings
(`reuse`), else its own. Saved as one folder: `encoder/` (a `sft` detector, its ONNX file
included), `stacker/` (the trees, skops) and `flowsentry.json`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from flowsentry.config import HybridParams, TrainParams
from flowsentry.data.splits import stratified_sample
from flowsentry.errors import FlowsentryError
from flowsentry.io import atomic_dir
from flowsentry.models.baselines import WEIGHT_COLUMN, FeatureDetector
from flowsentry.models.detector import METADATA, Detector, Jobs, read_metadata
from flowsentry.models.encoder import SentenceClassifier

if TYPE_CHECKING:
    from flowsentry.config import Config

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
STACKER_DIR = "stacker"


def run_folds(jobs: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """Each job's fold (0..folds-1): whole runs dealt round-robin in a seeded order."""
    keys = jobs["workflow"].astype(str) + "/" + jobs["run"].astype(str)
    runs = np.array(sorted(keys.unique()))
    if len(runs) < folds:
        raise FlowsentryError(
            f"hybrid: {len(runs)} training runs cannot make {folds} folds (train.hybrid.folds)"
        )
    order = np.random.default_rng(seed).permutation(len(runs))
    fold_of = {runs[i]: position % folds for position, i in enumerate(order)}
    return keys.map(fold_of).to_numpy("int64")


class HybridDetector(Detector):
    """Trees over the evidence columns and the encoder's out-of-fold score."""

    kind = "hybrid"

    def __init__(
        self,
        encoder: SentenceClassifier,
        features: tuple[str, ...],
        params: HybridParams | None = None,
        seed: int = 42,
    ) -> None:
        self.encoder = encoder
        self.trees = FeatureDetector("gradient_boosting", features, seed)
        self.params = params or HybridParams()
        self.seed = seed
        self.threshold_ = 0.5
        self.out_of_fold_: dict[str, Any] = {}
        self._set_features()

    def _set_features(self) -> None:
        # what `frame` adds: the columns of both (context and evidence included)
        self.features = tuple(dict.fromkeys(self.trees.features + self.encoder.features))

    @classmethod
    def from_config(cls, kind: str, cfg: Config) -> Self:
        """The `sft` encoder as `train` and `text` configure it, trees over `train.features`,
        folds per `train.hybrid`."""
        from flowsentry.text.sentences import features_of

        encoder = SentenceClassifier.from_config("sft", cfg)
        return cls(encoder, tuple(features_of(cfg.train.features)), cfg.train.hybrid, cfg.base.seed)

    def reuse(self, fitted: Mapping[str, Detector]) -> None:
        """Score with the `sft` candidate fitted beside it, if its settings are this
        encoder's (saves fine-tuning the same model twice)."""
        sft = fitted.get("sft")
        mine = self.encoder
        if (
            isinstance(sft, SentenceClassifier)
            and sft.params == mine.params
            and (sft.template, sft.features) == (mine.template, mine.features)
        ):
            log.info("hybrid: scoring with the sft candidate fitted in this run")
            self.encoder = sft

    def _sync_profile(self) -> None:
        self.encoder.profile = self.trees.profile = self.profile

    def _fit(self, train: pd.DataFrame, val: pd.DataFrame) -> None:
        self._sync_profile()
        if self.encoder.model is None and self.encoder.onnx is None:
            log.info("hybrid: fine-tuning its encoder on every training row")
            self.encoder.fit(train, val)
        rows, scores = self._out_of_fold(train, val)
        x = self.trees.design(rows)
        self.trees.fit_estimator(
            np.column_stack([x, scores]),
            rows["label"].astype(int).to_numpy(),
            pd.to_numeric(rows[WEIGHT_COLUMN]).to_numpy("float64")
            if WEIGHT_COLUMN in rows.columns
            else None,
        )

    def _out_of_fold(self, train: pd.DataFrame, val: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
        """The stacker's rows and the score each got from an encoder that never saw its run."""
        p = self.params
        fold = run_folds(train, p.folds, self.seed)
        base: TrainParams = self.encoder.params
        settings = base.model_copy(update={"max_train_samples": p.fold_samples, "int8": "off"})
        parts, scores = [], []
        for f in range(p.folds):
            held = stratified_sample(train[fold == f], p.stack_samples // p.folds, self.seed + f)
            scores.append(self._fold_scores(train[fold != f], held, val, settings, f))
            parts.append(held)
            log.info("hybrid: fold %d of %d scored %d held-out rows", f + 1, p.folds, len(held))
        rows = pd.concat(parts, ignore_index=True)
        oof = np.concatenate(scores)
        labels = rows["label"].astype(int).to_numpy()
        from flowsentry.evaluation.metrics import binary_metrics

        quality = binary_metrics(labels, oof, 0.5)
        self.out_of_fold_ = {
            "folds": p.folds,
            "rows": len(rows),
            "roc_auc": quality["roc_auc"],
            "f1_at_0.5": quality["f1"],
        }
        return rows, oof

    def _fold_scores(
        self,
        rest: pd.DataFrame,
        held: pd.DataFrame,
        val: pd.DataFrame,
        settings: TrainParams,
        fold: int,
    ) -> np.ndarray:
        """Fine-tune an encoder on `rest` (other folds' runs); its scores for `held`."""
        model = SentenceClassifier(
            settings,
            self.encoder.template,
            self.encoder.feature_set,
            self.seed + fold,
            (self.encoder.checkpoints or Path("models/checkpoints/sft")) / f"fold{fold}",
            self.encoder.batch_size,
            self.encoder.device,
        )
        model.profile = self.profile
        model.fine_tune_only(rest, val)
        texts = held["sentence"].tolist() if "sentence" in held else model.sentences(held)
        return model.score_texts(texts)

    def score(self, jobs: Jobs, k: int | None = None, *, progress: bool = False) -> np.ndarray:
        """P(anomalous) per job: the trees over the evidence and the encoder's score."""
        frame = self._ready(jobs)
        return self._stacked(frame, k, self.encoder.score(frame, k, progress=progress))

    def _ready(self, jobs: Jobs) -> pd.DataFrame:
        if self.trees.model_ is None:
            raise FlowsentryError("hybrid: not fitted (call fit or load)")
        self._sync_profile()
        return self.frame(jobs)

    def _stacked(self, frame: pd.DataFrame, k: int | None, lm: np.ndarray) -> np.ndarray:
        """The trees' P(anomalous) over the first k evidence columns and the encoder's score."""
        x = np.column_stack([self.trees.matrix(frame, k), lm])
        return self.trees.model_.predict_proba(x)[:, 1]

    def score_prefixes(self, jobs: Jobs) -> list[np.ndarray]:
        """As every kind's, but the encoder reads each distinct sentence prefix once: past
        its own features its sentence no longer grows (most of the hybrid's prefixes)."""
        frame = self._ready(jobs)
        whole = len(self.encoder.features)
        lm: dict[int | None, np.ndarray] = {}
        out = []
        for k in range(len(self.features) + 1):
            key = None if k >= whole else k
            if key not in lm:
                lm[key] = self.encoder.score(frame, key)
            out.append(self._stacked(frame, k, lm[key]))
        return out

    def _metadata(self) -> dict[str, Any]:
        return {
            "encoder": ENCODER_DIR,
            "stacker": STACKER_DIR,
            "tree_features": list(self.trees.features),
            "hybrid": self.params.model_dump(mode="json"),
            "out_of_fold": self.out_of_fold_,
            "seed": self.seed,
            # the container serves the encoder's runtime (ONNX without torch, when it is)
            "runtime": self.encoder.metadata.get("runtime"),
        }

    def save(self, target: str | Path) -> Path:
        """The encoder's folder, the trees' folder and the settings, swapped in atomically."""
        target = Path(target)
        with atomic_dir(target) as tmp:
            self.encoder.save(tmp / ENCODER_DIR)
            self.trees.save(tmp / STACKER_DIR)
            (tmp / METADATA).write_text(json.dumps(self.metadata, indent=2, default=str) + "\n")
        return target

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> Self:
        folder = Path(folder)
        metadata = read_metadata(folder)
        if metadata["kind"] != cls.kind:
            raise FlowsentryError(
                f"{folder / METADATA}: kind is '{metadata['kind']}', not 'hybrid'"
            )
        try:
            params = HybridParams(**(metadata.get("hybrid") or {}))
            tree_features = tuple(metadata["tree_features"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FlowsentryError(f"{folder / METADATA}: field 'hybrid': {exc}") from None
        encoder = SentenceClassifier.load(folder / ENCODER_DIR, device=device)
        detector = cls(encoder, tree_features, params, int(metadata.get("seed", 42)))
        detector.trees = FeatureDetector.load(folder / STACKER_DIR)
        detector._restore(metadata)
        detector.out_of_fold_ = dict(metadata.get("out_of_fold") or {})
        detector._set_features()
        return detector
