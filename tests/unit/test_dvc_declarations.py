"""dvc.yaml says what each stage reads, and the stages read just that.

Every stage runs once in a tiny project (tree, encoder and decoder candidates), with
its config wrapped in a recorder of the params.yaml keys it reads and
a profile hook recording which source files run. Each key read must be declared
under the stage's `params` and each source file under its `deps` (or be shared
plumbing every stage uses); each declaration must be read by the stage. A stage that
reads a key or calls code DVC does not know of would be skipped by `dvc repro` after
that key or code changed.
"""

from __future__ import annotations

import contextlib
import cProfile
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from tests.conftest import EASY_GATE

from flowsentry.reports import GateReport

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "flowsentry"
# Plumbing every stage uses (config, errors, atomic writes, logging, the CLI): a
# change there is a change of the tool, not of one stage's output.
SHARED = ("config.py", "errors.py", "io.py", "logs.py", "__init__.py", "cli/")


class Recorder:
    """A config section that records each params.yaml key read through it."""

    def __init__(self, model: BaseModel, path: str, reads: set[str]) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        model, path, reads = self._model, self._path, self._reads
        value = getattr(model, name)
        if name in type(model).model_fields:
            key = name.removesuffix("_")  # validate_ is params.yaml's `validate`
            here = f"{path}.{key}" if path else key
            if isinstance(value, BaseModel):
                return Recorder(value, here, reads)
            reads.add(here)
            return value
        reads.add(path)  # a method (model_dump, model_copy, under): the whole section
        return value


def _stages() -> dict[str, dict[str, Any]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    icl = yaml.safe_load((ROOT / "pipelines" / "icl" / "dvc.yaml").read_text())["stages"]
    study = yaml.safe_load((ROOT / "pipelines" / "new_workflow" / "dvc.yaml").read_text())
    # a foreach stage: its `do` declares for every item
    study = {f"new_workflow:{name}": stage.get("do", stage)
             for name, stage in study["stages"].items()}  # fmt: skip
    return {**stages, **icl, **study}


def _code_deps(stage: dict[str, Any]) -> list[str]:
    return [d for d in stage.get("deps", []) if d.startswith("src/")]


class Monitor:
    """Source files of flowsentry whose functions are called, on every thread: cProfile
    (C-level, a fraction of the cost of a Python profile hook; Python 3.11 has no
    sys.monitoring) in this thread and in each thread started while it records."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self._profiles: list[cProfile.Profile] = []

    def _start_in_thread(self, frame, event, arg) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(builtins=False)
        self._profiles.append(profile)
        profile.enable()

    def __enter__(self) -> set[str]:
        self.files = set()
        self._profiles = [cProfile.Profile(builtins=False)]
        threading.setprofile(self._start_in_thread)
        self._profiles[0].enable()
        return self.files

    def __exit__(self, *exc) -> None:
        self._profiles[0].disable()
        threading.setprofile(None)
        found: set[str] = set()
        for profile in self._profiles:  # a thread's still enabled: its calls so far
            for entry in profile.getstats():
                filename = getattr(entry.code, "co_filename", "")  # a str: a builtin
                if filename.startswith(str(SRC)):
                    found.add(filename)
        self.files.clear()
        self.files.update(Path(f).relative_to(ROOT).as_posix() for f in found)


def _promoted(decision: GateReport) -> None:
    failed = [c for c in decision.checks if c.verdict == "fail"]
    assert decision.promoted, failed  # package needs a champion


@pytest.fixture
def observed(make_flowbench, project, bento_home, tiny_encoder, tiny_decoder_folder):
    """{stage: (params keys read, source files run)} for every stage of both dvc.yaml."""
    from flowsentry import new_workflow
    from flowsentry.stages import (
        augment,
        evaluate,
        gate,
        icl,
        ingest,
        package,
        prepare,
        train,
        validate,
    )

    cfg = project(
        new_workflow={
            "workflows": ["tiny", "other"],
            "labelled_runs": [0, 1],
            "draws": 1,
            "kinds": ["gradient_boosting", "ecod"],
            "runs_per_workflow": 10,
            "language_models": {
                "workflows": ["tiny"],
                "labelled_runs": [0, 1],
                "max_train_samples": 64,
                "test_jobs": 12,
                "icl_examples": 1,
            },
        },
        train={
            "candidates": ["sft", "icl", "gradient_boosting", "random_forest", "isolation_forest"],
            "model": str(tiny_encoder),
            "max_train_samples": 64,
            "max_val_samples": 32,
        },
        evaluate={"max_jobs": 24, "online_max_jobs": 10},
        icl={
            "model": str(tiny_decoder_folder),
            "sample": 10,
            "n_examples": 1,
            "curve": [0, 1],
            "lora": {"train_samples": 10},
        },
        gate=EASY_GATE,
    )
    flowbench = make_flowbench(n_runs=40)
    make_flowbench(workflow="other", n_runs=30, root=flowbench)
    runs = [
        ("ingest", lambda c: ingest.run(c, flowbench, progress=False)),
        ("validate", validate.run),
        ("prepare", prepare.run),
        ("augment", augment.run),
        ("train", lambda c: train.run(c, progress=False)),
        ("evaluate", lambda c: evaluate.run(c, progress=False)),
        ("gate", lambda c: _promoted(gate.run(c))),
        ("package", lambda c: package.run(c, ROOT / "bentofile.yaml")),
        ("icl", lambda c: icl.run(c, progress=False)),
        # Again, now with a champion: the gate then scores it too (other keys read).
        ("gate", gate.run),
        ("new_workflow:holdout", lambda c: new_workflow.run_holdout(c, "tiny", flowbench)),
        ("new_workflow:holdout", lambda c: new_workflow.run_holdout(c, "other", flowbench)),
        (
            "new_workflow:language_models",
            lambda c: new_workflow.run_language_models(c, "tiny", flowbench),
        ),
        ("new_workflow:table", new_workflow.summarise),
        ("new_workflow:table", new_workflow.summarise_language_models),
    ]
    monitor = Monitor()
    seen: dict[str, tuple[set[str], set[str]]] = {}
    for name, run in runs:
        reads: set[str] = set()
        with monitor as files, _workspace_runs() as dvc_runs:
            run(Recorder(cfg, "", reads))
        files |= _code_run_by_dvc(dvc_runs)
        earlier_reads, earlier_files = seen.get(name, (set(), set()))
        seen[name] = (earlier_reads | reads, earlier_files | files)
    return seen


@contextlib.contextmanager
def _workspace_runs() -> Iterator[list[str]]:
    """The stages `Workspace.run` was asked for (DVC runs them in other processes)."""
    from flowsentry.workspace import Workspace

    asked: list[str] = []
    real = Workspace.run

    def run(self, until, *args, **kwargs):
        asked.append(until)
        return real(self, until, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Workspace, "run", run)
        yield asked


def _code_run_by_dvc(asked: list[str]) -> set[str]:
    """The code deps dvc.yaml declares for the stages up to each of `asked`: what the
    stage commands DVC ran in a workspace read (a caller depends on them too)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    order = list(stages)
    code: set[str] = set()
    for until in asked:
        for name in order[: order.index(until) + 1]:
            code.update(_code_deps(stages[name]))
    return code


def test_each_stage_declares_what_it_reads_and_reads_what_it_declares(observed):
    stages = _stages()
    assert set(observed) == set(stages)  # every stage is exercised here
    problems = []
    for name, (reads, files) in observed.items():
        declared = stages[name].get("params", [])
        keys = {k for k in reads if k and not k.startswith("paths")}  # paths: deps/outs
        for key in sorted(keys):
            if not any(key == d or key.startswith(f"{d}.") for d in declared):
                problems.append(f"{name}: reads params key '{key}', not in its params")
        for d in declared:
            if d.startswith("paths."):
                continue
            if not any(k == d or k.startswith(f"{d}.") or d.startswith(f"{k}.") for k in keys):
                problems.append(f"{name}: declares params '{d}' but never reads it")
        deps = _code_deps(stages[name])
        for file in sorted(files):
            inside = file.removeprefix("src/flowsentry/")
            if inside.startswith(SHARED) or inside.endswith("__init__.py"):
                continue
            if not any(file == d or file.startswith(f"{d.rstrip('/')}/") for d in deps):
                problems.append(f"{name}: runs {file}, not in its deps")
        for d in deps:
            if not any(f == d or f.startswith(f"{d.rstrip('/')}/") for f in files):
                problems.append(f"{name}: depends on {d} but never runs it")
    assert not problems, "\n".join(problems)
