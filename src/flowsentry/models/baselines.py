"""Feature detectors: scikit-learn and pyod models over the numeric features (+ task code).

Gradient boosting and random forest (supervised); IsolationForest and pyod's ECOD,
COPOD and HBOS (unsupervised: labels never read, the threshold chosen on validation or
at a target alert rate); behind the same detector contract as the language models.
Saved with skops, loaded with an explicit list of trusted types: a file that holds
anything else (or is not a skops file at all) is refused with a one-line error, never
unpickled.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from flowsentry.errors import FlowsentryError
from flowsentry.io import atomic_dir
from flowsentry.models import kinds
from flowsentry.models.detector import METADATA, Detector, Jobs, read_metadata

if TYPE_CHECKING:
    from flowsentry.config import Config

MODEL_FILE = "model.skops"
FEATURE_LIMIT = 1e30  # well inside float32 (3.4e38)
UNSUPERVISED_LIMIT = 1e12
WEIGHT_COLUMN = "sample_weight"  # read by the supervised kinds when the training set has it
# Below this many rows the random forest predicts on one thread: handing 200 trees to a
# thread pool costs more than the trees (bench/scoring.py measures both).
PARALLEL_ROWS = 10_000


def workflow_weights(jobs: pd.DataFrame, workflow: str | None, share: float) -> pd.DataFrame:
    """`jobs` with `WEIGHT_COLUMN`: every workflow but `workflow` weighs the same, and
    `workflow`'s jobs together weigh `share` of the whole (a model adapted to it); the
    weights sum to the number of the other workflows' rows. Without `workflow`'s jobs (or
    with None), every workflow weighs the same."""
    ours = (
        (jobs["workflow"] == workflow).to_numpy()
        if workflow is not None
        else np.zeros(len(jobs), dtype=bool)
    )
    others = jobs[~ours]
    if others.empty:  # only its own jobs: nothing to weigh them against
        return jobs.assign(**{WEIGHT_COLUMN: 1.0})
    per_workflow = others.groupby("workflow")["workflow"].transform("size").to_numpy("float64")
    weight = 1.0 / per_workflow
    weight *= (1.0 - share if ours.any() else 1.0) * len(others) / weight.sum()
    out = np.empty(len(jobs), dtype="float64")
    out[~ours] = weight
    out[ours] = share * len(others) / max(int(ours.sum()), 1)
    return jobs.assign(**{WEIGHT_COLUMN: out})


# The only types beyond numbers, containers and numpy arrays (skops' safe defaults) a saved
# feature detector holds: the estimators of the kinds and their parts. Anything else is
# refused.
TRUSTED_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "pyod.models.ecod.ECOD",
    "pyod.models.copod.COPOD",
    "pyod.models.hbos.HBOS",
)


def skops_io() -> Any:
    """`skops.io`, imported without its default trust list of every scikit-learn
    estimator: skops builds that list with `all_estimators()`, which imports every
    scikit-learn module (2-3 s of each process that saves or loads a tree). flowsentry
    never relies on it: every load names TRUSTED_TYPES."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils

    walk = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = lambda *args, **kwargs: []
    try:
        return importlib.import_module("skops.io")
    finally:
        sklearn.utils.all_estimators = walk


class FeatureDetector(Detector):
    """A scikit-learn model over the numeric features of a feature set (+ task code)."""

    def __init__(self, kind: str, features: Sequence[str], seed: int = 42) -> None:
        known = feature_kinds()
        if kind not in known:
            raise ValueError(f"unknown feature detector '{kind}' (know {list(known)})")
        self.kind = kind
        self.features = tuple(features)
        self.seed = seed
        self.threshold_ = 0.5
        # the supervised kinds' scores are class probabilities; the others' are not
        self.probabilistic = kinds.KINDS[kind].reads_labels
        self.tasks_: dict[str, int] = {}
        self.medians_: np.ndarray | None = None
        self.workflows_: list[str] = []
        self.model_: Any = None

    @classmethod
    def from_config(cls, kind: str, cfg: Config) -> Self:
        """An unfitted `kind` reading the `train.features` set."""
        from flowsentry.text.sentences import features_of

        return cls(kind, features_of(cfg.train.features), cfg.base.seed)

    def _metadata(self) -> dict[str, Any]:
        return {
            "workflows": self.workflows_,
            "seed": self.seed,
            "tasks": self.tasks_,
            "medians": None if self.medians_ is None else self.medians_.tolist(),
        }

    def matrix(self, jobs: Jobs, k: int | None = None) -> np.ndarray:
        """The float matrix the model reads: one column per feature, NaN where unknown."""
        frame = self.frame(jobs)
        columns = []
        for name in self.features:
            if name == "task":
                tasks = frame["task"] if "task" in frame else pd.Series(pd.NA, index=frame.index)
                columns.append(tasks.map(self.tasks_).astype("float64").fillna(-1).to_numpy())
            elif name in frame:
                columns.append(pd.to_numeric(frame[name], errors="coerce").to_numpy("float64"))
            else:
                columns.append(np.full(len(frame), np.nan))
        x = np.column_stack(columns) if columns else np.empty((len(frame), 0))
        # scikit-learn's trees read float32: anything validation lets through (a ratio to a
        # near-zero median included) must stay finite there; NaN stays "unknown".
        return _known(np.clip(x, -FEATURE_LIMIT, FEATURE_LIMIT), k)

    def design(self, train: pd.DataFrame) -> np.ndarray:
        """The training matrix: learns the task codes and workflows from `train` first.
        A feature no training job has (a workflow without kickstart counters) says
        nothing; scikit-learn's binning fails on an all-NaN column, so it is fitted as a
        constant and no tree splits on it."""
        if "task" in self.features:
            self.tasks_ = {t: i for i, t in enumerate(sorted(train["task"].dropna().unique()))}
        self.workflows_ = sorted(train["workflow"].dropna().unique().tolist())
        x = self.matrix(train)
        x[:, np.isnan(x).all(axis=0)] = 0.0
        return x

    def fit_estimator(
        self, x: np.ndarray, labels: np.ndarray, weight: np.ndarray | None = None
    ) -> None:
        """Fit this kind's estimator on a design matrix (labels unread when unsupervised)."""
        from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

        if self.probabilistic and len(np.unique(labels)) < 2:
            raise FlowsentryError(
                f"{self.kind}: the training split holds only one class; use more runs"
            )
        if self.kind == "gradient_boosting":
            self.model_ = HistGradientBoostingClassifier(max_iter=300, random_state=self.seed)
            self.model_.fit(x, labels, sample_weight=weight)
        elif self.kind == "random_forest":
            self.model_ = RandomForestClassifier(
                n_estimators=200, min_samples_leaf=2, n_jobs=-1, random_state=self.seed
            )
            self.model_.fit(x, labels, sample_weight=weight)
        else:  # unsupervised: labels are never read; the threshold is chosen on validation
            self.medians_ = np.nan_to_num(np.nanmedian(x, axis=0))
            self.model_ = unsupervised_model(self.kind, self.seed)
            self.model_.fit(self._impute(x))

    def _fit(self, train: pd.DataFrame, val: pd.DataFrame) -> None:
        # An optional per-job weight (e.g. each workflow's jobs weighing the same in all)
        weight = (
            pd.to_numeric(train[WEIGHT_COLUMN]).to_numpy("float64")
            if WEIGHT_COLUMN in train.columns
            else None
        )
        self.fit_estimator(self.design(train), train["label"].astype(int).to_numpy(), weight)

    def _impute(self, x: np.ndarray) -> np.ndarray:
        # pyod's histograms and CDFs need finite values of a sane size
        return np.clip(
            np.where(np.isnan(x), self.medians_, x), -UNSUPERVISED_LIMIT, UNSUPERVISED_LIMIT
        )

    def score(self, jobs: Jobs, k: int | None = None, *, progress: bool = False) -> np.ndarray:
        """P(anomalous) per job (supervised kinds), else an outlier score; shape (n_jobs,).
        One pass over the matrix: `progress` draws nothing."""
        return self._predict(self.matrix(jobs, k))

    def score_prefixes(self, jobs: Jobs) -> list[np.ndarray]:
        """As `score(jobs, k)` for k = 0 .. len(features), the matrix built once; the
        kinds that score rows alone (the registry's `rows_alone`) score every prefix of
        every job in one call."""
        x = self.matrix(jobs)
        known = [_known(x.copy(), k) for k in range(len(self.features) + 1)]
        if kinds.KINDS[self.kind].rows_alone:
            return np.split(self._predict(np.vstack(known)), len(known))
        return [self._predict(prefix) for prefix in known]

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            raise FlowsentryError(f"{self.kind}: not fitted (call fit or load)")
        if self.kind == "random_forest":  # read at each call; the trees are unchanged
            self.model_.n_jobs = 1 if len(x) < PARALLEL_ROWS else -1
        if self.probabilistic:
            return self.model_.predict_proba(x)[:, 1]
        if self.kind == "isolation_forest":
            return -self.model_.score_samples(self._impute(x))
        # pyod's detectors
        return np.asarray(self.model_.decision_function(self._impute(x)), dtype="float64")

    def save(self, target: str | Path) -> Path:
        """The fitted estimator as skops (no pickle) and the settings as JSON."""
        sio = skops_io()
        target = Path(target)
        with atomic_dir(target) as tmp:
            sio.dump(self.model_, tmp / MODEL_FILE)
            (tmp / METADATA).write_text(json.dumps(self.metadata, indent=2) + "\n")
        return target

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> Self:
        folder = Path(folder)
        metadata = read_metadata(folder)
        kind = metadata["kind"]
        if kind not in feature_kinds():
            raise FlowsentryError(f"{folder / METADATA}: kind '{kind}' is not a feature detector")
        detector = cls(kind, metadata["features"], int(metadata.get("seed", 42)))
        detector.model_ = load_estimator(folder / MODEL_FILE)
        detector._restore(metadata)
        detector.tasks_ = {str(k): int(v) for k, v in (metadata.get("tasks") or {}).items()}
        medians = metadata.get("medians")
        detector.medians_ = None if medians is None else np.asarray(medians, dtype="float64")
        detector.workflows_ = list(metadata.get("workflows") or [])
        return detector


def feature_kinds() -> tuple[str, ...]:
    """The registry's kinds this class implements."""
    path = f"{FeatureDetector.__module__}:{FeatureDetector.__name__}"
    return tuple(name for name, kind in kinds.KINDS.items() if kind.detector == path)


def _known(x: np.ndarray, k: int | None) -> np.ndarray:
    """`x` with the features past the k-th unknown (online: not measured yet), in place."""
    if k is not None:
        x[:, k:] = np.nan
    return x


def unsupervised_model(kind: str, seed: int) -> Any:
    """An unfitted unsupervised estimator of `kind`."""
    if kind == "isolation_forest":
        from sklearn.ensemble import IsolationForest

        return IsolationForest(n_estimators=200, random_state=seed)
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.hbos import HBOS

    return {"ecod": ECOD, "copod": COPOD, "hbos": HBOS}[kind]()


def load_estimator(path: Path) -> Any:
    """A skops file holding only TRUSTED_TYPES; anything else is refused, never loaded."""
    sio = skops_io()
    if not path.exists():
        raise FlowsentryError(f"{path}: missing (the model folder is incomplete)")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises zip, JSON and key errors for damaged files
        raise FlowsentryError(f"{path}: not a skops model file ({type(exc).__name__})") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise FlowsentryError(
            f"{path}: refused: holds types flowsentry does not trust: {', '.join(refused)}"
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise FlowsentryError(f"{path}: unreadable skops model ({type(exc).__name__})") from None
