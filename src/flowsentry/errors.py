"""Errors a user can cause. Each names the file, the field and the reason."""

from __future__ import annotations

import errno
import re
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
        # One line, whatever a file's name or a quoted value holds.
        super().__init__(f"{where}: {reason}".replace("\r", "\\r").replace("\n", "\\n"))


class ValidationFailed(FlowsentryError):
    """A table-level expectation failed: the data cannot be used at all."""


class SourceUnavailable(FlowsentryError):
    """No Flow-Bench traces found locally and none could be downloaded."""


# What to do about an OSError a user can cause, by errno.
_OS_REMEDIES = {
    errno.ENOSPC: "no space left on the device: free some, or point params.yaml paths "
    "elsewhere; what was stored before is unchanged",
    errno.EDQUOT: "disk quota exceeded: free some, or point params.yaml paths elsewhere; "
    "what was stored before is unchanged",
    errno.EACCES: "permission denied: give this user write access (chmod/chown), or point "
    "params.yaml paths elsewhere",
    errno.EPERM: "operation not permitted: give this user write access, or point params.yaml "
    "paths elsewhere",
    errno.EROFS: "read-only file system: point params.yaml paths to a writable folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder: move the file away or fix "
    "the path",
    errno.EISDIR: "is a folder where a file is expected: fix the path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EEXIST: "already exists as something else: move it away",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
}
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the path(s), what happened and what to do. Libraries
    (pyarrow) raise OSError without errno or file name: both are read from the text."""
    code = exc.errno
    if code is None:
        found = _ERRNO_IN_TEXT.search(str(exc))
        code = int(found.group(1)) if found else None
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "(no path given)"
    remedy = _OS_REMEDIES.get(code) if code is not None else None
    if remedy is None:
        detail = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
        remedy = f"{detail} ({errno.errorcode.get(code, 'errno ' + str(code))})" if code else detail
    return f"{where}: {remedy}"


def with_path(exc: OSError, path: str | Path) -> OSError:
    """`exc` naming `path` when it names none (a write that failed mid-file)."""
    if exc.filename is not None:
        return exc
    code = exc.errno
    if code is None:
        found = _ERRNO_IN_TEXT.search(str(exc))
        code = int(found.group(1)) if found else None
    text = exc.strerror or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return OSError(code, text, str(path))
