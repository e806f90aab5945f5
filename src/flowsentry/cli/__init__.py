"""`flowsentry <command>`: each loads params.yaml once and calls one function.

dvc.yaml runs the stage commands; `retrain` and `sweep` run the Prefect flows.
"""

from __future__ import annotations

import typer

from flowsentry.cli import orchestration, pegasus, stages
from flowsentry.cli.groups import container_app, experiment_app, icl_app, registry_app

app = typer.Typer(
    help=(
        "flowsentry: detect anomalous jobs in scientific workflows (Flow-Bench traces) "
        "with language models and the detectors they must beat.\n\nPipeline stages, in "
        "order: ingest -> validate -> prepare -> augment -> train -> evaluate -> gate -> "
        "package. `dvc repro` runs them all with params.yaml; `flowsentry retrain` runs "
        "them as a Prefect flow."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stages.register(app)
orchestration.register(app)
pegasus.register(app)
app.add_typer(icl_app, name="icl")
app.add_typer(registry_app, name="registry")
app.add_typer(experiment_app, name="experiment")
app.add_typer(container_app, name="container")

__all__ = ["app"]
