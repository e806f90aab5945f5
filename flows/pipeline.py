"""Prefect flow: ingest -> validate -> prepare, over the same stage functions as dvc.yaml.

python flows/pipeline.py                    # runs with params.yaml
python flows/pipeline.py --flowbench-dir ../shared/flowbench
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from prefect import flow, task

from flowsentry.config import load_config
from flowsentry.stages import ingest, prepare, validate

ingest_task = task(ingest.run, name="ingest", retries=2, retry_delay_seconds=10)
validate_task = task(validate.run, name="validate")
prepare_task = task(prepare.run, name="prepare")


@flow(name="flowsentry-data", log_prints=True)
def data_pipeline(
    params: str = "params.yaml",
    flowbench_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ingest Flow-Bench traces, validate them and prepare sentences and splits."""
    cfg = load_config(Path(params), overrides)
    source = flowbench_dir or os.environ.get("FLOWBENCH_DIR")
    ingested = ingest_task(cfg, source, progress=False)
    report = validate_task(cfg, wait_for=[ingested])
    prepared = prepare_task(cfg, wait_for=[report])
    return {"ingest": ingested, "validation": report, "prepare": prepared}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=data_pipeline.__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--flowbench-dir", default=None)
    args = parser.parse_args()
    data_pipeline(params=args.params, flowbench_dir=args.flowbench_dir)
