"""The promotion gate: the best candidate on validation, floors on test, then a margin
over the champion on the same test jobs. Pure logic."""

from __future__ import annotations

from typing import Any

from flowsentry.config import GateParams


def rank(val_metrics: dict[str, dict[str, Any] | None], metric: str) -> list[str]:
    """Candidate names, best first by `metric` on validation; a candidate without the
    metric comes last; ties keep the candidates' order."""
    names = list(val_metrics)

    def key(name: str) -> tuple[int, float, int]:
        value = (val_metrics[name] or {}).get(metric)
        return (value is None, -(value or 0.0), names.index(name))

    return sorted(names, key=key)


def _check(name: str, value: Any, threshold: Any, ok: bool, note: str = "") -> dict[str, Any]:
    return {
        "check": name,
        "value": value,
        "threshold": threshold,
        "verdict": "pass" if ok else "fail",
        "note": note,
    }


def decide(
    candidate: dict[str, Any] | None,
    champion: dict[str, Any] | None,
    rules: GateParams,
    unrecorded: list[str] | None = None,
    source: str = "flowbench",
) -> dict[str, Any]:
    """Promote only if every floor holds and the candidate beats the champion.

    `candidate` / `champion` hold test metrics on the same split: accuracy, f1,
    roc_auc, ..., plus `bias_gap` and `p99_latency_ms` for the candidate (a metric named
    in the candidate's `not_applicable` passes, e.g. the bias gap of a detector whose
    scores are not probabilities). A missing candidate never promotes; with no
    champion, passing the floors is enough. `unrecorded`: the measures the candidate
    reads that the service's `source` never records (it could not be served: never
    promote).
    """
    if not candidate:
        checks = [
            _check(
                "evaluation_present",
                None,
                "metrics.json",
                False,
                "no evaluation of the candidate: never promote",
            )
        ]
        return {"promote": False, "checks": checks}
    checks = []

    def floor(name: str, key: str, threshold: float, higher_is_better: bool) -> None:
        value = candidate.get(key)
        if value is None and key in candidate.get("not_applicable", ()):
            checks.append(_check(name, None, threshold, True, "not applicable to this kind"))
            return
        if value is None:
            checks.append(_check(name, None, threshold, False, f"'{key}' missing"))
            return
        ok = value >= threshold if higher_is_better else value <= threshold
        checks.append(_check(name, value, threshold, ok))

    floor("min_f1", "f1", rules.min_f1, True)
    floor("min_roc_auc", "roc_auc", rules.min_roc_auc, True)
    floor("max_bias_gap", "bias_gap", rules.max_bias_gap, False)
    floor("max_p99_latency_ms", "p99_latency_ms", rules.max_p99_latency_ms, False)
    checks.append(
        _check(
            "servable_from_source",
            sorted(unrecorded or []),
            source,
            not unrecorded,
            f"reads measures a '{source}' source never records (serve.source)"
            if unrecorded
            else f"every measure it reads is in '{source}' records",
        )
    )

    primary = rules.primary_metric
    if champion is None:
        checks.append(
            _check(
                "beats_champion",
                candidate.get(primary),
                None,
                True,
                "no champion yet: the first model that passes the floors promotes",
            )
        )
    else:
        ours, theirs = candidate.get(primary), champion.get(primary)
        if ours is None or theirs is None:
            checks.append(
                _check(
                    "beats_champion",
                    ours,
                    theirs,
                    False,
                    f"'{primary}' missing for candidate or champion",
                )
            )
        else:
            margin = round(ours - theirs, 6)
            checks.append(
                _check(
                    "beats_champion",
                    margin,
                    rules.min_improvement,
                    margin >= rules.min_improvement,
                    f"{primary}: candidate {ours} vs champion {theirs}",
                )
            )
    return {"promote": all(c["verdict"] == "pass" for c in checks), "checks": checks}
