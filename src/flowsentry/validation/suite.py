"""The expectation suite for parsed traces, built from `flowsentry.data.schema`.

The committed `gx/expectations/flowbench_jobs.json` is this suite serialised: the
versioned contract for a jobs table (a test keeps the two equal; regenerate with
`flowsentry validate --write-suite`). Each expectation carries `meta.level`:

- `table`: the table as a whole is unusable if it fails (missing column, wrong type,
  no rows). Validation stops with a message naming the file and the expectation.
- `row`: the rows that break it go to quarantine with `meta.reason`; the rest proceed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowsentry.data import schema

SUITE_NAME = "flowbench_jobs"

# The names GX reports for each pandas dtype of the jobs table (pandas 2 and 3).
_GX_TYPES = {
    "string": ["str", "string", "StringDtype", "object"],
    "Int64": ["int64", "Int64", "Int64Dtype"],
    "float64": ["float64"],
}


def suite_spec() -> dict[str, Any]:
    """The suite as GX's JSON form: {name, expectations: [{type, kwargs, meta}], meta}."""
    items: list[dict[str, Any]] = []

    def add(kind: str, level: str, reason: str, **kwargs: Any) -> None:
        items.append({"type": kind, "kwargs": kwargs, "meta": {"level": level, "reason": reason}})

    add("expect_table_row_count_to_be_between", "table", "the table has no jobs", min_value=1)
    for column, dtype in schema.JOBS_COLUMNS.items():
        add("expect_column_to_exist", "table", f"column {column} is missing", column=column)
        add(
            "expect_column_values_to_be_in_type_list",
            "table",
            f"column {column} is not of type {dtype}",
            column=column,
            type_list=_GX_TYPES[dtype],
        )
    for column in ("workflow", "run", "job", "task", "anomaly_type"):
        add("expect_column_values_to_not_be_null", "row", f"{column} is missing", column=column)
    # A job nobody labelled says so (anomaly_type unknown) and has no label; every other
    # job has one.
    unknown = f'anomaly_type=="{schema.UNKNOWN}"'
    add(
        "expect_column_values_to_not_be_null",
        "row",
        "label is missing",
        column="label",
        row_condition=f'anomaly_type!="{schema.UNKNOWN}"',
        condition_parser="pandas",
    )
    add(
        "expect_column_values_to_be_null",
        "row",
        f"a job of anomaly_type {schema.UNKNOWN} has a label",
        column="label",
        row_condition=unknown,
        condition_parser="pandas",
    )
    add(
        "expect_compound_columns_to_be_unique",
        "row",
        "duplicate job: the same (run, job) appears more than once",
        column_list=["workflow", "run", "job"],
    )
    add(
        "expect_column_values_to_be_in_set",
        "row",
        "unknown anomaly_type",
        column="anomaly_type",
        value_set=list(schema.ANOMALY_TYPES),
    )
    add(
        "expect_column_values_to_be_in_set",
        "row",
        "label is not 0 or 1",
        column="label",
        value_set=[0, 1],
    )
    for column in schema.NON_NEGATIVE:
        top = schema.UPPER_BOUNDS[column]
        add(
            "expect_column_values_to_be_between",
            "row",
            f"{column} is negative or above its plausible maximum ({top:,.0f})",
            column=column,
            min_value=0,
            max_value=top,
        )
    for column, (low, high) in schema.INTEGER_RANGES.items():
        add(
            "expect_column_values_to_be_between",
            "row",
            f"{column} is outside {low}..{high}",
            column=column,
            min_value=low,
            max_value=high,
        )
    for column in schema.TIMESTAMPS:
        add(
            "expect_column_values_to_be_between",
            "row",
            f"{column} is not a plausible epoch time (2000..2100)",
            column=column,
            min_value=schema.TIMESTAMP_MIN,
            max_value=schema.TIMESTAMP_MAX,
        )
    for earlier, later in schema.TIMESTAMP_ORDER:
        add(
            "expect_column_pair_values_a_to_be_greater_than_b",
            "row",
            f"{later} is before {earlier}",
            column_A=later,
            column_B=earlier,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        )
    return {"name": SUITE_NAME, "expectations": items, "meta": {"source": "flowsentry.data.schema"}}


def limit_expectations(max_text_chars: int, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Row-level expectations from params.yaml: every text field within
    `limits.max_text_chars`, and the measures the source always records present."""
    items = [
        {
            "type": "expect_column_value_lengths_to_be_between",
            "kwargs": {"column": column, "max_value": max_text_chars},
            "meta": {
                "level": "row",
                "reason": f"{column} is over limits.max_text_chars ({max_text_chars:,})",
            },
        }
        for column, dtype in schema.JOBS_COLUMNS.items()
        if dtype == "string"
    ]
    items += [
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": column},
            "meta": {"level": "row", "reason": f"{column} is missing (this source always has it)"},
        }
        for column in required
    ]
    return items


def dag_expectation(dag_jobs: list[str], dag_file: str) -> dict[str, Any]:
    """Row-level: every job id must be a job of the workflow's DAG file."""
    return {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "job", "value_set": sorted(dag_jobs)},
        "meta": {"level": "row", "reason": f"job id is not in the DAG ({dag_file})"},
    }


def spec_for(
    base: dict[str, Any],
    max_text_chars: int,
    required: tuple[str, ...] = (),
    dag_jobs: list[str] | None = None,
    dag_file: str | None = None,
) -> dict[str, Any]:
    """The committed suite plus what params.yaml and the source add: text limits, the
    measures the source always records, and the DAG the job ids must belong to."""
    items = [*base["expectations"], *limit_expectations(max_text_chars, required)]
    if dag_jobs is not None:
        items.append(dag_expectation(dag_jobs, str(dag_file)))
    return {**base, "expectations": items}


def write_suite(path: str | Path) -> None:
    """Write the suite JSON (the committed, versioned copy)."""
    from flowsentry.io import atomic_path

    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(suite_spec(), indent=2) + "\n")


def read_suite(path: str | Path) -> dict[str, Any]:
    """Read a suite JSON written by `write_suite`."""
    from flowsentry.errors import ConfigError

    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the expectation suite: {exc}") from None
    if not isinstance(spec, dict) or "expectations" not in spec:
        raise ConfigError(f"{path}: not an expectation suite (no 'expectations')")
    return spec
