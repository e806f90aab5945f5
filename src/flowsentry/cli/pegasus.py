"""A Pegasus installation: `flowsentry listen` (live detection from pegasus-monitord's
events) and `flowsentry label` (operators' verdicts, learned from at the next retrain)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from flowsentry.cli.common import command, console
from flowsentry.config import Config
from flowsentry.errors import FlowsentryError

label_app = typer.Typer(
    help="Mark jobs anomalous or normal (an alert right or wrong, a whole run normal): "
    "appended to paths.labels, applied by the next ingest, so the next retrain learns "
    "from them.",
    no_args_is_help=True,
)
Verdict = Literal["anomalous", "normal"]
NoteOption = Annotated[str, typer.Option(help="Why (kept beside the label).")]


def register(app: typer.Typer) -> None:
    @command(app, "listen")
    def listen(
        cfg: Config,
        idle_exit: Annotated[
            float | None,
            typer.Option(help="Stop after this many seconds without a message (default: never)."),
        ] = None,
    ) -> None:
        """Score jobs live from pegasus-monitord's AMQP events (params.yaml `listen`):
        results and alerts as JSON lines in listen.output, alerts as Prefect events and to
        a webhook, ended runs into listen.inbox. Stops on SIGTERM or Ctrl-C."""
        from flowsentry.live.listener import Listener, Scorers, consume, resolve_model

        params = cfg.listen
        default = resolve_model(params.model) if params.model or not params.model_full else None
        full = resolve_model(params.model_full) if params.model_full else None
        listener = Listener(params, Scorers(default, full))
        console.print(f"models: {listener.scorers.describe()}; output: {params.output}")
        try:
            consume(listener, params, idle_exit=idle_exit)
        finally:
            counters = listener.state.counters()
            listener.close()
        console.print(f"stopped: {counters}")

    app.add_typer(label_app, name="label")


def _add(cfg: Config, entries: list[dict[str, str]]) -> None:
    from flowsentry.data.labels import add_labels

    count = add_labels(cfg.paths.labels, entries)
    console.print(f"{count} label(s) added to {cfg.paths.labels}; the next ingest applies them")


@command(label_app, "job", writes=True)
def label_job(
    cfg: Config,
    workflow: Annotated[str, typer.Argument(help="The workflow (its dax_label).")],
    run: Annotated[str, typer.Argument(help="The run (the workflow's wf_uuid).")],
    job: Annotated[str, typer.Argument(help="The job id (exec_job_id).")],
    verdict: Annotated[Verdict, typer.Argument(help="anomalous or normal.")],
    note: NoteOption = "",
) -> None:
    """Label one job."""
    _add(cfg, [{"workflow": workflow, "run": run, "job": job, "label": verdict, "note": note}])


@command(label_app, "run", writes=True)
def label_run(
    cfg: Config,
    workflow: Annotated[str, typer.Argument(help="The workflow (its dax_label).")],
    run: Annotated[str, typer.Argument(help="The run (the workflow's wf_uuid).")],
    verdict: Annotated[Verdict, typer.Argument(help="For every job not labelled one by one.")],
    note: NoteOption = "",
) -> None:
    """Label every job of a run not labelled one by one (e.g. `normal` once its alerts
    have been judged)."""
    _add(cfg, [{"workflow": workflow, "run": run, "job": "*", "label": verdict, "note": note}])


@command(label_app, "alert", writes=True)
def label_alert(
    cfg: Config,
    alert: Annotated[str, typer.Argument(help="The alert's id (alerts.jsonl, field id).")],
    verdict: Annotated[
        Literal["right", "wrong"],
        typer.Argument(help="right: the job was anomalous; wrong: it was normal."),
    ],
    note: NoteOption = "",
) -> None:
    """Judge an alert of `flowsentry listen`: right (anomalous) or wrong (normal)."""
    from flowsentry.live.sinks import read_alerts

    found = [a for a in read_alerts(cfg.listen.output) if a.get("id") == alert]
    if not found:
        raise FlowsentryError(
            f"alert '{alert}' is not in {Path(cfg.listen.output) / 'alerts.jsonl'}"
        )
    a = found[0]
    _add(
        cfg,
        [{"workflow": a["workflow"], "run": a["run"], "job": a["job"],
          "label": "anomalous" if verdict == "right" else "normal",
          "note": note or f"alert {alert} {verdict}"}],
    )  # fmt: skip


@command(label_app, "list")
def label_list(cfg: Config) -> None:
    """Every label given so far (a later one of the same job wins)."""
    from flowsentry.data.labels import read_labels

    for row in read_labels(cfg.paths.labels).itertuples():
        typer.echo(
            f"{row.labelled_at}  {row.workflow} {row.run} {row.job}  {row.label}  {row.note}"
        )
