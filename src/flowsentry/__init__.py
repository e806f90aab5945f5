"""flowsentry: catch anomalous jobs in scientific workflows with language models."""

__version__ = "0.1.0"
