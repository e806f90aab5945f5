"""What every command shares: the console, the common options, and `command`, the one
decorator that loads params.yaml into a `Config`, sets up logging, holds the project
lock for a command that writes the data or the registry (`--wait`), and turns a
`FlowsentryError` into a one-line message and exit code 1."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flowsentry import logs
from flowsentry.config import Paths, load_config, parse_overrides
from flowsentry.errors import FlowsentryError, os_error_line
from flowsentry.lock import project_lock

console = Console(stderr=True)
log = logging.getLogger(__name__)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="The params file to read.", show_default=True)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a param for this run, e.g. --set split.method=by_run (YAML value).",
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
WaitOption = Annotated[
    float | None,
    typer.Option(
        "--wait",
        help="Seconds to wait for another flowsentry run that holds the project lock "
        "(paths.lock); unset: FLOWSENTRY_LOCK_WAIT, else stop at once. -1: wait for ever.",
    ),
]
FlowbenchOption = Annotated[
    Path | None,
    typer.Option(
        envvar="FLOWBENCH_DIR",
        help="Folder in the Flow-Bench data/ layout (<workflow>.zip + adjacency_list_dags/). "
        "Unset: download from ingest.source_url.",
    ),
]

_COMMON = {
    "params": (ParamsOption, Path("params.yaml")),
    "set_": (SetOption, None),
    "verbose": (VerboseOption, False),
}


def progress() -> bool:
    """Progress bars only where a person watches (a terminal)."""
    return sys.stderr.isatty()


def command(
    group: typer.Typer, name: str | None = None, config: bool = True, writes: bool = False
) -> Callable:
    """Register `fn` on `group` with the common options.

    `fn` takes its own options, plus `cfg` (the loaded Config) when `config` is true;
    `--params`, `--set` (when `config`) and `--verbose` are added here, once. A command
    that hands the params file on (a flow) declares `params` / `set_` to receive them.
    A command that `writes` the data or the registry runs holding the project lock
    (flowsentry/lock.py), with `--wait`.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        wanted = set(inspect.signature(fn).parameters)
        own = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.name != "cfg" and p.name not in _COMMON
        ]
        hints = {
            k: v
            for k, v in inspect.get_annotations(fn, eval_str=True).items()
            if k != "cfg" and k not in _COMMON
        }
        common = {k: v for k, v in _COMMON.items() if config or k == "verbose" or k in wanted}
        if writes:
            common["wait"] = (WaitOption, None)

        @functools.wraps(fn)
        def run(**kwargs: Any) -> Any:
            params = kwargs.pop("params", None)
            overrides = kwargs.pop("set_", None)
            logs.setup(kwargs.pop("verbose", False))
            wait = kwargs.pop("wait", None)
            if "params" in wanted:  # the command hands the file on (a flow reads it)
                kwargs["params"] = params
            if "set_" in wanted:
                kwargs["set_"] = overrides
            try:
                if config:
                    kwargs["cfg"] = load_config(params, parse_overrides(overrides))
                lock_path = _lock_path(kwargs.get("cfg")) if writes else None
                if lock_path is None:
                    return fn(**kwargs)
                with project_lock(lock_path, wait):
                    return fn(**kwargs)
            except FlowsentryError as exc:
                console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(code=1) from None
            except OSError as exc:  # no space, permission, read-only, a file for a folder
                log.debug("the OS refused", exc_info=True)
                console.print(
                    f"[bold red]error:[/] {os_error_line(exc)}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(code=1) from None

        extra = [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for k, (a, d) in common.items()
        ]
        ordered = [
            p.replace(
                kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)
            )
            for p in own
        ] + extra
        run.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
        run.__annotations__ = {**hints, **{k: a for k, (a, _) in common.items()}}
        group.command(name)(run)
        return run

    return decorate


def _lock_path(cfg: Any) -> Path | None:
    """The project lock a writing command holds: its config's, or for a command without
    one (the registry's promote and rollback) the project's in the working folder; none
    outside a project (the registry's own writes are atomic)."""
    if cfg is not None:
        return cfg.paths.lock
    here = Path.cwd()
    if (here / "params.yaml").exists():
        return load_config(here / "params.yaml").paths.lock  # a bad file: one line
    return Paths().lock if (here / "dvc.yaml").exists() else None


def json_record(text: str, option: str) -> dict[str, Any]:
    """A job record given as JSON on the command line."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlowsentryError(f"{option}: not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise FlowsentryError(f"{option}: expected a JSON object of field -> value")
    return record
