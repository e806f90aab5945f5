"""Atomic writes (a failed step never leaves a half-written or clobbered file) and content hashes.

Every writer puts its output into a temporary file in the destination folder and
renames it over the target only once it is complete (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flowsentry.errors import DataError, with_path

# Parquet key-value metadata: {source file name: sha256} of the tables a table was made from.
SOURCES_KEY = b"flowsentry.sources"


def _remove_leftovers(target: Path) -> None:
    """Temporary siblings of `target` left by a writer that was killed (kill -9, power
    loss) before it could clean up. Writers of one target never overlap (the pipeline
    lock), so any such file is a leftover; it is never the target itself. A folder swap
    cut short between its two renames brings the previous version back first."""
    previous = target.with_name(f".{target.name}.old")
    if previous.exists() and not target.exists():
        os.replace(previous, target)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:  # a write that failed mid-file names no file: name the target
        raise with_path(exc, target) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; swap it in for `target` once everything is written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            yield tmp
        except OSError as exc:
            raise with_path(exc, target) from exc
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


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (the one content hash of the project's files)."""
    with Path(path).open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def digest(content: bytes | str | pd.DataFrame | Mapping[str, Any]) -> str:
    """sha256 of content in memory: bytes, text, a table's values (index and row order
    as given) or a JSON-able mapping (keys sorted): the one content hash for data."""
    if isinstance(content, pd.DataFrame):
        hashed = pd.util.hash_pandas_object(content.reset_index(drop=True), index=False)
        content = hashed.to_numpy().tobytes()
    elif isinstance(content, Mapping):
        content = json.dumps(content, sort_keys=True, default=str)
    if isinstance(content, str):
        content = content.encode()
    return hashlib.sha256(content).hexdigest()


def write_parquet(
    frame: pd.DataFrame, target: str | Path, sources: Sequence[str | Path] = ()
) -> None:
    """Write `frame` to Parquet atomically (no index), recording the files it was made from.

    `sources` are stored with their sha256 so `read_table` can refuse a table whose
    source changed since (a stage that failed, or was skipped, after its input moved on).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if sources:
        record = {Path(p).name: file_digest(p) for p in sources}
        metadata = {**(table.schema.metadata or {}), SOURCES_KEY: json.dumps(record).encode()}
        table = table.replace_schema_metadata(metadata)
    with atomic_path(target, ".parquet") as tmp:
        pq.write_table(table, tmp)


def read_table(
    path: str | Path, sources: Sequence[str | Path] = (), remedy: str = "flowsentry ingest"
) -> pd.DataFrame:
    """Read a Parquet table; with `sources`, refuse it unless it was made from their
    current content. `remedy` is the command that makes the table."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        frame = pd.read_parquet(path)
        metadata = (pq.read_schema(path).metadata or {}) if sources else {}
    except FileNotFoundError:
        raise DataError(path, f"not found: run `{remedy}` first") from None
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(path, f"unreadable Parquet file: {exc}".splitlines()[0]) from None
    if sources:
        try:
            record = json.loads(metadata.get(SOURCES_KEY, b"{}"))
        except (ValueError, UnicodeDecodeError):
            record = {}
        for source in map(Path, sources):
            if not source.exists():
                raise DataError(source, f"missing (needed to check {path} is current)")
            if record.get(source.name) != file_digest(source):
                raise DataError(
                    path,
                    f"stale: it was not made from the current {source} (the step that makes "
                    f"it failed or has not run since); run `{remedy}` first",
                )
    return frame


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
