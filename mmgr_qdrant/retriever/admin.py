"""The admin part of a retriever: statistics, export and import, and collection management."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..admin import IndexStats, clear_orphan, export_index, import_export, index_stats
from ..config import CONFIG_BLOB, IndexConfig
from ..errors import CollectionNotFoundError
from ..hierarchy import docid_children
from ..progress import ProgressCallback
from ..store import Store
from ._common import DEFAULT_PATH, _make_store
from .search import Search
from .state import Index

__all__ = ["Admin", "clear_orphan", "drop_collection", "import_collection", "list_collections"]


class Admin:
    """What an operator asks of one open index."""

    def __init__(self, index: Index, search: Search) -> None:
        self.index = index
        self.search = search

    def stats(self, *, probe: bool = True) -> IndexStats:
        index = self.index

        def run_probe(vecs: Any) -> Any:
            return self.search.search_batch(vectors=vecs, k=10, mode="hybrid")

        return index_stats(index.store, index.config, index.generative, run_probe if probe else None)

    def export(self, file: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> Path:
        return export_index(self.index.store, self.index.config, Path(file), progress)

    def browse(self, prefix: Sequence[int] = ()) -> list[tuple[tuple[int, ...], int]]:
        gen = self.index.require_built("browsing the docid hierarchy (documents have no docids before it)")
        return docid_children(gen, prefix)


# -- collections (no open index needed) --------------------------------------------------------------
def import_collection(
    file: str | os.PathLike[str], name: str | None, *, path: Any, client: Any, url: str | None, api_key: str | None,
    progress: ProgressCallback | None,
) -> tuple[Store, IndexConfig]:
    """Create a collection from an export file, all or nothing; returns the open store and config."""
    return import_export(file, name, lambda target: _make_store(target, path=path, client=client, url=url, api_key=api_key), progress)


def list_collections(*, path: Any, client: Any, url: str | None, api_key: str | None) -> list[str]:
    if client is None and url is None:
        from ..store import list_edge_collections

        root = Path(path if path is not None else DEFAULT_PATH)
        return [c for c in list_edge_collections(root) if (root / c / "blobs" / CONFIG_BLOB).is_file()]
    store = _make_store("list", path=None, client=client, url=url, api_key=api_key)
    try:
        from ..store import list_client_collections

        return list_client_collections(store.client)  # type: ignore[attr-defined]
    finally:
        store.close()


def drop_collection(name: str, *, path: Any, client: Any, url: str | None, api_key: str | None) -> None:
    store = _make_store(name, path=path, client=client, url=url, api_key=api_key)
    try:
        if not store.exists():
            raise CollectionNotFoundError(f"Collection {name!r} does not exist; see `mmgr list` for the collections there.")
        store.drop()
    finally:
        store.close()
