"""Gate: compare the candidate with the champion on the same test split; promote or not."""

from __future__ import annotations

import json
import logging
from typing import Any

from flowsentry.config import Config
from flowsentry.evaluation.metrics import binary_metrics
from flowsentry.io import write_json
from flowsentry.models.loading import load_predictor
from flowsentry.registry import store
from flowsentry.registry.gate import GateRules, decide
from flowsentry.stages.validate import read_table

log = logging.getLogger(__name__)


def candidate_metrics(cfg: Config) -> dict[str, Any] | None:
    """The evaluated candidate's gate metrics, or None when evaluation is missing/broken."""
    path = cfg.paths.reports / "evaluate" / "metrics.json"
    try:
        report = json.loads(path.read_text())
        sft = report["sft"]
        return {
            **{k: sft[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")},
            "bias_gap": sft["bias"]["mean_gap"],
            "p99_latency_ms": sft["latency_ms"]["p99"],
        }
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        log.warning("%s: no usable evaluation (%s): the candidate cannot promote", path, exc)
        return None


def champion_metrics(cfg: Config, tag: str) -> dict[str, Any]:
    """Score the champion on the current test split (the same jobs as the candidate)."""
    test = read_table(cfg.paths.prepared / "test.parquet")
    champion = load_predictor(store.get(tag).path, device=cfg.train.device)
    scores = champion.score(test)
    return binary_metrics(test["label"].astype(int).to_numpy(), scores, champion.threshold)


def run(cfg: Config) -> dict[str, Any]:
    """Write reports/gate.json; register and promote the candidate when it passes."""
    rules = GateRules(**cfg.gate.model_dump())
    candidate = candidate_metrics(cfg)
    current = store.champion_tag()
    champion = champion_metrics(cfg, current) if current and candidate else None
    decision = decide(candidate, champion, rules)
    result: dict[str, Any] = {
        "decision": "promote" if decision["promote"] else "reject",
        "checks": decision["checks"],
        "candidate": {"model_dir": str(cfg.paths.model), "metrics": candidate},
        "champion": {"tag": current, "metrics": champion},
        "promoted_tag": None,
    }
    if decision["promote"]:
        tag = store.register(cfg.paths.model, candidate or {}, cfg.model_dump(mode="json"))
        store.promote(tag)
        result["promoted_tag"] = tag
        log.info("promoted %s (previous champion: %s)", tag, current)
    else:
        failed = [c["check"] for c in decision["checks"] if c["verdict"] == "fail"]
        log.info("candidate rejected: %s", ", ".join(failed))
    write_json(result, cfg.paths.reports / "gate.json")
    return result
