"""The BentoML service: `bentoml serve flowsentry.serving.service:AnomalyDetector`.

Serves the model named by the Bento argument `model` (given at build time:
`flowsentry package` builds with the champion's tag; `bentoml serve --arg
model=flowsentry-detector:<version>` picks one by hand; by default the newest stored
model) and then follows the registry's champion where a pointer exists (see
`serving/scorer.py`). Endpoints: `classify` (adaptive batching), `classify_partial`
(online detection), `explain` (ICL decoders only) and `metadata`; BentoML adds
/healthz, /readyz and /docs. Jobs are scored with the context of every sibling the run
store holds (serving/runs.py: in memory, or in Redis for several workers; the Bento
arguments from params.yaml `serve`, FLOWSENTRY_REDIS_URL overriding the URL). Importing
this module reads no file.

Each worker process keeps `threads_per_worker` native (OpenMP, BLAS, torch) threads
(params.yaml `serve`, default 1), set when the worker starts, before the model loads
(serving/threads.py says why); FLOWSENTRY_THREADS_PER_WORKER overrides it (a number,
or `none`: the libraries' defaults, one per core). Scale with worker processes instead:
BENTOML_CONFIG_OPTIONS="services.flowsentry.workers=4" (with run_store redis, so
that every worker sees each run's jobs). /metadata shows the setting and the pools.
"""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Annotated

import bentoml
from pydantic import Field

from flowsentry.config import ServeParams
from flowsentry.registry.store import MODEL_NAME
from flowsentry.serving.guard import RequestGuard
from flowsentry.serving.runs import make_run_store
from flowsentry.serving.schemas import (
    MAX_BATCH,
    ClassifyRequest,
    EmptyRequest,
    Explanation,
    JobRecord,
    JobRequest,
    JobScore,
    ModelInfo,
    PartialScore,
)
from flowsentry.serving.scorer import JobScorer, NotExplainable, UnknownWorkflow
from flowsentry.serving.threads import (
    limit_native_threads,
    limit_this_thread,
    native_threads,
    threads_per_worker,
)


class ServiceArguments(ServeParams):
    """Bento arguments (`bentoml build/serve --arg model=...`), kept in the Bento: the
    model, the run store and threads per worker (params.yaml `serve`, set by
    `flowsentry package`)."""

    model: str = Field(f"{MODEL_NAME}:latest", description="The registry tag to serve.")


ARGUMENTS = bentoml.use_arguments(ServiceArguments)


class Conflict(bentoml.exceptions.BentoMLException):
    """409: a valid request the current champion cannot answer (explain without ICL)."""

    error_code = HTTPStatus.CONFLICT


@bentoml.service(name="flowsentry", traffic={"timeout": 30})
class AnomalyDetector:
    model = bentoml.models.BentoModel(ARGUMENTS.model)

    def __init__(self) -> None:
        # In each worker, before any model (and its OpenMP runtime) is loaded.
        limit_native_threads(threads_per_worker(ARGUMENTS.threads_per_worker))
        # A Redis URL with a password belongs in the environment, not in the Bento.
        redis_url = os.environ.get("FLOWSENTRY_REDIS_URL") or ARGUMENTS.redis_url
        runs = make_run_store(
            ARGUMENTS.run_store,
            ARGUMENTS.max_runs,
            ARGUMENTS.max_jobs_per_run,
            ARGUMENTS.run_idle_seconds,
            redis_url,
        )
        self.scorer = JobScorer(
            str(self.model.tag), self.model.path, runs=runs, source=ARGUMENTS.source
        )

    # The batcher sheds load (503) when it predicts missing max_latency_ms: CPU needs room.
    @bentoml.api(
        batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=5000, input_spec=ClassifyRequest
    )
    def classify(
        self,
        jobs: Annotated[list[JobRecord], Field(min_length=1, max_length=MAX_BATCH)],
    ) -> list[JobScore]:
        """Score a batch of job records: per job the score, label, threshold and model."""
        limit_this_thread()
        try:
            return self.scorer.classify(jobs)
        except UnknownWorkflow as exc:
            raise bentoml.exceptions.UnprocessableEntity(str(exc)) from None

    @bentoml.api(input_spec=JobRequest)
    def classify_partial(self, job: JobRecord) -> PartialScore:
        """Online detection: score a job from the fields known so far."""
        limit_this_thread()
        try:
            return self.scorer.classify_partial(job)
        except UnknownWorkflow as exc:
            raise bentoml.exceptions.UnprocessableEntity(str(exc)) from None

    @bentoml.api(input_spec=JobRequest)
    def explain(self, job: JobRecord) -> Explanation:
        """Reasoning plus category; only an in-context-learning decoder can explain."""
        limit_this_thread()
        try:
            result = self.scorer.explain(job)
        except NotExplainable as exc:
            raise Conflict(str(exc)) from None
        except UnknownWorkflow as exc:
            raise bentoml.exceptions.UnprocessableEntity(str(exc)) from None
        return Explanation(
            reasoning=result["reasoning"], category=result["category"], model=result["model"]
        )

    @bentoml.api(route="/metadata", input_spec=EmptyRequest)
    def metadata(self) -> ModelInfo:
        """The serving model: tag, workflows, features, threshold, data version, metrics;
        the worker's native threads."""
        limit_this_thread()
        return self.scorer.info().model_copy(update=native_threads())


AnomalyDetector.add_asgi_middleware(RequestGuard)
