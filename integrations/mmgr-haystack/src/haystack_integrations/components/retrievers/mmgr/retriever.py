"""``MMGRRetriever``: an mmgr-qdrant index as a Haystack 2.x retriever component.

Each hit becomes a Haystack ``Document``: ``content`` is a text document's text or an image's
caption, ``score`` the hit's score, and ``meta`` the user payload plus ``docid``, ``modality``,
``collection`` and, for images, ``file_path`` (what ``DocumentToImageContent`` reads).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.utils import Secret, deserialize_secrets_inplace

from mmgr_qdrant import Hit, InputError, MultimodalRetriever


@component
class MMGRRetriever:
    """Retrieve images and texts from an mmgr-qdrant index.

    Init arguments are connection and search settings only, so the component serializes with
    ``to_dict`` / ``from_dict`` and in pipeline YAML; the index opens in :meth:`warm_up` (or on the
    first run).

    Example:
        .. code-block:: python

            from haystack_integrations.components.retrievers.mmgr import MMGRRetriever

            retriever = MMGRRetriever(collection="photos", path="./mmgr_data", top_k=4)
            docs = retriever.run(query="a dog on a beach")["documents"]

    Args:
        collection: the collection name.
        path: folder of an embedded (Qdrant Edge) store.
        url: a Qdrant server URL; ``api_key`` (a Haystack ``Secret``, ``QDRANT_API_KEY`` by default) goes with it.
        encoder: the encoder name the index must have been built with; left out, the saved one is used.
        top_k: hits per query.
        mode / modality: passed to ``MultimodalRetriever.search``.
        filters: payload conditions: an mmgr ``where`` dict (``{"kind": "note"}``) or a Haystack
            filter made of ``==`` / ``in`` comparisons on ``meta.*`` fields joined by ``AND``.
            Filters given to :meth:`run` replace these.
        query_syntax: parse queries with mmgr's boolean syntax (``cat AND NOT dog``).
        caption_key: the payload field used as ``content`` of image documents.
        collapse_links: return an image and its linked caption document as one document (the
            better-scoring one); on by default, since a RAG prompt gains nothing from both.

    Raises:
        TypeError: ``collection`` is not a string (an open ``MultimodalRetriever``, say).
        ValueError: no collection, or both ``path`` and ``url``.
    """

    def __init__(
        self,
        collection: str,
        *,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        api_key: Secret | None = Secret.from_env_var("QDRANT_API_KEY", strict=False),  # noqa: B008
        encoder: str | None = None,
        top_k: int = 10,
        mode: str | None = None,
        modality: str | None = None,
        filters: dict[str, Any] | None = None,
        query_syntax: bool = False,
        caption_key: str = "caption",
        collapse_links: bool = True,
    ) -> None:
        if not isinstance(collection, str):
            raise TypeError(
                f"collection must be the collection's name, got {type(collection).__name__}; Haystack components "
                "serialize their init arguments, so give connection settings (collection=, path= or url=), not an open index."
            )
        if not collection:
            raise ValueError("MMGRRetriever needs collection= (and path= or url=) naming an mmgr-qdrant index.")
        if path is not None and url is not None:
            raise ValueError("Give only one of path= (embedded store) or url= (Qdrant server).")
        self.collection = collection
        self.path = os.fspath(path) if path is not None else None
        self.url = url
        self.api_key = api_key
        self.encoder = encoder
        self.top_k = top_k
        self.mode = mode
        self.modality = modality
        self.filters = filters
        self.query_syntax = query_syntax
        self.caption_key = caption_key
        self.collapse_links = collapse_links
        self._index: MultimodalRetriever | None = None
        self._lock = threading.Lock()

    # -- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Serialize the settings (a token ``Secret`` refuses, as everywhere in Haystack)."""
        return default_to_dict(
            self,
            collection=self.collection,
            path=self.path,
            url=self.url,
            api_key=self.api_key.to_dict() if self.api_key is not None else None,
            encoder=self.encoder,
            top_k=self.top_k,
            mode=self.mode,
            modality=self.modality,
            filters=self.filters,
            query_syntax=self.query_syntax,
            caption_key=self.caption_key,
            collapse_links=self.collapse_links,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMGRRetriever:
        """Rebuild the component from :meth:`to_dict`'s output."""
        data = {**data, "init_parameters": dict(data.get("init_parameters", {}))}  # leave the caller's dict as it was
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
        return default_from_dict(cls, data)

    # -- the index ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Open the index (pipelines call this before the first run)."""
        self._open()

    def close(self) -> None:
        """Close the index; a later run opens it again."""
        with self._lock:
            if self._index is not None:
                self._index.close()
                self._index = None

    def _open(self) -> MultimodalRetriever:
        with self._lock:
            if self._index is None:
                api_key = self.api_key.resolve_value() if (self.api_key is not None and self.url is not None) else None
                self._index = MultimodalRetriever.open(
                    self.collection, path=self.path, url=self.url, api_key=api_key, encoder=self.encoder
                )
            return self._index

    # -- running --------------------------------------------------------------------------------
    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        top_k: int | None = None,
        filters: dict[str, Any] | None = None,
        modality: str | None = None,
    ) -> dict[str, list[Document]]:
        """Search the index.

        Args:
            query: the text query (or boolean expression when ``query_syntax`` is on).
            top_k: hits to return; the init value when left out.
            filters: payload conditions replacing the init ``filters`` (same forms).
            modality: ``"image"`` or ``"text"`` to search one modality; the init value when left out.

        Returns:
            ``{"documents": [...]}``, best first.

        Raises:
            MMGRError: whatever the library raises (``InputError`` for an empty query, ...), message intact.
        """
        index = self._open()
        hits = index.search(
            **_query_args(query, self.query_syntax),
            k=top_k if top_k is not None else self.top_k,
            modality=modality if modality is not None else self.modality,
            mode=self.mode,
            where=_where(filters if filters is not None else self.filters),
            collapse_links=self.collapse_links,
        )
        return {"documents": [self._to_document(hit, index.config.collection) for hit in hits]}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        top_k: int | None = None,
        filters: dict[str, Any] | None = None,
        modality: str | None = None,
    ) -> dict[str, list[Document]]:
        """:meth:`run` in a worker thread, so the event loop stays free during the blocking search."""
        return await asyncio.to_thread(self.run, query, top_k, filters, modality)

    def _to_document(self, hit: Hit, collection: str) -> Document:
        meta: dict[str, Any] = dict(hit.payload)
        meta.update(docid=list(hit.docid), modality=hit.modality, collection=collection)
        if hit.uri is not None:
            meta["uri"] = hit.uri
        if hit.modality == "image" and hit.uri is not None:
            meta["file_path"] = hit.uri
        if hit.explain is not None:
            meta["explain"] = hit.explain
        content = hit.text
        if content is None:
            caption = hit.payload.get(self.caption_key)
            content = caption if isinstance(caption, str) else None
        return Document(id=str(hit.id), content=content, meta=meta, score=hit.score)


def _where(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """An mmgr ``where`` dict from an mmgr ``where`` dict or a simple Haystack filter."""
    if not filters:
        return None
    if "operator" not in filters:
        return dict(filters)
    where: dict[str, Any] = {}
    _collect(filters, where)
    return where


def _collect(node: dict[str, Any], where: dict[str, Any]) -> None:
    op = node.get("operator")
    if op == "AND" and "conditions" in node:
        for cond in node["conditions"]:
            _collect(cond, where)
        return
    if op not in ("==", "in") or "field" not in node:
        raise InputError(
            f"Haystack filter operator {op!r} is not supported by MMGRRetriever; "
            "use '==' or 'in' comparisons on meta fields joined by 'AND', or an mmgr where dict."
        )
    field = str(node["field"])
    key = field.removeprefix("meta.")
    value = node.get("value")
    if op == "in" and not isinstance(value, (list, tuple)):
        raise InputError(f"Haystack filter 'in' on {field!r} needs a list value, got {value!r}.")
    if key in where:
        raise InputError(f"Haystack filter tests {field!r} twice; merge the values into one 'in' condition.")
    where[key] = list(value) if op == "in" else value


def _query_args(query: str, query_syntax: bool) -> dict[str, Any]:
    """The query arguments of ``search``: the text, or the parsed boolean expression.

    ``search`` treats a lone text or image atom as a plain query, so parsing is all there is to do.
    """
    if not query_syntax:
        return {"query": query}
    from mmgr_qdrant.setops import parse

    return {"query": parse(query)}
