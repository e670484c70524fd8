"""``MMGRRetriever``: an mmgr-qdrant index as a LangChain ``BaseRetriever``.

Each :class:`~mmgr_qdrant.Hit` becomes a LangChain ``Document``: a text document's text, or an
image's caption (or a short description naming its file) as ``page_content``, and the hit's id,
score, docid, modality, image path and user payload in ``metadata``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.load.serializable import SerializedConstructor, SerializedNotImplemented
from langchain_core.retrievers import BaseRetriever
from langchain_core.utils import secret_from_env
from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from mmgr_qdrant import Hit, InputError, MultimodalRetriever

SEARCH_KEYS = frozenset({"k", "mode", "modality", "where", "explain", "collapse_links"})
"""The options of ``MultimodalRetriever.search`` that ``search_kwargs`` and ``invoke(..., **kw)`` accept."""

# Keys LangChain itself may leave in ``invoke``'s kwargs; they are not search options.
_RUNNABLE_KEYS = frozenset({"verbose"})


class MMGRRetriever(BaseRetriever):
    """Retrieve images and texts from an mmgr-qdrant index.

    Build it from an open index (``MMGRRetriever(retriever=r)``) or from connection settings
    (``MMGRRetriever(collection="photos", path="./mmgr_data")``, or ``url=`` and ``api_key=`` for a
    Qdrant server), which open the index on first use.

    Example:
        .. code-block:: python

            from langchain_mmgr import MMGRRetriever

            retriever = MMGRRetriever(collection="photos", path="./mmgr_data", search_kwargs={"k": 4})
            docs = retriever.invoke("a dog on a beach")
            docs[0].metadata["image_path"]   # the image file, for image hits

    Attributes:
        retriever: an open ``MultimodalRetriever`` to search (never serialized; you close it).
        collection: the collection to open when ``retriever`` is not given.
        path: folder of an embedded (Qdrant Edge) store.
        url: a Qdrant server URL; ``api_key`` goes with it (read from ``QDRANT_API_KEY`` when unset).
        encoder: the encoder name the index must have been built with; left out, the saved one is used.
        k: documents to return, as in other LangChain retrievers (``MMGRRetriever(..., k=3)``);
            left out, ``search_kwargs["k"]`` or the library's default (10) applies. Giving both
            with different values is an error.
        search_kwargs: default options of ``MultimodalRetriever.search``: ``k``, ``mode``,
            ``modality``, ``where``, ``explain``, ``collapse_links`` (on unless set to False: an
            image and its linked caption come back as one Document); ``invoke(query, k=3)``
            overrides them per call.
        query_syntax: parse queries with mmgr's boolean syntax (``cat AND NOT dog``) before searching.
        caption_key: the payload field used as ``page_content`` of image hits.
    """

    retriever: MultimodalRetriever | None = Field(default=None, exclude=True)
    collection: str | None = None
    path: str | None = None
    url: str | None = None
    api_key: SecretStr | None = Field(default_factory=secret_from_env("QDRANT_API_KEY", default=None))
    encoder: str | None = None
    k: int | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    query_syntax: bool = False
    caption_key: str = "caption"

    _opened: MultimodalRetriever | None = PrivateAttr(default=None)
    _open_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # -- validation ---------------------------------------------------------------------------
    @field_validator("path", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("search_kwargs")
    @classmethod
    def _check_search_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_keys(value, "search_kwargs")
        return value

    @model_validator(mode="after")
    def _check_source(self) -> MMGRRetriever:
        if self.retriever is None and not self.collection:
            raise ValueError(
                "MMGRRetriever needs an index: pass retriever= (an open MultimodalRetriever) "
                "or collection= with path= (embedded) or url= (Qdrant server)."
            )
        if self.k is not None and "k" in self.search_kwargs and self.search_kwargs["k"] != self.k:
            raise ValueError(
                f"k={self.k} differs from search_kwargs['k']={self.search_kwargs['k']}; give the number of documents once."
            )
        if self.path is not None and self.url is not None:
            raise ValueError("Give only one of path= (embedded store) or url= (Qdrant server).")
        if self.retriever is not None and self.collection and self.collection != self.retriever.config.collection:
            raise ValueError(
                f"collection={self.collection!r} differs from the open retriever's collection "
                f"{self.retriever.config.collection!r}; leave collection out or make them match."
            )
        return self

    # -- LangChain serialization ------------------------------------------------------------
    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Settings serialize with ``dumpd`` / ``dumps``; the open ``retriever`` object never does."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """``["langchain_mmgr"]``: pass ``valid_namespaces=["langchain_mmgr"]`` to ``loads``."""
        return ["langchain_mmgr"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "QDRANT_API_KEY"}

    def to_json(self) -> SerializedConstructor | SerializedNotImplemented:
        """Serialize the settings; a retriever built only from a live object cannot be reopened, so it is not."""
        if self.retriever is not None and self.path is None and self.url is None:
            return self.to_json_not_implemented()
        return super().to_json()

    # -- the index ------------------------------------------------------------------------------
    @property
    def index(self) -> MultimodalRetriever:
        """The ``MultimodalRetriever`` searched: the one given, or the one opened from the settings."""
        if self.retriever is not None:
            return self.retriever
        with self._open_lock:
            if self._opened is None:
                api_key = self.api_key.get_secret_value() if self.api_key is not None else None
                self._opened = MultimodalRetriever.open(
                    str(self.collection),
                    path=self.path,
                    url=self.url,
                    api_key=api_key if self.url is not None else None,
                    encoder=self.encoder,
                )
            return self._opened

    def close(self) -> None:
        """Close the index this retriever opened itself (a ``retriever=`` you gave stays open)."""
        with self._open_lock:
            if self._opened is not None:
                self._opened.close()
                self._opened = None

    # -- retrieval ------------------------------------------------------------------------------
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return self._search(query, kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # The search is blocking (encoder + store); a worker thread keeps the event loop free.
        return await asyncio.to_thread(self._search, query, kwargs)

    def _search(self, query: str, overrides: dict[str, Any]) -> list[Document]:
        overrides = {k: v for k, v in overrides.items() if k not in _RUNNABLE_KEYS}
        _check_keys(overrides, "invoke() keyword arguments")
        options = {"collapse_links": True, **({"k": self.k} if self.k is not None else {}), **self.search_kwargs, **overrides}
        index = self.index
        hits = index.search(**_query_args(query, self.query_syntax), **options)
        return [self._to_document(hit, index.config.collection) for hit in hits]

    def _to_document(self, hit: Hit, collection: str) -> Document:
        metadata: dict[str, Any] = dict(hit.payload)
        # The library's fields win over same-named payload fields.
        metadata.update(
            id=hit.id,
            score=hit.score,
            docid=list(hit.docid),
            modality=hit.modality,
            collection=collection,
        )
        if hit.uri is not None:
            metadata["uri"] = hit.uri
        if hit.modality == "image":
            metadata["image_path"] = hit.uri
        if hit.explain is not None:
            metadata["explain"] = hit.explain
        return Document(id=str(hit.id), page_content=self._content(hit), metadata=metadata)

    def _content(self, hit: Hit) -> str:
        if hit.text is not None:
            return hit.text
        caption = hit.payload.get(self.caption_key)
        if isinstance(caption, str) and caption.strip():
            return caption
        if hit.modality == "image":
            return f"Image {hit.uri}" if hit.uri else f"Image {hit.id}"
        return ""


def _check_keys(options: dict[str, Any], where: str) -> None:
    unknown = sorted(set(options) - SEARCH_KEYS)
    if unknown:
        raise InputError(f"{where} has unknown search options {unknown}; use only {sorted(SEARCH_KEYS)}.")


def _query_args(query: str, query_syntax: bool) -> dict[str, Any]:
    """The query arguments of ``search``: the text, or the parsed boolean expression.

    ``search`` treats a lone text or image atom as a plain query, so parsing is all there is to do.
    """
    if not query_syntax:
        return {"query": query}
    from mmgr_qdrant.setops import parse

    return {"query": parse(query)}
