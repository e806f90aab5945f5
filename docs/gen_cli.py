"""reference/cli.md: every `flowsentry` command and option, from the Typer app.

Run by mkdocs-gen-files at build time, in-process: the page is what `flowsentry --help`
and each command's `--help` say (typer's own Markdown rendering of the click commands),
so a command's help text is written once, in `src/flowsentry/cli/`.
"""

from __future__ import annotations

import mkdocs_gen_files
import typer
from typer.cli import MARKUP_MODE_KEY, get_docs_for_click

from flowsentry.cli import app

PAGE = "reference/cli.md"
INTRO = """
Every command loads `params.yaml` once (`--params` names another file) and takes
`--set KEY=VALUE` to override one key for that run (see [Parameters](params.md)); an
error a user can cause is one line on stderr and exit code 1. This page is generated
from the Typer app `flowsentry.cli:app` when the site is built (`docs/gen_cli.py`).
"""


def cli_markdown() -> str:
    """The Typer app's commands as Markdown, one heading per command."""
    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name="flowsentry")
    ctx.ensure_object(dict)[MARKUP_MODE_KEY] = app.rich_markup_mode
    text = get_docs_for_click(obj=command, ctx=ctx, name="flowsentry", title="Command line")
    title, _, rest = text.strip().partition("\n")
    return f"{title}\n{INTRO}{rest}\n"


with mkdocs_gen_files.open(PAGE, "w") as handle:
    handle.write(cli_markdown())
