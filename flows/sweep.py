"""Prefect entrypoint (prefect.yaml): the sweep flow lives in `flowsentry.flows`.

Run it with `flowsentry sweep`, or deploy with `prefect deploy`.
"""

from flowsentry.flows.sweep import sweep

__all__ = ["sweep"]
