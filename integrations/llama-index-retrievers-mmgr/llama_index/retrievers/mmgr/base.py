"""LlamaIndex retrievers over an mmgr-qdrant index.

Text hits become ``TextNode``s, image hits ``ImageNode``s whose ``image_path`` is the image file;
both come wrapped in ``NodeWithScore`` with the hit's score. Node metadata carries the user payload
plus ``docid``, ``modality``, ``collection`` (and ``uri`` / ``file_path`` for files).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.indices.query.schema import QueryBundle, QueryType
from llama_index.core.schema import ImageNode, NodeWithScore, TextNode

from mmgr_qdrant import Hit, InputError, MultimodalRetriever

# Metadata the library adds that is bookkeeping, not content: kept out of LLM prompts and embeddings.
_HIDDEN_KEYS = ["docid", "collection", "modality", "uri", "file_path"]


class MMGRRetriever(BaseRetriever):
    """Retrieve images and texts from an mmgr-qdrant index as LlamaIndex nodes.

    A ``QueryBundle`` with a ``query_str`` searches by text; one with only ``image_path`` searches
    by image.

    Example:
        .. code-block:: python

            from llama_index.retrievers.mmgr import MMGRRetriever

            retriever = MMGRRetriever(collection="photos", path="./mmgr_data", similarity_top_k=4)
            for n in retriever.retrieve("a dog on a beach"):
                print(n.score, type(n.node).__name__, n.node.metadata)

    Args:
        retriever: an open ``MultimodalRetriever`` (you close it); or leave it out and give
            ``collection`` with ``path`` (embedded store) or ``url`` / ``api_key`` (Qdrant server),
            opened on first use and closed by :meth:`close`.
        encoder: the encoder name the index must have been built with; left out, the saved one is used.
        similarity_top_k: hits per query (``k``).
        mode / modality / where: passed to ``MultimodalRetriever.search``.
        query_syntax: parse text queries with mmgr's boolean syntax (``cat AND NOT dog``).
        caption_key: the payload field used as the text of image nodes.
        collapse_links: return an image and its linked caption document as one node (the
            better-scoring one); on by default, since a RAG prompt gains nothing from both.

    Raises:
        ValueError: neither ``retriever`` nor ``collection`` was given, or both ``path`` and ``url``.
    """

    def __init__(
        self,
        retriever: MultimodalRetriever | None = None,
        *,
        collection: str | None = None,
        path: str | os.PathLike[str] | None = None,
        url: str | None = None,
        api_key: str | None = None,
        encoder: str | None = None,
        similarity_top_k: int = 10,
        mode: str | None = None,
        modality: str | None = None,
        where: dict[str, Any] | None = None,
        query_syntax: bool = False,
        caption_key: str = "caption",
        collapse_links: bool = True,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if retriever is None and not collection:
            raise ValueError(
                "MMGRRetriever needs an index: pass an open MultimodalRetriever, "
                "or collection= with path= (embedded) or url= (Qdrant server)."
            )
        if path is not None and url is not None:
            raise ValueError("Give only one of path= (embedded store) or url= (Qdrant server).")
        self._given = retriever
        self._settings = {"collection": collection, "path": path, "url": url, "api_key": api_key, "encoder": encoder}
        self._opened: MultimodalRetriever | None = None
        self._open_lock = threading.Lock()
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.modality = modality
        self.where = where
        self.collapse_links = collapse_links
        self.query_syntax = query_syntax
        self.caption_key = caption_key
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    # -- the index ------------------------------------------------------------------------------
    @property
    def index(self) -> MultimodalRetriever:
        """The ``MultimodalRetriever`` searched: the one given, or the one opened from the settings."""
        if self._given is not None:
            return self._given
        with self._open_lock:
            if self._opened is None:
                s = self._settings
                self._opened = MultimodalRetriever.open(
                    str(s["collection"]),
                    path=s["path"],
                    url=s["url"],
                    api_key=s["api_key"] if s["url"] is not None else None,
                    encoder=s["encoder"],
                )
            return self._opened

    def close(self) -> None:
        """Close the index this retriever opened itself (a retriever you passed in stays open)."""
        with self._open_lock:
            if self._opened is not None:
                self._opened.close()
                self._opened = None

    # -- retrieval ------------------------------------------------------------------------------
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._search(query_bundle, self.modality, self.similarity_top_k)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The search is blocking (encoder + store); a worker thread keeps the event loop free.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def _search(self, query: QueryBundle, modality: str | None, k: int, *, by_image: bool = False) -> list[NodeWithScore]:
        index = self.index
        if by_image:
            args = _image_args(query)
        elif query.query_str or not query.image_path:
            # An empty query_str reaches search, whose InputError says what to do.
            args = _text_args(query.query_str, self.query_syntax)
        else:
            args = _image_args(query)
        hits = index.search(**args, k=k, modality=modality, mode=self.mode, where=self.where, collapse_links=self.collapse_links)
        return [self._to_node(hit, index.config.collection) for hit in hits]

    def _to_node(self, hit: Hit, collection: str) -> NodeWithScore:
        metadata: dict[str, Any] = dict(hit.payload)
        metadata.update(docid=list(hit.docid), modality=hit.modality, collection=collection)
        if hit.uri is not None:
            metadata["uri"] = hit.uri
        if hit.explain is not None:
            metadata["explain"] = hit.explain
        common: dict[str, Any] = {
            "id_": str(hit.id),
            "metadata": metadata,
            "excluded_llm_metadata_keys": [k for k in _HIDDEN_KEYS if k in metadata],
            "excluded_embed_metadata_keys": [k for k in _HIDDEN_KEYS if k in metadata],
        }
        if hit.modality == "image":
            if hit.uri is not None:
                metadata["file_path"] = hit.uri
            caption = hit.payload.get(self.caption_key)
            text = caption if isinstance(caption, str) else ""
            node: TextNode = ImageNode(image_path=hit.uri, text=text, **common)
        else:
            node = TextNode(text=hit.text or "", **common)
        return NodeWithScore(node=node, score=hit.score)


class MMGRMultiModalRetriever(MMGRRetriever, MultiModalRetriever):
    """Text, text-to-image and image-to-image retrieval over one mmgr-qdrant index, sync and async.

    ``retrieve`` searches every modality; :meth:`text_retrieve` only texts (``similarity_top_k``);
    :meth:`text_to_image_retrieve` and :meth:`image_to_image_retrieve` only images
    (``image_similarity_top_k``). Image queries are a path string or a ``QueryBundle`` with
    ``image_path``.

    Args:
        image_similarity_top_k: image hits per image query.
        Other arguments as in :class:`MMGRRetriever`.
    """

    def __init__(self, retriever: MultimodalRetriever | None = None, *, image_similarity_top_k: int = 10, **kwargs: Any) -> None:
        self.image_similarity_top_k = image_similarity_top_k
        super().__init__(retriever, **kwargs)

    def text_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Text nodes for a text query."""
        return self._search(_bundle(str_or_query_bundle), "text", self.similarity_top_k)

    def text_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Image nodes for a text query."""
        return self._text_to_image_retrieve(_bundle(str_or_query_bundle))

    def image_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Image nodes for a query image (a path, or a ``QueryBundle`` with ``image_path``)."""
        return self._image_to_image_retrieve(_bundle(str_or_query_bundle, image=True))

    def _text_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._search(query_bundle, "image", self.image_similarity_top_k)

    def _image_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._search(query_bundle, "image", self.image_similarity_top_k, by_image=True)

    async def atext_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return await asyncio.to_thread(self.text_retrieve, str_or_query_bundle)

    async def atext_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return await asyncio.to_thread(self.text_to_image_retrieve, str_or_query_bundle)

    async def aimage_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return await asyncio.to_thread(self.image_to_image_retrieve, str_or_query_bundle)

    async def _atext_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._text_to_image_retrieve, query_bundle)

    async def _aimage_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._image_to_image_retrieve, query_bundle)


def _bundle(query: QueryType, *, image: bool = False) -> QueryBundle:
    if isinstance(query, QueryBundle):
        return query
    if image:  # LlamaIndex's convention: a string given to an image retrieval is the image's path
        return QueryBundle(query_str="", image_path=str(query))
    return QueryBundle(query_str=str(query))


def _image_args(query: QueryBundle) -> dict[str, Any]:
    if not query.image_path:
        raise InputError("This image retrieval got no image; pass an image path or a QueryBundle with image_path.")
    return {"image": query.image_path}


def _text_args(query: str, query_syntax: bool) -> dict[str, Any]:
    """The query arguments of ``search``: the text, or the parsed boolean expression.

    ``search`` treats a lone text or image atom as a plain query, so parsing is all there is to do.
    """
    if not query_syntax:
        return {"query": query}
    from mmgr_qdrant.setops import parse

    return {"query": parse(query)}
