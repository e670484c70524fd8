"""The optional web dependencies, checked once with an error that names the extra."""

from __future__ import annotations

from importlib.util import find_spec

from ..errors import missing_dependency


def require(*, server: bool = False) -> None:
    """Raise :class:`~mmgr_qdrant.errors.MissingDependencyError` when a web dependency is absent.

    Args:
        server: also require uvicorn (needed to run the service, not to build the app).
    """
    needed = [("fastapi", "fastapi"), ("multipart", "python-multipart")] + ([("uvicorn", "uvicorn")] if server else [])
    for module, package in needed:
        if find_spec(module) is None:
            raise missing_dependency(package, "serve")
