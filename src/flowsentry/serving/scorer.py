"""The job scorer behind the service: scores job records with the champion, hot-swaps it
on promotion.

At start it serves the registry's champion (or the model it was given when there is
no pointer, as inside a Bento). A request costs one `stat` of the champion pointer;
only when the file changed is it read, and a new champion is loaded on a background
thread while requests go on with the current one, then swapped in at once. Kept free
of BentoML so it can be tested in-process; service.py only wires it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from flowsentry.data.context import derived_columns
from flowsentry.data.sources import measures_read, missing_measures, scorable_sources
from flowsentry.errors import FlowsentryError
from flowsentry.models import kinds
from flowsentry.models.detector import Detector
from flowsentry.models.loading import load_detector
from flowsentry.registry import store
from flowsentry.serving.runs import RunStore, storable
from flowsentry.serving.schemas import JobScore, ModelInfo, PartialScore

log = logging.getLogger(__name__)


class UnknownWorkflow(ValueError):
    """A request names a workflow the model was not trained on."""


class NotExplainable(ValueError):
    """explain was asked of a model that cannot reason in words (a fine-tuned encoder)."""


def check_source(tag: str, detector: Detector, source: str) -> None:
    """Refuse (one line) a model that reads measures `source` never records: it would
    judge every job with those measures unknown, which it was never trained to do."""
    missing = missing_measures(source, detector.features)
    if missing:
        fits = scorable_sources(detector.features)
        raise FlowsentryError(
            f"{tag} reads {', '.join(missing)}, which a '{source}' source never records: "
            f"it can score {', '.join(fits)} records only; serve a model trained with "
            f"train.features={'monitord' if source == 'monitord' else 'pegasus'} "
            "(or set serve.source to what clients really send)"
        )


class JobScorer:
    """Scores job records with the current champion; see the module docstring."""

    def __init__(
        self,
        tag: str,
        path: str | Path,
        loader: Callable[[Path], Detector] | None = None,
        follow_champion: bool = True,
        confident_band: float = 0.4,
        runs: RunStore | None = None,
        source: str = "flowbench",
    ) -> None:
        self._loader = loader or load_detector
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None  # the pointer file last read
        self.loading: threading.Thread | None = None
        self.follow_champion = follow_champion
        self.confident_band = confident_band
        self.runs = runs
        self.source = source
        if follow_champion:
            self._stamp = self._pointer_stamp()
            champion = store.champion_tag()
            if champion and champion != tag:
                log.info("the registry's champion is %s (asked for %s): serving it", champion, tag)
                tag, path = champion, store.get(champion).path
        # One tuple, replaced whole: a request never sees a tag with another's model.
        detector = self._loader(Path(path))
        check_source(tag, detector, source)
        self._serving: tuple[str, Detector] = (tag, detector)
        log.info("serving %s (%s records)", tag, source)

    @property
    def tag(self) -> str:
        return self._serving[0]

    @property
    def detector(self) -> Detector:
        return self._serving[1]

    @staticmethod
    def _pointer_stamp() -> tuple[int, int, int] | None:
        try:
            stat = store.pointer_path().stat()
        except FileNotFoundError:
            return None
        # The pointer is replaced by rename: a new inode even within one mtime tick.
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _current(self) -> tuple[str, Detector]:
        """The model to answer with now; starts loading a new champion when the
        registry's pointer changed (promote, rollback) and answers with the current one."""
        if self.follow_champion and self._pointer_stamp() != self._stamp:
            with self._lock:
                stamp = self._pointer_stamp()
                busy = self.loading is not None and self.loading.is_alive()
                if stamp != self._stamp and not busy:
                    self._stamp = stamp
                    champion = store.champion_tag()
                    if champion and champion != self.tag:
                        self.loading = threading.Thread(
                            target=self._swap, args=(champion,), name="load-champion", daemon=True
                        )
                        self.loading.start()
        return self._serving

    def _swap(self, champion: str) -> None:
        """Load `champion` (off the request threads) and serve it from then on."""
        try:
            detector = self._loader(Path(store.get(champion).path))
            check_source(champion, detector, self.source)
        except FlowsentryError as exc:
            log.error("not serving champion %s: %s; still serving %s", champion, exc, self.tag)
            return
        except Exception:  # a broken model must not take the service down
            log.exception("could not load champion %s; still serving %s", champion, self.tag)
            return
        log.info("champion changed: %s -> %s", self.tag, champion)
        self._serving = (champion, detector)

    def wait_loaded(self, timeout: float | None = None) -> None:
        """Block until a champion being loaded is served (tests, benchmarks)."""
        if self.loading is not None:
            self.loading.join(timeout)

    def _frame(self, jobs: Sequence[BaseModel], detector: Detector) -> pd.DataFrame:
        known = set(detector.metadata.get("workflows") or [])
        rows = []
        for job in jobs:
            record = job.model_dump(exclude_none=True)
            if known and record.get("workflow") and record["workflow"] not in known:
                raise UnknownWorkflow(
                    f"workflow: '{record['workflow']}' is not one this model was trained on "
                    f"({sorted(known)})"
                )
            # Jobs without a run id get no siblings: never share context across requests.
            record.setdefault("run", f"_single-{uuid.uuid4().hex}")
            rows.append(record)
        frame = pd.DataFrame(rows)
        for column in ("workflow", "task", "kickstart_hostname"):
            if column not in frame:
                frame[column] = pd.NA
        return frame

    def _with_siblings(self, frame: pd.DataFrame, detector: Detector) -> pd.DataFrame:
        """`frame` with its context and evidence computed among every job the run store
        holds of its runs (the request's jobs stored first). Unchanged without a store
        (the detector then computes them among the request's jobs alone)."""
        if self.runs is None:
            return frame
        keyed = frame["run"].notna() & ~frame["run"].astype(str).str.startswith("_single-")
        keyed &= frame["job"].notna() if "job" in frame else False
        if not keyed.any():
            return frame
        siblings = []
        for (workflow, run), part in frame[keyed].groupby(
            [frame["workflow"].fillna(""), frame["run"]], sort=False
        ):
            records = [storable(r) for r in part.to_dict("records")]
            sent = set(part["job"].astype(str))
            siblings += [
                r for r in self.runs.merge(str(workflow), str(run), records)
                if str(r.get("job")) not in sent
            ]  # fmt: skip
        if not siblings:
            return frame
        together = pd.concat([frame, pd.DataFrame(siblings)], ignore_index=True)
        return detector.frame(together).iloc[: len(frame)].reset_index(drop=True)

    def classify(self, jobs: Sequence[BaseModel]) -> list[JobScore]:
        tag, detector = self._current()
        frame = self._with_siblings(self._frame(jobs, detector), detector)
        scores = detector.score(frame)
        return [
            self._score(job, float(s), tag, detector) for job, s in zip(jobs, scores, strict=True)
        ]

    def classify_partial(self, job: BaseModel) -> PartialScore:
        tag, detector = self._current()
        frame = self._with_siblings(self._frame([job], detector), detector)
        known = set(job.model_dump(exclude_none=True))
        known |= derived_columns(known)  # context and evidence of the measures known
        k = 0
        for name in detector.features:  # the leading features known so far
            if name not in known:
                break
            k += 1
        score = float(detector.score(frame, k=k)[0])
        base = self._score(job, score, tag, detector).model_dump()
        confident = abs(score - detector.threshold_) >= self.confident_band * max(
            detector.threshold_, 1 - detector.threshold_
        )
        if k == 0:  # nothing known: say so rather than guess from the threshold
            base["label"], confident = "unknown", False
        return PartialScore(**base, known_features=k, confident=confident)

    def _score(self, job: BaseModel, score: float, tag: str, detector) -> JobScore:
        return JobScore(
            workflow=getattr(job, "workflow", None),
            run=getattr(job, "run", None),
            job=getattr(job, "job", None),
            score=round(score, 6),
            label="anomalous" if score >= detector.threshold_ else "normal",
            threshold=detector.threshold_,
            model=tag,
        )

    def explain(self, job: BaseModel) -> dict[str, Any]:
        """Chain-of-thought reasoning and category, from a kind the registry marks as
        explaining (the ICL decoder)."""
        tag, detector = self._current()
        kind = detector.metadata.get("kind", "sft")
        if not kinds.get(kind).explains:
            raise NotExplainable(
                f"explain needs an ICL decoder champion; {tag} is a '{kind}' model"
            )
        record = self._frame([job], detector).iloc[0].to_dict()
        return {**detector.explain(record), "model": tag}

    def info(self) -> ModelInfo:
        tag, detector = self._current()
        meta: dict[str, Any] = detector.metadata
        training = meta.get("training", {})
        return ModelInfo(
            tag=tag,
            kind=meta.get("kind", "sft"),
            mode=meta.get("mode"),
            workflows=list(meta.get("workflows", [])),
            template=meta.get("template"),
            features=list(detector.features),
            threshold=detector.threshold_,
            data_version=meta.get("data_version") or {},
            metrics=meta.get("validation") or training.get("val", {}),
            run_store=None if self.runs is None else self.runs.settings(),
            runtime=meta.get("runtime"),
            source=self.source,
            measures_read=sorted(measures_read(detector.features)),
            scorable_sources=scorable_sources(detector.features),
        )
