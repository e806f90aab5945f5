"""Request and response schemas of the service (pydantic): every field typed and bounded.

A wrong type, NaN or infinity, a negative duration, an unknown field, an empty or
oversized batch: each is a 4xx naming the field and the reason, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowsentry.data import schema

MAX_BATCH = 1024

# strict: a JSON true/false or "12" is not a number, 7 is not a name (the schema's types)
Epoch = Annotated[
    float,
    Field(ge=schema.TIMESTAMP_MIN, le=schema.TIMESTAMP_MAX, allow_inf_nan=False, strict=True),
]
Name = Annotated[str, Field(min_length=1, max_length=200, strict=True)]

EXAMPLE: dict[str, Any] = {
    "workflow": "1000genome",
    "run": "1000genome-run0009",
    "job": "individuals_ID0000047",
    "task": "individuals",
    "kickstart_hostname": "worker1-container-12-15",
    "wms_delay": 6.0,
    "queue_delay": 20.0,
    "runtime": 1022.0,
    "post_script_delay": 5.0,
    "stage_in_delay": 64.0,
    "stage_out_delay": 4.0,
    "stage_in_bytes": 1014283276.0,
    "stage_out_bytes": 387809.0,
    "kickstart_executables_cpu_time": 934.6,
}


def _bounded(top: float) -> Any:
    return Annotated[float, Field(ge=0, le=top, allow_inf_nan=False, strict=True)]


def _fields() -> dict[str, Any]:
    """Each measure bounded as the GX suite bounds it (`schema.UPPER_BOUNDS`): the
    service accepts exactly what validation lets into training."""
    fields: dict[str, Any] = {}
    for name in schema.NON_NEGATIVE:
        fields[name] = (_bounded(schema.UPPER_BOUNDS[name]) | None, None)
    for name in schema.TIMESTAMPS:
        fields[name] = (Epoch | None, None)
    # No precomputed context: the service computes a job's context and evidence itself,
    # among the jobs of its run it has seen (the run store); a request that carries a
    # context column is refused, naming it, like any unknown field.
    return fields


class _JobBase(BaseModel):
    # OpenAPI 3.0's `example` (BentoML's spec builder takes that, not JSON Schema's `examples`).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE})

    workflow: Name | None = None
    run: Name | None = None
    job: Name | None = None
    task: Name | None = None
    kickstart_hostname: Name | None = None


def _build_job_record() -> type[BaseModel]:
    from pydantic import create_model

    return create_model(
        "JobRecord",
        __base__=_JobBase,
        __doc__="One job's raw Flow-Bench fields; send only what is known so far.",
        **_fields(),
    )


JobRecord = _build_job_record()
# What a client sends of a job: its raw fields (the context is the service's to compute).
RAW_FIELDS = tuple(JobRecord.model_fields)


class _Request(BaseModel):
    """A request body: unknown top-level fields are refused too (400 naming them)."""

    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(_Request):
    jobs: Annotated[list[JobRecord], Field(min_length=1, max_length=MAX_BATCH)]  # type: ignore[valid-type]


class JobRequest(_Request):
    job: JobRecord  # type: ignore[valid-type]


class EmptyRequest(_Request):
    pass


class JobScore(BaseModel):
    workflow: str | None
    run: str | None
    job: str | None
    score: float = Field(description="P(anomalous), 0..1")
    label: Literal["normal", "anomalous"]
    threshold: float
    model: str = Field(description="The model tag that produced this score.")


class PartialScore(JobScore):
    label: Literal["normal", "anomalous", "unknown"] = Field(
        description="`unknown` while none of the model's features is known yet."
    )
    known_features: int = Field(description="Leading features of the model's order present.")
    confident: bool = Field(description="Score outside the uncertain band around threshold.")


class Explanation(BaseModel):
    reasoning: str
    category: Literal["Normal", "Abnormal"] | None
    model: str


class ModelInfo(BaseModel):
    tag: str
    kind: str
    mode: str | None = None
    workflows: list[str]
    template: str | None = None
    features: list[str]
    threshold: float
    data_version: dict[str, Any]
    metrics: dict[str, Any]
    run_store: dict[str, Any] | None = None  # kind, bounds, runs held; None: no store
    runtime: dict[str, Any] | None = None  # a language model's ONNX file: int8 or not, why
    source: str = Field("flowbench", description="What this service is fed (serve.source).")
    measures_read: list[str] = Field(
        default_factory=list, description="The recorded measures the model's features need."
    )
    scorable_sources: list[str] = Field(
        default_factory=list, description="Sources whose records carry every one of them."
    )
    threads_per_worker: int | None = Field(
        None, description="Native threads per worker (serve.threads_per_worker); None: unset."
    )
    native_threads: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The worker's native thread pools as a request thread sees them "
        "(threadpoolctl, and torch if loaded): user_api, internal_api, library, num_threads.",
    )
