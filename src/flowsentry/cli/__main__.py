from flowsentry.cli import app

app()
