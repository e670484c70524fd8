"""The one state object every part of a retriever shares: store, config, encoder, lock, loaded build."""

from __future__ import annotations

import threading
from typing import Any

from ..artifacts import read_manifest_quiet
from ..config import IndexConfig, check_encoder_weights
from ..encoders.base import Encoder, get_encoder, index_encoder_name
from ..errors import ConfigError, NotBuiltError
from ..generative import GenerativeIndex
from ..store import Store

_UNLOADED: Any = object()


class Index:
    """What an open index is made of; the retriever's parts (ingest, search, build, links, admin) share it.

    Attributes:
        store: the collection's store (the only way to Qdrant).
        config: the frozen config saved with the index.
        lock: serializes writers in this process (ingest, build, links, deletes).

    Searches read :attr:`generative` once and use that build throughout, so a concurrent
    :meth:`swap` never mixes two builds in one query.
    """

    def __init__(self, store: Store, config: IndexConfig, encoder: Encoder | None = None, generative: GenerativeIndex | None = None) -> None:
        self.store = store
        self.config = config
        self.lock = threading.RLock()
        self.closed = False
        self._encoder = encoder
        self._generative = generative
        self._build_key = _build_key(store) if generative is not None else None
        self._fusion: Any = _UNLOADED

    @classmethod
    def load(cls, store: Store, config: IndexConfig, encoder: Encoder | None = None) -> Index:
        """The state of an opened collection, with its current build (if any) loaded."""
        key = _build_key(store)
        gen = GenerativeIndex.load(store, index_id=config.index_id) if key is not None else None
        index = cls(store, config, encoder, gen)
        index._build_key = key
        return index

    # -- the loaded build ---------------------------------------------------------------------------
    @property
    def generative(self) -> GenerativeIndex | None:
        """The loaded build (scheme, trie, decoder), or ``None`` before the first ``build()``."""
        return self._generative

    @property
    def is_built(self) -> bool:
        return self._generative is not None

    @property
    def generation(self) -> int | None:
        """The docid generation of the loaded build, or ``None``."""
        gen = self._generative
        return gen.generation if gen is not None else None

    def require_built(self, what: str) -> GenerativeIndex:
        """The loaded build, or a :class:`NotBuiltError` naming what needed it."""
        gen = self._generative
        if gen is None:
            raise NotBuiltError(f"Collection {self.config.collection!r} has no build yet, so {what} needs one; run build() first.")
        return gen

    def swap(self, generative: GenerativeIndex) -> None:
        """Switch this process's searches and writes to a new build (after it was saved)."""
        with self.lock:
            self._generative = generative
            self._build_key = _build_key(self.store)

    def refresh(self) -> GenerativeIndex | None:
        """Load the saved build if another process (or retriever) saved a newer one since.

        Writers call this before they write, so a document added by a retriever opened before a
        build elsewhere still gets its docid in the current generation.
        """
        with self.lock:
            key = _build_key(self.store)
            if key != self._build_key and key is not None:
                self._generative = GenerativeIndex.load(self.store, index_id=self.config.index_id)
                self._build_key = key
            return self._generative

    # -- the composed-query fusion module ---------------------------------------------------------
    def fusion(self) -> Any:
        """The trained fusion module saved with the index (``None`` when there is none), loaded once."""
        if self._fusion is _UNLOADED:
            from ..fusion import load_fusion

            with self.lock:
                if self._fusion is _UNLOADED:
                    self._fusion = load_fusion(self.store)
        return self._fusion

    def set_fusion(self, module: Any) -> None:
        self._fusion = module

    # -- the encoder ---------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The index's encoder, loaded on first use (opening an index for dense vectors needs none)."""
        if self._encoder is None:
            with self.lock:
                if self._encoder is None:
                    # an index saved as lit:default with the first head's weights opens with that head (lit:v1)
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
        with self.lock:
            if not self.closed:
                self.closed = True
                self.store.close()


def _build_key(store: Store) -> tuple[int, int] | None:
    """(generation, revision) of the saved build, or ``None``: what :meth:`Index.refresh` compares."""
    manifest = read_manifest_quiet(store)
    if manifest is None:
        return None
    return int(manifest["generation"]), int(manifest.get("revision", 0))
