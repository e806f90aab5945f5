"""The paper's public text format: a CSV `text,label` (as in the cshjin/poseidon data).

Each `text` is a job sentence such as `wms_delay is 6.0 queue_delay is 22.0 ...`.
The `<feature> is <value>` pairs are parsed back into jobs-table columns, so these
jobs pass the same validation and splits as native traces. The text carries no run,
no anomaly type and no DAG: run = the file's stem, job = `row<N>`, and an anomalous
job's `anomaly_type` is `unspecified`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from flowsentry.data import schema
from flowsentry.errors import DataError

_PAIR = re.compile(r"(\w+) is (\S+)")


def read_text_source(path: str | Path, workflow: str) -> pd.DataFrame:
    """Read a `text,label` CSV into jobs-table rows for `workflow`."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable CSV: {exc}".splitlines()[0]) from None
    for column in ("text", "label"):
        if column not in raw.columns:
            raise DataError(path, "required column missing", field=column)
    labels = raw["label"].str.strip()
    bad = ~labels.isin(["0", "1"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"row {row}: label '{labels.iloc[row]}' is not 0 or 1", field="label")

    table = schema.empty_jobs_table().reindex(range(len(raw)))
    numeric = set(schema.FLOATS) | set(schema.INTEGERS)
    for row, text in enumerate(raw["text"]):
        pairs = _PAIR.findall(text)
        if not pairs:
            raise DataError(path, f"row {row}: no '<feature> is <value>' pairs", field="text")
        for name, value in pairs:
            if name == "task":
                table.at[row, "task"] = value
                continue
            if name not in numeric:
                raise DataError(path, f"row {row}: unknown feature '{name}'", field="text")
            try:
                number = float(value)
            except ValueError:
                raise DataError(
                    path, f"row {row}: {name} value '{value}' is not a number", field="text"
                ) from None
            table.at[row, name] = number
    table["workflow"] = workflow
    table["run"] = path.stem
    table["job"] = [f"row{i}" for i in range(len(raw))]
    label = labels.astype(int).to_numpy()
    table["label"] = label
    table["anomaly_type"] = np.where(label == 1, "unspecified", schema.NORMAL)
    return table.astype(schema.JOBS_COLUMNS)
