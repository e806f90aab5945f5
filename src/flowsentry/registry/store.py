"""The model registry: promoted models in the BentoML model store, plus a champion pointer.

Every promoted model is a BentoML model `flowsentry-detector:<version>` whose files
are the saved model folder (safetensors, tokenizer, flowsentry.json) and whose labels
carry workflows, kind, data version, params hash and git commit. The champion is a
pointer file kept beside the store, `<BENTOML_HOME>/flowsentry/champion.json`,
holding the current tag and the history of earlier champions (for rollback).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowsentry.errors import FlowsentryError
from flowsentry.io import atomic_path, digest

MODEL_NAME = "flowsentry-detector"


def home() -> Path:
    return Path(os.environ.get("BENTOML_HOME", "~/bentoml")).expanduser()


def pointer_path() -> Path:
    return home() / "flowsentry" / "champion.json"


def _read_pointer() -> dict[str, Any]:
    path = pointer_path()
    if not path.exists():
        return {"champion": None, "history": []}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FlowsentryError(f"{path}: unreadable champion pointer: {exc}") from None


def _write_pointer(pointer: dict[str, Any]) -> None:
    with atomic_path(pointer_path(), ".json") as tmp:
        tmp.write_text(json.dumps(pointer, indent=2) + "\n")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def params_hash(params: dict[str, Any]) -> str:
    return digest(params)[:12]


def register(model_dir: Path, metrics: dict[str, Any], params: dict[str, Any]) -> str:
    """Copy a saved model folder into the BentoML store; returns its tag."""
    import bentoml

    meta_file = model_dir / "flowsentry.json"
    if not meta_file.exists():
        raise FlowsentryError(f"{model_dir}: not a flowsentry model (no flowsentry.json)")
    meta = json.loads(meta_file.read_text())
    labels = {
        "kind": str(meta.get("kind", "sft")),
        "workflows": ",".join(meta.get("workflows") or []),
        "mode": str(meta.get("mode") or ""),
        # the DVC hash of the augmented training data (what dvc.lock records for it)
        "data_version": str((meta.get("data_version") or {}).get("augmented") or ""),
        "params_hash": params_hash(params),
        "git_commit": git_commit(),
    }
    summary = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=summary) as ref:
        shutil.copytree(model_dir, ref.path, dirs_exist_ok=True)
    return str(ref.tag)


def get(tag: str):
    import bentoml

    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise FlowsentryError(f"model {tag} is not in the BentoML store ({home()})") from None


def champion_tag() -> str | None:
    return _read_pointer()["champion"]


def promote(tag: str) -> dict[str, Any]:
    """Make `tag` the champion; the previous one stays in the history."""
    model = get(tag)
    pointer = _read_pointer()
    if pointer["champion"] and pointer["champion"] != str(model.tag):
        pointer["history"].append(pointer["champion"])
    pointer["champion"] = str(model.tag)
    pointer["promoted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_pointer(pointer)
    return pointer


def rollback() -> dict[str, Any]:
    """Reinstate the previous champion."""
    pointer = _read_pointer()
    if not pointer["history"]:
        raise FlowsentryError(f"{pointer_path()}: no earlier champion to roll back to")
    pointer["champion"] = pointer["history"].pop()
    pointer["promoted_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_pointer(pointer)
    return pointer


def listing() -> list[dict[str, Any]]:
    """Every stored flowsentry model, newest first, with the champion marked."""
    import bentoml

    current = champion_tag()
    rows = []
    for model in bentoml.models.list(MODEL_NAME):
        rows.append(
            {
                "tag": str(model.tag),
                "created": model.creation_time.isoformat(timespec="seconds"),
                "champion": str(model.tag) == current,
                "labels": dict(model.info.labels),
                "metrics": dict(model.info.metadata),
            }
        )
    return sorted(rows, key=lambda r: r["created"], reverse=True)
