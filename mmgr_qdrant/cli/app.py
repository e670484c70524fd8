"""``mmgr``: parse, call the library, render with rich.

Exit codes: 0 on success, 1 on an :class:`~mmgr_qdrant.errors.MMGRError` (its message in red, the
traceback only with ``--verbose``), 2 on usage errors (click's own).
"""

from __future__ import annotations

import platform
from typing import Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from .._version import __version__
from ..errors import MMGRError
from . import commands_admin, commands_index, commands_learning, commands_search, commands_serve, render
from .render import console


class MMGRGroup(TyperGroup):
    """Runs a command and turns library errors into a red message and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # exits and usage errors (code 2) stay typer's
            raise
        except MMGRError as exc:
            if render.ui.verbose:
                render.err_console.print_exception(show_locals=False)
            render.error(str(exc))
            ctx.exit(1)
        except Exception as exc:
            if render.ui.verbose:
                raise
            render.error(f"unexpected {type(exc).__name__}: {exc} (rerun with --verbose for the traceback, and please report it)")
            ctx.exit(1)


app = typer.Typer(
    name="mmgr",
    cls=MMGRGroup,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"mmgr-qdrant {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool | None = typer.Option(None, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging, and tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", help="Only results and errors: no progress bars, notes or warnings."),
) -> None:
    """Multimodal generative retrieval for Qdrant: build, search and inspect mmgr indexes.

    Connection options (--path, --url, --api-key, --collection) go after the command and are
    also read from MMGR_PATH, QDRANT_URL, QDRANT_API_KEY and MMGR_COLLECTION.

    Example: mmgr init && mmgr ingest photos/ && mmgr build && mmgr search "a red car"
    """
    render.setup(verbose, quiet)


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


commands_index.register(app)
commands_search.register(app)
commands_admin.register(app)
commands_serve.register(app)
commands_learning.register(app)


def main() -> None:
    app(prog_name="mmgr")
