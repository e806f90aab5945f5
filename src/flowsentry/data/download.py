"""Fetch the upstream Flow-Bench files, verified by SHA-256.

Used when FLOWBENCH_DIR is not set. Works with any URL scheme urllib knows
(https://, file://). Each file is streamed to a temporary file, hashed, and renamed
into place only when its checksum matches, so a failed download leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from tqdm.auto import tqdm

from flowsentry.errors import DataError, SourceUnavailable
from flowsentry.io import atomic_dir, atomic_path, file_digest

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def known_checksums() -> dict[str, str]:
    """SHA-256 of each upstream file, by path relative to the `data/` folder."""
    text = resources.files("flowsentry.data").joinpath("checksums.json").read_text()
    return json.loads(text)


def fetch(
    base_url: str,
    relative: str,
    dest: Path,
    checksums: dict[str, str] | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download `<base_url>/<relative>` to `dest`, verifying its SHA-256 when known.

    Raises `SourceUnavailable` when the file cannot be fetched and `DataError` when it
    arrives with the wrong checksum. An existing `dest` with the right checksum is kept.
    """
    expected = (checksums or {}).get(relative)
    if dest.exists() and expected and file_digest(dest) == expected:
        return dest
    url = f"{base_url.rstrip('/')}/{relative}"
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, tmp.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=f"download {relative}",
                    disable=not progress,
                ) as bar:
                    while block := response.read(_CHUNK):
                        out.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceUnavailable(f"cannot download {url}: {reason}") from None
        actual = file_digest(tmp)
        if expected and actual != expected:
            raise DataError(url, f"checksum mismatch: sha256 {actual}, expected {expected}")
        if not expected:
            log.warning("%s: no known checksum; downloaded sha256 %s", url, actual)
    return dest


def copy_verified(src: Path, dest: Path, relative: str, checksums: dict[str, str] | None) -> Path:
    """Copy a local upstream file (or folder) into `dest`, checking its SHA-256 when known."""
    if src.is_dir():  # an unzipped workflow folder: no upstream checksum applies
        with atomic_dir(dest) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        return dest
    expected = (checksums or {}).get(relative)
    if expected:
        actual = file_digest(src)
        if actual != expected:
            raise DataError(src, f"checksum mismatch: sha256 {actual}, expected {expected}")
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest
