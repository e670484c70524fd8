"""``mmgr serve``: the REST API and web page over one collection (see :mod:`mmgr_qdrant.service`)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..errors import CollectionNotFoundError
from .connect import ApiKeyOpt, CollectionOpt, PathOpt, UrlOpt, conn
from .render import note

PANEL = "Service"


class LogLevel(str, Enum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).", rich_help_panel=PANEL)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port to listen on.", rich_help_panel=PANEL)] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (more than 1 only with --url).", rich_help_panel=PANEL)
    ] = 1,
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Serve POST /items and DELETE /items/{id} (needs --write-key).", rich_help_panel=PANEL)
    ] = False,
    write_key: Annotated[
        str | None,
        typer.Option("--write-key", envvar="MMGR_WRITE_KEY", help="Key that write requests send in the X-API-Key header.",
                     show_default=False, rich_help_panel=PANEL),
    ] = None,
    feedback: Annotated[
        bool, typer.Option("--feedback/--no-feedback", help="Accept POST /feedback (relevance marks the index learns from).", rich_help_panel=PANEL)
    ] = True,
    max_k: Annotated[int, typer.Option("--max-k", min=1, help="The largest k a request may ask for.", rich_help_panel=PANEL)] = 100,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.01, help="The largest uploaded image, in MiB.", rich_help_panel=PANEL)
    ] = 10.0,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="A web origin allowed to call the API from a browser (repeatable), e.g. a clip-retrieval front end.",
                     rich_help_panel=PANEL),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="uvicorn's log level (info logs every request).", rich_help_panel=PANEL)
    ] = LogLevel.info,
    collection: CollectionOpt = "default",
    path: PathOpt = "./mmgr_data",
    url: UrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Serve a collection: a JSON API (docs at /docs) and a web page to search, browse and give feedback.

    The index is opened once and shared; Ctrl-C stops the service. An embedded (Edge) folder has one writer, so stop other processes that hold it first.

    Example: mmgr serve --collection demo   (then open http://127.0.0.1:8000)
    """
    from ..retriever import MultimodalRetriever
    from ..service import ServiceSettings
    from ..service.runner import serve as run

    c = conn(collection, path, url, api_key)
    if allow_writes and not write_key:
        raise typer.BadParameter("--allow-writes needs --write-key KEY (or MMGR_WRITE_KEY)", param_hint="--write-key")
    settings = ServiceSettings(allow_writes=allow_writes, api_key=write_key, feedback=feedback, max_k=max_k,
                               max_upload_bytes=int(max_upload_mb * 2**20), cors_origins=tuple(cors_origin or ()))

    def ready(r: MultimodalRetriever) -> None:
        writes = "writes allowed (X-API-Key)" if allow_writes else "read-only"
        note(f"Serving collection [bold]{c.collection}[/] {c.where} ({r.count():,} documents, {writes}) "
             f"on [bold]http://{host}:{port}[/]  (API docs: /docs; Ctrl-C stops)")

    try:
        run(c.collection, c.kwargs(), settings, host=host, port=port, workers=workers, log_level=log_level.value, on_ready=ready)
    except CollectionNotFoundError:
        raise CollectionNotFoundError(
            f"Collection {c.collection!r} does not exist {c.where}; create it with `mmgr init{c.flags()}` "
            "(or see `mmgr list` for the collections there)."
        ) from None
