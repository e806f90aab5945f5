"""Atomic writes: a failed step never leaves a half-written or clobbered file.

Every writer puts its output into a temporary file in the destination folder and
renames it over the target only once it is complete (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; swap it in for `target` once everything is written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(frame: pd.DataFrame, target: str | Path) -> None:
    """Write `frame` to Parquet atomically (no index)."""
    with atomic_path(target, ".parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def write_json(payload: Any, target: str | Path) -> None:
    """Write `payload` as indented JSON atomically."""
    with atomic_path(target, ".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(frame: pd.DataFrame, target: str | Path) -> None:
    """Write `frame` to CSV atomically (no index)."""
    with atomic_path(target, ".csv") as tmp:
        frame.to_csv(tmp, index=False)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
