"""The pipeline's stages (`dvc.yaml` runs these), the inbox and small helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flowsentry.cli.common import FlowbenchOption, command, console, json_record, progress
from flowsentry.config import Config
from flowsentry.errors import FlowsentryError


def register(app: typer.Typer) -> None:
    @command(app, writes=True)
    def ingest(cfg: Config, flowbench_dir: FlowbenchOption = None) -> None:
        """Read every source into one jobs table (Parquet) each: Flow-Bench workflows,
        Pegasus stampede databases (ingest.stampede), live Pegasus runs from the inbox
        (ingest.live); operators' labels (flowsentry label) are applied."""
        from flowsentry.stages import ingest as stage

        report = stage.run(cfg, flowbench_dir, progress=progress())
        for name, t in report.tables.items():
            console.print(
                f"{name}: {t.runs} runs, {t.jobs} jobs, {t.anomalous} anomalous, "
                f"{t.unlabelled} unlabelled"
            )
            for uuid in t.still_running_not_read:
                console.print(f"{name}: workflow {uuid} is still running: not read")

    @command(app, writes=True)
    def inbox(
        cfg: Config,
        folder: Annotated[Path, typer.Argument(help="Inbox: <folder>/<workflow>/<run>.csv.")],
    ) -> None:
        """Accept new DAG runs into the raw data (skip known runs, quarantine bad files)."""
        from flowsentry.stages import inbox as stage

        report = stage.run(cfg, folder)
        console.print(
            f"accepted {len(report.accepted)}, skipped {len(report.skipped)}, "
            f"quarantined {len(report.quarantined)}"
        )
        for item in report.quarantined:
            console.print(f"quarantined {item.workflow}/{item.run}: {item.reason}")

    @command(app, writes=True)
    def validate(cfg: Config) -> None:
        """Check jobs tables against the GX expectation suite; quarantine bad rows; Data Docs."""
        from flowsentry.stages import validate as stage

        report = stage.run(cfg)
        for name, t in report.tables.items():
            met = t.expectations - t.expectations_failed
            console.print(
                f"{name}: {t.clean} clean, {t.quarantined} quarantined, "
                f"{met}/{t.expectations} expectations met"
            )
        console.print(f"Data Docs: {cfg.paths.reports / 'data_docs' / 'index.html'}")

    @command(app, writes=True)
    def prepare(cfg: Config) -> None:
        """Turn validated jobs into sentences and train/val/test splits."""
        from flowsentry.stages import prepare as stage

        report = stage.run(cfg)
        console.print(json.dumps({name: s.model_dump() for name, s in report.splits.items()}))

    @command(app, writes=True)
    def augment(cfg: Config) -> None:
        """Add prefix / empty / permuted / rebalanced sentences to the training split."""
        from flowsentry.stages import augment as stage

        report = stage.run(cfg)
        console.print(f"{report.jobs} jobs -> {report.rows} rows {report.by_kind}")

    @command(app, writes=True)
    def train(cfg: Config) -> None:
        """Train every kind in train.candidates (the language model on the augmented set,
        gradient boosting, random forest, isolation forest on the prepared jobs); each
        chooses its threshold on the validation split. Saves them under paths.models."""
        from flowsentry.stages import train as stage

        report = stage.run(cfg, progress=progress())
        for kind, entry in report.candidates.items():
            console.print(
                f"{kind:20s} {entry.seconds:7.1f} s  val accuracy {entry.val.accuracy:.4f}  "
                f"F1 {entry.val.f1:.4f}  threshold {entry.threshold:.4f}"
            )

    @command(app, writes=True)
    def evaluate(cfg: Config) -> None:
        """Score every candidate on the validation and test splits: metrics, bias, latency,
        early detection, plots (reports/evaluate). The split method is printed with them."""
        from flowsentry.stages import evaluate as stage

        report = stage.run(cfg, progress=progress())
        console.print(f"split: {report.split.method} ({report.split.note})")
        for name in report.ranking_on_validation:
            val, test = report.candidates[name].val, report.candidates[name].test
            console.print(
                f"{name:20s} val F1 {val.f1:.4f} | test acc {test.accuracy:.4f}  "
                f"F1 {test.f1:.4f}  ROC-AUC {test.roc_auc}"
            )

    @command(app, writes=True)
    def gate(cfg: Config) -> None:
        """The tournament: the best candidate on validation (any kind; gate.rank_on: the
        post-run or the real-time figure) is promoted if it passes every floor on test and
        beats the champion on the same test jobs. Prints each candidate's post-run and live
        (real-time) figures side by side."""
        from rich.table import Table

        from flowsentry.stages import gate as stage

        result = stage.run(cfg)
        metric = result.primary_metric
        table = Table(title=f"ranked on validation {metric} ({result.rank_on})")
        for column in ("#", "candidate", "val", "val live", "test", "test live", "why"):
            table.add_column(column)

        def figure(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        for row in result.candidates:
            live = row.realtime
            table.add_row(
                str(row.rank), row.candidate, figure(row.val.get(metric)),
                figure(getattr(live.val, metric, None) if live else None),
                figure(row.test.get(metric)),
                figure(getattr(live.test, metric, None) if live else None), row.why,
            )  # fmt: skip
        console.print(table)
        for check in result.checks:
            console.print(
                f"{check.verdict:4s} {check.check:20s} value {check.value} "
                f"threshold {check.threshold} {check.note}"
            )
        console.print(f"decision: {result.decision} {result.promoted_tag or ''}")

    @command(app, writes=True)
    def package(cfg: Config) -> None:
        """Build a Bento (bentoml build) serving the current champion."""
        from flowsentry.stages import package as stage

        result = stage.run(cfg)
        console.print(f"bento {result.bento} serving {result.model}")

    @command(app, "write-suite")
    def write_suite(cfg: Config) -> None:
        """Regenerate the committed GX expectation suite from the schema."""
        from flowsentry.validation.suite import write_suite as write

        write(cfg.paths.gx_suite)
        console.print(f"wrote {cfg.paths.gx_suite}")

    @command(app, config=False)
    def sentence(
        job: Annotated[str, typer.Argument(help="A job record as JSON: '{\"wms_delay\": 6}'.")],
        template: Annotated[str, typer.Option(help="paper, compact or levels")] = "paper",
        feature_set: Annotated[
            str, typer.Option(help="paper, extended, context, relative, evidence, evidence_compact")
        ] = "paper",
        k: Annotated[int | None, typer.Option(help="Only the first k features (online).")] = None,
        profile: Annotated[
            Path | None,
            typer.Option(help="The evidence profile (data/prepared/profile.json): levels."),
        ] = None,
    ) -> None:
        """Print the sentence a job record becomes (evidence columns as given in the record)."""
        from flowsentry.data.evidence import read_profile
        from flowsentry.text.sentences import features_of
        from flowsentry.text.sentences import sentence as make

        record = json_record(job, "job")
        fitted = None if profile is None else read_profile(profile)
        try:
            typer.echo(make(record, template, features_of(feature_set), k, fitted))
        except ValueError as exc:
            raise FlowsentryError(str(exc)) from None
