"""params.yaml -> one typed, validated, immutable config object, read once.

Every stage receives the `Config` (or the section it needs); nothing else reads
params.yaml. Errors name the key and the reason, e.g.
`params.yaml: split.method: Input should be 'random', 'by_run' or 'file'`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flowsentry.data.flowbench import WORKFLOWS as FLOWBENCH_WORKFLOWS
from flowsentry.errors import ConfigError
from flowsentry.models.kinds import KINDS

DEFAULT_PARAMS = Path("params.yaml")
_WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseParams(_Section):
    seed: int = Field(42, description="Seed for every random choice (splits, training).")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where models train and score: auto takes CUDA, then MPS, then CPU."
    )


class Paths(_Section):
    """Artifact locations; dvc.yaml references these same keys."""

    raw: Path = Path("data/raw")
    jobs: Path = Path("data/jobs")
    validated: Path = Path("data/validated")
    quarantine: Path = Path("data/quarantine")
    prepared: Path = Path("data/prepared")
    reports: Path = Field(
        Path("reports"), description="Reports: stage summaries, metrics, plots, Data Docs."
    )
    gx_suite: Path = Field(
        Path("gx/expectations/flowbench_jobs.json"),
        description="The committed GX expectation suite (flowsentry write-suite).",
    )
    augmented: Path = Path("data/augmented")
    models: Path = Path("models/candidates")
    checkpoints: Path = Path("models/checkpoints/sft")
    icl_checkpoints: Path = Path("models/checkpoints/icl")
    sweep: Path = Path("models/sweep")
    icl_model: Path = Path("models/icl")
    lock: Path = Path(".flowsentry.lock")
    labels: Path = Path("labels.csv")
    ingest_report: Path = Field(
        Path("reports/ingest.json"), description="What each jobs table holds (IngestReport)."
    )
    validation_report: Path = Field(
        Path("reports/validation.json"),
        description="Each table against the expectation suite (ValidationReport).",
    )
    prepare_report: Path = Field(
        Path("reports/prepare.json"), description="The splits and the profile (PrepareReport)."
    )
    augment_report: Path = Field(
        Path("reports/augment.json"), description="The augmented training set (AugmentReport)."
    )
    icl_report: Path = Field(
        Path("reports/icl/metrics.json"),
        description="The ICL table and the deployed ICL detector (IclReport).",
    )
    inbox_report: Path = Field(
        Path("reports/inbox.json"), description="The inbox's last sorting (InboxReport)."
    )
    train_report: Path = Field(
        Path("reports/train.json"), description="The train stage's report (TrainReport)."
    )
    evaluate_report: Path = Field(
        Path("reports/evaluate/metrics.json"),
        description="The evaluate stage's report (EvaluationReport): every candidate's metrics.",
    )
    gate_report: Path = Field(
        Path("reports/gate.json"), description="The gate's ranking and decision (GateReport)."
    )
    package_report: Path = Field(
        Path("reports/package.json"), description="The Bento the package stage built."
    )

    def split(self, name: str) -> Path:
        """The prepared split `name` (train, val or test)."""
        return self.prepared / f"{name}.parquet"

    @property
    def profile(self) -> Path:
        """The training split's evidence profile (normal medians, decile edges)."""
        return self.prepared / "profile.json"

    def dag(self, workflow: str) -> Path:
        """The versioned copy of a workflow's DAG (Flow-Bench adjacency list)."""
        from flowsentry.data.flowbench import DAG_FOLDER

        return self.raw / DAG_FOLDER / f"{workflow}.json"

    def under(self, root: str | Path) -> Paths:
        """The same locations as seen from outside `root` (a project or a workspace
        folder). Absolute paths stay as they are."""
        root = Path(root)
        return self.model_copy(
            update={name: root / value for name, value in self if not Path(value).is_absolute()}
        )


class TextSource(_Section):
    """A CSV in the paper's public text format (`text,label`)."""

    path: Path = Field(description="The CSV file (columns text,label).")
    workflow: str = Field(description="The workflow its jobs are reported under.")


class StampedeSource(_Section):
    """A Pegasus stampede database (what pegasus-monitord writes): one table of runs."""

    url: str = Field(
        description="SQLAlchemy URL: sqlite:///path/x.stampede.db, mysql+pymysql://..., "
        "postgresql+psycopg://...; ${VAR} is read from the environment (passwords)."
    )
    name: str | None = Field(
        None, description="The table's name (pegasus_<name>); default: the database's name."
    )
    workflow: str | None = Field(
        None, description="The workflow every run belongs to; default: each run's dax_label."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @property
    def table(self) -> str:
        """The jobs table this source fills."""
        if self.name is not None:
            return f"pegasus_{self.name}"
        database = self.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        stem = database.removesuffix(".db").removesuffix(".stampede") or "stampede"
        return "pegasus_" + re.sub(r"[^A-Za-z0-9_.-]", "_", stem)

    @field_validator("name", "workflow")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _WORKFLOW_NAME.match(value):
            raise ValueError(f"'{value}' is not a name (letters, digits, _ . -)")
        return value


class IngestParams(_Section):
    workflows: tuple[str, ...] = ("1000genome",)
    source_url: str = "https://github.com/PoSeiDon-Workflows/FlowBench/raw/main/data"
    text_sources: tuple[TextSource, ...] = ()
    stampede: tuple[StampedeSource, ...] = Field(
        (), description="Pegasus stampede databases; their runs carry no labels."
    )
    live: tuple[str, ...] = Field(
        (),
        description="Pegasus workflows whose runs arrive through the inbox only "
        "(`flowsentry listen` writes each finished run there).",
    )
    unlabelled: tuple[str, ...] = Field(
        (),
        description="Flow-Bench workflows (of `workflows`) read without their labels, as a "
        "new workflow arrives: every job unlabelled until `flowsentry label` marks it.",
    )
    max_runs: int | None = Field(
        None, ge=1, description="Read only N runs of each workflow, spread evenly by name."
    )

    @field_validator("workflows", "live")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _WORKFLOW_NAME.match(name):
                raise ValueError(f"'{name}' is not a workflow name (letters, digits, _ . -)")
        if len(set(value)) != len(value):
            raise ValueError("a workflow is listed twice")
        return value

    @model_validator(mode="after")
    def _some_source(self) -> IngestParams:
        if not (self.workflows or self.text_sources or self.stampede or self.live):
            raise ValueError("name at least one source (workflows, stampede, live, text_sources)")
        stray = set(self.unlabelled) - set(self.workflows)
        if stray:
            raise ValueError(f"unlabelled: '{sorted(stray)[0]}' is not one of `workflows`")
        both = set(self.workflows) & set(self.live)
        if both:
            raise ValueError(f"'{sorted(both)[0]}' is both a Flow-Bench and a live workflow")
        return self


class LimitsParams(_Section):
    """Limits on what a source may hold, far above any real trace (the largest real value
    of each is beside it in params.yaml): over one, one line names the file and the limit.
    Archives are read as streams, so a member that inflates past its limit costs that
    limit in memory, never its whole size."""

    max_file_bytes: int = Field(
        8 * 2**30, ge=1, description="An archive or other input file (real: 7.9 MB)."
    )
    max_member_bytes: int = Field(
        64 * 2**20, ge=1, description="One run's CSV, in an archive or a folder (real: 280 KB)."
    )
    max_rows_per_run: int = Field(100_000, ge=1, description="Jobs in one run (real: 539).")
    max_text_chars: int = Field(
        65_536, ge=1, description="Characters in one text field (real: 4,135, an argv)."
    )


class ValidateParams(_Section):
    max_quarantine_fraction: float = Field(
        0.05, ge=0.0, le=1.0, description="Stop if more than this share of jobs is quarantined."
    )
    max_bad_job_fraction_per_run: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A run with more than this share of its jobs quarantined is quarantined "
        "whole (what is left of it says nothing about its siblings).",
    )
    min_dag_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A Flow-Bench run must hold at least this share of its workflow's DAG jobs "
        "(every real run holds all of them).",
    )


FeatureSet = Literal[
    "paper",
    "extended",
    "context",
    "relative",
    "evidence",
    "evidence_compact",
    "evidence_dag",  # + the job's parents and children in its run (data/dag.py)
    "pegasus",  # what a stampede database records (flowsentry.data.sources)
    "pegasus_compact",
    "monitord",  # what pegasus-monitord's default AMQP events carry
    "monitord_compact",
    "agnostic",  # workflow-agnostic: peers in the run and z-scores to normal (data/peers.py)
    "agnostic_pegasus",  # the same, from what a stampede database records
    "agnostic_monitord",  # the same, from monitord's default events
    "agnostic_compact",  # the agnostic evidence a language model reads (15 features)
]


class TextParams(_Section):
    template: Literal["paper", "compact", "levels"] = Field(
        "levels", description="levels: numbers as deciles on the training split (one token)."
    )
    feature_set: FeatureSet = Field(
        "evidence_compact", description="What the language model's sentence carries."
    )
    tokenizer: str = "minilm"


class SplitParams(_Section):
    method: Literal["random", "by_run", "file"] = Field(
        "by_run",
        description="by_run: whole runs per split (honest); random: jobs (the paper's, leaks).",
    )
    train: float = Field(
        0.8, gt=0.0, lt=1.0, description="Share of runs (by_run) or jobs (random) for training."
    )
    val: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Share for validation: thresholds, early stopping, the gate's ranking.",
    )
    test: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="Share for test: the gate's floors and every reported figure.",
    )
    manifest: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        if self.method == "file" and self.manifest is None:
            raise ValueError("method 'file' needs split.manifest (a CSV run,job,split)")
        return self


class AugmentParams(_Section):
    """Training-set augmentation (the paper's debiasing); evaluation never sees it."""

    prefix_fraction: float = Field(0.25, ge=0.0, le=5.0, description="Prefix copies per job.")
    empty_fraction: float = Field(0.02, ge=0.0, le=1.0, description="Empty/near-empty rows.")
    permute_fraction: float = Field(0.0, ge=0.0, le=5.0, description="Shuffled-order copies.")
    rebalance: bool = False
    realtime_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Copies of jobs with the context they had as they finished (only the "
        "siblings finished before them: what a live service sees), per job.",
    )


class LoraParams(_Section):
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: int = Field(16, ge=1, description="LoRA scaling (alpha / r multiplies the update).")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: tuple[str, ...] = Field(
        ("query", "value"), description="Module names LoRA adapts (BERT attention: query, value)."
    )
    learning_rate: float | None = Field(1e-3, gt=0, description="LoRA's own learning rate.")


class GpuProfile(_Section):
    """What sft training changes on a CUDA GPU (`base.device` auto finding one, or cuda):
    every sample and more epochs, where the CPU budget takes a sample for one epoch."""

    enabled: bool = Field(True, description="Apply this profile when training runs on a CUDA GPU.")
    epochs: float = Field(3.0, gt=0)
    max_train_samples: int | None = Field(None, ge=10, description="None: every row.")


# A detector kind's name: one of the registry's (flowsentry.models.kinds), in its order.
DetectorKind = Literal[tuple(KINDS)]  # type: ignore[valid-type]


class AdaptParams(_Section):
    """A model adapted to one workflow (its labelled runs weigh more; the feature kinds)."""

    workflow: str | None = Field(
        None, description="The workflow operators label (one of ingest's); null: every "
        "workflow's jobs weigh as many as there are.",
    )  # fmt: skip
    share: float = Field(
        0.25, gt=0, lt=1, description="Share of the training weight its labelled jobs carry "
        "together; every other workflow weighs the same.",
    )  # fmt: skip


class HybridParams(_Section):
    """The hybrid kind's stacking (flowsentry.models.hybrid): trees learn from scores an
    encoder gave rows of runs it was not fine-tuned on."""

    folds: int = Field(2, ge=2, le=10, description="Folds of whole training runs.")
    fold_samples: int = Field(
        3000, ge=10, description="Rows each fold's encoder is fine-tuned on (stratified)."
    )
    stack_samples: int = Field(
        12000, ge=100, description="Rows the trees learn from, out-of-fold scores included."
    )


class TrainParams(_Section):
    candidates: tuple[DetectorKind, ...] = Field(
        ("sft", "gradient_boosting", "random_forest", "isolation_forest"),
        description="Detector kinds trained and entered in the gate's tournament.",
    )
    model: str = Field("minilm", description="Alias, Hugging Face id or local path.")
    mode: Literal["full", "lora", "head"] = "full"
    adapt: AdaptParams = Field(
        default_factory=AdaptParams,
        description="Adapt the supervised feature kinds to one workflow (gate.workflow then "
        "judges them, and the champion, on that workflow's labelled runs).",
    )
    hybrid: HybridParams = Field(
        default_factory=HybridParams,
        description="The hybrid kind: trees over the evidence and the encoder's out-of-fold score.",
    )
    profile: Literal["labelled", "all"] = Field(
        "labelled",
        description="The evidence profile (what normal looks like, fitted in prepare): "
        "labelled = the normal jobs of the training runs; all = every job of the training "
        "runs and of the runs nobody labelled, labels unread (a workflow with no labels: "
        "docs/how-to/new-workflow.md).",
    )
    features: FeatureSet = Field(
        "evidence", description="What the feature detectors (trees, isolation forest) read."
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the (sampled) training rows.")
    batch_size: int = Field(32, ge=1, description="Rows per training step.")
    learning_rate: float = Field(
        2e-4, gt=0, description="Peak learning rate (AdamW, linear warm-up and decay)."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_fraction: float = Field(
        0.06, ge=0, lt=1, description="Share of the steps spent warming the learning rate up."
    )
    max_length: int = Field(
        128, ge=8, description="Tokens kept per sentence (longer ones are cut)."
    )
    max_train_samples: int | None = Field(12000, ge=10)
    max_val_samples: int | None = Field(
        1000,
        ge=10,
        description="Validation rows scored for early stopping (stratified); None: all.",
    )
    early_stopping_patience: int = Field(
        1,
        ge=0,
        description="Evaluations without improvement before training stops.",
    )
    threshold: float | Literal["auto"] = "auto"
    int8: Literal["auto", "on", "off"] = Field(
        "auto",
        description="The language model's ONNX artifact (what evaluate, gate and the service "
        "run): auto = static int8 where it scores validation faster with no F1 loss beyond "
        "int8_max_f1_loss, else float32; on / off force it.",
    )
    int8_max_f1_loss: float = Field(
        0.005,
        ge=0,
        le=1,
        description="With int8 auto: the most validation F1 the int8 file may lose against "
        "float32 and still be the one used.",
    )
    lora: LoraParams = Field(LoraParams(), description="LoRA settings for mode lora.")
    gpu: GpuProfile = GpuProfile()

    def on(self, device: str) -> TrainParams:
        """These settings as they apply on `device` (the GPU profile on cuda)."""
        if device != "cuda" or not self.gpu.enabled:
            return self
        g = self.gpu
        return self.model_copy(
            update={"epochs": g.epochs, "max_train_samples": g.max_train_samples}
        )

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one detector kind")
        if len(set(value)) != len(value):
            raise ValueError("a kind is listed twice")
        return value


class EvaluateParams(_Section):
    online_max_jobs: int | None = Field(
        300, ge=10, description="Test jobs scored at every prefix length and in real time."
    )
    max_jobs: int | None = Field(
        None,
        ge=10,
        description="Score at most N stratified jobs of val and of test (the same for every "
        "candidate); None: all. For slow kinds (icl) on a CPU.",
    )
    latency_calls: int = Field(
        100,
        ge=1,
        description="Test jobs scored one at a time, input building included, for the "
        "latency p50 / p99 the gate checks against gate.max_p99_latency_ms.",
    )


class ICLLoraParams(_Section):
    enabled: bool = Field(
        True,
        description="Fine-tune the decoder with LoRA on prompts before scoring "
        "(the ICL+LoRA study).",
    )
    examples: Literal["balanced", "negative", "positive", "random", "nearest"] = Field(
        "nearest", description="Examples in the training prompts (a job never sees itself)."
    )
    n_examples: int = Field(
        1, ge=0, le=64, description="Examples per training prompt (CPU cost grows with it)."
    )
    train_samples: int = Field(200, ge=10, description="Training prompts (stratified jobs).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training prompts.")
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: int = Field(16, ge=1, description="LoRA scaling (alpha / r multiplies the update).")
    learning_rate: float = Field(1e-3, gt=0)


class ICLParams(_Section):
    """In-context learning with a decoder LLM (flowsentry.models.in_context)."""

    model: str = Field("smollm2", description="Alias, Hugging Face causal LM id or path.")
    template: Literal["paper", "compact"] = Field(
        "compact", description="The prompt's sentence template."
    )
    feature_set: FeatureSet = Field(
        "evidence_compact",
        description="Which measures the prompt's sentences carry (paper: the paper's nine).",
    )
    statistics: bool = True
    examples: Literal["balanced", "negative", "positive", "random", "nearest"] = Field(
        "nearest", description="Examples in the deployed detector's prompts."
    )
    n_examples: int = Field(4, ge=0, le=64)
    curve: tuple[int, ...] = (0, 1, 2, 4, 6, 8, 10)
    sample: int = Field(100, ge=10, description="Stratified test jobs per configuration.")
    max_prompt_tokens: int = Field(2048, ge=64)
    batch_size: int = Field(8, ge=1, description="Prompts scored per forward pass.")
    lora: ICLLoraParams = Field(ICLLoraParams(), description="LoRA fine-tuning of the decoder.")


class GateParams(_Section):
    """Promotion floors and the margin over the champion (see registry/promotion.py)."""

    primary_metric: Literal["f1", "accuracy", "roc_auc", "pr_auc"] = Field(
        "f1", description="The validation metric candidates are ranked by."
    )
    rank_on: Literal["post_run", "real_time"] = Field(
        "post_run",
        description="Which validation figure ranks the candidates: post_run (each job with "
        "its whole run as context) or real_time (each job as the service sees it live: only "
        "the siblings finished before it; evaluate.online_max_jobs stratified jobs). The "
        "floors and the champion are judged post-run either way.",
    )
    min_f1: float = Field(0.7, ge=0, le=1, description="The candidate's test F1 must reach this.")
    min_roc_auc: float = Field(
        0.85, ge=0, le=1, description="The candidate's test ROC-AUC must reach this."
    )
    max_bias_gap: float = Field(0.5, ge=0, le=1)
    max_p99_latency_ms: float = Field(250.0, gt=0)
    min_improvement: float = Field(0.005, ge=0)
    workflow: str | None = Field(
        None, description="Rank, check and compare with the champion on this workflow's "
        "labelled validation and test runs only (a workflow operators are labelling: the "
        "global champion against a model adapted to it); null: on every job.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_focus(self) -> GateParams:
        if self.rank_on == "real_time" and self.workflow is not None:
            raise ValueError(
                "rank_on real_time ranks on every workflow's live validation jobs; "
                "set workflow to null, or rank_on to post_run"
            )
        return self


class ServeParams(_Section):
    """The service's run store (serving/runs.py) and native threads per worker, carried
    into the Bento by `package`."""

    run_store: Literal["none", "memory", "redis"] = Field(
        "memory",
        description="Where the jobs seen of each run are kept: memory (one worker), redis "
        "(shared by workers and replicas), none (context from each request alone).",
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db when run_store is redis (or FLOWSENTRY_REDIS_URL)."
    )
    max_runs: int = Field(2000, ge=1, description="Runs held; the least recently used go.")
    max_jobs_per_run: int = Field(10000, ge=1, description="Jobs held a run; later ones not kept.")
    run_idle_seconds: float = Field(21600.0, gt=0, description="A run untouched this long goes.")
    source: Literal["flowbench", "stampede", "monitord"] = Field(
        "flowbench",
        description="What the service is fed (flowsentry.data.sources): a champion that reads "
        "a measure this source never records is refused at load, in one line.",
    )
    threads_per_worker: int | None = Field(
        1,
        ge=1,
        description="Native (OpenMP, BLAS, torch) threads in each worker process, set where "
        "it starts (serving/threads.py): the service scales with workers, not threads, and "
        "wide thread pools of processes sharing a host spin against each other. None: the "
        "libraries' defaults (one per core); FLOWSENTRY_THREADS_PER_WORKER overrides.",
    )

    @field_validator("threads_per_worker", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        # `bentoml serve --arg threads_per_worker=none`: Bento arguments arrive as text.
        if isinstance(value, str) and value.strip().lower() in ("none", "null"):
            return None
        return value


class ListenParams(_Section):
    """`flowsentry listen`: pegasus-monitord's events from RabbitMQ -> scores and alerts."""

    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/pegasus",
        description="The broker monitord publishes to (amqp://user:pass@host:port/vhost); "
        "${VAR} is read from the environment (passwords).",
    )
    exchange: str = Field("pegasus-events", description="monitord's topic exchange.")
    queue: str = Field(
        "flowsentry",
        description="The listener's own durable queue (quorum: survives a "
        "broker restart with the messages in it).",
    )
    model: str | None = Field(
        None,
        description="Scores monitord's default events: a registry tag or model folder whose "
        "features those events carry (train.features=monitord); None: the champion.",
    )
    model_full: str | None = Field(
        None,
        description="Scores the full event stream (pegasus.catalog.workflow.events = "
        "stampede.*): a model trained on what a stampede database records "
        "(train.features=pegasus); None: `model` scores both.",
    )
    output: Path = Field(Path("live"), description="results.jsonl, alerts.jsonl, state.db.")
    inbox: Path = Field(Path("inbox"), description="Each ended run goes here, unlabelled.")
    webhook: str | None = Field(None, description="POST each alert (JSON) to this URL.")
    prefect_events: bool = Field(True, description="Emit each alert as a Prefect event.")
    batch_size: int = Field(500, ge=1, le=65535, description="Messages per batch (prefetch).")
    batch_seconds: float = Field(0.05, gt=0, description="A partial batch waits this long.")
    run_idle_seconds: float = Field(
        21600.0,
        gt=0,
        description="A run of monitord's default events (which announce no run's end) is "
        "closed after this long without one: more than its longest job.",
    )
    forget_after_days: float = Field(7.0, gt=0, description="Ended runs remembered this long.")
    max_message_bytes: int = Field(1 << 20, ge=1024, description="Larger messages set aside.")


class SweepParams(_Section):
    """Candidates trained in parallel on a Dask cluster (flowsentry.prefect_flows.sweep)."""

    workflows: tuple[str, ...] = ("1000genome",)
    models: tuple[str, ...] = Field(
        ("minilm",),
        description="Encoders the sweep fine-tunes (aliases, Hugging Face ids or paths).",
    )
    modes: tuple[Literal["full", "lora", "head"], ...] = Field(
        ("full", "lora", "head"), description="Fine-tuning modes tried for each model."
    )
    max_train_samples: int | None = Field(2000, ge=10, description="Per candidate.")
    address: str | None = Field(
        None, description="A running Dask scheduler (tcp://host:8786); None: a local cluster."
    )
    n_workers: int = Field(2, ge=1, description="Workers of the local cluster.")
    threads_per_worker: int = Field(
        1, ge=1, description="Threads per Dask worker of the local cluster."
    )

    @field_validator("workflows", "models", "modes")
    @classmethod
    def _not_empty(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if not value:
            raise ValueError("needs at least one entry")
        return value


class NewWorkflowLanguageModels(_Section):
    """The fine-tuned encoder and ICL held out the same way (CPU: minutes a workflow)."""

    workflows: tuple[str, ...] = Field(
        ("1000genome", "montage"),
        description="Held out in turn (each one of new_workflow.workflows); [] skips them.",
    )
    labelled_runs: tuple[int, ...] = Field(
        (0, 2, 10), description="k: labelled training runs of the held-out workflow added."
    )
    draws: int = Field(1, ge=1, description="Random draws of the k runs for each k > 0.")
    feature_set: FeatureSet = Field(
        "agnostic_compact", description="What the sentence carries (compact template)."
    )
    max_train_samples: int = Field(
        2000, ge=10, description="sft: training rows drawn in proportion to their weight "
        "(the fine-tune takes no weights)."
    )  # fmt: skip
    test_jobs: int = Field(
        150, ge=10, description="Stratified test jobs every kind of this study is scored on "
        "(ICL reads ~1 job a second on a 2-core CPU)."
    )  # fmt: skip
    icl_examples: int = Field(
        4, ge=0, description="ICL: nearest examples a prompt holds, drawn from the k labelled "
        "runs' jobs (from the other workflows' when k = 0); 0 = zero-shot."
    )  # fmt: skip


class NewWorkflowParams(_Section):
    """The leave-one-workflow-out study (pipelines/new_workflow; flowsentry.new_workflow)."""

    workflows: tuple[str, ...] = Field(
        FLOWBENCH_WORKFLOWS,
        description="Each is held out in turn; the others are what the detectors learn from.",
    )
    labelled_runs: tuple[int, ...] = Field(
        (0, 1, 2, 5, 10),
        description="k: labelled training runs of the held-out workflow added (the curve).",
    )
    draws: int = Field(3, ge=1, description="Random draws of the k runs for each k > 0.")
    kinds: tuple[DetectorKind, ...] = Field(
        ("gradient_boosting", "isolation_forest", "ecod", "copod", "hbos"),
        description="Feature detectors compared (supervised ones learn from the other "
        "workflows; unsupervised ones from the held-out workflow's unlabelled runs).",
    )
    features: FeatureSet = Field(
        "agnostic", description="What the detectors read (workflow-agnostic by default)."
    )
    runs_per_workflow: int | None = Field(
        60, ge=1, description="Training (and validation) runs sampled from each other "
        "workflow (CPU budget); null: all.",
    )  # fmt: skip
    target_share: float = Field(
        0.25, gt=0, lt=1,
        description="Share of the training weight the k labelled runs of the held-out "
        "workflow carry together (each other workflow weighs the same).",
    )  # fmt: skip
    alert_rate: float = Field(
        0.2, gt=0, lt=1,
        description="The label-free threshold: the score above which this share of the "
        "workflow's own (unlabelled) training jobs lies.",
    )  # fmt: skip
    language_models: NewWorkflowLanguageModels = Field(
        default_factory=NewWorkflowLanguageModels,
        description="The fine-tuned encoder and ICL in the same protocol.",
    )

    @field_validator("workflows")
    @classmethod
    def _two_workflows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) < 2 or len(set(value)) != len(value):
            raise ValueError("needs at least two distinct workflows")
        return value

    @field_validator("kinds")
    @classmethod
    def _feature_kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        wrong = [k for k in value if KINDS[k].language_model]
        if wrong or not value:
            raise ValueError(f"feature detector kinds only (not {wrong})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _language_models_follow_the_list(cls, data: Any) -> Any:
        """Unset, language_models.workflows is its default's workflows that are listed."""
        if not isinstance(data, dict) or not isinstance(data.get("workflows"), list | tuple):
            return data
        lm = data.get("language_models")
        lm = {} if lm is None else lm
        if isinstance(lm, dict) and "workflows" not in lm:
            default = NewWorkflowLanguageModels.model_fields["workflows"].default
            listed = [w for w in default if w in data["workflows"]]
            data = {**data, "language_models": {**lm, "workflows": listed}}
        return data

    @model_validator(mode="after")
    def _language_models_held_out_from_the_list(self) -> NewWorkflowParams:
        unknown = [w for w in self.language_models.workflows if w not in self.workflows]
        if unknown:
            raise ValueError(f"language_models.workflows: {unknown} not in new_workflow.workflows")
        return self


class Config(_Section):
    base: BaseParams = BaseParams()
    paths: Paths = Paths()
    ingest: IngestParams = IngestParams()
    limits: LimitsParams = LimitsParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    text: TextParams = TextParams()
    split: SplitParams = SplitParams()
    augment: AugmentParams = AugmentParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    gate: GateParams = GateParams()
    serve: ServeParams = ServeParams()
    icl: ICLParams = ICLParams()
    sweep: SweepParams = SweepParams()
    listen: ListenParams = ListenParams()
    new_workflow: NewWorkflowParams = NewWorkflowParams()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def under(self, root: str | Path) -> Config:
        """This config with its paths inside `root` (see `Paths.under`)."""
        return self.model_copy(update={"paths": self.paths.under(root)})


def load_config(
    path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None
) -> Config:
    """Read params.yaml once into a `Config`; `overrides` maps dotted keys to values."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the project root or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return config_from_dict(raw, source=str(path))


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`KEY=VALUE` strings (YAML values) -> {dotted key: value}, as `--set` takes them."""
    parsed: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. split.method=by_run")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item}: the value is not valid YAML ({exc})") from None
    return parsed


def config_from_dict(raw: dict[str, Any], source: str = "params") -> Config:
    """Validate a params mapping; errors name the dotted key."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {key}: {message}{more}") from None


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: '{key}' is not a section")
    node[leaf] = value
