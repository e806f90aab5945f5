"""What each group of evidence adds, on whole unseen runs: gradient boosting and MiniLM.

For each workflow the pipeline's own stages (ingest, validate, prepare: the by-run split
and the evidence profile fitted on its training runs) run in a workspace under
`reports/experiments/work/<workflow>`; then, on the same train/val/test runs:

- gradient boosting on growing groups of features (the paper's nine -> + task and host
  slowdown in the run -> + each measure against its task's normal profile -> + the host's
  mean/median of those -> + the run's median = the `evidence` set), and on
  `evidence_compact` (the language model's features);
- the language model (params.yaml's `train`, `--lm-samples` stratified training jobs, one
  epoch) on the former default sentence (`compact` / `context`) and on the new one
  (`levels` / `evidence_compact`), with tokens per job.

Thresholds are chosen on validation, figures are on every test job. Writes a JSON (with
the machine) and prints a Markdown table.

    python bench/ablation.py --workflows 1000genome montage predict_future_sales
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from flowsentry.config import load_config
from flowsentry.data.context import TASK_RATIOS
from flowsentry.data.evidence import MEASURES, evidence_columns
from flowsentry.data.splits import stratified_sample
from flowsentry.evaluation.metrics import binary_metrics
from flowsentry.experiments import prepared
from flowsentry.io import write_json
from flowsentry.models.baselines import FeatureDetector
from flowsentry.models.encoder import SentenceClassifier
from flowsentry.models.pretrained import load_tokenizer
from flowsentry.text.sentences import PAPER_FEATURES, features_of

CONTEXT = features_of("context")
JOB = tuple(evidence_columns(m)[0] for m in MEASURES)
HOST = tuple(c for m in MEASURES for c in evidence_columns(m)[1:3])
GROUPS: dict[str, tuple[str, ...]] = {
    "paper's nine": PAPER_FEATURES,
    "+ task, host slowdown in the run (context)": CONTEXT,
    "+ job vs. its task's normal profile": (*CONTEXT, *TASK_RATIOS, *JOB),
    "+ host's mean/median vs. normal": (*CONTEXT, *TASK_RATIOS, *JOB, *HOST),
    "+ run's median vs. normal (evidence)": features_of("evidence"),
    "evidence_compact (the language model's 25)": features_of("evidence_compact"),
}
SENTENCES = {
    "compact / context (previous default)": ("compact", "context"),
    "levels / evidence_compact": ("levels", "evidence_compact"),
    # what a Pegasus installation records (docs/pegasus.md)
    "levels / pegasus_compact (stampede database)": ("levels", "pegasus_compact"),
    "levels / monitord_compact (monitord's default events)": ("levels", "monitord_compact"),
}


def _short(labels, scores, threshold) -> dict[str, float]:
    m = binary_metrics(labels, scores, threshold)
    return {k: m[k] for k in ("accuracy", "f1", "roc_auc")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", nargs="+", default=["1000genome"])
    parser.add_argument("--lm-samples", type=int, default=4000, help="0: trees only")
    parser.add_argument("--no-trees", action="store_true", help="the language model only")
    parser.add_argument(
        "--sentences",
        nargs="+",
        choices=[feature_set for _, feature_set in SENTENCES.values()],
        default=["context", "evidence_compact"],
        help="which language-model inputs to train (by feature set)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench/ablation.json"))
    args = parser.parse_args()
    cfg = load_config()
    flowbench = os.environ.get("FLOWBENCH_DIR")
    work = cfg.paths.reports / "experiments" / "work"
    tokenizer = load_tokenizer(cfg.text.tokenizer)
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "split": cfg.split.method,
        "lm_samples": args.lm_samples,
        "workflows": {},
    }
    for workflow in args.workflows:
        splits = prepared(cfg, workflow, work, flowbench)
        train, test = splits.train.drop(columns="sentence"), splits.test
        val = stratified_sample(splits.val, cfg.train.max_val_samples, cfg.base.seed)
        labels = test["label"].astype(int).to_numpy()
        entry: dict = {"test_jobs": len(test), "test_runs": int(test["run"].nunique())}
        for name, features in GROUPS.items():
            if args.no_trees:
                break
            detector = FeatureDetector("gradient_boosting", features, cfg.base.seed)
            detector.profile = splits.profile
            detector.fit(train, val)
            entry[f"gradient boosting: {name}"] = {
                "features": len(features),
                **_short(labels, detector.score(test), detector.threshold_),
            }
            print(workflow, name, entry[f"gradient boosting: {name}"], flush=True)
        for name, (template, feature_set) in SENTENCES.items():
            if not args.lm_samples:
                break
            if feature_set not in args.sentences:
                continue
            params = cfg.train.model_copy(update={"max_train_samples": args.lm_samples})
            detector = SentenceClassifier(
                params,
                template,
                feature_set,
                cfg.base.seed,
                work / "checkpoints" / f"ablation-{workflow}-{feature_set}",
                device=cfg.base.device,
            )
            detector.profile = splits.profile
            started = time.perf_counter()
            detector.fit(train, val)
            seconds = time.perf_counter() - started
            texts = detector.sentences(test)
            lengths = [len(ids) for ids in tokenizer(texts[:2000])["input_ids"]]
            entry[f"MiniLM: {name}"] = {
                "tokens_per_job": round(sum(lengths) / len(lengths), 1),
                "train_seconds": round(seconds, 1),
                **_short(labels, detector.score_texts(texts), detector.threshold_),
            }
            print(workflow, name, entry[f"MiniLM: {name}"], flush=True)
        result["workflows"][workflow] = entry
        write_json(result, args.out)

    print(f"\n{result['machine']}; by-run split; MiniLM on {args.lm_samples} training jobs\n")
    print("| workflow | detector: input | features/tokens | accuracy | F1 | ROC-AUC |")
    print("| --- | --- | --- | --- | --- | --- |")
    for workflow, entry in result["workflows"].items():
        for name, r in entry.items():
            if isinstance(r, dict):
                size = r.get("features", r.get("tokens_per_job"))
                print(
                    f"| {workflow} | {name} | {size} | {r['accuracy']:.3f} | {r['f1']:.3f} "
                    f"| {r['roc_auc']:.3f} |"
                )


if __name__ == "__main__":
    main()
