"""``mmgr``: parse, call the library, render with rich."""

from __future__ import annotations

import platform
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .._version import __version__

app = typer.Typer(
    name="mmgr",
    help="Multimodal generative retrieval for Qdrant: build, search and inspect mmgr indexes.",
    no_args_is_help=True,
    add_completion=True,
)
console = Console()


def _version(value: bool) -> None:
    if value:
        console.print(f"mmgr-qdrant {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Multimodal generative retrieval for Qdrant.

    Example: mmgr info
    """


@app.command()
def info() -> None:
    """Show versions, available encoders and the compute device.

    Example: mmgr info
    """
    from ..encoders.base import available_encoders

    table = Table(title="mmgr-qdrant", show_header=False)
    table.add_row("version", __version__)
    table.add_row("python", platform.python_version())
    for dist in ("qdrant-edge-py", "qdrant-client", "torch", "open_clip_torch", "sentence-transformers"):
        table.add_row(dist, _dist_version(dist))
    table.add_row("encoders", ", ".join(p + ":" for p in available_encoders()))
    try:
        import torch

        table.add_row("device", "cuda (" + torch.cuda.get_device_name(0) + ")" if torch.cuda.is_available() else "cpu")
    except ImportError:
        table.add_row("device", "torch not installed")
    console.print(table)


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main() -> None:
    app(prog_name="mmgr")
