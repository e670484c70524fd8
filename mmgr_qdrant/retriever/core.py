"""``MultimodalRetriever``: the one public entry class, and the only module that joins the parts."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Self

from ..config import DEFAULT_ENCODER, HybridConfig, IndexConfig, check_encoder_matches, check_encoder_weights
from ..encoders.base import Encoder, get_encoder, index_encoder_name
from ..errors import ArtifactError, CollectionNotFoundError, ConfigError
from ..generative import GenerativeIndex
from ..store import Store
from ._common import CONFIG_BLOB, DEFAULT_PATH, _make_store, _validate_scheme_name, logger
from .admin import AdminMixin
from .build import BuildMixin
from .ingest import IngestMixin
from .search import SearchMixin


class MultimodalRetriever(IngestMixin, SearchMixin, BuildMixin, AdminMixin):
    """Multimodal generative retrieval over one Qdrant collection.

    Build one with :meth:`create` or :meth:`open`; both take either ``path=`` (embedded Qdrant Edge,
    the default) or ``client=`` / ``url=`` (a Qdrant server, cloud, or ``QdrantClient`` local mode).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, store: Store, config: IndexConfig, encoder: Encoder | None = None) -> None:
        """Use :meth:`create` or :meth:`open`; this joins an opened store and its config."""
        self.store = store
        self.config = config
        self._encoder = encoder
        self._lock = threading.RLock()
        self._closed = False
        self._gen: GenerativeIndex | None = GenerativeIndex.load(store)
        from ..setops import DEFAULT_CUTOFF, DEFAULT_NEGATIVE_CUTOFF, ConceptCutoff

        self.cutoff: ConceptCutoff = DEFAULT_CUTOFF
        """How many decoder prefixes stand for a concept in boolean queries (tunable)."""
        self.negative_cutoff: ConceptCutoff = DEFAULT_NEGATIVE_CUTOFF
        """The cut-off for a concept that appears only under NOT: narrower, the documents the decoder is surest of."""

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        client: Any = None,
        url: str | None = None,
        api_key: str | None = None,
        encoder: str | Encoder = DEFAULT_ENCODER,
        docids: str = "rq",
        docid_params: dict[str, Any] | None = None,
        decoder_params: dict[str, Any] | None = None,
        hybrid: HybridConfig | dict[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> MultimodalRetriever:
        """Create a new index (a Qdrant collection plus its saved config).

        Args:
            name: the collection name.
            path: folder of the embedded store (Qdrant Edge); the default when no client is given.
            client: an open ``qdrant_client.QdrantClient`` (server, cloud or local mode).
            url: a Qdrant server URL (a client is made for it); ``api_key`` goes with it.
            encoder: an encoder name (``lit:default``, ``open_clip:ViT-B-32/laion2b_s34b_b79k``, ...) or object.
            docids: the docid scheme used by :meth:`build` (``rq``, ``hkmeans``, ``pq``, ``lsh``).
            docid_params: parameters of the docid scheme.
            decoder_params: decoder and training settings.
            hybrid: hybrid-search knobs (a :class:`~mmgr_qdrant.config.HybridConfig` or its fields as a dict).
            exist_ok: open the collection if it already exists (its config must match).

        Returns:
            The open retriever.

        Raises:
            ConfigError: the collection exists (and ``exist_ok`` is false) or the settings are invalid.
            EncoderError: the encoder could not be loaded.
            StoreUnavailableError: the store cannot be reached or is locked.
        """
        store = _make_store(name, path=path, client=client, url=url, api_key=api_key)
        try:
            if store.exists():
                if not exist_ok:
                    raise ConfigError(
                        f"Collection {name!r} already exists; open it with MultimodalRetriever.open({name!r}, ...) or pass exist_ok=True."
                    )
                store.close()
                enc_name = encoder if isinstance(encoder, str) else getattr(encoder, "name", None)
                return cls.open(name, path=path, client=client, url=url, api_key=api_key, encoder=enc_name)
            enc = get_encoder(encoder)
            config = IndexConfig(
                collection=name,
                encoder=enc.name,
                dim=int(enc.dim),
                docid_scheme=docids,
                docid_params=dict(docid_params or {}),
                decoder_params=dict(decoder_params or {}),
                hybrid=_hybrid_config(hybrid),
                encoder_fingerprint=getattr(enc, "fingerprint", None),
            )
            _validate_scheme_name(docids)
            store.create(config.dim)
            store.put_blob(CONFIG_BLOB, config.to_json().encode())
        except BaseException:
            store.close()
            raise
        logger.info("created collection %s (encoder %s, dim %d)", name, config.encoder, config.dim)
        return cls(store, config, enc)

    @classmethod
    def open(
        cls,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        client: Any = None,
        url: str | None = None,
        api_key: str | None = None,
        encoder: str | Encoder | None = None,
    ) -> MultimodalRetriever:
        """Open an existing index, in this process or another, on this machine or another.

        Args:
            name: the collection name.
            path / client / url / api_key: where it lives, as in :meth:`create`.
            encoder: leave out to use the saved encoder; if given it must be the same.

        Raises:
            CollectionNotFoundError: no such collection.
            ConfigError: ``encoder`` differs from the one the index was built with.
            ArtifactError: the saved config is missing, corrupt or of another format.
        """
        store = _make_store(name, path=path, client=client, url=url, api_key=api_key)
        try:
            if not store.exists():
                where = f"under {str(Path(path or DEFAULT_PATH))!r}" if client is None and url is None else "on the Qdrant server"
                raise CollectionNotFoundError(f"Collection {name!r} does not exist {where}; create it with MultimodalRetriever.create({name!r}, ...).")
            store.connect()
            raw = store.get_blob(CONFIG_BLOB)
            if raw is None:
                raise ArtifactError(
                    f"Collection {name!r} has no mmgr config (it was not created by mmgr-qdrant, or the config was deleted); "
                    "create a new collection with MultimodalRetriever.create()."
                )
            config = IndexConfig.from_json(raw, where=f"of collection {name!r}")
            enc: Encoder | None = None
            if encoder is not None and not isinstance(encoder, str):
                check_encoder_matches(config, getattr(encoder, "name", None))
                check_encoder_weights(config, getattr(encoder, "fingerprint", None))
                enc = encoder
            else:
                check_encoder_matches(config, encoder)
        except BaseException:
            store.close()
            raise
        return cls(store, config, enc)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The index's encoder, loaded on first use (opening an index for dense vectors needs none)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    enc = get_encoder(index_encoder_name(self.config.encoder, self.config.encoder_fingerprint))
                    check_encoder_weights(self.config, getattr(enc, "fingerprint", None))
                    if int(enc.dim) != self.config.dim:
                        raise ConfigError(
                            f"Encoder {self.config.encoder!r} now gives {enc.dim}-d vectors but the index stores {self.config.dim}-d; "
                            "install the encoder version that built the index."
                        )
                    self._encoder = enc
        return self._encoder

    def close(self) -> None:
        """Flush and close the store; the retriever cannot be used afterwards."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MultimodalRetriever({self.config.collection!r}, encoder={self.config.encoder!r})"


def _hybrid_config(hybrid: HybridConfig | dict[str, Any] | None) -> HybridConfig:
    if hybrid is None:
        return HybridConfig()
    if isinstance(hybrid, HybridConfig):
        return hybrid
    try:
        return HybridConfig(**hybrid)
    except TypeError as exc:
        raise ConfigError(f"hybrid={hybrid!r} has an unknown field ({exc}); use the fields of HybridConfig.") from None
