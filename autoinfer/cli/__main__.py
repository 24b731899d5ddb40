"""`python -m autoinfer.cli` runs the command line."""

from autoinfer.cli import app

app()
