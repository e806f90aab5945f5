"""Run the expectation suite on a jobs table with GX Core; split clean rows from quarantine."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flowsentry.errors import ValidationFailed

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What validation found in one jobs table."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame  # the failing rows plus a `reason` column
    checks: list[dict[str, Any]] = field(default_factory=list)  # one per expectation
    success: bool = True


class Validation:
    """One ephemeral GX context for a batch of tables: each validated against its own
    suite, all results rendered into one Data Docs site at `docs_dir` (when given)."""

    def __init__(self, docs_dir: str | Path | None = None) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        for name in list(logging.root.manager.loggerDict):  # GX sets its loggers at import
            if name.startswith("great_expectations"):
                logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        # No default Data Docs site: GX would make one in the system temp dir on every run.
        self.context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
            ),
        )
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        self.docs = docs_dir is not None
        if docs_dir is not None:
            self.context.add_data_docs_site(
                site_name="flowsentry",
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(Path(docs_dir).resolve()),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )

    def table(self, table: pd.DataFrame, spec: dict[str, Any], origin: str) -> Outcome:
        """Validate `table` against the suite `spec` (GX JSON form).

        Raises `ValidationFailed` naming `origin` and the expectation when a table-level
        expectation fails. Rows failing a row-level expectation are quarantined with the
        reason(s).
        """
        import great_expectations as gx
        from great_expectations.checkpoint import UpdateDataDocsAction

        context = self.context
        table = table.reset_index(drop=True)
        asset_name = Path(origin).stem or "jobs"
        suite = context.suites.add(
            gx.ExpectationSuite(
                name=f"{spec['name']}.{asset_name}",
                expectations=spec["expectations"],
                meta=spec.get("meta"),
            )
        )
        batch = (
            context.data_sources.add_pandas(asset_name)
            .add_dataframe_asset(asset_name)
            .add_batch_definition_whole_dataframe("all")
        )
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=f"{asset_name}-jobs")
        )
        actions = [UpdateDataDocsAction(name="data_docs")] if self.docs else []
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{asset_name}-checkpoint",
                validation_definitions=[definition],
                actions=actions,
                result_format={"result_format": "COMPLETE"},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": table})
        (result,) = run.run_results.values()
        return _outcome(table, result, origin)


def validate_table(
    table: pd.DataFrame,
    spec: dict[str, Any],
    origin: str,
    docs_dir: str | Path | None = None,
) -> Outcome:
    """One table alone (see `Validation.table`); Data Docs in `docs_dir` when given."""
    return Validation(docs_dir).table(table, spec, origin)


def _outcome(table: pd.DataFrame, result: Any, origin: str) -> Outcome:
    """Clean rows, quarantined rows with their reasons, and one check per expectation."""
    reasons: dict[int, list[str]] = {}
    checks: list[dict[str, Any]] = []
    table_failures: list[str] = []
    for item in result.results:
        config = item.expectation_config
        meta = config.meta or {}
        level, reason = meta.get("level", "row"), meta.get("reason", config.type)
        unexpected = item.result.get("unexpected_index_list") or []
        indices = [_as_index(i) for i in unexpected]
        checks.append(
            {
                "expectation": config.type,
                "column": config.kwargs.get("column")
                or config.kwargs.get("column_A")
                or config.kwargs.get("column_list"),
                "level": level,
                "success": bool(item.success),
                "unexpected_count": int(item.result.get("unexpected_count") or 0),
                "reason": reason,
            }
        )
        if item.success:
            continue
        if item.exception_info and item.exception_info.get("raised_exception"):
            table_failures.append(f"{config.type} on {config.kwargs.get('column')}: could not run")
        elif level == "table":
            observed = item.result.get("observed_value")
            suffix = f" (observed {observed})" if observed is not None else ""
            table_failures.append(f"{config.type}: {reason}{suffix}")
        else:
            for index in indices:
                reasons.setdefault(index, []).append(reason)
    if table_failures:
        raise ValidationFailed(
            f"{origin}: failed expectation {table_failures[0]}"
            + (f" (and {len(table_failures) - 1} more)" if len(table_failures) > 1 else "")
        )

    bad = sorted(reasons)
    quarantine = table.loc[bad].copy()
    quarantine["reason"] = pd.Series(
        ["; ".join(dict.fromkeys(reasons[i])) for i in bad], index=quarantine.index, dtype="str"
    )
    clean = table.drop(index=bad).reset_index(drop=True)
    if bad:
        log.warning("%s: %d of %d jobs quarantined", origin, len(bad), len(table))
    return Outcome(
        clean=clean, quarantine=quarantine.reset_index(drop=True), checks=checks, success=not bad
    )


def _as_index(entry: Any) -> int:
    # GX returns plain index values for pandas (or dicts when index columns are named).
    if isinstance(entry, dict):
        entry = entry.get("index", next(iter(entry.values())))
    return int(entry)


def quarantine_whole_runs(
    outcome: Outcome,
    max_bad_fraction: float,
    dag_size: int | None = None,
    min_dag_fraction: float = 0.0,
) -> Outcome:
    """Move whole runs to quarantine: a run more than `max_bad_fraction` of whose jobs
    broke a row expectation (what is left says nothing reliable about its siblings), and,
    with a DAG of `dag_size` jobs, a run holding fewer than `min_dag_fraction` of them (a
    fragment: its context would be computed from a few jobs)."""
    clean, quarantine = outcome.clean, outcome.quarantine
    if clean.empty and quarantine.empty:
        return outcome
    key = ["workflow", "run"]
    both = pd.concat([clean[key].assign(_bad=0), quarantine[key].assign(_bad=1)])
    stats = both.groupby(key, dropna=False)["_bad"].agg(["sum", "count"])
    reasons: dict[tuple, str] = {}
    for run, (bad, count) in stats.iterrows():
        if bad / count > max_bad_fraction:
            reasons[run] = (f"run {run[1]}: {int(bad)} of {int(count)} jobs broke "
                            "expectations (validate.max_bad_job_fraction_per_run)")  # fmt: skip
        elif dag_size and count / dag_size < min_dag_fraction:
            reasons[run] = (f"run {run[1]}: holds {int(count)} of its DAG's {dag_size} jobs "
                            f"(under validate.min_dag_fraction {min_dag_fraction})")  # fmt: skip
    if not reasons:
        return outcome
    for reason in reasons.values():
        log.warning("%s", reason)
    moving = pd.Series(list(zip(clean["workflow"], clean["run"], strict=True)),
                       index=clean.index).map(reasons)  # fmt: skip
    moved = clean[moving.notna()].assign(reason=moving[moving.notna()])
    if len(quarantine):
        keys = pd.Series(list(zip(quarantine["workflow"], quarantine["run"], strict=True)),
                         index=quarantine.index).map(reasons)  # fmt: skip
        quarantine = quarantine.assign(
            reason=quarantine["reason"].where(keys.isna(), quarantine["reason"] + "; " + keys)
        )
    quarantine = pd.concat([quarantine, moved], ignore_index=True)
    return Outcome(
        clean=clean[moving.isna()].reset_index(drop=True),
        quarantine=quarantine.assign(reason=quarantine["reason"].astype("str")),
        checks=outcome.checks,
        success=False,
    )
