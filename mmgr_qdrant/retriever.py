"""``MultimodalRetriever``: the one public entry class, and the only module that joins the parts."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .config import DEFAULT_ENCODER, IndexConfig, check_encoder_matches
from .encoders.base import Encoder, get_encoder
from .errors import ArtifactError, CollectionNotFoundError, ConfigError, InputError, MMGRError, NotFoundError
from .filters import Filter, HasId, Match, all_of
from .ids import content_id, image_digest, text_digest, vector_digest
from .images import describe, image_uri, load_image
from .progress import ProgressCallback, null_progress
from .store import ClientStore, EdgeStore, Store
from .store.base import Record, ScoredRecord, check_vectors, normalize_id
from .types import F_MODALITY, MODALITY_CODES, RESERVED_KEY, AddResult, Hit, PointId, Skipped

logger = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "generative", "dense"]
OnError = Literal["raise", "skip"]
CONFIG_BLOB = "config.json"
DEFAULT_PATH = "./mmgr_data"


class MultimodalRetriever:
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
        exist_ok: bool = False,
    ) -> "MultimodalRetriever":
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
    ) -> "MultimodalRetriever":
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
                    enc = get_encoder(self.config.encoder)
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

    def __enter__(self) -> "MultimodalRetriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MultimodalRetriever({self.config.collection!r}, encoder={self.config.encoder!r})"

    # -- ingest --------------------------------------------------------------------------------
    def add_images(
        self,
        images: Sequence[Any],
        *,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 64,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Embed and store images.

        Args:
            images: file paths, ``pathlib.Path``, PIL images, raw bytes or numpy arrays.
            payloads: one dict (or ``None``) per image, stored as given.
            ids: point ids (unsigned ints or UUID strings); derived from the content when left out,
                so adding the same image twice stores it once.
            on_error: ``"raise"`` (nothing of the batch is written when an item is bad) or
                ``"skip"`` (good items are stored, bad ones listed in ``result.skipped``).
            batch_size: images per encoder batch and per upsert.
            progress: called as batches are stored.

        Returns:
            The ids stored, in input order (an :class:`AddResult`, a list with ``.skipped``).

        Raises:
            InputError: an image is missing or unreadable, or a payload or id is invalid (``on_error="raise"``).
        """
        items = _as_list(images, "images")

        def prepare(i: int, item: Any) -> tuple[Any, dict[str, Any]]:
            img = load_image(item)
            pid = content_id("image", image_digest(item)) if ids is None else normalize_id(ids[i])
            meta = {"modality": "image", "uri": image_uri(item)}
            return (pid, img), meta

        return self._ingest(items, prepare, lambda batch: self.encoder.encode_images(batch), payloads, ids, on_error, batch_size, progress)

    def add_texts(
        self,
        texts: Sequence[str],
        *,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 256,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Embed and store texts; arguments and result as in :meth:`add_images`.

        Raises:
            InputError: a text is empty or not a string (``on_error="raise"``).
        """
        items = _as_list(texts, "texts")

        def prepare(i: int, item: Any) -> tuple[Any, dict[str, Any]]:
            if not isinstance(item, str):
                raise InputError(f"Text #{i} is a {type(item).__name__}, not a string; pass text as str.")
            if not item.strip():
                raise InputError(f"Text #{i} is empty; give a non-empty string or drop it.")
            pid = content_id("text", text_digest(item)) if ids is None else normalize_id(ids[i])
            return (pid, item), {"modality": "text", "text": item}

        return self._ingest(items, prepare, lambda batch: self.encoder.encode_texts(batch), payloads, ids, on_error, batch_size, progress)

    def add_embeddings(
        self,
        vectors: np.ndarray,
        *,
        modality: str,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        texts: Sequence[str | None] | None = None,
        uris: Sequence[str | None] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 1024,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        """Store vectors you embedded yourself (with this index's encoder, or the same space).

        Args:
            vectors: an ``(n, dim)`` array; rows are L2-normalized before storing.
            modality: ``"image"`` or ``"text"`` for all rows.
            texts / uris: optional text or source URI per row, returned in hits.
            Other arguments as in :meth:`add_images`.

        Raises:
            DimensionMismatchError: the vectors' dimension is not the index's.
        """
        if modality not in MODALITY_CODES:
            raise InputError(f"Modality {modality!r} is not known; use one of {sorted(MODALITY_CODES)}.")
        arr = check_vectors(vectors, self.config.dim)
        rows = list(range(arr.shape[0]))
        norms = np.linalg.norm(arr, axis=1)

        def prepare(i: int, _: Any) -> tuple[Any, dict[str, Any]]:
            if norms[i] == 0:
                raise InputError(f"Vector #{i} is all zeros; it has no direction to search by.")
            pid = content_id(modality, vector_digest(arr[i])) if ids is None else normalize_id(ids[i])
            meta: dict[str, Any] = {"modality": modality}
            if texts is not None and texts[i] is not None:
                meta["text"] = texts[i]
            if uris is not None and uris[i] is not None:
                meta["uri"] = uris[i]
            return (pid, arr[i]), meta

        return self._ingest(rows, prepare, lambda batch: np.stack(batch), payloads, ids, on_error, batch_size, progress)

    def _ingest(
        self,
        items: list[Any],
        prepare: Any,
        embed: Any,
        payloads: Sequence[dict[str, Any] | None] | None,
        ids: Sequence[PointId] | None,
        on_error: OnError,
        batch_size: int,
        progress: ProgressCallback | None,
    ) -> AddResult:
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error={on_error!r} is not known; use 'raise' or 'skip'.")
        n = len(items)
        if payloads is not None and len(payloads) != n:
            raise InputError(f"Got {len(payloads)} payloads for {n} items; give one payload (or None) per item.")
        if ids is not None and len(ids) != n:
            raise InputError(f"Got {len(ids)} ids for {n} items; give one id per item or leave ids out.")
        report = progress or null_progress
        result = AddResult()
        # "raise" writes nothing of the batch when an item is bad: validate every item first.
        if on_error == "raise" and n > batch_size:
            for i, item in enumerate(items):
                self._prepare_one(i, item, prepare, payloads)
        ok_ids: list[PointId | None] = [None] * n
        seen: set[PointId] = set()
        for start in range(0, n, batch_size):
            chunk = []
            for i in range(start, min(n, start + batch_size)):
                try:
                    prepared = self._prepare_one(i, items[i], prepare, payloads)
                except MMGRError as exc:
                    if on_error == "raise":
                        raise
                    result.skipped.append(Skipped(i, describe(items[i]), str(exc)))
                    continue
                pid = prepared[1][0]
                ok_ids[i] = pid
                if pid not in seen:  # the same item twice in one call: the first one is stored
                    seen.add(pid)
                    chunk.append(prepared)
            if chunk and not self._store_chunk(chunk, embed, result, on_error, items):
                for i, _, _ in chunk:
                    ok_ids[i] = None
            report("add", min(n, start + batch_size), n, {})
        result[:] = [pid for pid in ok_ids if pid is not None]
        return result

    def _prepare_one(self, i: int, item: Any, prepare: Any, payloads: Any) -> Any:
        payload = _check_payload(payloads[i] if payloads is not None else None, i)
        (pid, data), meta = prepare(i, item)
        return i, (pid, data), {**payload, RESERVED_KEY: {k: v for k, v in meta.items() if v is not None}}

    def _store_chunk(self, chunk: list[Any], embed: Any, result: AddResult, on_error: OnError, items: list[Any]) -> bool:
        """Embed and upsert one chunk; False when ``skip`` mode dropped it because the encoder failed."""
        try:
            vectors = embed([data for _, (_, data), _ in chunk])
        except MMGRError as exc:
            if on_error == "raise":
                raise
            for i, _, _ in chunk:
                result.skipped.append(Skipped(i, describe(items[i]), str(exc)))
            return False
        vectors = check_vectors(vectors, self.config.dim, "encoder's vectors")
        ids = [pid for _, (pid, _), _ in chunk]
        payloads = [p for _, _, p in chunk]
        with self._lock:
            self._before_upsert(ids, vectors, payloads)
            self.store.upsert(ids, vectors, payloads)
        return True

    def _before_upsert(self, ids: list[PointId], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        """Hook for the generative index: assign docids to new points once the index is built."""

    # -- reading -----------------------------------------------------------------------------
    def get(self, ids: Sequence[PointId]) -> list[Hit]:
        """The stored documents with these ids, in the order asked (``score`` is 1.0).

        Raises:
            NotFoundError: an id is not in the collection.
        """
        wanted = [normalize_id(i) for i in _as_list(ids, "ids")]
        found = {r.id: r for r in self.store.retrieve(wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFoundError(f"Ids {missing[:5]} are not in collection {self.config.collection!r}; check them with count() or search().")
        return [_hit(found[i], 1.0) for i in wanted]

    def count(self, modality: str | None = None) -> int:
        """Documents stored, all or of one modality."""
        return self.store.count(_modality_filter(modality))

    def delete(self, ids: Sequence[PointId]) -> None:
        """Delete documents; unknown ids are an error and nothing is deleted then.

        Raises:
            NotFoundError: an id is not in the collection.
        """
        wanted = [normalize_id(i) for i in _as_list(ids, "ids")]
        with self._lock:
            found = {r.id for r in self.store.retrieve(wanted)}
            missing = [i for i in wanted if i not in found]
            if missing:
                raise NotFoundError(f"Ids {missing[:5]} are not in collection {self.config.collection!r}; nothing was deleted.")
            self.store.delete(wanted)

    # -- search --------------------------------------------------------------------------------
    def search(
        self,
        query: str | None = None,
        *,
        image: Any = None,
        vector: np.ndarray | None = None,
        k: int = 10,
        modality: str | None = None,
        mode: SearchMode | None = None,
        where: dict[str, Any] | None = None,
        explain: bool = False,
    ) -> list[Hit]:
        """Search by text, image or vector.

        Args:
            query: a text query.
            image: a query image (path, PIL image, bytes or array).
            vector: a query embedding of the index's dimension.
            k: hits to return.
            modality: only documents of this modality (``"image"`` or ``"text"``).
            mode: ``"dense"`` (exact vector search), ``"hybrid"`` or ``"generative"``; the default is
                hybrid once the index is built, dense before.
            where: payload conditions (``{"field": value}`` or ``{"field": [v1, v2]}``).
            explain: attach per-stage figures to each hit's ``explain``.

        Returns:
            Up to ``k`` hits, best first.

        Raises:
            InputError: no query, more than one query, an empty text, an unreadable image, or ``k < 1``.
        """
        vec = self._query_vector(query, image, vector)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"k={k!r} is not a positive integer; ask for at least one hit.")
        flt = all_of(_modality_filter(modality), _where_filter(where))
        return self._dense(vec, k, flt, explain)

    def _query_vector(self, query: str | None, image: Any, vector: np.ndarray | None) -> np.ndarray:
        given = [x is not None for x in (query, image, vector)]
        if sum(given) != 1:
            raise InputError("Give exactly one of query (text), image= or vector= to search.")
        if query is not None:
            if not isinstance(query, str) or not query.strip():
                raise InputError(f"The text query {query!r} is empty; type what to search for.")
            return self.encoder.encode_texts([query])[0]
        if image is not None:
            return self.encoder.encode_images([load_image(image)])[0]
        arr = check_vectors(np.asarray(vector, dtype=np.float32), self.config.dim, "query vector")[0]
        norm = float(np.linalg.norm(arr))
        if norm == 0:
            raise InputError("The query vector is all zeros; it has no direction to search by.")
        return arr / norm

    def _dense(self, vec: np.ndarray, k: int, flt: Filter | None, explain: bool) -> list[Hit]:
        rows = self.store.query(vec, k, flt)
        return [_hit(r, r.score, {"mode": "dense", "vector_score": r.score} if explain else None) for r in rows]


# -- helpers -------------------------------------------------------------------------------------
def _make_store(name: str, *, path: Any, client: Any, url: str | None, api_key: str | None) -> Store:
    chosen = sum(x is not None for x in (path, client, url))
    if chosen > 1:
        raise ConfigError("Give only one of path= (embedded), client= or url= (Qdrant server).")
    if client is not None:
        return ClientStore(client, name)
    if url is not None:
        try:
            from qdrant_client import QdrantClient
        except ImportError as exc:
            from .errors import missing_dependency

            raise missing_dependency("qdrant-client", "client") from exc
        return ClientStore(QdrantClient(url=url, api_key=api_key), name, owns_client=True)
    return EdgeStore(path if path is not None else DEFAULT_PATH, name)


def _validate_scheme_name(name: str) -> None:
    try:
        from .docids import available_schemes
    except ImportError:  # pragma: no cover - docids always ship
        return
    if name not in available_schemes():
        raise ConfigError(f"Docid scheme {name!r} is not known; use one of {available_schemes()}.")


def _as_list(items: Any, what: str) -> list[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise InputError(f"{what} must be a list; wrap a single item in a list.")
    return list(items)


def _check_payload(payload: Any, i: int) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise InputError(f"Payload #{i} is a {type(payload).__name__}, not a dict; pass a dict or None.")
    if RESERVED_KEY in payload:
        raise InputError(f"Payload #{i} uses the reserved key {RESERVED_KEY!r}; rename that field.")
    return payload


def _modality_filter(modality: str | None) -> Filter | None:
    if modality is None:
        return None
    if modality not in MODALITY_CODES:
        raise InputError(f"Modality {modality!r} is not known; use one of {sorted(MODALITY_CODES)} or None.")
    return Filter(must=(Match(F_MODALITY, (modality,)),))


def _where_filter(where: dict[str, Any] | None) -> Filter | None:
    if not where:
        return None
    if not isinstance(where, dict):
        raise InputError(f"where= must be a dict of payload conditions, got {type(where).__name__}.")
    conds = []
    for key, value in where.items():
        if key.startswith(RESERVED_KEY):
            raise InputError(f"where= key {key!r} is reserved; filter on your own payload fields.")
        values = tuple(value) if isinstance(value, (list, tuple, set)) else (value,)
        for v in values:
            if not isinstance(v, (str, int, bool)):
                raise InputError(f"where= value {v!r} for {key!r} is a {type(v).__name__}; use str, int or bool values.")
        conds.append(Match(key, values))
    return Filter(must=tuple(conds))


def _hit(record: Record | ScoredRecord, score: float, explain: dict[str, Any] | None = None) -> Hit:
    payload = dict(record.payload)
    meta = payload.pop(RESERVED_KEY, {}) or {}
    return Hit(
        id=record.id,
        score=float(score),
        docid=tuple(int(c) for c in meta.get("docid", ())),
        modality=str(meta.get("modality", "")),
        payload=payload,
        uri=meta.get("uri"),
        text=meta.get("text"),
        explain=explain,
    )


__all__ = ["MultimodalRetriever", "HasId"]
