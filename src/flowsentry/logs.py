"""Logging set-up for the CLI: rich, one line per event, third-party noise quieted."""

from __future__ import annotations

import logging
import os


def setup(verbose: bool = False) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        # stderr: stdout is for a command's result (JSON, lines to grep)
        handlers=[
            RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        ],
        force=True,
    )
    for noisy in ("great_expectations", "urllib3", "filelock", "httpx", "transformers", "pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
