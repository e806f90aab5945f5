"""`python -m flowsentry.cli`: the same commands as `flowsentry`."""

from flowsentry.cli import app

app()
