"""Ingest and document access for :class:`~mmgr_qdrant.retriever.MultimodalRetriever`: add, get, count, delete, update."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import IndexConfig
from ..encoders.base import Encoder
from ..errors import InputError, MMGRError, NotFoundError
from ..generative import GenerativeIndex, docid_fields, docid_of
from ..ids import content_id, image_digest, text_digest, vector_digest
from ..images import describe, image_uri, load_image
from ..learning import prune
from ..progress import ProgressCallback, null_progress
from ..store import Store
from ..store.base import Record, check_vectors, normalize_id
from ..types import MODALITY_CODES, RESERVED_KEY, AddResult, Hit, PointId, Skipped
from ._common import OnError, _as_list, _check_payload, _hit, _modality_filter


class IngestMixin:
    """Adding, reading, deleting and updating documents (part of ``MultimodalRetriever``)."""

    store: Store
    config: IndexConfig
    _gen: GenerativeIndex | None
    _lock: threading.RLock

    if TYPE_CHECKING:  # the lazily loaded property of MultimodalRetriever; link_many, _unlink_deleted: AdminMixin

        @property
        def encoder(self) -> Encoder: ...

        def link_many(self, pairs: Sequence[tuple[PointId, PointId]]) -> None: ...

        def _unlink_deleted(self, records: dict[PointId, Record]) -> None: ...

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
            prune(self.store, self.config.dim, wanted)  # learned pairs of deleted documents go with them
            gen = self._gen
            if gen is not None:
                docids = [docid_of(r.payload, gen.generation) for r in records.values()]
                gen.forget(np.asarray([d for d in docids if d], dtype=np.int64).reshape(-1, gen.n_levels))

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
        modality: Any = meta.get("modality")  # as stored; add_embeddings checks it
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
