"""Prefect entrypoints (prefect.yaml): the flows live in `flowsentry.prefect_flows`.

Run them with `flowsentry retrain` / `flowsentry sweep`, or deploy with `prefect deploy`.
"""

from flowsentry.prefect_flows.retrain import retrain, train_flow
from flowsentry.prefect_flows.sweep import sweep

__all__ = ["retrain", "sweep", "train_flow"]
