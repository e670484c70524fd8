"""The ``mmgr`` command line: a thin typer app over the public library API."""

from .app import app, main

__all__ = ["app", "main"]
