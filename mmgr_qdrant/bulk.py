"""Bounded-memory bulk reads and writes for a build: the collection scanned into preallocated
arrays, docids written back in blocks.

A build needs every vector (to fit and assign docids) but only a few fields of each payload: the
modality, links (training pairs) and the previous generation's docid (kept beside the new one).
:func:`scan` reads just those fields into one preallocated ``(n, d)`` float32 array (grown by
doubling if points arrive during the scan) instead of a list of per-point arrays stacked at the
end, which held the vectors twice. :func:`write_docids` writes the new docids block by block, each
block one store call, flushing every few blocks, so a crash loses at most the unflushed blocks of
a generation that is not switched to yet (the manifest is written after the docids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .payload import LibraryFields
from .progress import ProgressCallback, null_progress
from .store.base import Store
from .types import MODALITY_CODES, RESERVED_KEY, PointId

# The payload fields a build reads: everything else (uris, texts, user fields) stays in the store.
SCAN_FIELDS = tuple(f"{RESERVED_KEY}.{k}" for k in ("modality", "links", "docids", "prefixes"))


@dataclass
class ScanResult:
    """The collection as a build sees it.

    Attributes:
        ids: point ids, in scan order.
        vectors: ``(n, d)`` float32 rows, aligned with ``ids``.
        modalities: ``(n,)`` int64 modality codes.
        metas: each point's library fields among :data:`SCAN_FIELDS` (modality, links, docids, prefixes).
    """

    ids: list[PointId]
    vectors: np.ndarray
    modalities: np.ndarray
    metas: list[LibraryFields]

    def __len__(self) -> int:
        return len(self.ids)


def scan(store: Store, dim: int, *, batch_size: int = 4096, progress: ProgressCallback | None = None) -> ScanResult:
    """Read every point's vector and the build's payload fields into preallocated arrays.

    Args:
        store: the collection.
        dim: the vectors' dimension.
        batch_size: points per scroll page.
        progress: called as ``("scan", done, total, {})`` after each page.

    Returns:
        A :class:`ScanResult` (empty arrays for an empty collection).
    """
    report = progress or null_progress
    total = store.count()
    vecs = np.empty((max(total, 1), dim), dtype=np.float32)
    mods = np.empty(max(total, 1), dtype=np.int64)
    ids: list[PointId] = []
    metas: list[LibraryFields] = []
    n = 0
    for page in store.scroll(batch_size=batch_size, with_vectors=True, fields=list(SCAN_FIELDS)):
        if n + len(page) > len(vecs):  # points added during the scan: grow by doubling
            size = max(2 * len(vecs), n + len(page))
            vecs = np.resize(vecs, (size, dim))
            mods = np.resize(mods, size)
        for r in page:
            meta = LibraryFields.of(r.payload)
            vecs[n] = r.vector  # type: ignore[assignment]
            mods[n] = MODALITY_CODES.get(meta.modality, MODALITY_CODES["text"])
            ids.append(r.id)
            metas.append(meta)
            n += 1
        report("scan", n, max(total, n), {})
    return ScanResult(ids, vecs[:n], mods[:n], metas)


def write_docids(
    store: Store,
    ids: Sequence[PointId],
    docids: np.ndarray,
    metas: Sequence[LibraryFields],
    generation: int,
    *,
    block: int = 4096,
    flush_every: int = 16,
    progress: ProgressCallback | None = None,
) -> None:
    """Write ``generation``'s docids (and prefix tags) into the payloads, one store call per block.

    The previous generation's docid of each point is kept beside the new one (see
    :meth:`~mmgr_qdrant.payload.LibraryFields.with_docid`), so searches of the old build stay correct
    until the manifest switches.

    Args:
        store: the collection.
        ids / docids / metas: aligned: point ids, their ``(n, L)`` docids, their scanned ``_mmgr`` fields.
        generation: the new generation.
        block: points per store call.
        flush_every: flush the store after this many blocks.
        progress: called as ``("write", done, total, {})`` after each block.
    """
    report = progress or null_progress
    n = len(ids)
    for b, start in enumerate(range(0, n, block)):
        end = min(n, start + block)
        values = [metas[i].with_docid(generation, docids[i]).docid_dict() for i in range(start, end)]  # merged into _mmgr
        store.set_payload(list(ids[start:end]), RESERVED_KEY, values)
        if (b + 1) % flush_every == 0:
            store.flush()
        report("write", end, n, {})
    store.flush()
