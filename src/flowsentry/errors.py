"""Errors a user can cause. Each names the file, the field and the reason."""

from __future__ import annotations

from pathlib import Path


class FlowsentryError(Exception):
    """Base class: the CLI prints these in one line and exits non-zero."""


class ConfigError(FlowsentryError):
    """A bad params.yaml (or override): names the key and the reason."""


class DataError(FlowsentryError):
    """Bad input data: names the file, the field (column) and the reason."""

    def __init__(self, path: str | Path, reason: str, field: str | None = None) -> None:
        self.path = str(path)
        self.field = field
        self.reason = reason
        where = f"{self.path}: column '{field}'" if field else self.path
        super().__init__(f"{where}: {reason}")


class ValidationFailed(FlowsentryError):
    """A table-level expectation failed: the data cannot be used at all."""


class SourceUnavailable(FlowsentryError):
    """No Flow-Bench traces found locally and none could be downloaded."""
