"""`flowsentry <stage>`: load params.yaml once, call the stage, print a summary.

dvc.yaml calls these commands; the Prefect flows call the same stage functions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flowsentry import logs
from flowsentry.config import Config, load_config, parse_overrides
from flowsentry.errors import FlowsentryError

app = typer.Typer(
    help=(
        "flowsentry: detect anomalous jobs in scientific workflows (Flow-Bench traces) "
        "with language models.\n\nPipeline stages, in order: ingest -> validate -> prepare -> "
        "augment -> train -> evaluate -> gate -> package. "
        "`dvc repro` runs them all with params.yaml."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="The params file to read.", show_default=True)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a param for this run, e.g. --set split.method=by_run (YAML value).",
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _config(params: Path, overrides: list[str] | None) -> Config:
    return load_config(params, parse_overrides(overrides))


def _run(verbose: bool, fn, *args, **kwargs) -> Any:
    logs.setup(verbose)
    try:
        return fn(*args, **kwargs)
    except FlowsentryError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


@app.command()
def ingest(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    flowbench_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="FLOWBENCH_DIR",
            help="Folder in the Flow-Bench data/ layout (<workflow>.zip + adjacency_list_dags/). "
            "Unset: download from ingest.source_url.",
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Read Flow-Bench traces into one jobs table (Parquet) per workflow."""
    from flowsentry.stages import ingest as stage

    def work():
        summary = stage.run(_config(params, set_), flowbench_dir, progress=sys.stderr.isatty())
        for name, t in summary["tables"].items():
            console.print(f"{name}: {t['runs']} runs, {t['jobs']} jobs, {t['anomalous']} anomalous")

    _run(verbose, work)


@app.command()
def inbox(
    folder: Annotated[Path, typer.Argument(help="Inbox folder: <folder>/<workflow>/<run>.csv.")],
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Accept new DAG runs into the raw data (skip known runs, quarantine bad files)."""
    from flowsentry.stages import inbox as stage

    def work():
        report = stage.run(_config(params, set_), folder)
        console.print(
            f"accepted {len(report['accepted'])}, skipped {len(report['skipped'])}, "
            f"quarantined {len(report['quarantined'])}"
        )
        for item in report["quarantined"]:
            console.print(f"quarantined {item['workflow']}/{item['run']}: {item['reason']}")

    _run(verbose, work)


@app.command()
def validate(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Check jobs tables against the GX expectation suite; quarantine bad rows; Data Docs."""
    from flowsentry.stages import validate as stage

    def work():
        cfg = _config(params, set_)
        report = stage.run(cfg)
        for name, t in report["tables"].items():
            met = t["expectations"] - t["expectations_failed"]
            console.print(
                f"{name}: {t['clean']} clean, {t['quarantined']} quarantined, "
                f"{met}/{t['expectations']} expectations met"
            )
        console.print(f"Data Docs: {cfg.paths.reports / 'data_docs' / 'index.html'}")

    _run(verbose, work)


@app.command()
def prepare(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Turn validated jobs into sentences and train/val/test splits."""
    from flowsentry.stages import prepare as stage

    def work():
        summary = stage.run(_config(params, set_))
        console.print(json.dumps(summary["splits"]))

    _run(verbose, work)


@app.command()
def augment(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Add prefix / empty / permuted / rebalanced sentences to the training split."""
    from flowsentry.stages import augment as stage

    def work():
        summary = stage.run(_config(params, set_))
        console.print(f"{summary['jobs']} jobs -> {summary['rows']} rows {summary['by_kind']}")

    _run(verbose, work)


@app.command()
def train(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train every kind in train.candidates (the language model on the augmented set,
    gradient boosting, random forest, isolation forest on the prepared jobs); each
    chooses its threshold on the validation split. Saves them under paths.models."""
    from flowsentry.stages import train as stage

    def work():
        summary = stage.run(_config(params, set_), progress=sys.stderr.isatty())
        for kind, entry in summary["candidates"].items():
            val = entry["val"]
            console.print(
                f"{kind:20s} {entry['seconds']:7.1f} s  val accuracy {val['accuracy']:.4f}  "
                f"F1 {val['f1']:.4f}  threshold {entry['threshold']:.4f}"
            )

    _run(verbose, work)


@app.command()
def evaluate(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Score every candidate on the validation and test splits: metrics, bias, latency,
    early detection, plots (reports/evaluate). The split method is printed with them."""
    from flowsentry.stages import evaluate as stage

    def work():
        report = stage.run(_config(params, set_), progress=sys.stderr.isatty())
        console.print(f"split: {report['split']['method']} ({report['split']['note']})")
        for name in report["ranking_on_validation"]:
            val, test = report["candidates"][name]["val"], report["candidates"][name]["test"]
            console.print(
                f"{name:20s} val F1 {val['f1']:.4f} | test acc {test['accuracy']:.4f}  "
                f"F1 {test['f1']:.4f}  ROC-AUC {test['roc_auc']}"
            )

    _run(verbose, work)


@app.command()
def gate(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The tournament: the best candidate on validation (any kind) is promoted if it
    passes every floor on test and beats the champion on the same test jobs."""
    from flowsentry.stages import gate as stage

    def work():
        result = stage.run(_config(params, set_))
        for row in result["candidates"]:
            console.print(f"#{row['rank']} {row['candidate']:20s} {row['why']}")
        for check in result["checks"]:
            console.print(
                f"{check['verdict']:4s} {check['check']:20s} value {check['value']} "
                f"threshold {check['threshold']} {check['note']}"
            )
        console.print(f"decision: {result['decision']} {result['promoted_tag'] or ''}")

    _run(verbose, work)


@app.command()
def package(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Build a Bento (bentoml build) serving the current champion."""
    from flowsentry.stages import package as stage

    def work():
        result = stage.run(_config(params, set_))
        console.print(f"bento {result['bento']} serving {result['model']}")

    _run(verbose, work)


icl_app = typer.Typer(help="In-context learning with a decoder LLM.", no_args_is_help=True)
app.add_typer(icl_app, name="icl")


@icl_app.command("evaluate")
def icl_evaluate(
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Zero/few-shot (negative, positive, balanced, nearest) with and without LoRA."""
    from flowsentry.stages import icl as stage

    def work():
        report = stage.run(_config(params, set_), progress=sys.stderr.isatty())
        for row in report["rows"]:
            console.print(
                f"FT={row['fine_tuned']!s:5s} {row['examples']:9s} n={row['n_examples']:2d}  "
                f"acc {row['accuracy']:.3f}  F1 {row['f1']:.3f}  ROC-AUC {row['roc_auc']}"
            )

    _run(verbose, work)


@icl_app.command("explain")
def icl_explain(
    job: Annotated[str, typer.Option(help="The job record as JSON.")],
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    max_new_tokens: Annotated[int, typer.Option(help="Length of the reasoning.")] = 160,
    verbose: VerboseOption = False,
) -> None:
    """Chain of thought: step-by-step reasoning, then the category (or none, said so)."""
    from flowsentry.io import read_table
    from flowsentry.models.icl import ICLDetector, load_decoder
    from flowsentry.stages.icl import settings_for

    def work():
        try:
            record = json.loads(job)
        except json.JSONDecodeError as exc:
            raise FlowsentryError(f"--job: not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise FlowsentryError("--job: expected a JSON object of field -> value")
        cfg = _config(params, set_)
        model, tokenizer, device = load_decoder(cfg.icl.model, cfg.train.device)
        train = read_table(cfg.paths.prepared / "train.parquet")
        detector = ICLDetector(model, tokenizer, train, settings_for(cfg, "balanced", 0), device)
        result = detector.explain(record, max_new_tokens)
        console.print(result["reasoning"], highlight=False)
        console.print(f"category: {result['category'] or 'none (the reasoning ended without one)'}")

    _run(verbose, work)


registry_app = typer.Typer(help="The model registry (BentoML model store).", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


@registry_app.command("list")
def registry_list(verbose: VerboseOption = False) -> None:
    """Every stored model, newest first; * marks the champion."""
    from flowsentry.registry import store

    def work():
        for row in store.listing():
            mark = "*" if row["champion"] else " "
            labels = row["labels"]
            console.print(
                f"{mark} {row['tag']}  {row['created']}  {labels.get('kind')}/{labels.get('mode')} "
                f"workflows={labels.get('workflows')} f1={row['metrics'].get('f1')} "
                f"data={labels.get('data_version', '')[:8]} commit={labels.get('git_commit')}"
            )

    _run(verbose, work)


@registry_app.command("promote")
def registry_promote(
    tag: Annotated[str, typer.Argument(help="Model tag, e.g. flowsentry-detector:abc123.")],
    verbose: VerboseOption = False,
) -> None:
    """Make TAG the champion by hand (the previous one is kept for rollback)."""
    from flowsentry.registry import store

    _run(verbose, lambda: console.print(f"champion: {store.promote(tag)['champion']}"))


@registry_app.command("rollback")
def registry_rollback(verbose: VerboseOption = False) -> None:
    """Reinstate the previous champion."""
    from flowsentry.registry import store

    _run(verbose, lambda: console.print(f"champion: {store.rollback()['champion']}"))


experiment_app = typer.Typer(
    help="The paper's studies: transfer learning, catastrophic forgetting, debiasing.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")
FlowbenchOption = Annotated[
    Path | None,
    typer.Option(envvar="FLOWBENCH_DIR", help="Flow-Bench data/ folder (else download)."),
]
TrainSamples = Annotated[int, typer.Option(help="Training jobs per fine-tune (CPU budget).")]
TestSamples = Annotated[int, typer.Option(help="Test jobs scored per evaluation.")]


@experiment_app.command("transfer")
def experiment_transfer(
    source: Annotated[str, typer.Option(help="Workflow to fine-tune on first.")] = "1000genome",
    target: Annotated[str, typer.Option(help="Workflow to transfer to.")] = "montage",
    n_train: TrainSamples = 2000,
    n_target: Annotated[int, typer.Option(help="Jobs of the short target fine-tune.")] = 500,
    n_test: TestSamples = 1000,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    flowbench_dir: FlowbenchOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Fine-tune on SOURCE; test on TARGET zero-shot and after a short fine-tune."""
    from flowsentry import experiments

    def work():
        result = experiments.transfer(
            _config(params, set_),
            source,
            target,
            flowbench_dir,
            n_train,
            n_target,
            n_test,
            progress=sys.stderr.isatty(),
        )
        console.print(
            json.dumps({k: v for k, v in result.items() if isinstance(v, dict)}, indent=1)
        )

    _run(verbose, work)


@experiment_app.command("forgetting")
def experiment_forgetting(
    first: Annotated[str, typer.Option(help="Workflow D1.")] = "1000genome",
    second: Annotated[str, typer.Option(help="Workflow D2, trained after D1.")] = "montage",
    n_train: TrainSamples = 2000,
    n_test: TestSamples = 1000,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    flowbench_dir: FlowbenchOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train on D1, continue on D2 (full, head, one LoRA adapter per workflow)."""
    from flowsentry import experiments

    def work():
        result = experiments.forgetting(
            _config(params, set_),
            first,
            second,
            flowbench_dir,
            n_train,
            n_test,
            progress=sys.stderr.isatty(),
        )
        console.print(json.dumps(result, indent=1))

    _run(verbose, work)


@experiment_app.command("debias")
def experiment_debias(
    workflow: Annotated[str, typer.Option(help="Workflow to train and test on.")] = "1000genome",
    n_train: TrainSamples = 2000,
    n_test: TestSamples = 1000,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    flowbench_dir: FlowbenchOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The same fine-tune with and without augmentation: bias gap and accuracy."""
    from flowsentry import experiments

    def work():
        result = experiments.debias(
            _config(params, set_),
            workflow,
            flowbench_dir,
            n_train,
            n_test,
            progress=sys.stderr.isatty(),
        )
        console.print(json.dumps(result, indent=1))

    _run(verbose, work)


@experiment_app.command("quality")
def experiment_quality(
    workflow: Annotated[str, typer.Option(help="Workflow to run the default pipeline on.")],
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
    flowbench_dir: FlowbenchOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The default pipeline on one workflow: every candidate on validation and test
    (by_run split by default; --set split.method=random for the paper's protocol)."""
    from flowsentry import experiments

    def work():
        result = experiments.quality(
            _config(params, set_), workflow, flowbench_dir, progress=sys.stderr.isatty()
        )
        console.print(json.dumps(result, indent=1))

    _run(verbose, work)


@app.command("write-suite")
def write_suite(
    params: ParamsOption = Path("params.yaml"),
    verbose: VerboseOption = False,
) -> None:
    """Regenerate the committed GX expectation suite from the schema."""
    from flowsentry.validation.suite import write_suite as write

    def work():
        cfg = _config(params, None)
        write(cfg.paths.gx_suite)
        console.print(f"wrote {cfg.paths.gx_suite}")

    _run(verbose, work)


@app.command()
def sentence(
    job: Annotated[str, typer.Argument(help="A job record as JSON, e.g. '{\"wms_delay\": 6}'.")],
    template: Annotated[str, typer.Option(help="paper or compact")] = "paper",
    feature_set: Annotated[str, typer.Option(help="paper or extended")] = "paper",
    k: Annotated[int | None, typer.Option(help="Only the first k features (online).")] = None,
) -> None:
    """Print the sentence a job record becomes."""
    from flowsentry.text.sentences import features_of
    from flowsentry.text.sentences import sentence as make

    def work():
        try:
            record = json.loads(job)
        except json.JSONDecodeError as exc:
            raise FlowsentryError(f"job: not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise FlowsentryError("job: expected a JSON object of field -> value")
        try:
            typer.echo(make(record, template, features_of(feature_set), k))
        except ValueError as exc:
            raise FlowsentryError(str(exc)) from None

    _run(False, work)


if __name__ == "__main__":
    app()
