"""Gate: the tournament. The best candidate on validation, of any kind, is checked
against the floors on test and against the champion re-scored on the same test jobs;
it is promoted only if it passes every check."""

from __future__ import annotations

import logging
from typing import Any

from flowsentry.config import Config
from flowsentry.data.sources import missing_measures
from flowsentry.errors import DataError
from flowsentry.evaluation.metrics import binary_metrics
from flowsentry.models.detector import read_metadata
from flowsentry.models.loading import load_detector
from flowsentry.registry import store
from flowsentry.registry.promotion import decide, rank
from flowsentry.reports import (
    Champion,
    EvaluatedCandidate,
    EvaluationReport,
    GateCandidate,
    GateReport,
    Metrics,
    RankedCandidate,
)

log = logging.getLogger(__name__)

GATE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")


def read_evaluation(cfg: Config) -> EvaluationReport | None:
    """The evaluate stage's report, or None when it is missing, broken or names no
    candidate."""
    try:
        report = EvaluationReport.read(cfg.paths)
    except DataError as exc:
        log.warning("no usable evaluation (%s): no candidate can promote", exc)
        return None
    if not report.candidates:
        log.warning("%s: no candidate evaluated: none can promote", cfg.paths.evaluate_report)
        return None
    return report


def figures(metrics: Metrics | None) -> dict[str, Any] | None:
    return None if metrics is None else metrics.model_dump()


def ranking_figures(
    entry: EvaluatedCandidate, workflow: str | None, rank_on: str = "post_run"
) -> dict[str, Any] | None:
    """The validation figures a candidate is ranked by: post-run (on `workflow`'s jobs
    when one is named) or scored live (`real_time`; None where evaluate did not)."""
    if rank_on == "real_time":
        return None if entry.realtime is None else entry.realtime.val.model_dump()
    return figures(entry.val.on(workflow))


def gate_metrics(entry: EvaluatedCandidate, workflow: str | None = None) -> dict[str, Any] | None:
    """A candidate's test metrics as the gate's floors read them (on `workflow`'s jobs
    when one is named; bias and latency are the detector's, on every job)."""
    judged = entry.test.on(workflow)
    if judged is None:
        return None
    bias = entry.test.bias
    metrics: dict[str, Any] = {k: getattr(judged, k) for k in GATE_METRICS}
    metrics["bias_gap"] = bias.mean_gap if bias else None
    metrics["p99_latency_ms"] = entry.test.latency_ms.p99
    if bias is None:
        metrics["not_applicable"] = ["bias_gap"]  # scores are not probabilities
    return metrics


def champion_metrics(cfg: Config, tag: str) -> dict[str, Any]:
    """Score the champion on the current test jobs (the same jobs as the candidates:
    `gate.workflow`'s alone when one is named)."""
    from flowsentry.stages.evaluate import evaluation_splits

    _, test = evaluation_splits(cfg)
    if cfg.gate.workflow is not None:
        test = test[test["workflow"] == cfg.gate.workflow]
    champion = load_detector(store.get(tag).path, device=cfg.base.device)
    scores = champion.score(test)
    return binary_metrics(test["label"].astype(int).to_numpy(), scores, champion.threshold_)


def _features(folder) -> list[str]:
    return list(read_metadata(folder).get("features") or [])


def run(cfg: Config) -> GateReport:
    """Write the GateReport (`paths.gate_report`); register and promote the winner when
    it passes."""
    rules = cfg.gate
    primary = rules.primary_metric
    focus = rules.workflow
    report = read_evaluation(cfg)
    entries = dict(report.candidates) if report else {}
    val_of = {k: ranking_figures(e, focus, rules.rank_on) for k, e in entries.items()}
    note = None
    if focus is not None and entries and not any(val_of.values()):
        # nothing of it to judge on yet: no decision rests on another workflow's jobs
        note = f"gate.workflow '{focus}' has no labelled validation jobs: nothing promotes"
        log.warning(note)
        entries, val_of = {}, {}
    ranking = rank(val_of, primary) if entries else []
    best = ranking[0] if ranking else None
    candidate = gate_metrics(entries[best], focus) if best else None
    current = store.champion_tag()
    source = cfg.serve.source
    unrecorded = missing_measures(source, _features(cfg.paths.models / best)) if best else []
    if focus is not None and best and candidate is None:
        note = f"gate.workflow '{focus}' has no labelled test jobs: nothing promotes"
        log.warning(note)
    if current and missing_measures(source, _features(store.get(current).path)):
        # a champion this site's service could not load is no bar to beat
        note = f"{current} reads measures a '{source}' source never records: not compared"
        log.info(note)
        champion = None
    else:
        champion = champion_metrics(cfg, current) if current and candidate else None
    decision = decide(candidate, champion, rules, unrecorded, source)

    rows: list[RankedCandidate] = []
    for position, name in enumerate(ranking, start=1):
        entry = entries[name]
        val_value = (val_of[name] or {}).get(primary)
        if name == best:
            why = "best on validation; " + (
                "promoted" if decision["promote"] else "rejected by the checks below"
            )
        else:
            why = (
                f"lost on validation{' (real time)' if rules.rank_on == 'real_time' else ''}: "
                f"{primary} {val_value} < {val_of[best][primary]} ({best})"
            )
        val, test = entry.val.on(focus), entry.test.on(focus)
        rows.append(
            RankedCandidate(
                candidate=name,
                kind=entry.kind,
                rank=position,
                val={k: getattr(val, k, None) for k in GATE_METRICS},
                test={k: getattr(test, k, None) for k in GATE_METRICS},
                # the same candidate scored live (only the siblings finished before each job)
                realtime=entry.realtime,
                why=why,
            )
        )
    promoted_tag = None
    if decision["promote"] and best:
        metrics = {k: v for k, v in (candidate or {}).items() if k != "not_applicable"}
        promoted_tag = store.register(cfg.paths.models / best, metrics, cfg.model_dump(mode="json"))
        store.promote(promoted_tag)
        log.info("promoted %s, a %s detector (previous champion: %s)", promoted_tag, best, current)
    else:
        failed = [c["check"] for c in decision["checks"] if c["verdict"] == "fail"]
        log.info("%s rejected: %s", best, ", ".join(failed))
    result = GateReport(
        decision="promote" if promoted_tag else "reject",
        primary_metric=primary,
        rank_on=rules.rank_on,
        workflow=focus,
        split=report.split if report else None,
        winner=best,
        checks=decision["checks"],
        candidates=rows,
        candidate=GateCandidate(
            name=best,
            model_dir=str(cfg.paths.models / best) if best else None,
            metrics=candidate,
        ),
        champion=Champion(tag=current, metrics=champion, note=note),
        promoted_tag=promoted_tag,
    )
    result.write(cfg.paths)
    return result
