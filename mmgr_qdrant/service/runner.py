"""Running the service with uvicorn: one retriever per process, opened before the port is taken.

Opening first means a store fault (an Edge folder another process holds, an unreachable server)
is reported at start with the library's message rather than on the first request. With several
workers (a Qdrant server only: an Edge folder has one writer) each worker process opens its own
retriever from the settings passed in the environment.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ._deps import require
from .settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)
_ENV = "MMGR_SERVE_SPEC"


def check_port(host: str, port: int) -> None:
    """Fail early, with a clear message, when ``host:port`` cannot be bound.

    Raises:
        ConfigError: the port is in use or the address is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"Cannot listen on {host}:{port} ({exc.strerror}); pass another --port or --host.") from None


def serve(
    collection: str,
    connection: dict[str, Any],
    settings: ServiceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    on_ready: Any = None,
) -> None:
    """Open the collection, then serve it until interrupted; the retriever is closed on the way out.

    Args:
        collection: the collection to serve.
        connection: ``path=`` or ``url=`` / ``api_key=``, as ``MultimodalRetriever.open`` takes them.
        settings: the service's limits and switches.
        host / port: where to listen.
        workers: uvicorn worker processes (more than one only with a Qdrant server).
        log_level: uvicorn's log level.
        on_ready: called with the open retriever before the port is bound (the CLI prints a line).

    Raises:
        MissingDependencyError: FastAPI, python-multipart or uvicorn is not installed.
        CollectionNotFoundError / StoreUnavailableError: the index cannot be opened (e.g. another
            process holds the Edge folder).
        ConfigError: the port cannot be bound, or ``workers > 1`` on an Edge folder.
    """
    require(server=True)
    import uvicorn

    from ..retriever import MultimodalRetriever

    if workers < 1:
        raise ConfigError(f"--workers {workers} is not a positive number; use 1 or more.")
    if workers > 1 and "url" not in connection:
        raise ConfigError(f"--workers {workers} needs a Qdrant server (--url): an embedded Edge folder allows one process; use --workers 1.")
    r = MultimodalRetriever.open(collection, **connection)
    try:
        r.encoder.encode_texts(["warm-up"])  # load the encoder's models now: the first query should not pay for it
        check_port(host, port)
        if on_ready is not None:
            on_ready(r)
        if workers == 1:
            from . import create_app

            uvicorn.run(create_app(r, settings), host=host, port=port, log_level=log_level)
            return
    finally:
        r.close()  # one worker: after serving; several: each worker opens its own
    os.environ[_ENV] = json.dumps({"collection": collection, "connection": connection, "settings": asdict(settings)})
    uvicorn.run("mmgr_qdrant.service.runner:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=log_level)


def app_from_env() -> FastAPI:
    """The app of one worker process, from the spec :func:`serve` put in the environment (uvicorn's factory)."""
    from ..retriever import MultimodalRetriever
    from . import create_app

    spec = json.loads(os.environ[_ENV])
    r = MultimodalRetriever.open(spec["collection"], **spec["connection"])
    app = create_app(r, ServiceSettings(**spec["settings"]))

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        r.close()

    app.router.lifespan_context = lifespan
    return app
