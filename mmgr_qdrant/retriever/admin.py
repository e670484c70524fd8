"""Links and administration for :class:`~mmgr_qdrant.retriever.MultimodalRetriever`: stats, export/import, collections."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..config import IndexConfig
from ..encoders.base import Encoder
from ..errors import CollectionNotFoundError, ConfigError, InputError, NotFoundError
from ..generative import GenerativeIndex
from ..progress import ProgressCallback
from ..store import Store
from ..store.base import Record, normalize_id
from ..types import RESERVED_KEY, Hit, PointId
from ._common import CONFIG_BLOB, DEFAULT_PATH, _check_k, _hit, _make_store, _modality_filter

if TYPE_CHECKING:
    from typing_extensions import Self

    from ..admin import IndexStats


class AdminMixin:
    """Cross-modal links and administration (part of ``MultimodalRetriever``)."""

    store: Store
    config: IndexConfig
    _gen: GenerativeIndex | None
    _lock: threading.RLock

    if TYPE_CHECKING:  # provided by MultimodalRetriever, which this mixin does not import

        def __init__(self, store: Store, config: IndexConfig, encoder: Encoder | None = None) -> None: ...

        def close(self) -> None: ...

        @property
        def encoder(self) -> Encoder: ...

        def retrain(self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None) -> Any: ...

    # -- cross-modal links ------------------------------------------------------------------------
    def link(self, a: PointId, b: PointId) -> None:
        """Link two documents (an image and its caption, say), stored both ways in their payloads.

        Links feed :meth:`related` and the decoder's cross-modal training pairs.

        Raises:
            NotFoundError: either id is not in the collection.
        """
        self.link_many([(a, b)])

    def link_many(self, pairs: Sequence[tuple[PointId, PointId]]) -> None:
        """Link many pairs at once; see :meth:`link`."""
        with self._lock:
            norm = [(normalize_id(a), normalize_id(b)) for a, b in pairs]
            wanted = sorted({x for p in norm for x in p}, key=str)
            records = {r.id: r for r in self.store.retrieve(wanted)}
            missing = [i for i in wanted if i not in records]
            if missing:
                raise NotFoundError(f"Ids {missing[:5]} are not in collection {self.config.collection!r}; nothing was linked.")
            links = {i: list((records[i].payload.get(RESERVED_KEY) or {}).get("links", [])) for i in wanted}
            for a, b in norm:
                if a == b:
                    raise InputError(f"Cannot link document {a!r} to itself; give two different ids.")
                for x, y in ((a, b), (b, a)):
                    if str(y) not in links[x]:
                        links[x].append(str(y))
            self.store.set_payload(wanted, RESERVED_KEY, [{"links": links[i]} for i in wanted])

    # -- query supervision (logic in mmgr_qdrant/learning.py) ------------------------------------
    def learn(
        self,
        queries: Sequence[Any],
        relevant: Sequence[Sequence[PointId]],
        *,
        grades: Sequence[Sequence[float]] | None = None,
        kind: Literal["text", "image", "vector"] | None = None,
        train_s: float | None = None,
    ) -> int:
        """Store query -> relevant-document pairs with the index; the next build or retrain learns them.

        Args:
            queries: texts, images (path, PIL image, bytes, array) or query vectors.
            relevant: per query, the ids of the documents that answer it.
            grades: per query, a positive weight per relevant id (default 1.0).
            kind: how to read every query (``"text"``, ``"image"``, ``"vector"``); by default a
                string is text, a 1-D float array of the index's width a vector, anything else an image.
            train_s: retrain the decoder now, for at most this many seconds (needs a build).

        Returns:
            The number of pairs stored.

        Raises:
            InputError: mismatched lengths, an empty query, an empty id list, a bad grade.
            NotFoundError: an id is not in the collection (nothing is stored then).
            NotBuiltError: ``train_s`` was given and the index was never built.
        """
        from ..learning import learn

        with self._lock:
            n = learn(self.store, self.encoder, self.config.dim, queries, relevant, grades=grades, kind=kind)
        if train_s is not None:
            self.retrain(time_budget_s=train_s)
        return n

    def feedback(
        self, query: str | None = None, id: PointId | None = None, *, image: Any = None, vector: np.ndarray | None = None,
        relevant: bool = True,
    ) -> None:
        """Record a click or a thumbs-up (``relevant=True``) or a thumbs-down for one query and document.

        A positive judgement stores one learned pair; a negative one removes the pairs learned for
        the same query (cosine >= 0.98) and this document.

        Raises:
            InputError: not exactly one of ``query``, ``image``, ``vector``, or no ``id``.
            NotFoundError: ``id`` is not in the collection (for instance deleted since the search).
        """
        from ..learning import encode_queries, feedback

        given = [x for x in (query, image, vector) if x is not None]
        if len(given) != 1:
            raise InputError("Give exactly one of query (text), image= or vector= to feedback().")
        if id is None:
            raise InputError("feedback() needs the id of the document the judgement is about.")
        kind: Literal["text", "image", "vector"] = "text" if query is not None else "image" if image is not None else "vector"
        with self._lock:
            pid = normalize_id(id)
            vec = encode_queries(self.encoder, [given[0]], kind, self.config.dim)[0]
            feedback(self.store, vec, pid, relevant=relevant)

    def related(self, id: PointId, *, modality: str | None = None, k: int = 10) -> list[Hit]:
        """Documents related to ``id``: its linked documents first, then its nearest neighbours.

        Args:
            id: the document.
            modality: only documents of this modality (``"image"`` or ``"text"``).
            k: hits to return.

        Raises:
            NotFoundError: ``id`` is not in the collection.
        """
        _check_k(k)
        pid = normalize_id(id)
        found = self.store.retrieve([pid], with_vectors=True)
        if not found:
            raise NotFoundError(f"Id {pid!r} is not in collection {self.config.collection!r}; check it with get().")
        rec = found[0]
        g = self._gen.generation if self._gen is not None else None
        linked_ids = [normalize_id(x) for x in (rec.payload.get(RESERVED_KEY) or {}).get("links", [])]
        hits = []
        for r in self.store.retrieve(linked_ids):
            if modality is None or (r.payload.get(RESERVED_KEY) or {}).get("modality") == modality:
                hits.append(_hit(r, 1.0, {"relation": "linked"}, g))
        seen = {pid, *(h.id for h in hits)}
        if len(hits) < k:
            for s in self.store.query(rec.vector, k + len(seen), _modality_filter(modality)):  # type: ignore[arg-type]
                if s.id not in seen and len(hits) < k:
                    seen.add(s.id)
                    hits.append(_hit(s, s.score, {"relation": "nearest"}, g))
        return hits[:k]

    def _unlink_deleted(self, records: dict[PointId, Record]) -> None:
        """Remove links that point to deleted documents from the documents that remain."""
        gone = {str(i) for i in records}
        others = {normalize_id(x) for r in records.values() for x in (r.payload.get(RESERVED_KEY) or {}).get("links", [])}
        others -= set(records)
        if not others:
            return
        remaining = self.store.retrieve(sorted(others, key=str))
        values = [{"links": [x for x in (r.payload.get(RESERVED_KEY) or {}).get("links", []) if x not in gone]} for r in remaining]
        self.store.set_payload([r.id for r in remaining], RESERVED_KEY, values)

    # -- administration ----------------------------------------------------------------------------
    def stats(self, *, probe: bool = True) -> IndexStats:
        """Counts, docid balance, staleness of the build and artifact sizes.

        Args:
            probe: run the recall probe (hybrid search of up to 50 documents added since the
                decoder was trained, by their own embeddings).
        """
        from ..admin import index_stats

        return index_stats(self, probe=probe)  # type: ignore[arg-type]  # self is a MultimodalRetriever

    def export(self, file: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> Path:
        """Write the index (config, points with vectors and payloads, build artifacts) to one file.

        :meth:`import_file` reads it into any backend, so an index moves between an embedded
        store and a server without rebuilding.
        """
        from ..admin import export_index

        return export_index(self, file, progress)  # type: ignore[arg-type]

    @classmethod
    def import_file(
        cls,
        file: str | os.PathLike[str],
        name: str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        client: Any = None,
        url: str | None = None,
        api_key: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Create a collection from an :meth:`export` file, with its build; returns it open.

        Raises:
            ArtifactError: the file is not an mmgr export or of another format.
            ConfigError: the target collection already exists.
        """
        from ..admin import import_points, read_export

        manifest, config, z = read_export(file)
        with z:
            target = name or config.collection
            store = _make_store(target, path=path, client=client, url=url, api_key=api_key)
            if store.exists():
                store.close()
                raise ConfigError(f"Collection {target!r} already exists; import under another name or drop it first.")
            config = config.with_(collection=target)
            store.create(config.dim)
            store.put_blob(CONFIG_BLOB, config.to_json().encode())
            r = cls(store, config)
            try:
                import_points(r, z, int(manifest.get("points", 0)), progress)  # type: ignore[arg-type]
            except BaseException:
                r.close()
                raise
        r._gen = GenerativeIndex.load(r.store)
        return r

    @classmethod
    def list_collections(
        cls, *, path: str | os.PathLike[str] | None = None, client: Any = None, url: str | None = None, api_key: str | None = None
    ) -> list[str]:
        """The collections at a location that hold an mmgr index."""
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

    @classmethod
    def drop(
        cls, name: str, *, path: str | os.PathLike[str] | None = None, client: Any = None, url: str | None = None, api_key: str | None = None
    ) -> None:
        """Delete a collection and everything saved with it.

        Raises:
            CollectionNotFoundError: no such collection.
        """
        store = _make_store(name, path=path, client=client, url=url, api_key=api_key)
        try:
            if not store.exists():
                raise CollectionNotFoundError(f"Collection {name!r} does not exist; see `mmgr list` for the collections there.")
            store.drop()
        finally:
            store.close()
