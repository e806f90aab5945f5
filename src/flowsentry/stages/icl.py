"""ICL evaluation: zero/few-shot prompts (several example sets), with and without LoRA."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from pandas import DataFrame

from flowsentry.config import Config
from flowsentry.data.evidence import read_profile
from flowsentry.data.splits import stratified_sample
from flowsentry.evaluation import plots
from flowsentry.evaluation.metrics import binary_metrics
from flowsentry.io import read_table, write_csv
from flowsentry.models.decoder_lora import fine_tune_decoder
from flowsentry.models.in_context import ICLDetector
from flowsentry.models.pretrained import load_decoder
from flowsentry.reports import IclReport, IclSaved

log = logging.getLogger(__name__)

# The paper's 1000 Genome accuracies (without FT / with FT): neg only, pos only, few-shot.
PAPER = {
    "GPT-2": {"no_ft": (0.54, 0.57, 0.66), "ft": (0.68, 0.73, 0.72)},
    "Mistral-7B": {"no_ft": (0.64, 0.65, 0.68), "ft": (0.73, 0.68, 0.78)},
    "Llama-2-7B": {"no_ft": (0.60, 0.63, 0.65), "ft": (0.68, 0.71, 0.76)},
}


def run(cfg: Config, progress: bool = True) -> IclReport:
    """Score a stratified test sample under every configuration; write reports/icl/ (the
    table, its plot and the IclReport, which it returns)."""
    train = read_table(cfg.paths.split("train"))
    test = stratified_sample(read_table(cfg.paths.split("test")), cfg.icl.sample, cfg.base.seed)
    labels = test["label"].astype(int).to_numpy()
    out = cfg.paths.reports / "icl"
    model, tokenizer, device = load_decoder(cfg.icl.model, cfg.base.device)
    # Every row shares the decoder and the example pool; only the examples change.
    base = ICLDetector(model, tokenizer, train, cfg.icl, device, cfg.base.seed)
    base.profile = read_profile(cfg.paths.profile)  # the evidence sentences read it
    rows: list[dict[str, Any]] = []

    def measure(model, examples: str, n: int, fine_tuned: bool) -> None:
        detector = base.with_examples(examples, n, model)
        started = time.perf_counter()
        scores = detector.score(test)
        seconds = time.perf_counter() - started
        metrics = binary_metrics(labels, scores, 0.5)
        rows.append(
            {
                "fine_tuned": fine_tuned,
                "examples": examples if n else "none",
                "n_examples": n,
                "examples_kept_mean": round(float(np.mean(detector.examples_kept)), 2),
                **{k: metrics[k] for k in ("accuracy", "f1", "roc_auc")},
                "jobs_per_second": round(len(test) / seconds, 2),
            }
        )
        log.info("%s", rows[-1])
        write_csv(DataFrame(rows), out / "table.csv")  # a crash keeps the rows so far

    def table(model, fine_tuned: bool) -> None:
        measure(model, "balanced", 0, fine_tuned)
        for examples in ("negative", "positive", "balanced", "nearest"):
            measure(model, examples, cfg.icl.n_examples, fine_tuned)

    table(model, False)
    for n in cfg.icl.curve:
        if n not in (0, cfg.icl.n_examples):
            measure(model, "balanced", n, False)
    lora = cfg.icl.lora
    if lora.enabled:
        sample = stratified_sample(train, lora.train_samples, cfg.base.seed)
        prefixes, suffixes = base.with_examples(lora.examples, lora.n_examples).prompts(
            sample, from_train=True
        )
        started = time.perf_counter()
        tuned = fine_tune_decoder(
            model,
            tokenizer,
            prefixes,
            suffixes,
            sample["label"].astype(int).tolist(),
            lora,
            cfg.paths.icl_checkpoints,
            seed=cfg.base.seed,
            device=device,
            progress=progress,
        )
        lora_seconds = round(time.perf_counter() - started, 1)
        table(tuned, True)
        final, examples = tuned, lora.examples
    else:
        lora_seconds = None
        final, examples = model, cfg.icl.examples
    # The detector to deploy: its threshold chosen on validation like every other kind's
    # (the table's rows read the category at 0.5, the paper's protocol).
    val = stratified_sample(read_table(cfg.paths.split("val")), cfg.icl.sample, cfg.base.seed)
    deployed = base.with_examples(examples, cfg.icl.n_examples, final)
    deployed.fit(train, val, cfg.train.threshold)
    deployed.save(cfg.paths.icl_model)
    report = IclReport(
        model=cfg.icl.model,
        template=cfg.icl.template,
        feature_set=cfg.icl.feature_set,
        split=cfg.split.method,
        test_jobs=len(test),
        workflows=sorted(set(test["workflow"])),
        lora_train_seconds=lora_seconds,
        saved=IclSaved(
            path=str(cfg.paths.icl_model),
            examples=examples,
            threshold=deployed.threshold_,
            val=deployed.validation_,
        ),
        rows=rows,
        paper_1000genome=PAPER,
    )
    report.write(cfg.paths)
    plots.icl_curve(rows, out / "curve.png", f"{cfg.icl.model} on {', '.join(report.workflows)}")
    write_csv(DataFrame(rows), out / "table.csv")
    return report
