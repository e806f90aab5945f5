"""Prepare: validated jobs -> sentences + train/val/test splits + tokens per job."""

from __future__ import annotations

import logging

import pandas as pd

from flowsentry.config import Config
from flowsentry.data.context import add_context
from flowsentry.data.dag import PARENTS, add_dag_evidence, parents_column
from flowsentry.data.evidence import Profile
from flowsentry.data.flowbench import load_dag
from flowsentry.data.splits import (
    SPLITS,
    assign_splits,
    read_record,
    record_splits,
    usable_record,
    write_record,
)
from flowsentry.errors import ConfigError
from flowsentry.io import read_table, write_csv, write_json, write_parquet
from flowsentry.reports import (
    PrepareReport,
    ProfileNote,
    SplitCount,
    SplitRecordCounts,
    TokenReport,
)
from flowsentry.stages.tables import table_refs
from flowsentry.text.sentences import features_of, sentences

log = logging.getLogger(__name__)

# Training jobs whose sentences the tokens-per-job report counts.
TOKEN_SAMPLE = 1000


def token_report(
    texts: pd.Series,
    tokenizer_name: str,
    template: str,
    feature_set: str,
    sample: int = TOKEN_SAMPLE,
) -> TokenReport:
    """Mean and max tokens per job of the sentences the encoder reads (on up to `sample`
    of them). Every template x feature set side by side: `python bench/tokens.py`."""
    from flowsentry.models.pretrained import token_counter

    if len(texts) > sample:
        texts = texts.sample(sample, random_state=0)
    counts = token_counter(tokenizer_name)(texts.tolist())
    return TokenReport(
        tokenizer=tokenizer_name,
        template=template,
        feature_set=feature_set,
        jobs=len(counts),
        mean=round(sum(counts) / max(len(counts), 1), 2),
        max=max(counts, default=0),
    )


def level_features(cfg: Config) -> list[str]:
    """Every feature the configured detectors read (their decile edges are fitted)."""
    return sorted(set(features_of(cfg.text.feature_set)) | set(features_of(cfg.train.features)))


def _dags(cfg: Config, jobs: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """The versioned DAG of each Flow-Bench workflow among `jobs` that has one."""
    return {
        workflow: load_dag(cfg.paths.dag(workflow))
        for workflow in sorted(jobs["workflow"].dropna().unique())
        if cfg.paths.dag(workflow).is_file()
    }


def run(cfg: Config) -> PrepareReport:
    """Write `paths.prepared/{train,val,test}.parquet` and `split.csv` (and, by_run, the
    run-level record `run_splits.csv` + `run_splits.json`); returns (and writes) the
    report."""
    sources = [cfg.paths.validated / f"{ref.name}.parquet" for ref in table_refs(cfg)]
    jobs = pd.concat(
        [
            read_table(path, [cfg.paths.jobs / path.name], remedy="flowsentry validate")
            for path in sources
        ],
        ignore_index=True,
    )
    # Jobs nobody labelled (a Pegasus installation's runs) join no split: they are kept
    # only as the siblings that give labelled jobs of their run their context.
    labelled = jobs["label"].notna()
    ratios = (cfg.split.train, cfg.split.val, cfg.split.test)
    by_run = cfg.split.method == "by_run"
    # A run's by_run split is decided once: the record the last prepare left in its
    # (persisted) output folder keeps every run it holds where it was.
    previous = (
        usable_record(read_record(cfg.paths.prepared), "by_run", ratios, cfg.base.seed)
        if by_run
        else None
    )
    split = assign_splits(
        jobs[labelled],
        cfg.split.method,
        ratios,
        cfg.base.seed,
        cfg.split.manifest,
        previous=previous,
    )
    record = None
    if by_run:
        record, counts = record_splits(jobs[labelled], split, ratios, cfg.base.seed, previous)
        log.info(
            "split record: %d runs kept their split, %d new runs assigned "
            "(%d recorded runs not in the data stay recorded)",
            counts["kept"],
            counts["new"],
            counts["absent"],
        )
    split = split.reindex(jobs.index)
    jobs = jobs.assign(split=split)
    jobs = jobs[jobs["split"].notna() | ~labelled].reset_index(drop=True)  # manifest omissions
    empty = [name for name in SPLITS if not (jobs["split"] == name).any()]
    if empty:  # training or thresholds would fail later, far from the cause
        raise ConfigError(
            f"split: {', '.join(empty)} would hold no jobs ({jobs['run'].nunique()} runs, "
            f"{int(jobs['label'].notna().sum())} labelled jobs, method {cfg.split.method}, "
            f"fractions {cfg.split.train}/{cfg.split.val}/{cfg.split.test}; by_run cuts each "
            "anomaly type's runs separately): ingest more labelled runs (ingest.max_runs, "
            "flowsentry label) or change the split fractions"
        )
    # What normal looks like, learned from the training split alone (data/evidence.py),
    # or (train.profile all) from every job of it and of the runs nobody labelled, labels
    # unread: a workflow known only by its unlabelled runs gets its normal too.
    if cfg.train.profile == "all":
        basis = jobs[(jobs["split"] == "train") | jobs["label"].isna()]
        profile = Profile.fit(basis, level_features(cfg), labelled=False)
    else:
        profile = Profile.fit(jobs[jobs["split"] == "train"], level_features(cfg))
    jobs = add_context(jobs, profile)  # per run, from trace features only
    jobs[PARENTS] = parents_column(jobs, _dags(cfg, jobs))
    jobs = add_dag_evidence(jobs)  # what each job's parents and children did in its run
    unlabelled = int(jobs["label"].isna().sum())
    jobs = jobs[jobs["split"].notna()].reset_index(drop=True)
    jobs["sentence"] = sentences(
        jobs, cfg.text.template, features_of(cfg.text.feature_set), profile=profile
    )
    counts_by_split: dict[str, SplitCount] = {}
    for name in SPLITS:
        part = jobs[jobs["split"] == name].drop(columns="split").reset_index(drop=True)
        write_parquet(part, cfg.paths.split(name), sources)
        counts_by_split[name] = SplitCount(
            jobs=len(part),
            anomalous=int(part["label"].sum()),
            anomalous_fraction=round(float(part["label"].mean()), 4) if len(part) else 0.0,
        )
    write_csv(jobs[["workflow", "run", "job", "split"]], cfg.paths.prepared / "split.csv")
    if record is not None:
        write_record(record, cfg.paths.prepared)
    write_json(profile.to_dict(), cfg.paths.profile)
    train = jobs[jobs["split"] == "train"]
    report = PrepareReport(
        template=cfg.text.template,
        feature_set=cfg.text.feature_set,
        split_method=cfg.split.method,
        unlabelled_jobs_as_context_only=unlabelled,
        splits=counts_by_split,
        split_record=SplitRecordCounts(**counts) if record is not None else None,
        profile=ProfileNote(
            id=profile.id,
            tasks=sum(len(tasks) for tasks in profile.normal.values()),
            level_features=len(profile.levels),
        ),
        tokens_per_job=token_report(
            train["sentence"], cfg.text.tokenizer, cfg.text.template, cfg.text.feature_set
        ),
    )
    report.write(cfg.paths)
    log.info("prepared %s", {k: v.jobs for k, v in report.splits.items()})
    return report
