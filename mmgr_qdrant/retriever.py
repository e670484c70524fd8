"""``MultimodalRetriever``: the one public entry class, and the only module that joins the parts."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .artifacts import BuildArtifacts, next_generation, save_build
from .config import DEFAULT_ENCODER, IndexConfig, check_encoder_matches, check_encoder_weights
from .encoders.base import Encoder, get_encoder
from .errors import ArtifactError, CollectionNotFoundError, ConfigError, InputError, MMGRError, NotBuiltError, NotFoundError
from .filters import Filter, HasId, Match, all_of
from .generative import GenerativeIndex, docid_fields, docid_of, retag
from .ids import content_id, image_digest, text_digest, vector_digest
from .images import describe, image_uri, load_image
from .progress import ProgressCallback, null_progress
from .store import ClientStore, EdgeStore, Store
from .store.base import Record, ScoredRecord, check_vectors, normalize_id
from .types import F_MODALITY, MODALITY_CODES, RESERVED_KEY, AddResult, BuildReport, Hit, PointId, Skipped

if TYPE_CHECKING:
    from .admin import IndexStats
    from .setops import AtomResolution, Compiled, ConceptCutoff, Expr

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
        self._gen: GenerativeIndex | None = GenerativeIndex.load(store)
        from .setops import ConceptCutoff

        self.cutoff: ConceptCutoff = ConceptCutoff()
        """How many decoder prefixes stand for a concept in boolean queries (tunable)."""

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
                    enc = get_encoder(self.config.encoder)
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
        captions: Sequence[str | None] | None = None,
        caption_docs: bool = False,
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
            captions: one caption (or ``None``) per image, returned as the hit's ``text``.
            caption_docs: also store each caption as a text document linked to its image, so text
                search finds captions and the decoder learns caption -> image pairs.
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
        if captions is not None and len(captions) != len(items):
            raise InputError(f"Got {len(captions)} captions for {len(items)} images; give one caption (or None) per image.")

        def prepare(i: int, item: Any) -> tuple[Any, dict[str, Any]]:
            img = load_image(item)
            pid = content_id("image", image_digest(item)) if ids is None else normalize_id(ids[i])
            caption = captions[i] if captions is not None else None
            if caption is not None and (not isinstance(caption, str) or not caption.strip()):
                raise InputError(f"Caption #{i} {caption!r} is empty or not a string; give text or None.")
            meta = {"modality": "image", "uri": image_uri(item), "caption": caption}
            return (pid, img), meta

        result = self._ingest(items, prepare, lambda batch: self.encoder.encode_images(batch), payloads, ids, on_error, batch_size, progress)
        if caption_docs and captions is not None:
            self._add_caption_docs(items, result, captions, payloads)
        return result

    def _add_caption_docs(self, items: list[Any], result: AddResult, captions: Sequence[str | None], payloads: Any) -> None:
        skipped = {s.index for s in result.skipped}
        kept = [i for i in range(len(items)) if i not in skipped]
        pairs = [(result[j], captions[i]) for j, i in enumerate(kept) if captions[i]]
        if not pairs:
            return
        user = [payloads[i] if payloads is not None else None for j, i in enumerate(kept) if captions[i]]
        text_ids = self.add_texts([c for _, c in pairs], payloads=user)  # type: ignore[misc]
        self.link_many([(img, txt) for (img, _), txt in zip(pairs, text_ids)])

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
        meta["added"] = time.time()  # staleness: documents added since the decoder was trained
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
        """Once the index is built, new points get docids at once from the frozen scheme."""
        gen = self._gen
        if gen is None:
            return
        existing = {r.id: r.payload for r in self.store.retrieve(ids)}
        stale = [docid_of(p, gen.generation) for p in existing.values()]
        gen.forget(np.asarray([d for d in stale if d], dtype=np.int64).reshape(-1, gen.n_levels))
        mods = np.asarray([MODALITY_CODES[p[RESERVED_KEY]["modality"]] for p in payloads])
        docids = gen.assign(vectors, mods)
        for pid, payload, docid in zip(ids, payloads, docids):
            old = (existing.get(pid) or {}).get(RESERVED_KEY, {})
            payload[RESERVED_KEY].update(docid_fields(gen.generation, docid))
            if old.get("links"):
                payload[RESERVED_KEY]["links"] = old["links"]

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
        gen = self._gen.generation if self._gen is not None else None
        return [_hit(found[i], 1.0, None, gen) for i in wanted]

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
            records = {r.id: r for r in self.store.retrieve(wanted)}
            missing = [i for i in wanted if i not in records]
            if missing:
                raise NotFoundError(f"Ids {missing[:5]} are not in collection {self.config.collection!r}; nothing was deleted.")
            self.store.delete(wanted)
            self._unlink_deleted(records)
            gen = self._gen
            if gen is not None:
                docids = [docid_of(r.payload, gen.generation) for r in records.values()]
                gen.forget(np.asarray([d for d in docids if d], dtype=np.int64).reshape(-1, gen.n_levels))

    # -- search --------------------------------------------------------------------------------
    def search(
        self,
        query: "str | Expr | None" = None,
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
            query: a text query, or a boolean :class:`~mmgr_qdrant.setops.Q` expression
                (``Q.text("cat") & ~Q.text("dog")``; parse a string with ``Q.parse``). A lone
                ``Q.text`` or ``Q.image`` is searched like a plain text or image query.
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
        from .setops import Expr, Image, Text

        if isinstance(query, Text):  # a lone text atom (a parsed plain string) is an ordinary text query
            query = query.text
        elif isinstance(query, Image) and image is None and vector is None:
            query, image = None, query.source
        if isinstance(query, Expr):
            if image is not None or vector is not None:
                raise InputError("Give a Q expression alone; put images inside it with Q.image(...).")
            _check_k(k)
            return self._search_expr(query, k, modality, where, explain)
        vec = self._query_vector(query, image, vector)
        _check_k(k)
        flt = all_of(_modality_filter(modality), _where_filter(where))
        mode = self._mode(mode)
        if mode == "dense" or (mode == "hybrid" and self._gen is None):
            return self._dense(vec, k, flt, explain)
        gen = self._require_built(mode)
        if mode == "generative":
            return self._generative(gen, vec, k, modality, flt, explain)
        return self._hybrid(gen, vec[None, :], k, modality, [flt], explain)[0]

    def search_batch(
        self,
        queries: Sequence[str] | None = None,
        *,
        images: Sequence[Any] | None = None,
        vectors: np.ndarray | None = None,
        k: int = 10,
        modality: str | None = None,
        mode: SearchMode | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Search many queries at once (texts, images or vectors); one list of hits per query.

        Embedding, beam search and the Qdrant queries each run once for the whole batch.
        """
        given = [x is not None for x in (queries, images, vectors)]
        if sum(given) != 1:
            raise InputError("Give exactly one of queries (texts), images= or vectors= to search_batch.")
        _check_k(k)
        if queries is not None:
            texts = _as_list(queries, "queries")
            for i, t in enumerate(texts):
                if not isinstance(t, str) or not t.strip():
                    raise InputError(f"Query #{i} {t!r} is empty or not a string; type what to search for.")
            vecs = self.encoder.encode_texts(texts)
        elif images is not None:
            vecs = self.encoder.encode_images([load_image(im) for im in _as_list(images, "images")])
        else:
            vecs = check_vectors(np.asarray(vectors, dtype=np.float32), self.config.dim, "query vectors")
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        flt = all_of(_modality_filter(modality), _where_filter(where))
        mode = self._mode(mode)
        if len(vecs) == 0:
            return []
        if mode == "dense" or (mode == "hybrid" and self._gen is None):
            g = self._gen.generation if self._gen is not None else None
            return [[_hit(r, r.score, None, g) for r in rows] for rows in self.store.query_batch(vecs, k, [flt] * len(vecs))]
        gen = self._require_built(mode)
        if mode == "generative":
            return [self._generative(gen, v, k, modality, flt, False) for v in vecs]
        return self._hybrid(gen, vecs, k, modality, [flt] * len(vecs), False)

    def _mode(self, mode: str | None) -> str:
        if mode is None:
            return "hybrid" if self._gen is not None else "dense"
        if mode not in ("hybrid", "generative", "dense"):
            raise InputError(f"mode={mode!r} is not known; use 'hybrid', 'generative' or 'dense'.")
        return mode

    def _require_built(self, mode: str) -> GenerativeIndex:
        gen = self._gen
        if gen is None:
            raise NotBuiltError(
                f"Collection {self.config.collection!r} has no build yet, so mode={mode!r} has no decoder; run build() first."
            )
        return gen

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

    # -- boolean queries --------------------------------------------------------------------------
    def compile(self, expr: "Expr | str", *, allow_negative_only: bool = False) -> "Compiled":
        """Compile a Q expression (or a query string) against this index, without searching.

        Concept atoms (text, image) resolve to the docid prefixes the decoder assigns them, cut off
        by ``self.cutoff`` (a :class:`~mmgr_qdrant.setops.ConceptCutoff`). ``compiled.explain()``
        shows the sets and the filter.

        Raises:
            NotBuiltError: the expression has a text or image atom and the index is not built.
            QuerySyntaxError: a malformed query string.
            NotFoundError: an id in ``Q.ids`` is not in the index.
        """
        from .setops import compile_expr

        return compile_expr(expr, _Resolver(self), allow_negative_only=allow_negative_only)

    def _search_expr(self, expr: "Expr", k: int, modality: str | None, where: dict[str, Any] | None, explain: bool) -> list[Hit]:
        compiled = self.compile(expr, allow_negative_only=True)
        gen = self._gen
        flt = retag(compiled.filter, gen.generation) if gen is not None else compiled.filter
        flt = all_of(flt, _modality_filter(modality), _where_filter(where))
        vec = compiled.ranking_vector
        g = gen.generation if gen is not None else None
        info = {"mode": "boolean", "query": compiled.explain()} if explain else None
        if vec is None:  # nothing positive to rank by: the matching documents in store order
            rows: list[Any] = next(iter(self.store.scroll(flt, batch_size=k)), [])[:k]
            return [_hit(r, 0.0, info, g) for r in rows]
        return [_hit(r, r.score, {**info, "vector_score": r.score} if info else None, g) for r in self.store.query(vec, k, flt)]

    def _concept(self, vec: np.ndarray) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
        """The prefixes a concept matches, in every modality: a text concept matches images too.

        The decoder, given a text embedding, puts most of its mass on text docids, so the cut-off
        is applied per modality (each decoded with the modality forced) and the sets are joined.
        """
        from .setops import select_prefixes

        gen = self._gen
        if gen is None:
            raise NotBuiltError(
                f"Collection {self.config.collection!r} has no build yet, and text or image terms in a boolean query "
                "stand for the docid prefixes the decoder assigns them; run build() first."
            )
        cut = self.cutoff
        depth = min(cut.depth or 1 + self.config.hybrid.depth, gen.n_levels)
        modalities = sorted({int(c) for c in gen.trie.prefixes(1)[:, 0]}) if len(gen.trie) else []
        prefixes: list[tuple[int, ...]] = []
        probs: list[float] = []
        for m in modalities:
            pairs = gen.decode(vec[None, :], beam_size=cut.beam_size, depth=depth, modality=m).query(0)
            kept, p = select_prefixes([pre for pre, _ in pairs], [sc for _, sc in pairs], cut)
            prefixes.extend(kept)
            probs.extend(p)
        return tuple(prefixes), tuple(probs)

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
            for r in self.store.query(rec.vector, k + len(seen), _modality_filter(modality)):  # type: ignore[arg-type]
                if r.id not in seen and len(hits) < k:
                    seen.add(r.id)
                    hits.append(_hit(r, r.score, {"relation": "nearest"}, g))
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

    def _dense(self, vec: np.ndarray, k: int, flt: Filter | None, explain: bool) -> list[Hit]:
        gen = self._gen.generation if self._gen is not None else None
        rows = self.store.query(vec, k, flt)
        return [_hit(r, r.score, {"mode": "dense", "vector_score": r.score} if explain else None, gen) for r in rows]

    def _hybrid(
        self, gen: GenerativeIndex, vecs: np.ndarray, k: int, modality: str | None, flts: list[Filter | None], explain: bool
    ) -> list[list[Hit]]:
        """Decode prefixes, one filtered Qdrant query per query, fuse scores, fall back to dense.

        ``score = cosine + fusion_weight * p(prefix)``, where ``p`` is the decoder's probability of
        the hit's prefix renormalized over the kept prefixes (see docs/architecture.md, "Score
        fusion"). The prefixes kept are the most likely ones whose documents fit in
        ``max_fraction`` of the corpus (``GenerativeIndex.admit``).
        """
        hc = self.config.hybrid
        depth = min(1 + hc.depth, gen.n_levels)
        beams = gen.route(vecs, beam_size=hc.beam_size, depth=depth, modality=_modality_code(modality), temperature=hc.prior_temperature)
        budget = hc.max_fraction * len(gen.trie)  # documents the filter may admit (see HybridConfig)
        filters, probs, admitted = [], [], []
        for i in range(len(vecs)):
            pairs, n_admitted = gen.admit(beams.query(i), budget=budget, min_docs=k)
            lp = np.asarray([s for _, s in pairs], dtype=np.float64)
            p = np.exp(lp - lp.max()) if len(lp) else lp
            p = p / p.sum() if len(p) else p
            probs.append({pre: float(pi) for (pre, _), pi in zip(pairs, p)})
            admitted.append(n_admitted)
            filters.append(all_of(gen.prefix_filter([pre for pre, _ in pairs]), flts[i]) if pairs else None)
        results = self.store.query_batch(vecs, k, [f if f is not None else _MATCH_NOTHING for f in filters])
        out: list[list[Hit]] = []
        for i, rows in enumerate(results):
            hits = []
            for r in rows:
                docid = docid_of(r.payload, gen.generation)
                p = probs[i].get(tuple(docid[:depth]), 0.0)
                score = r.score + hc.fusion_weight * p
                info = {"mode": "hybrid", "vector_score": r.score, "prefix": docid[:depth], "prefix_prob": p,
                        "beam": [list(pre) for pre in probs[i]], "admitted": admitted[i]} if explain else None
                hits.append(_hit(r, score, info, gen.generation))
            if len(hits) < k:  # too few documents behind the prefixes: fill up from dense search
                seen = {h.id for h in hits}
                for r in self.store.query(vecs[i], k, flts[i]):
                    if r.id not in seen and len(hits) < k:
                        hits.append(_hit(r, r.score, {"mode": "dense-fallback", "vector_score": r.score} if explain else None, gen.generation))
            hits.sort(key=lambda h: -h.score)
            out.append(hits)
        return out

    def _generative(self, gen: GenerativeIndex, vec: np.ndarray, k: int, modality: str | None, flt: Filter | None, explain: bool) -> list[Hit]:
        """The decoder's own ranking: whole docids by beam score, no vector ranking."""
        beam = max(k, self.config.hybrid.beam_size)
        pairs = gen.decode(vec[None, :], beam_size=beam, depth=gen.n_levels, modality=_modality_code(modality)).query(0)
        if not pairs:
            return []
        rows = self.store.query(vec, len(pairs), all_of(gen.prefix_filter([p for p, _ in pairs]), flt))
        by_docid = {docid_of(r.payload, gen.generation): r for r in rows}
        hits = []
        for docid, lp in pairs:
            r = by_docid.get(docid)
            if r is not None:
                info = {"mode": "generative", "beam_logprob": lp, "vector_score": r.score} if explain else None
                hits.append(_hit(r, float(np.exp(lp)), info, gen.generation))
            if len(hits) == k:
                break
        return hits

    # -- administration ----------------------------------------------------------------------------
    def stats(self, *, probe: bool = True) -> "IndexStats":
        """Counts, docid balance, staleness of the build and artifact sizes.

        Args:
            probe: run the recall probe (hybrid search of up to 50 documents added since the
                decoder was trained, by their own embeddings).
        """
        from .admin import index_stats

        return index_stats(self, probe=probe)

    def export(self, file: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> Path:
        """Write the index (config, points with vectors and payloads, build artifacts) to one file.

        :meth:`import_file` reads it into any backend, so an index moves between an embedded
        store and a server without rebuilding.
        """
        from .admin import export_index

        return export_index(self, file, progress)

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
    ) -> "MultimodalRetriever":
        """Create a collection from an :meth:`export` file, with its build; returns it open.

        Raises:
            ArtifactError: the file is not an mmgr export or of another format.
            ConfigError: the target collection already exists.
        """
        from .admin import import_points, read_export

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
                import_points(r, z, int(manifest.get("points", 0)), progress)
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
            from .store import list_edge_collections

            root = Path(path if path is not None else DEFAULT_PATH)
            return [c for c in list_edge_collections(root) if (root / c / "blobs" / CONFIG_BLOB).is_file()]
        store = _make_store("list", path=None, client=client, url=url, api_key=api_key)
        try:
            from .store import list_client_collections

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

    def update(
        self,
        id: PointId,
        *,
        image: Any = None,
        text: str | None = None,
        vector: np.ndarray | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Replace a document's content (re-embedded, docid re-assigned) and/or its payload.

        Links to other documents are kept. Without a new payload the old one is kept.

        Raises:
            NotFoundError: ``id`` is not in the collection.
            InputError: the new content is unusable or of the other modality.
        """
        pid = normalize_id(id)
        found = self.store.retrieve([pid], with_vectors=True)
        if not found:
            raise NotFoundError(f"Id {pid!r} is not in collection {self.config.collection!r}; add it instead.")
        rec = found[0]
        meta = dict(rec.payload.get(RESERVED_KEY) or {})
        user = payload if payload is not None else {k: v for k, v in rec.payload.items() if k != RESERVED_KEY}
        modality = meta.get("modality")
        if sum(x is not None for x in (image, text, vector)) > 1:
            raise InputError("Give at most one of image=, text= or vector= to update.")
        if image is None and text is None and vector is None:  # payload only: vector, docid and links stay
            _check_payload(user, 0)
            with self._lock:
                self.store.upsert([pid], rec.vector[None, :], [{**user, RESERVED_KEY: meta}])  # type: ignore[index]
            return
        if (image is not None and modality != "image") or (text is not None and modality != "text"):
            raise InputError(f"Document {pid!r} is a {modality} document; update it with content of the same modality.")
        if image is not None:
            self.add_images([image], ids=[pid], payloads=[user], captions=[meta.get("caption")])
        elif text is not None:
            self.add_texts([text], ids=[pid], payloads=[user])
        else:
            self.add_embeddings(np.asarray(vector)[None, :], modality=modality, ids=[pid], payloads=[user],
                                texts=[meta.get("text")], uris=[meta.get("uri")])

    # -- build -----------------------------------------------------------------------------------
    def build(
        self,
        *,
        seed: int = 0,
        epochs: int | None = None,
        time_budget_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> BuildReport:
        """Fit the docid scheme, give every document its docid, train the decoder, save the artifacts.

        The new docids are written beside the previous build's and the switch happens last, so an
        interrupted build leaves the previous one in use, and searches are served throughout.

        Args:
            seed: seeds the scheme's fit and the decoder's training.
            epochs: most decoder training epochs (default from the index's decoder settings, else 30).
            time_budget_s: stop decoder training after this many seconds, keeping the best weights.
            progress: called for each stage ("scan", "fit", "train", "write").

        Returns:
            A :class:`BuildReport` with docid statistics and training figures.

        Raises:
            NotBuiltError: the collection is empty.
            ConfigError: the docid scheme or decoder settings are invalid.
        """
        return self._build(refit=True, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def rebuild(
        self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None, progress: ProgressCallback | None = None
    ) -> BuildReport:
        """Refit docids and retrain the decoder on the current corpus (same as :meth:`build`).

        The new docids are written beside the old ones and switched to atomically, so searches
        keep being served, from the old build, while it runs.
        """
        return self._build(refit=True, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def retrain(
        self, *, seed: int = 0, epochs: int | None = None, time_budget_s: float | None = None, progress: ProgressCallback | None = None
    ) -> BuildReport:
        """Retrain the decoder on the current corpus, keeping every docid as it is.

        Use it when documents added since the build are found by their prefixes but the decoder
        has not learned them (see :meth:`stats`, ``staleness``).

        Raises:
            NotBuiltError: the index was never built.
        """
        self._require_built("retrain")
        return self._build(refit=False, seed=seed, epochs=epochs, time_budget_s=time_budget_s, progress=progress)

    def _build(self, *, refit: bool, seed: int, epochs: int | None, time_budget_s: float | None, progress: ProgressCallback | None) -> BuildReport:
        from .decoder import DocidTrie, save_checkpoint, train_decoder
        from .docids import add_tiebreak, docid_stats, get_scheme

        report = progress or null_progress
        t0 = time.perf_counter()
        with self._lock:
            ids, vecs, metas = self._scan(report)
            n = len(ids)
            if n == 0:
                raise NotBuiltError(f"Collection {self.config.collection!r} is empty; add documents before build().")
            mods = np.asarray([MODALITY_CODES[m.get("modality", "text")] for m in metas], dtype=np.int64)
            t1 = time.perf_counter()
            old = self._gen
            if refit or old is None:
                scheme = get_scheme(self.config.docid_scheme, **self.config.docid_params)
                scheme.fit(vecs, mods, seed=seed, progress=report)
                docids = add_tiebreak(scheme.assign(vecs, mods))
                generation = next_generation(self.store)
            else:  # retrain: the docids stay; documents added since the build already have theirs
                scheme, generation = old.scheme, old.generation
                docids = np.asarray([docid_of({RESERVED_KEY: m}, generation) for m in metas], dtype=np.int64)
            stats = docid_stats(docids, scheme.codebook_sizes())
            t2 = time.perf_counter()
            queries, targets, doc_index = _training_pairs(ids, vecs, docids, metas)
            vocab = list(scheme.codebook_sizes()) + [max(64, 2 * (int(docids[:, -1].max()) + 1))]  # room for later tie-breaks
            params = dict(self.config.decoder_params)
            params.update({k: v for k, v in (("epochs", epochs), ("time_budget_s", time_budget_s)) if v is not None})
            # Without a budget from the call or decoder_params, training stops after 4 minutes (best
            # epoch kept), so a build of 100k vectors stays in minutes on a 2-core CPU.
            params.setdefault("time_budget_s", 240.0)
            decoder, train = train_decoder(
                queries, targets, doc_vectors=vecs, doc_index=doc_index, vocab_sizes=vocab, seed=seed, progress=report, **params
            )
            t3 = time.perf_counter()
            if refit or old is None:
                self._write_docids(ids, docids, metas, generation, report)
            trie = DocidTrie(docids)
            info = {"n_docs": n, "n_pairs": int(len(queries)), "trained_at": time.time(), "docid_stats": stats.as_dict(),
                    "train": train.to_dict(), "scheme": self.config.docid_scheme}
            scheme_params, scheme_arrays = scheme.state()
            save_build(self.store, BuildArtifacts(scheme_params, scheme_arrays, trie.to_arrays(), save_checkpoint(decoder), info, generation))
            self.store.flush()
            gen = GenerativeIndex(scheme, decoder, trie, generation, {}, info)
            gen.sync(self.store)
            self._gen = gen  # the switch for this process's searches
            t4 = time.perf_counter()
        result = BuildReport(
            n_docs=n, generation=generation, docid_stats=stats.as_dict(), train=train.to_dict(),
            fit_s=t2 - t1, train_s=t3 - t2, total_s=t4 - t0,
        )
        logger.info("%s %s: %d docs, generation %d, %.1fs", "built" if refit else "retrained", self.config.collection, n, generation, result.total_s)
        return result

    def _scan(self, report: ProgressCallback) -> tuple[list[PointId], np.ndarray, list[dict[str, Any]]]:
        ids: list[PointId] = []
        vecs: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        total = self.store.count()
        for page in self.store.scroll(batch_size=2048, with_vectors=True):
            for r in page:
                ids.append(r.id)
                vecs.append(r.vector)  # type: ignore[arg-type]
                metas.append(dict(r.payload.get(RESERVED_KEY) or {}))
            report("scan", len(ids), total, {})
        arr = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, self.config.dim), np.float32)
        return ids, arr, metas

    def _write_docids(self, ids: list[PointId], docids: np.ndarray, metas: list[dict[str, Any]], generation: int, report: ProgressCallback) -> None:
        step = 2048
        for start in range(0, len(ids), step):
            end = min(len(ids), start + step)
            values = [docid_fields(generation, docids[i], metas[i]) for i in range(start, end)]
            self.store.set_payload(ids[start:end], RESERVED_KEY, values)
            report("write", end, len(ids), {})


class _Resolver:
    """Resolves the atoms of a boolean query against one retriever (the setops ``Resolver``)."""

    def __init__(self, retriever: MultimodalRetriever) -> None:
        self.r = retriever

    def resolve_text(self, text: str) -> "AtomResolution":
        from .setops import AtomResolution

        vec = self.r._query_vector(text, None, None)
        prefixes, probs = self.r._concept(vec)
        return AtomResolution(vec, prefixes, probs)

    def resolve_image(self, image: Any) -> "AtomResolution":
        from .setops import AtomResolution

        vec = self.r._query_vector(None, image, None)
        prefixes, probs = self.r._concept(vec)
        return AtomResolution(vec, prefixes, probs)

    def check_ids(self, ids: Sequence[PointId]) -> None:
        wanted = [normalize_id(i) for i in ids]
        found = {r.id for r in self.r.store.retrieve(wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFoundError(f"Ids {missing[:5]} in the query are not in collection {self.r.config.collection!r}; check them with get().")


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


def _check_k(k: Any) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputError(f"k={k!r} is not a positive integer; ask for at least one hit.")


def _modality_code(modality: str | None) -> int | None:
    return None if modality is None else MODALITY_CODES[modality]


# A filter no point passes (an empty id set), for a query whose beam found no prefix.
_MATCH_NOTHING = Filter(must=(HasId(()),))


def _training_pairs(
    ids: list[PointId], vecs: np.ndarray, docids: np.ndarray, metas: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoder training pairs: each document to its own docid, and linked documents to each other's."""
    row = {str(pid): i for i, pid in enumerate(ids)}
    src = list(range(len(ids)))
    dst = list(range(len(ids)))
    for i, meta in enumerate(metas):
        for other in meta.get("links", []) or []:
            j = row.get(str(other))
            if j is not None:
                src.append(i)
                dst.append(j)
    s = np.asarray(src)
    d = np.asarray(dst)
    return vecs[s], docids[d], d


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


def _hit(record: Record | ScoredRecord, score: float, explain: dict[str, Any] | None = None, generation: int | None = None) -> Hit:
    payload = dict(record.payload)
    meta = payload.pop(RESERVED_KEY, {}) or {}
    return Hit(
        id=record.id,
        score=float(score),
        docid=docid_of({RESERVED_KEY: meta}, generation),
        modality=str(meta.get("modality", "")),
        payload=payload,
        uri=meta.get("uri"),
        text=meta.get("text", meta.get("caption")),
        explain=explain,
    )


__all__ = ["MultimodalRetriever", "HasId"]
