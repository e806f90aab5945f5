"""The pipeline in one process, for workspaces (experiments, the sweep): the stages of
`dvc.yaml`, in its order, up to a stage.

`dvc.yaml` stays the one definition of the pipeline: the order comes from it (each
stage whose command is `flowsentry <stage>`), and each stage is the same `run(cfg)`
function its command calls. What this adds over `dvc repro` is a workspace: a config
whose artifact paths all lie under another folder (`Paths.under`), with the sections a
study changes, run without touching the project's `dvc.lock`.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import yaml

from flowsentry.config import Config
from flowsentry.errors import ConfigError

DVC_FILE = "dvc.yaml"
COMMAND = "flowsentry "


def _dvc_file() -> Path:
    """dvc.yaml of the project in the working directory, else of this source checkout."""
    for candidate in (Path.cwd() / DVC_FILE, Path(__file__).resolve().parents[2] / DVC_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{DVC_FILE}: not found (run from the project root)")


def stage_order(dvc_file: Path | None = None) -> list[str]:
    """The stages `dvc.yaml` runs with a `flowsentry <stage>` command, in its order."""
    path = dvc_file or _dvc_file()
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    order = []
    for name, stage in stages.items():
        cmd = str(stage.get("cmd", ""))
        if cmd.startswith(COMMAND) and cmd.removeprefix(COMMAND).split()[0] == name:
            order.append(name)
    return order


def run(
    cfg: Config,
    until: str,
    flowbench_dir: str | Path | None = None,
    progress: bool = False,
    start: str | None = None,
) -> dict[str, Any]:
    """Run the stages from `start` (default: the first) through `until` on `cfg`;
    returns each stage's summary by name."""
    order = stage_order()
    for name in (until, start):
        if name is not None and name not in order:
            raise ConfigError(f"pipeline: unknown stage '{name}' (dvc.yaml has {order})")
    first = order.index(start) if start else 0
    results: dict[str, Any] = {}
    for name in order[first : order.index(until) + 1]:
        stage = importlib.import_module(f"flowsentry.stages.{name}").run
        accepted = inspect.signature(stage).parameters
        kwargs: dict[str, Any] = {}
        if "progress" in accepted:
            kwargs["progress"] = progress
        if name == "ingest":
            kwargs["flowbench_dir"] = flowbench_dir
        results[name] = stage(cfg, **kwargs)
    return results
