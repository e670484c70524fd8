"""The admin part of a retriever: statistics, export and import, and collection management."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from ..admin import IndexStats, export_index, import_points, index_stats, read_export
from ..config import IndexConfig
from ..errors import CollectionNotFoundError, ConfigError
from ..progress import ProgressCallback
from ..store import Store
from ._common import CONFIG_BLOB, DEFAULT_PATH, _make_store, logger
from .search import Search
from .state import Index


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


# -- collections (no open index needed) --------------------------------------------------------------
def import_collection(
    file: str | os.PathLike[str], name: str | None, *, path: Any, client: Any, url: str | None, api_key: str | None,
    progress: ProgressCallback | None,
) -> tuple[Store, IndexConfig]:
    """Create a collection from an export file; a failed import drops what it made. Returns the open store and config."""
    manifest, config, z = read_export(file)
    with z:
        target = name or config.collection
        store = _make_store(target, path=path, client=client, url=url, api_key=api_key)
        try:
            if store.exists():
                raise ConfigError(f"Collection {target!r} already exists; import under another name or drop it first.")
            clear_orphan(store)
            # A new index id unless the export had one: the imported builds carry the exported index's id.
            config = config.with_(collection=target, index_id=config.index_id or str(uuid.uuid4()))
        except BaseException:
            store.close()
            raise
        try:
            store.create(config.dim)
            store.put_blob(CONFIG_BLOB, config.to_json().encode())
            import_points(store, z, int(manifest.get("points", 0)), progress)
        except BaseException:
            logger.warning("import of %s into %r failed; dropping the half-made collection", file, target)
            try:
                store.drop()
            finally:
                store.close()
            raise
    return store, config


def clear_orphan(store: Store) -> None:
    """Delete what a collection deleted outside mmgr left behind (its saved config and builds).

    Called only when the collection itself does not exist, so nothing live is touched; without
    this, a new index of the same name would load the old index's build.
    """
    left = store.list_blobs()
    if left:
        logger.warning(
            "collection %r was deleted outside mmgr but its saved index data remained (%d blobs); clearing it for the new index",
            store.collection, len(left),
        )
        for name in left:
            store.delete_blob(name)


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
