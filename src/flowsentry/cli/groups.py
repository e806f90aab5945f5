"""Command groups: `icl`, `registry`, `experiment`, `container`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flowsentry.cli.common import FlowbenchOption, command, console, json_record, progress
from flowsentry.config import Config

icl_app = typer.Typer(help="In-context learning with a decoder LLM.", no_args_is_help=True)
registry_app = typer.Typer(help="The model registry (BentoML model store).", no_args_is_help=True)
experiment_app = typer.Typer(
    help="The paper's studies: transfer learning, catastrophic forgetting, debiasing, and "
    "the quality table.",
    no_args_is_help=True,
)
container_app = typer.Typer(
    help="Container images of the packaged Bento, built and run with podman (no registry "
    "needed: the base image is made with debootstrap from the package mirror).",
    no_args_is_help=True,
)
TrainSamples = Annotated[int, typer.Option(help="Training jobs per fine-tune (CPU budget).")]
TestSamples = Annotated[int, typer.Option(help="Test jobs scored per evaluation.")]


@command(icl_app, "evaluate", writes=True)
def icl_evaluate(cfg: Config) -> None:
    """Zero/few-shot (negative, positive, balanced, nearest) with and without LoRA."""
    from flowsentry.stages import icl as stage

    for row in stage.run(cfg, progress=progress()).rows:
        console.print(
            f"FT={row.fine_tuned!s:5s} {row.examples:9s} n={row.n_examples:2d}  "
            f"acc {row.accuracy:.3f}  F1 {row.f1:.3f}  ROC-AUC {row.roc_auc}"
        )


@command(icl_app, "explain")
def icl_explain(
    cfg: Config,
    job: Annotated[str, typer.Option(help="The job record as JSON.")],
    max_new_tokens: Annotated[int, typer.Option(help="Length of the reasoning.")] = 160,
) -> None:
    """Chain of thought: step-by-step reasoning, then the category (or none, said so)."""
    from flowsentry.io import read_table
    from flowsentry.models.in_context import ICLDetector
    from flowsentry.models.pretrained import load_decoder

    record = json_record(job, "--job")
    model, tokenizer, device = load_decoder(cfg.icl.model, cfg.base.device)
    train = read_table(cfg.paths.split("train"), remedy="flowsentry prepare")
    detector = ICLDetector(model, tokenizer, train, cfg.icl, device, cfg.base.seed)
    result = detector.explain(record, max_new_tokens)
    console.print(result["reasoning"], highlight=False)
    console.print(f"category: {result['category'] or 'none (the reasoning ended without one)'}")


@command(registry_app, "list", config=False)
def registry_list() -> None:
    """Every stored model, newest first; * marks the champion."""
    from flowsentry.registry import store

    for row in store.listing():
        mark = "*" if row["champion"] else " "
        labels = row["labels"]
        typer.echo(  # stdout, one line a model whatever the terminal's width (grep, scripts)
            f"{mark} {row['tag']}  {row['created']}  {labels.get('kind')}/{labels.get('mode')} "
            f"workflows={labels.get('workflows')} f1={row['metrics'].get('f1')} "
            f"data={labels.get('data_version', '')[:8]} commit={labels.get('git_commit')}"
        )


@command(registry_app, "promote", config=False, writes=True)
def registry_promote(
    tag: Annotated[str, typer.Argument(help="Model tag, e.g. flowsentry-detector:abc123.")],
) -> None:
    """Make TAG the champion by hand (the previous one is kept for rollback)."""
    from flowsentry.registry import store

    typer.echo(f"champion: {store.promote(tag)['champion']}")


@command(registry_app, "rollback", config=False, writes=True)
def registry_rollback() -> None:
    """Reinstate the previous champion."""
    from flowsentry.registry import store

    typer.echo(f"champion: {store.rollback()['champion']}")


@command(experiment_app, "transfer")
def experiment_transfer(
    cfg: Config,
    source: Annotated[str, typer.Option(help="Workflow to fine-tune on first.")] = "1000genome",
    target: Annotated[str, typer.Option(help="Workflow to transfer to.")] = "montage",
    n_train: TrainSamples = 2000,
    n_target: Annotated[int, typer.Option(help="Jobs of the short target fine-tune.")] = 500,
    n_test: TestSamples = 1000,
    flowbench_dir: FlowbenchOption = None,
) -> None:
    """Fine-tune on SOURCE; test on TARGET zero-shot and after a short fine-tune."""
    from flowsentry import experiments

    result = experiments.transfer(
        cfg, source, target, flowbench_dir, n_train, n_target, n_test, progress=progress()
    )
    typer.echo(json.dumps({k: v for k, v in result.items() if isinstance(v, dict)}, indent=1))


@command(experiment_app, "forgetting")
def experiment_forgetting(
    cfg: Config,
    first: Annotated[str, typer.Option(help="Workflow D1.")] = "1000genome",
    second: Annotated[str, typer.Option(help="Workflow D2, trained after D1.")] = "montage",
    n_train: TrainSamples = 2000,
    n_test: TestSamples = 1000,
    flowbench_dir: FlowbenchOption = None,
) -> None:
    """Train on D1, continue on D2 (full, head, one LoRA adapter per workflow)."""
    from flowsentry import experiments

    result = experiments.forgetting(
        cfg, first, second, flowbench_dir, n_train, n_test, progress=progress()
    )
    typer.echo(json.dumps(result, indent=1))


@command(experiment_app, "debias")
def experiment_debias(
    cfg: Config,
    workflow: Annotated[str, typer.Option(help="Workflow to train and test on.")] = "1000genome",
    n_train: TrainSamples = 2000,
    n_test: TestSamples = 1000,
    flowbench_dir: FlowbenchOption = None,
) -> None:
    """The same fine-tune with and without augmentation: bias gap and accuracy."""
    from flowsentry import experiments

    result = experiments.debias(cfg, workflow, flowbench_dir, n_train, n_test, progress=progress())
    typer.echo(json.dumps(result, indent=1))


@command(experiment_app, "quality")
def experiment_quality(
    cfg: Config,
    workflow: Annotated[str, typer.Option(help="Workflow to run the default pipeline on.")],
    flowbench_dir: FlowbenchOption = None,
    tag: Annotated[
        str | None,
        typer.Option(
            help="Names the workspace and the result file (quality_<tag>.json); default "
            "<workflow>_<split method>. Give one per variant, e.g. per feature set."
        ),
    ] = None,
) -> None:
    """The default pipeline on one workflow: every candidate on validation and test
    (by_run split by default; --set split.method=random for the paper's protocol)."""
    from flowsentry import experiments

    result = experiments.quality(cfg, workflow, flowbench_dir, tag=tag)
    typer.echo(json.dumps(result, indent=1))


@command(container_app, "build")
def container_build(
    cfg: Config,
    bento: Annotated[
        str | None,
        typer.Option(help="Bento tag to build; default: the one `flowsentry package` built."),
    ] = None,
    suite: Annotated[str, typer.Option(help="Debian release of the base image.")] = "bookworm",
    mirror: Annotated[
        str, typer.Option(help="Debian mirror debootstrap reads.")
    ] = "http://deb.debian.org/debian",
) -> None:
    """Build the service image (`localhost/flowsentry:<bento version>` and `:latest`)
    serving the packaged champion; the Debian base image is made once and reused.
    Writes reports/container.json (image, model, size, build time)."""
    from flowsentry.deploy import container

    if bento is None:
        from flowsentry.reports import PackageReport

        packaged = PackageReport.read_or_none(cfg.paths)
        bento = packaged.bento if packaged else None
    result = container.build(bento, suite=suite, mirror=mirror, reports=cfg.paths.reports)
    console.print(
        f"built {result['image']} ({result['size_mb']:.0f} MB, {result['build_seconds']:.0f} s) "
        f"serving {result['model']} ({result['kind']}); base {result['base']}"
        + (" made now" if result["base_made"] else " reused"),
        highlight=False,
    )
    typer.echo(result["image"])


@command(container_app, "run", config=False)
def container_run(
    image: Annotated[str, typer.Option(help="Image to run.")] = "localhost/flowsentry:latest",
    port: Annotated[int, typer.Option(help="Host port to publish the service on.")] = 3000,
    host: Annotated[
        str, typer.Option(help="Host address to publish on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    name: Annotated[str, typer.Option(help="Container name.")] = "flowsentry",
    replace: Annotated[
        bool, typer.Option(help="Stop and remove a running container of that name first.")
    ] = False,
) -> None:
    """Run the image detached and wait until it is ready (/readyz); prints its URL."""
    from flowsentry.deploy import container

    if replace:
        container.stop(name)
    url = container.start(image, port=port, host=host, name=name)
    console.print(f"{name} ({image}) ready", highlight=False)
    typer.echo(url)


@command(container_app, "stop", config=False)
def container_stop(
    name: Annotated[str, typer.Option(help="Container name.")] = "flowsentry",
) -> None:
    """Stop and remove the container."""
    from flowsentry.deploy import container

    container.stop(name)
    console.print(f"{name} stopped", highlight=False)


@command(experiment_app, "new-workflow")
def experiment_new_workflow(
    cfg: Config,
    holdout: Annotated[
        str | None,
        typer.Option(
            help="The workflow held out (one of new_workflow.workflows); "
            "omitted: only the table and plot from the results there are."
        ),
    ] = None,
    flowbench_dir: FlowbenchOption = None,
    language_models: Annotated[
        bool,
        typer.Option(
            "--language-models",
            help="With --holdout: the fine-tuned encoder and ICL beside gradient boosting "
            "on the same test jobs (new_workflow.language_models), not the feature kinds.",
        ),
    ] = False,
) -> None:
    """A workflow nobody labelled: train on the others, score its unseen runs with 0..k of
    its runs labelled (every kind in new_workflow.kinds); then the table and the plot."""
    from flowsentry import new_workflow

    if holdout is not None:
        if language_models:
            result = new_workflow.run_language_models(cfg, holdout, flowbench_dir)
            path = new_workflow.language_models_path(cfg, holdout)
        else:
            result = new_workflow.run_holdout(cfg, holdout, flowbench_dir)
            path = new_workflow.result_path(cfg, holdout)
        console.print(
            f"{holdout}: {len(result['rows'])} figures in {result['seconds']} s -> {path}"
        )
        return
    table = new_workflow.summarise(cfg)
    console.print(new_workflow.markdown(table))
    if new_workflow.summarise_language_models(cfg) is not None:
        console.print((cfg.paths.reports / "new_workflow" / "language_models.md").read_text())
