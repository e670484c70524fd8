"""``mmgr serve``: a REST API and a web page over one open retriever (FastAPI on uvicorn).

``create_app(retriever)`` returns an ASGI app to run with uvicorn or mount in your own app::

    from mmgr_qdrant import MultimodalRetriever
    from mmgr_qdrant.service import ServiceSettings, create_app

    app = create_app(MultimodalRetriever.open("photos"), ServiceSettings(max_k=50))

FastAPI, uvicorn and python-multipart come with the ``serve`` extra (``pip install 'mmgr-qdrant[serve]'``);
they are imported only when an app is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..retriever import MultimodalRetriever

__all__ = ["ServiceSettings", "create_app"]


def create_app(retriever: MultimodalRetriever, settings: ServiceSettings | None = None, **kwargs: Any) -> FastAPI:
    """The service's ASGI app over an open retriever (which the caller keeps and closes).

    Args:
        retriever: an open :class:`~mmgr_qdrant.retriever.MultimodalRetriever`, shared by every request.
        settings: limits and switches; keyword arguments override its fields.

    Returns:
        A FastAPI app: the JSON API, OpenAPI docs at ``/docs`` and the page at ``/``.

    Raises:
        MissingDependencyError: FastAPI or python-multipart is not installed.
        ConfigError: writes are allowed without an API key, or a limit is out of range.
    """
    from ._deps import require

    require()
    from .app import build_app

    return build_app(retriever, (settings or ServiceSettings()).replace(**kwargs))
