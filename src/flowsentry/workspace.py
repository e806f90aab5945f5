"""Running `dvc.yaml`: in the project, or in a workspace beside it.

`dvc.yaml` is the one pipeline. The retraining flow runs its stages in the project;
a study or a sweep candidate runs them in a *workspace*: a DVC project of its own
(`dvc init --no-scm`) under the project's reports or models folder, whose
`params.yaml` is the study's config and whose `dvc.yaml`, `src` and committed inputs
are links to the project's. DVC decides there, as in the project, which stages are
stale (their dependencies and params against the workspace's `dvc.lock`) and runs
each as its `flowsentry <stage>` command; a workspace shares the project's DVC cache,
so a sweep candidate checks out the data its workflow's workspace prepared instead of
preparing it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock

from flowsentry.config import Config, Paths
from flowsentry.data.labels import COLUMNS as LABEL_COLUMNS
from flowsentry.errors import ConfigError, FlowsentryError
from flowsentry.io import atomic_path

DVC_FILE = "dvc.yaml"
COMMAND = "flowsentry "
# What a workspace links from the project: the pipeline, the code its stages depend on,
# the Bento definition the package stage reads.
LINKED = (DVC_FILE, "src", "bentofile.yaml")
# Config fields naming a local file or folder the stages read (not written by a run).
INPUT_PATHS = ("gx_suite", "labels")


class StageFailed(FlowsentryError):
    """A DVC stage's command failed (its own one-line error is in the log above)."""


def stage_order(dvc_file: Path) -> list[str]:
    """The stages `dvc_file` runs with a `flowsentry <stage>` command, in its order."""
    if not dvc_file.is_file():
        raise ConfigError(f"{dvc_file}: not found (run from the project root)")
    stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {})
    order = []
    for name, stage in stages.items():
        cmd = str(stage.get("cmd", ""))
        if cmd.startswith(COMMAND) and cmd.removeprefix(COMMAND).split()[0] == name:
            order.append(name)
    return order


@contextlib.contextmanager
def _environment(updates: dict[str, str]) -> Iterator[None]:
    """`updates` in os.environ while DVC runs the stage commands; restored afterwards
    (a flow run inside a longer-lived process must not leave its settings behind)."""
    before = {name: os.environ.get(name) for name in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# DVC runs in the process's working directory, environment and file descriptors: one
# run at a time in a process (a Dask worker with several threads takes turns).
_PROCESS = threading.RLock()


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """What DVC prints goes to stderr: its own messages (sys.stdout) and its stage
    commands' (they inherit file descriptor 1, put onto 2 for the duration)."""
    with _PROCESS:
        sys.stdout.flush()
        saved = os.dup(1)
        # DVC's log handlers hold the stream they were made with (a stdout, maybe one
        # that is gone): one handler on this stderr instead, for the duration
        dvc_log = logging.getLogger("dvc")
        handlers = dvc_log.handlers[:]
        dvc_log.handlers = [logging.StreamHandler(sys.stderr)]
        try:
            os.dup2(2, 1)
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            dvc_log.handlers = handlers
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def repro(
    root: Path,
    stage: str,
    single_item: bool = False,
    force: bool = False,
    flowbench_dir: str | Path | None = None,
) -> list[str]:
    """`dvc repro [--single-item] <stage>` in the DVC project `root`: the stages that ran
    (none when DVC found everything up to date)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    # the stage commands are `flowsentry <stage>`: the CLI of this interpreter
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    updates = {"PATH": path}
    if flowbench_dir:
        updates["FLOWBENCH_DIR"] = str(Path(flowbench_dir).resolve())
    try:
        # in the project: DVC resolves some paths against the working directory
        with _PROCESS, _environment(updates), contextlib.chdir(root), Repo(str(root)) as repo:
            ran = repo.reproduce(stage, single_item=single_item, force=force)
    except DvcException as exc:
        raise StageFailed(f"{root}: dvc repro {stage} failed: {_reason(exc)}") from None
    return [s.name for s in ran]


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong (DVC wraps the cause)."""
    text = str(exc.__cause__ or exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def project_root() -> Path:
    """The project in the working directory, else this source checkout's."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / DVC_FILE).is_file():
            return candidate
    raise ConfigError(f"{DVC_FILE}: not found (run from the project root)")


def _cache_of(project: Path) -> Path | None:
    """The project's DVC cache folder, when it is a DVC project."""
    if not (project / ".dvc").is_dir():
        return None
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return Path(repo.cache.local_cache_dir)


def _absolute_inputs(cfg: Config, root: Path) -> Config:
    """`cfg` with the inputs a run reads given as absolute paths (the workspace runs in
    another folder). A project without a labels file gives its workspaces an empty one,
    beside them (DVC needs each dependency to exist; an empty file holds no labels, as
    none does; siblings share it, so a sweep candidate's ingest matches its data's)."""
    paths = {}
    for name in INPUT_PATHS:
        value = getattr(cfg.paths, name)
        paths[name] = value if value.is_absolute() else value.resolve()
    if not paths["labels"].exists():
        paths["labels"] = root.parent / "empty-labels.csv"
        if not paths["labels"].exists():
            with atomic_path(paths["labels"], ".csv") as tmp:
                tmp.write_text(",".join(LABEL_COLUMNS) + "\n")
    split = cfg.split
    if split.manifest is not None and not split.manifest.is_absolute():
        split = split.model_copy(update={"manifest": split.manifest.resolve()})
    models: dict[str, object] = {"split": split}
    for section in ("train", "icl"):
        model = getattr(cfg, section).model
        if model and not Path(model).is_absolute() and Path(model).exists():
            models[section] = getattr(cfg, section).model_copy(
                update={"model": str(Path(model).resolve())}
            )
    return cfg.model_copy(update={"paths": cfg.paths.model_copy(update=paths), **models})


@dataclass(frozen=True)
class Workspace:
    """A DVC project of its own at `root`, running the project's `dvc.yaml` on `cfg`."""

    root: Path
    cfg: Config  # as written to root/params.yaml: artifact paths relative to root

    @classmethod
    def open(cls, root: str | Path, cfg: Config, project: Path | None = None) -> Workspace:
        """The workspace at `root` (made on first use) with `cfg` as its params.yaml;
        `project`: where dvc.yaml and src are (default: `project_root()`)."""
        from dvc.repo import Repo

        project = (project or project_root()).resolve()
        root = Path(root).resolve()
        root.parent.mkdir(parents=True, exist_ok=True)
        # one opener at a time (two sweep tasks may open one workflow's data at once)
        lock = FileLock(str(root.parent / f".{root.name}.open.lock"))
        with _stdout_to_stderr(), lock:
            root.mkdir(exist_ok=True)
            for name in LINKED:
                link, target = root / name, project / name
                if target.exists() and not link.is_symlink():
                    link.symlink_to(target)
            cfg = _absolute_inputs(cfg, root)
            text = yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False)
            params = root / "params.yaml"
            if not params.exists() or params.read_text() != text:
                with atomic_path(params, ".yaml") as tmp:
                    tmp.write_text(text)
            if not (root / ".dvc").is_dir():
                Repo.init(str(root), no_scm=True).close()
            cache = str(_cache_of(project) or root.parent / ".dvc-cache")
            with Repo(str(root)) as repo:
                if repo.config["cache"].get("dir") != cache:
                    with repo.config.edit("local") as conf:
                        conf["core"]["analytics"] = False
                        conf["cache"]["dir"] = cache
        return cls(root, cfg)

    @property
    def paths(self) -> Paths:
        """The config's paths as seen from outside the workspace."""
        return self.cfg.paths.under(self.root)

    def run(
        self, until: str, flowbench_dir: str | Path | None = None, force_only: bool = False
    ) -> list[str]:
        """`dvc repro <until>`: the stages up to `until` that were stale, run
        (`force_only`: `until` alone, run whatever DVC thinks). What they print goes to
        stderr (a study's result is its command's stdout)."""
        order = stage_order(self.root / DVC_FILE)
        if until not in order:
            raise ConfigError(f"{self.root}: unknown stage '{until}' (dvc.yaml has {order})")
        with _stdout_to_stderr():
            return repro(
                self.root,
                until,
                single_item=force_only,
                force=force_only,
                flowbench_dir=flowbench_dir,
            )

    def seed(self, source: Workspace, stages: Sequence[str]) -> None:
        """Take `stages` as `source` ran them: its dvc.lock entries and their outputs
        checked out of the shared DVC cache (nothing runs again)."""
        from dvc.exceptions import DvcException
        from dvc.repo import Repo
        from dvc.utils.serialize import dump_yaml, load_yaml  # DVC's own YAML (1.2)

        theirs = source.root / "dvc.lock"
        try:
            lock = load_yaml(str(theirs))
            entries = {s: lock["stages"][s] for s in stages}
        except (OSError, KeyError, TypeError, DvcException) as exc:
            raise StageFailed(
                f"{theirs}: no locked stages {list(stages)} to take ({exc})"
            ) from None
        mine = self.root / "dvc.lock"
        current = load_yaml(str(mine)) if mine.exists() else None
        current = current or {"schema": lock.get("schema", "2.0"), "stages": {}}
        current["stages"].update(entries)
        try:
            with _stdout_to_stderr():
                with atomic_path(mine, ".lock") as tmp:
                    dump_yaml(str(tmp), current)
                with contextlib.chdir(self.root), Repo(str(self.root)) as repo:
                    repo.checkout(targets=list(stages), force=True)
                    uncached = [
                        out.def_path
                        for stage in stages
                        for defined in repo.stage.collect(stage)
                        for out in defined.outs
                        if not out.use_cache
                    ]
            # what DVC does not cache (the stages' reports): replaced by the source's
            for path in uncached:
                _replace(source.root / path, self.root / path)
        except DvcException as exc:
            targets = " ".join(stages)
            raise StageFailed(
                f"{self.root}: dvc checkout {targets} failed: {_reason(exc)}"
            ) from None


def _replace(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source` (a file or a folder), whatever it was."""
    if not source.exists():
        return
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
