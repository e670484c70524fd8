"""The ingest part of a retriever: add, get, count, delete, update."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import InputError, MMGRError, NotFoundError
from ..ids import content_id, image_digest, text_digest, vector_digest
from ..images import describe, image_uri, load_image
from ..learning import prune
from ..payload import LibraryFields, check_text, check_user_payload, join
from ..payload import split as payload_split
from ..progress import ProgressCallback, null_progress
from ..store.base import Record, check_vectors, normalize_id, unit_rows
from ..types import MODALITY_CODES, AddResult, Hit, PointId, Skipped
from ._common import OnError, _as_list, _hit, _modality_filter
from .links import Links
from .state import Index

# One prepared item: (input position, (point id, data to embed), user payload, library fields).
Prepared = tuple[int, tuple[PointId, Any], dict[str, Any], LibraryFields]
Prepare = Callable[[int, Any], tuple[tuple[PointId, Any], LibraryFields]]
Embed = Callable[[list[Any]], np.ndarray]


class Ingest:
    """Adding, reading, deleting and updating documents."""

    def __init__(self, index: Index, links: Links) -> None:
        self.index = index
        self.links = links

    # -- adding ------------------------------------------------------------------------------------
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
        items = _as_list(images, "images")
        if captions is not None and len(captions) != len(items):
            raise InputError(f"Got {len(captions)} captions for {len(items)} images; give one caption (or None) per image.")

        def prepare(i: int, item: Any) -> tuple[tuple[PointId, Any], LibraryFields]:
            caption = captions[i] if captions is not None else None
            if caption is not None:
                if not isinstance(caption, str) or not caption.strip():
                    raise InputError(f"Caption #{i} {caption!r} is empty or not a string; give text or None.")
                check_text(caption, f"Caption #{i}")
            img = load_image(item)
            pid = content_id("image", image_digest(item)) if ids is None else normalize_id(ids[i])
            return (pid, img), LibraryFields(modality="image", uri=image_uri(item), caption=caption)

        result = self._ingest(items, prepare, self.index.encoder.encode_images, payloads, ids, on_error, batch_size, progress)
        if caption_docs and captions is not None:
            self._add_caption_docs(items, result, captions, payloads)
        return result

    def _add_caption_docs(self, items: list[Any], result: AddResult, captions: Sequence[str | None], payloads: Any) -> None:
        skipped = {s.index for s in result.skipped}
        kept = [i for i in range(len(items)) if i not in skipped]
        pairs = [(result[j], captions[i]) for j, i in enumerate(kept) if captions[i]]
        if not pairs:
            return
        user = [payloads[i] if payloads is not None else None for i in kept if captions[i]]
        text_ids = self.add_texts([str(c) for _, c in pairs], payloads=user)
        self.links.link_many([(img, txt) for (img, _), txt in zip(pairs, text_ids)])

    def add_videos(
        self,
        paths: Sequence[Any],
        *,
        every_s: float = 1.0,
        scenes: bool = False,
        scene_threshold: float | None = None,
        captions: Sequence[str | None] | None = None,
        payloads: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[PointId] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 32,
        progress: ProgressCallback | None = None,
    ) -> AddResult:
        from ..video import DEFAULT_SCENE_THRESHOLD, add_videos

        return add_videos(paths, ingest=self._ingest, encode_images=lambda b: self.index.encoder.encode_images(b), store=self.index.store,
                          delete_points=self.delete, every_s=every_s, scenes=scenes,
                          scene_threshold=DEFAULT_SCENE_THRESHOLD if scene_threshold is None else scene_threshold,
                          captions=captions, payloads=payloads, ids=ids, on_error=on_error, batch_size=batch_size, progress=progress)

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
        items = _as_list(texts, "texts")

        def prepare(i: int, item: Any) -> tuple[tuple[PointId, Any], LibraryFields]:
            if not isinstance(item, str):
                raise InputError(f"Text #{i} is a {type(item).__name__}, not a string; pass text as str.")
            if not item.strip():
                raise InputError(f"Text #{i} is empty; give a non-empty string or drop it.")
            check_text(item, f"Text #{i}")
            pid = content_id("text", text_digest(item)) if ids is None else normalize_id(ids[i])
            return (pid, item), LibraryFields(modality="text", text=item)

        return self._ingest(items, prepare, self.index.encoder.encode_texts, payloads, ids, on_error, batch_size, progress)

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
        if modality not in MODALITY_CODES:
            raise InputError(f"Modality {modality!r} is not known; use one of {sorted(MODALITY_CODES)}.")
        raw = check_vectors(vectors, self.index.config.dim)  # shape and finiteness of the whole call
        rows = list(range(len(raw)))
        for what, given in (("texts", texts), ("uris", uris)):
            if given is not None and len(given) != len(rows):
                raise InputError(f"Got {len(given)} {what} for {len(rows)} vectors; give one (or None) per vector.")

        def prepare(i: int, _: Any) -> tuple[tuple[PointId, Any], LibraryFields]:
            row = unit_rows(raw[i], self.index.config.dim, f"vector #{i}")[0]
            pid = content_id(modality, vector_digest(row)) if ids is None else normalize_id(ids[i])
            text = texts[i] if texts is not None else None
            if text is not None:
                check_text(str(text), f"Text #{i}")
            return (pid, row), LibraryFields(modality=modality, text=text, uri=uris[i] if uris is not None else None)

        return self._ingest(rows, prepare, np.stack, payloads, ids, on_error, batch_size, progress)

    def _ingest(
        self,
        items: list[Any],
        prepare: Prepare,
        embed: Embed,
        payloads: Sequence[dict[str, Any] | None] | None,
        ids: Sequence[PointId] | None,
        on_error: OnError,
        batch_size: int,
        progress: ProgressCallback | None,
    ) -> AddResult:
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error={on_error!r} is not known; use 'raise' or 'skip'.")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size={batch_size!r} is not a positive integer; use e.g. 64.")
        n = len(items)
        if payloads is not None and len(payloads) != n:
            raise InputError(f"Got {len(payloads)} payloads for {n} items; give one payload (or None) per item.")
        if ids is not None and len(ids) != n:
            raise InputError(f"Got {len(ids)} ids for {n} items; give one id per item or leave ids out.")
        report = progress or null_progress
        result = AddResult()
        # "raise" writes nothing of the call when an item is bad: validate every item first.
        if on_error == "raise" and n > batch_size:
            for i, item in enumerate(items):
                _prepare_one(i, item, prepare, payloads)
        ok_ids: list[PointId | None] = [None] * n
        seen: set[PointId] = set()
        for start in range(0, n, batch_size):
            chunk: list[Prepared] = []
            for i in range(start, min(n, start + batch_size)):
                try:
                    prepared = _prepare_one(i, items[i], prepare, payloads)
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
                for i, _, _, _ in chunk:
                    ok_ids[i] = None
            report("add", min(n, start + batch_size), n, {})
        result[:] = [pid for pid in ok_ids if pid is not None]
        return result

    def _store_chunk(self, chunk: list[Prepared], embed: Embed, result: AddResult, on_error: OnError, items: list[Any]) -> bool:
        """Embed and upsert one chunk; False when ``skip`` mode dropped it because the encoder failed."""
        try:
            vectors = embed([data for _, (_, data), _, _ in chunk])
        except MMGRError as exc:
            if on_error == "raise":
                raise
            for i, _, _, _ in chunk:
                result.skipped.append(Skipped(i, describe(items[i]), str(exc)))
            return False
        vectors = unit_rows(vectors, self.index.config.dim, "encoder's vectors")
        ids = [pid for _, (pid, _), _, _ in chunk]
        with self.index.lock:
            self._write(ids, vectors, [user for _, _, user, _ in chunk], [meta for _, _, _, meta in chunk])
        return True

    def _write(self, ids: list[PointId], vectors: np.ndarray, users: list[dict[str, Any]], metas: list[LibraryFields]) -> None:
        """Upsert points, keeping what the store knows of existing ones (links), with docids once built.

        The trie learns the new docids only after the upsert succeeded (a failed write leaves the
        index as it was). Call with the lock held.
        """
        store = self.index.store
        gen = self.index.refresh()  # another retriever may have built since this one opened
        existing = {r.id: LibraryFields.of(r.payload) for r in store.retrieve(ids)}
        now = time.time()
        metas = [replace(m, added=now, links=existing[pid].links if pid in existing else m.links) for pid, m in zip(ids, metas)]
        if gen is None:
            store.upsert(ids, vectors, [join(u, m) for u, m in zip(users, metas)])
            return
        mods = np.asarray([MODALITY_CODES[m.modality] for m in metas])
        docids = gen.assign(vectors, mods)
        metas = [m.with_docid(gen.generation, d) for m, d in zip(metas, docids)]
        try:
            store.upsert(ids, vectors, [join(u, m) for u, m in zip(users, metas)])
        except BaseException:
            gen.release(docids)
            raise
        stale = [old.docid(gen.generation) for old in existing.values()]
        removed = np.asarray([d for d in stale if d], dtype=np.int64).reshape(-1, gen.n_levels)
        gen.forget(removed)
        gen.add(docids)
        gen.log_changes(store, removed=removed, added=docids)  # the docid log: opening replays it instead of scanning

    # -- reading -----------------------------------------------------------------------------------
    def get(self, ids: Sequence[PointId]) -> list[Hit]:
        wanted = [normalize_id(i) for i in _as_list(ids, "ids")]
        found = {r.id: r for r in self.index.store.retrieve(wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFoundError(f"Ids {missing[:5]} are not in collection {self.index.config.collection!r}; check them with count() or search().")
        return [_hit(found[i], 1.0, None, self.index.generation) for i in wanted]

    def count(self, modality: str | None = None) -> int:
        return self.index.store.count(_modality_filter(modality))

    # -- deleting and updating ---------------------------------------------------------------------
    def delete(self, ids: Sequence[PointId]) -> list[Record]:
        """Delete documents after every id was checked and every link to them gathered; returns the deleted records."""
        from ..video import expand_video_ids

        wanted = list(dict.fromkeys(normalize_id(i) for i in _as_list(ids, "ids")))
        store = self.index.store
        with self.index.lock:
            gen = self.index.refresh()
            wanted = expand_video_ids(store, wanted)  # a video id stands for all its moments
            records = {r.id: r for r in store.retrieve(wanted)}
            missing = [i for i in wanted if i not in records]
            if missing:
                raise NotFoundError(f"Ids {missing[:5]} are not in collection {self.index.config.collection!r}; nothing was deleted.")
            unlink = self.links.unlink_plan(records)
            store.delete(wanted)
            self.links.apply(unlink)
            prune(store, self.index.config.dim, list(records))  # learned pairs of deleted documents go with them
            if gen is not None:
                docids = [LibraryFields.of(r.payload).docid(gen.generation) for r in records.values()]
                gone = np.asarray([d for d in docids if d], dtype=np.int64).reshape(-1, gen.n_levels)
                gen.forget(gone)
                gen.log_changes(store, removed=gone)  # the docid log: opening replays it instead of scanning
        return list(records.values())

    def update(
        self,
        id: PointId,
        *,
        image: Any = None,
        text: str | None = None,
        vector: np.ndarray | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        pid = normalize_id(id)
        if sum(x is not None for x in (image, text, vector)) > 1:
            raise InputError("Give at most one of image=, text= or vector= to update.")
        if payload is not None:
            check_user_payload(payload, 0)
        if image is None and text is None and vector is None:
            self._update_payload(pid, payload)
            return
        found = self.index.store.retrieve([pid])
        if not found:
            raise NotFoundError(f"Id {pid!r} is not in collection {self.index.config.collection!r}; add it instead.")
        user, meta = payload_split(found[0].payload)
        user = payload if payload is not None else user
        if (image is not None and meta.modality != "image") or (text is not None and meta.modality != "text"):
            raise InputError(f"Document {pid!r} is a {meta.modality} document; update it with content of the same modality.")
        if image is not None:
            self.add_images([image], ids=[pid], payloads=[user], captions=[meta.caption])
        elif text is not None:
            self.add_texts([text], ids=[pid], payloads=[user])
        else:
            row: Any = vector  # validated by add_embeddings (a non-numeric value is an InputError there)
            self.add_embeddings(np.asarray(row)[None, :] if np.ndim(row) == 1 else row, modality=meta.modality, ids=[pid], payloads=[user],
                                texts=[meta.text], uris=[meta.uri])

    def _update_payload(self, pid: PointId, payload: dict[str, Any] | None) -> None:
        """Replace the user payload; vector, docid and links stay as stored at the moment of the write."""
        store = self.index.store
        with self.index.lock:  # read inside the lock: a build in this process cannot interleave
            self.index.refresh()
            found = store.retrieve([pid], with_vectors=True)
            if not found:
                raise NotFoundError(f"Id {pid!r} is not in collection {self.index.config.collection!r}; add it instead.")
            rec = found[0]
            user, meta = payload_split(rec.payload)
            store.upsert([pid], np.asarray(rec.vector, dtype=np.float32)[None, :], [join(payload if payload is not None else user, meta)])


def _prepare_one(i: int, item: Any, prepare: Prepare, payloads: Sequence[dict[str, Any] | None] | None) -> Prepared:
    user = check_user_payload(payloads[i] if payloads is not None else None, i)
    (pid, data), meta = prepare(i, item)
    return i, (pid, data), user, meta
