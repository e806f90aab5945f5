"""Prefect entrypoint (prefect.yaml): the retraining flows live in `flowsentry.flows`.

Run them with `flowsentry retrain` / `flowsentry sweep`, or deploy with `prefect deploy`.
"""

from flowsentry.flows.retrain import retrain, train_flow

__all__ = ["retrain", "train_flow"]
