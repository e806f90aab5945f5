"""A workflow nobody labelled: leave one workflow out, then count what each label buys.

For a held-out workflow `W` (every Flow-Bench workflow in turn, `new_workflow.workflows`):

1. Each workflow is prepared by the pipeline's own stages (by-run split) in its workspace
   (`experiments.prepared`); `W`'s labels are read only to score its test runs.
2. One evidence profile is fitted *without labels* (`Profile.fit(..., labelled=False)`)
   on the training runs of every workflow, `W`'s included: what an installation has of a
   new workflow is its runs, not their labels. Detectors read the `agnostic` feature set
   (data/peers.py): each host against the run's other hosts, robust z-scores to normal.
3. Supervised kinds train on the other workflows' training runs (`runs_per_workflow` of
   each) and, for k in `labelled_runs`, on k labelled training runs of `W` too (drawn at
   random, `draws` times), each other workflow weighing the same and the k runs together
   `target_share` of the whole.
   The threshold is the F1-optimal one on the other workflows' validation runs.
4. Unsupervised kinds (IsolationForest, pyod's ECOD, COPOD, HBOS) fit on `W`'s training
   runs, labels unread: the same for every k.
5. Every kind is also thresholded without labels at `alert_rate`: the score above which
   that share of `W`'s training jobs falls (what an operator sets as "alerts I can read").
6. The reference: gradient boosting on `W`'s own labelled runs (the pipeline's default
   `evidence` features and labelled profile), thresholded on `W`'s validation runs.

Figures are on every job of `W`'s by-run test runs. `run_holdout` writes
`<reports>/new_workflow/holdout/<W>.json`; `summarise` reads them all into `table.csv`,
`table.md` and `curve.png` (ROC-AUC and F1 against k, one line a kind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsentry.config import Config
from flowsentry.data.evidence import Profile
from flowsentry.data.peers import add_agnostic
from flowsentry.errors import FlowsentryError
from flowsentry.evaluation.metrics import binary_metrics
from flowsentry.experiments import Splits, prepared
from flowsentry.io import atomic_path, write_csv, write_json
from flowsentry.models import kinds
from flowsentry.models.baselines import WEIGHT_COLUMN, FeatureDetector, workflow_weights
from flowsentry.models.detector import choose_threshold
from flowsentry.text.sentences import features_of

log = logging.getLogger(__name__)


def alert_rate_threshold(scores: np.ndarray, rate: float) -> float:
    """The score above which a share `rate` of `scores` lies: a threshold chosen without
    labels, from the jobs of the workflow's own (unlabelled) runs."""
    scores = np.asarray(scores, dtype="float64")
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        raise FlowsentryError("alert rate: no scores to choose a threshold from")
    return float(np.quantile(scores, 1.0 - rate))


def _runs(frame: pd.DataFrame) -> np.ndarray:
    return np.sort(frame["run"].unique())


def _sample_runs(frame: pd.DataFrame, n: int | None, rng: np.random.Generator) -> pd.DataFrame:
    runs = _runs(frame)
    if n is None or n >= len(runs):
        return frame
    keep = rng.choice(runs, size=n, replace=False)
    return frame[frame["run"].isin(keep)]


def _figures(labels: np.ndarray, scores: np.ndarray, threshold: float, at_rate: float) -> dict:
    fixed = binary_metrics(labels, scores, threshold)
    rate = binary_metrics(labels, scores, at_rate)
    return {
        "roc_auc": fixed["roc_auc"],
        "accuracy": fixed["accuracy"],
        "f1": fixed["f1"],
        "f1_at_alert_rate": rate["f1"],
        "precision_at_alert_rate": rate["precision"],
        "recall_at_alert_rate": rate["recall"],
        "alerted_fraction": float(np.mean(scores >= at_rate)),
    }


def _weighted(pool: pd.DataFrame, target: pd.DataFrame, share: float) -> pd.DataFrame:
    """`pool` and `target` (the held-out workflow's k labelled runs) in one training set,
    weighted: every workflow of the pool weighs the same, `target`'s jobs together `share`."""
    if not len(target):
        return workflow_weights(pool, None, share)
    frame = pd.concat([pool, target], ignore_index=True)
    return workflow_weights(frame, str(target["workflow"].iloc[0]), share)


@dataclass
class _Holdout:
    """One held-out workflow's frames, agnostic columns added (see run_holdout)."""

    held: Splits
    others: list[str]
    pool: pd.DataFrame  # the other workflows' training runs
    val: pd.DataFrame  # the other workflows' validation runs
    test: pd.DataFrame  # the held-out workflow's test runs
    own: pd.DataFrame  # its training runs, labels kept for the k drawn ones
    unlabelled: pd.DataFrame  # the same runs without labels
    profile: Profile
    rng: np.random.Generator

    def draw(self, k: int) -> pd.DataFrame:
        """k of its training runs, drawn at random, labels and all."""
        runs = _runs(self.own)
        picked = self.rng.choice(runs, size=min(k, len(runs)), replace=False)
        return self.own[self.own["run"].isin(picked)]


def _holdout(cfg: Config, workflow: str, flowbench_dir: str | Path | None) -> _Holdout:
    params = cfg.new_workflow
    if workflow not in params.workflows:
        raise FlowsentryError(
            f"new_workflow.workflows: '{workflow}' is not listed ({list(params.workflows)})"
        )
    work = cfg.paths.reports / "experiments" / "work"
    splits: dict[str, Splits] = {
        name: prepared(cfg, name, work, flowbench_dir) for name in params.workflows
    }
    rng = np.random.default_rng(cfg.base.seed)
    others = [name for name in params.workflows if name != workflow]
    pool = pd.concat(
        [_sample_runs(splits[n].train, params.runs_per_workflow, rng) for n in others],
        ignore_index=True,
    )
    val = pd.concat(
        [_sample_runs(splits[n].val, params.runs_per_workflow, rng) for n in others],
        ignore_index=True,
    )
    held = splits[workflow]
    unlabelled = held.train.drop(columns=["label", "anomaly_type"])  # what it has: runs
    profile = Profile.fit(pd.concat([pool, unlabelled], ignore_index=True), labelled=False)
    # the agnostic columns once per frame, not once per fit (detectors keep them: same profile)
    pool, val, test, own = (
        add_agnostic(frame, profile) for frame in (pool, val, held.test, held.train)
    )
    unlabelled = own.drop(columns=["label", "anomaly_type"])
    return _Holdout(held, others, pool, val, test, own, unlabelled, profile, rng)


def run_holdout(cfg: Config, workflow: str, flowbench_dir: str | Path | None) -> dict[str, Any]:
    """The protocol for one held-out workflow (see the module's text); writes its JSON."""
    params = cfg.new_workflow
    started = time.perf_counter()
    h = _holdout(cfg, workflow, flowbench_dir)
    features = features_of(params.features)
    test_labels = h.test["label"].astype(int).to_numpy()

    def detector(kind: str) -> FeatureDetector:
        made = FeatureDetector(kind, features, cfg.base.seed)
        made.profile = h.profile
        return made

    rows: list[dict[str, Any]] = []
    for kind in [k for k in params.kinds if not kinds.KINDS[k].reads_labels]:
        model = detector(kind)
        model._fit(h.unlabelled.assign(label=0), h.unlabelled)
        at_rate = alert_rate_threshold(model.score(h.unlabelled), params.alert_rate)
        scores = model.score(h.test)
        # With no labels the only threshold is the alert rate's (F1 reads it too).
        figures = _figures(test_labels, scores, at_rate, at_rate)
        rows += [{"kind": kind, "k": k, "draw": 0, **figures} for k in params.labelled_runs]
        log.info("%s on %s: ROC-AUC %.3f", kind, workflow, figures["roc_auc"])
    for kind in [k for k in params.kinds if kinds.KINDS[k].reads_labels]:
        for k in params.labelled_runs:
            for draw in range(params.draws if k else 1):
                target = h.draw(k)
                model = detector(kind)
                model._fit(_weighted(h.pool, target, params.target_share), h.val)
                threshold = choose_threshold(h.val["label"].astype(int), model.score(h.val))
                at_rate = alert_rate_threshold(model.score(h.unlabelled), params.alert_rate)
                figures = _figures(test_labels, model.score(h.test), threshold, at_rate)
                rows.append({"kind": kind, "k": int(k), "draw": draw, **figures})
                log.info(
                    "%s on %s, %d labelled runs (draw %d): ROC-AUC %.3f",
                    kind, workflow, k, draw, figures["roc_auc"],
                )  # fmt: skip
    reference = _supervised_reference(cfg, h.held)
    result = {
        "workflow": workflow,
        "trained_on": h.others,
        "features": params.features,
        "runs_per_workflow": params.runs_per_workflow,
        "target_share": params.target_share,
        "alert_rate": params.alert_rate,
        "test_runs": len(_runs(h.test)),
        "test_jobs": len(h.test),
        "test_anomalous_fraction": float(test_labels.mean()) if len(test_labels) else 0.0,
        "rows": rows,
        "supervised": reference,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(result, result_path(cfg, workflow))
    return result


def _by_weight(train: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """`n` rows of `train` drawn without replacement in proportion to `WEIGHT_COLUMN`: the
    weighting, for a learner that takes none (the fine-tune)."""
    if n >= len(train):
        return train
    weight = train[WEIGHT_COLUMN].to_numpy("float64")
    picked = rng.choice(len(train), size=n, replace=False, p=weight / weight.sum())
    return train.iloc[np.sort(picked)]


def run_language_models(
    cfg: Config, workflow: str, flowbench_dir: str | Path | None, progress: bool = False
) -> dict[str, Any]:
    """The fine-tuned encoder (`sft`) and ICL held out as in `run_holdout`, beside gradient
    boosting trained on the same rows: every kind scored on the same `test_jobs`
    stratified test jobs. sft fine-tunes `train.model` on `max_train_samples` rows drawn
    by the same weights; ICL prompts `icl.model` (no LoRA) with each job's nearest
    `icl_examples` from the k labelled runs (from the other workflows when k = 0) and
    answers at P(anomalous) >= 0.5. Writes `<reports>/new_workflow/language_models/<W>.json`."""
    from flowsentry.data.splits import stratified_sample
    from flowsentry.models.encoder import SentenceClassifier
    from flowsentry.models.in_context import ICLDetector
    from flowsentry.models.pretrained import load_decoder

    params, lm = cfg.new_workflow, cfg.new_workflow.language_models
    if workflow not in lm.workflows:
        raise FlowsentryError(
            f"new_workflow.language_models.workflows: '{workflow}' is not listed "
            f"({list(lm.workflows)})"
        )
    started = time.perf_counter()
    h = _holdout(cfg, workflow, flowbench_dir)
    seed = cfg.base.seed
    test = stratified_sample(h.test, lm.test_jobs, seed)
    val = stratified_sample(h.val, lm.test_jobs, seed)
    labels = test["label"].astype(int).to_numpy()
    sentence_features = features_of(lm.feature_set)
    decoder, tokenizer, device = load_decoder(cfg.icl.model, cfg.base.device)
    icl_params = cfg.icl.model_copy(
        update={
            "template": "compact",
            "feature_set": lm.feature_set,
            "examples": "nearest",
            "n_examples": lm.icl_examples,
            "lora": cfg.icl.lora.model_copy(update={"enabled": False}),
        }
    )
    work = cfg.paths.reports / "experiments" / "work" / "new_workflow" / workflow
    rows: list[dict[str, Any]] = []

    def measure(kind: str, k: int, draw: int, scores: np.ndarray, threshold: float) -> None:
        metrics = binary_metrics(labels, scores, threshold)
        figures = {m: metrics[m] for m in ("roc_auc", "accuracy", "f1")}
        rows.append({"kind": kind, "k": int(k), "draw": draw, "jobs": len(labels), **figures})
        log.info(
            "%s on %s, %d labelled runs (draw %d), %d test jobs: ROC-AUC %.3f, F1 %.3f",
            kind, workflow, k, draw, len(labels), figures["roc_auc"], figures["f1"],
        )  # fmt: skip

    for k in lm.labelled_runs:
        for draw in range(lm.draws if k else 1):
            target = h.draw(k)
            train = _weighted(h.pool, target, params.target_share)
            trees = FeatureDetector("gradient_boosting", features_of(params.features), seed)
            trees.profile = h.profile
            trees.fit(train, h.val)
            measure("gradient_boosting", k, draw, trees.score(test), trees.threshold_)

            settings = cfg.train.model_copy(update={"max_train_samples": None})
            encoder = SentenceClassifier(
                settings, "compact", lm.feature_set, seed,
                checkpoints=work / f"sft-k{k}-draw{draw}", device=cfg.base.device,
            )  # fmt: skip
            encoder.profile = h.profile
            encoder.fit(_by_weight(train, lm.max_train_samples, h.rng), val)
            measure("sft", k, draw, encoder.score(test), encoder.threshold_)

            examples = target if k else h.pool
            icl = ICLDetector(decoder, tokenizer, examples, icl_params, device, seed)
            icl.profile = h.profile
            measure("icl", k, draw, icl.score(test), 0.5)
    result = {
        "workflow": workflow,
        "trained_on": h.others,
        "features": params.features,
        "sentence": list(sentence_features),
        "model": cfg.train.model,
        "icl_model": cfg.icl.model,
        "icl_examples": lm.icl_examples,
        "test_jobs": len(test),
        "test_anomalous_fraction": float(labels.mean()) if len(labels) else 0.0,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(result, language_models_path(cfg, workflow))
    return result


def _supervised_reference(cfg: Config, held: Splits) -> dict[str, Any]:
    """Gradient boosting on the workflow's own labelled runs (the pipeline's default)."""
    model = FeatureDetector("gradient_boosting", features_of("evidence"), cfg.base.seed)
    model.profile = held.profile  # fitted on its labelled training runs by prepare
    model.fit(held.train, held.val)
    labels = held.test["label"].astype(int).to_numpy()
    metrics = binary_metrics(labels, model.score(held.test), model.threshold_)
    return {k: metrics[k] for k in ("roc_auc", "accuracy", "f1")}


def result_path(cfg: Config, workflow: str) -> Path:
    return cfg.paths.reports / "new_workflow" / "holdout" / f"{workflow}.json"


def language_models_path(cfg: Config, workflow: str) -> Path:
    return cfg.paths.reports / "new_workflow" / "language_models" / f"{workflow}.json"


def _read_results(cfg: Config, names: Sequence[str], language_models: bool) -> list[dict]:
    """The saved results of `names` (the language models' or the feature kinds'); a
    missing one is an error naming the command that makes it."""
    import json

    results = []
    for name in names:
        path = (language_models_path if language_models else result_path)(cfg, name)
        try:
            results.append(json.loads(path.read_text()))
        except FileNotFoundError:
            flag = " --language-models" if language_models else ""
            raise FlowsentryError(
                f"{path}: missing; run `flowsentry experiment new-workflow --holdout {name}{flag}`"
            ) from None
    return results


def summarise(cfg: Config, workflows: Sequence[str] | None = None) -> pd.DataFrame:
    """Every held-out workflow's result into one table (mean and spread over draws) with
    `table.csv`, `table.md` and `curve.png` beside them; a missing result is an error."""
    names = list(workflows or cfg.new_workflow.workflows)
    results = _read_results(cfg, names, language_models=False)
    frame = pd.DataFrame([{"workflow": r["workflow"], **row} for r in results for row in r["rows"]])
    table = (
        frame.groupby(["workflow", "kind", "k"])
        .agg(
            roc_auc=("roc_auc", "mean"),
            roc_auc_std=("roc_auc", "std"),
            f1=("f1", "mean"),
            f1_std=("f1", "std"),
            f1_at_alert_rate=("f1_at_alert_rate", "mean"),
            draws=("draw", "count"),
        )
        .reset_index()
    )
    table[["roc_auc_std", "f1_std"]] = table[["roc_auc_std", "f1_std"]].fillna(0.0)
    supervised = {r["workflow"]: r["supervised"] for r in results}
    table["supervised_f1"] = table["workflow"].map(lambda w: supervised[w]["f1"])
    table["supervised_roc_auc"] = table["workflow"].map(lambda w: supervised[w]["roc_auc"])
    out = cfg.paths.reports / "new_workflow"
    write_csv(table.round(4), out / "table.csv")
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(markdown(table))
    with atomic_path(out / "curve.png", suffix=".png") as tmp:
        _plot(table, tmp)
    return table


def summarise_language_models(cfg: Config) -> pd.DataFrame | None:
    """Every `language_models.workflows` result into `language_models.csv` and `.md`
    (mean over draws); None when the list is empty; a missing result is an error."""
    names = list(cfg.new_workflow.language_models.workflows)
    if not names:
        return None
    frame = pd.DataFrame(
        [{"workflow": r["workflow"], **row} for r in _read_results(cfg, names, True)
         for row in r["rows"]]
    )  # fmt: skip
    table = (
        frame.groupby(["workflow", "kind", "k"], sort=False)
        .agg(
            roc_auc=("roc_auc", "mean"),
            f1=("f1", "mean"),
            accuracy=("accuracy", "mean"),
            jobs=("jobs", "first"),
            draws=("draw", "count"),
        )
        .reset_index()
    )
    out = cfg.paths.reports / "new_workflow"
    write_csv(table.round(4), out / "language_models.csv")
    ks = sorted(table["k"].unique())
    lines = [
        "| held-out workflow | kind | " + " | ".join(f"k={k}" for k in ks) + " | test jobs |",
        "| --- | --- | " + " | ".join("---" for _ in ks) + " | --- |",
    ]
    for (workflow, kind), rows in table.groupby(["workflow", "kind"], sort=False):
        by_k = rows.set_index("k")
        cells = [
            f"{by_k.loc[k].roc_auc:.3f} ({by_k.loc[k].f1:.3f})" if k in by_k.index else ""
            for k in ks
        ]
        jobs = int(rows["jobs"].iloc[0])
        lines.append(f"| {workflow} | {kind} | " + " | ".join(cells) + f" | {jobs} |")
    with atomic_path(out / "language_models.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return table


def markdown(table: pd.DataFrame) -> str:
    """ROC-AUC (F1) by held-out workflow and kind, a column per k; the supervised row last."""
    ks = sorted(table["k"].unique())
    lines = [
        "| held-out workflow | kind | " + " | ".join(f"k={k}" for k in ks) + " |",
        "| --- | --- | " + " | ".join("---" for _ in ks) + " |",
    ]
    for workflow, part in table.groupby("workflow", sort=False):
        for kind, rows in part.groupby("kind", sort=False):
            by_k = rows.set_index("k")
            cells = []
            for k in ks:
                if k not in by_k.index:
                    cells.append("")
                    continue
                row = by_k.loc[k]
                spread = f" ±{row.roc_auc_std:.3f}" if row.draws > 1 else ""
                cells.append(f"{row.roc_auc:.3f}{spread} ({row.f1:.3f})")
            lines.append(f"| {workflow} | {kind} | " + " | ".join(cells) + " |")
        first = part.iloc[0]
        lines.append(
            f"| {workflow} | supervised, all its labels | "
            f"{first.supervised_roc_auc:.3f} ({first.supervised_f1:.3f}) |" + " |" * (len(ks) - 1)
        )
    return "\n".join(lines) + "\n"


def _plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workflows = list(dict.fromkeys(table["workflow"]))
    fig, axes = plt.subplots(
        2, len(workflows), figsize=(3.2 * len(workflows), 6), squeeze=False, sharey="row"
    )
    for column, workflow in enumerate(workflows):
        part = table[table["workflow"] == workflow]
        for row, metric in enumerate(("roc_auc", "f1")):
            ax = axes[row][column]
            for kind, rows in part.groupby("kind"):
                rows = rows.sort_values("k")
                ax.errorbar(
                    rows["k"], rows[metric], yerr=rows[f"{metric}_std"], marker="o",
                    label=kind, capsize=2,
                )  # fmt: skip
            ax.axhline(part[f"supervised_{metric}"].iloc[0], color="k", ls="--", lw=1)
            ax.set_title(workflow if row == 0 else "")
            ax.set_xlabel("labelled runs of it (k)")
            if column == 0:
                ax.set_ylabel({"roc_auc": "ROC-AUC", "f1": "F1"}[metric])
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("A held-out workflow: trained on the others, k of its runs labelled "
                 "(dashed: supervised on all its labels)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
