"""Prefect flows that orchestrate the DVC pipeline: retraining and the sweep."""
