"""Connection options shared by every command, and opening an index from them.

Every command takes ``--collection``, ``--path`` (embedded Qdrant Edge) or ``--url`` / ``--api-key``
(a Qdrant server or cloud), each also read from the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CollectionNotFoundError, InputError

if TYPE_CHECKING:
    from ..retriever import MultimodalRetriever

DEFAULT_PATH = "./mmgr_data"
DEFAULT_COLLECTION = "default"
PANEL = "Connection"

CollectionOpt = Annotated[
    str,
    typer.Option("--collection", "-c", envvar="MMGR_COLLECTION", help="Collection (index) name.", rich_help_panel=PANEL),
]
PathOpt = Annotated[
    str,
    typer.Option(
        "--path", envvar="MMGR_PATH", help="Folder of the embedded store (Qdrant Edge); ignored with --url.", rich_help_panel=PANEL
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="QDRANT_URL", help="Qdrant server URL (server, cluster or cloud) instead of --path.", rich_help_panel=PANEL
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="QDRANT_API_KEY", help="API key for --url.", show_default=False, rich_help_panel=PANEL),
]


@dataclass(frozen=True)
class Conn:
    """Where an index lives, as the connection options gave it."""

    collection: str
    path: str = DEFAULT_PATH
    url: str | None = None
    api_key: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``MultimodalRetriever.create/open/list_collections/drop``."""
        if self.url:
            return {"url": self.url, "api_key": self.api_key}
        return {"path": self.path}

    @property
    def where(self) -> str:
        return f"on {self.url}" if self.url else f"under {self.path}"

    def flags(self) -> str:
        """The options to repeat in a hint (only those that differ from the defaults)."""
        parts = []
        if self.collection != DEFAULT_COLLECTION:
            parts.append(f"--collection {self.collection}")
        if self.url:
            parts.append(f"--url {self.url}")
        elif self.path != DEFAULT_PATH:
            parts.append(f"--path {self.path}")
        return (" " + " ".join(parts)) if parts else ""


def conn(collection: str, path: str, url: str | None, api_key: str | None) -> Conn:
    if not collection or not collection.strip():
        raise typer.BadParameter("the collection name is empty", param_hint="--collection")
    return Conn(collection.strip(), path or DEFAULT_PATH, url or None, api_key or None)


@contextmanager
def open_index(c: Conn) -> Iterator[MultimodalRetriever]:
    """Open the collection (closing it afterwards); a missing one says how to create it."""
    from ..retriever import MultimodalRetriever

    try:
        r = MultimodalRetriever.open(c.collection, **c.kwargs())
    except CollectionNotFoundError:
        raise CollectionNotFoundError(
            f"Collection {c.collection!r} does not exist {c.where}; create it with `mmgr init{c.flags()}` "
            "(or see `mmgr list` for the collections there)."
        ) from None
    try:
        yield r
    finally:
        r.close()


def parse_id(raw: str) -> Any:
    """A point id typed on the command line: digits are an integer id, anything else a UUID string."""
    s = raw.strip()
    if not s:
        raise InputError("An empty id was given; pass an integer or a UUID (as `mmgr search` prints them).")
    return int(s) if s.isdigit() else s


def parse_pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` options to a dict; values are JSON when they parse (numbers, true, lists), else strings."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out
