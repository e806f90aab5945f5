"""Data versions: DVC hashes of the data a model saw, and recording them with DVC.

`dvc_hash` computes the content hash DVC records in dvc.lock (`<md5>.dir` for a folder),
without needing a DVC repository, so the train stage can stamp every model with the exact
raw and prepared data behind it (the Prefect flow runs `dvc repro` itself, so dvc.lock
holds the same hashes). `push` sends the cache to the configured remote (a local folder
by default, see .dvc/config; S3, GCS, ... by `dvc remote add`); `pull` brings stages'
outputs back (a training worker that shares no file system with the project).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowsentry.config import Config
from flowsentry.errors import FlowsentryError

log = logging.getLogger(__name__)


def dvc_hash(path: Path) -> str | None:
    """The hash DVC would record for a file or folder (None when it does not exist)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    if not path.exists():
        return None
    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:
        _, _, obj = build(HashFileDB(fs, scratch), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


def data_version(cfg: Config) -> dict[str, str | None]:
    """DVC hashes of the raw traces, the jobs tables, the prepared and augmented sets."""
    paths = cfg.paths
    return {
        "raw": dvc_hash(paths.raw),
        "jobs": dvc_hash(paths.jobs),
        "prepared": dvc_hash(paths.prepared),
        "augmented": dvc_hash(paths.augmented),
    }


def is_dvc_project(root: Path) -> bool:
    return (root / "dvc.yaml").is_file() and (root / ".dvc").is_dir()


def push(root: Path, remote: str | None = None) -> dict[str, Any]:
    """Push every cached output to the DVC remote; names the remote when it fails."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        name = remote or repo.config["core"].get("remote")
        if not name:
            raise FlowsentryError(
                f"{root / '.dvc' / 'config'}: no default DVC remote "
                "(dvc remote add -d <name> <url>)"
            )
        try:
            pushed = repo.push(remote=name)
        except DvcException as exc:
            raise FlowsentryError(f"DVC remote '{name}': push failed: {exc}") from exc
        url = repo.config["remote"].get(name, {}).get("url")
    log.info("dvc push to '%s' (%s): %d files", name, url, pushed)
    return {"remote": name, "url": url, "pushed": pushed}


def pull(root: Path, stages: Sequence[str]) -> int:
    """Fetch the outputs of `stages` (as dvc.lock records them) from the DVC remote
    into the workspace; returns how many files came."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        try:
            # stage addresses in full: DVC reads a bare name relative to the working directory
            result = repo.pull(targets=[f"{root / 'dvc.yaml'}:{stage}" for stage in stages])
        except DvcException as exc:
            raise FlowsentryError(f"{root}: dvc pull {' '.join(stages)} failed: {exc}") from exc
    fetched = result.get("fetched", 0) if isinstance(result, dict) else int(result or 0)
    log.info("dvc pull %s: %d files", " ".join(stages), fetched)
    return fetched


def uncached_outputs(root: Path, stage: str) -> dict[str, str]:
    """{path: text} of the stage's outputs DVC keeps out of its cache (`cache: false`:
    metrics, reports): what a worker returns beside the outputs it pushed."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        (found,) = [s for s in repo.index.stages if getattr(s, "name", None) == stage]
        files = [Path(out.fs_path) for out in found.outs if not out.use_cache]
    return {str(f.relative_to(root)): f.read_text() for f in files if f.is_file()}
