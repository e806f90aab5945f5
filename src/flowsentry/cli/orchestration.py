"""`flowsentry retrain` and `flowsentry sweep`: the Prefect flows, run from the command
line (a temporary Prefect API unless PREFECT_API_URL points at a server)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flowsentry.cli.common import FlowbenchOption, command, console
from flowsentry.config import parse_overrides


def quiet_temporary_server() -> None:
    """Without PREFECT_API_URL, Prefect starts a temporary server whose telemetry service
    races the flow for its SQLite database and can print a harmless 40-line
    `database is locked` traceback: a temporary server sends no telemetry. A user's own
    setting wins."""
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def register(app: typer.Typer) -> None:
    @command(app, "retrain", config=False)
    def retrain(
        project: Annotated[
            Path, typer.Option(help="The DVC project (dvc.yaml, params.yaml) to run.")
        ] = Path("."),
        flowbench_dir: FlowbenchOption = None,
        inbox_dir: Annotated[
            Path | None, typer.Option(help="Sort new run CSVs (<dir>/<workflow>/<run>.csv) first.")
        ] = None,
        push: Annotated[bool, typer.Option(help="Push the data to the DVC remote.")] = True,
        train_deployment: Annotated[
            str | None,
            typer.Option(help="Train as this Prefect deployment, e.g. flowsentry-train/gpu."),
        ] = None,
        train_repository: Annotated[
            str | None,
            typer.Option(
                help="Git URL the training worker clones (it shares no folder with the "
                "project: data and models go through the DVC remote)."
            ),
        ] = None,
    ) -> None:
        """The retraining flow: the inbox, then every dvc.yaml stage (`dvc repro`, one
        Prefect task each; DVC skips what is up to date), then `dvc push`."""
        quiet_temporary_server()
        from flowsentry.prefect_flows.retrain import retrain as flow

        result = flow(
            project=str(project),
            flowbench_dir=str(flowbench_dir) if flowbench_dir else None,
            inbox_dir=str(inbox_dir) if inbox_dir else None,
            push=push,
            train_deployment=train_deployment,
            train_repository=train_repository,
        )
        for name, stage in result["stages"].items():
            console.print(f"{name:10s} {'ran' if stage['ran'] else 'up to date'}")
        console.print(f"gate: {result['gate'].get('decision')}; bento: {result['bento']}")

    @command(app, "sweep", config=False)
    def sweep(
        params: Path,
        set_: list[str] | None,
        flowbench_dir: FlowbenchOption = None,
        address: Annotated[
            str | None, typer.Option(help="A running Dask scheduler (else a local cluster).")
        ] = None,
    ) -> None:
        """The sweep flow: params `sweep` candidates trained in parallel on Dask; the best
        on validation goes through the gate and is packaged when promoted."""
        quiet_temporary_server()
        from flowsentry.prefect_flows.sweep import sweep as flow

        result = flow(
            params=str(params),
            flowbench_dir=str(flowbench_dir) if flowbench_dir else None,
            overrides=parse_overrides(set_) or None,
            address=address,
        )
        console.print(f"best: {result['best']['candidate']}; gate: {result['gate']['decision']}")
