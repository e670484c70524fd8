"""The store contract: the only code in the library that talks to Qdrant lives behind it.

Two backends implement it, :class:`~mmgr_qdrant.store.edge.EdgeStore` (Qdrant Edge, embedded,
on disk) and :class:`~mmgr_qdrant.store.client.ClientStore` (any ``QdrantClient``: server, cloud,
local mode). Both raise the same :mod:`mmgr_qdrant.errors` subclass for the same fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..config import EngineConfig
from ..errors import DimensionMismatchError, InputError, MMGRError
from ..filters import Filter
from ..types import F_PREFIXES, PointId, normalize_id


@dataclass(frozen=True)
class Record:
    """A stored point: id, payload and (when asked for) its vector."""

    id: PointId
    payload: dict[str, Any]
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class ScoredRecord:
    """A point returned by a vector query, with its cosine similarity."""

    id: PointId
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class IndexInfo:
    """The engine's view of a collection's vector index.

    Attributes:
        points: points stored.
        indexed_vectors: vectors inside an HNSW index (the rest are scored exactly).
        segments: storage segments.
    """

    points: int
    indexed_vectors: int
    segments: int

    @property
    def unindexed(self) -> int:
        """Points a search scores exactly because no HNSW index holds them yet."""
        return max(0, self.points - self.indexed_vectors)


class IndexTrigger:
    """When ``ensure_index`` has the engine build its index: the rule both stores share.

    ``threshold=0`` (after a build): any unindexed point, since a payload write moves points out of
    the graph. Otherwise at least ``threshold`` (default ``default_threshold``) unindexed points
    *and* as many added since this process last optimized: segments under the engine's indexing
    threshold stay unindexed after an optimize, so a small collection is not re-optimized on every call.
    """

    def __init__(self) -> None:
        self.optimized_at = 0  # points when this process last optimized

    def due(self, info: IndexInfo, threshold: int | None, default_threshold: int) -> bool:
        if threshold == 0:
            return info.unindexed > 0
        limit = max(1, default_threshold if threshold is None else int(threshold))
        return info.unindexed >= limit and info.points - self.optimized_at >= limit

    def ensure(
        self, threshold: int | None, default_threshold: int, info: Callable[[], IndexInfo], optimize: Callable[[], bool]
    ) -> bool:
        """``optimize()`` when :meth:`due`; True when the index was built now."""
        now = info()
        if not self.due(now, threshold, default_threshold):
            return False
        built = optimize()
        if threshold != 0:
            self.optimized_at = now.points
        return built


QUERY_PAYLOAD_EXCLUDES = (F_PREFIXES,)
"""Payload fields left out of vector query hits (``Store.query``, ``query_batch``): the library never
reads the prefix tags back from a hit (they exist for the filter), and they were the dearest part of
a hit's payload to convert. ``retrieve`` and ``scroll`` return whole payloads."""


class Store(Protocol):
    """One collection in Qdrant plus a small blob area for the index's artifacts."""

    collection: str

    def exists(self) -> bool: ...
    def connect(self) -> None: ...
    # ``engine``: HNSW, quantization and search settings; quantization is fixed here.
    def create(self, dim: int, engine: EngineConfig | None = None) -> None: ...
    # Search settings for later queries (an opened index passes its saved ``IndexConfig.engine``).
    def configure(self, engine: EngineConfig) -> None: ...
    # Build the engine's own vector index now (blocking on Edge); True when something was indexed.
    def optimize(self) -> bool: ...
    # ``optimize()`` when ``threshold`` (default ``engine.index_threshold``) points are unindexed; 0: any.
    def ensure_index(self, threshold: int | None = None) -> bool: ...
    # Points, indexed vectors and segments, as the engine reports them.
    def index_info(self) -> IndexInfo: ...
    def upsert(self, ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None: ...
    def set_payload(self, ids: Sequence[PointId], key: str, values: Sequence[dict[str, Any]]) -> None: ...
    def delete(self, ids: Sequence[PointId]) -> None: ...
    def retrieve(self, ids: Sequence[PointId], with_vectors: bool = False) -> list[Record]: ...
    # ``fields``: the payload keys (dotted paths) to return; ``None`` returns whole payloads.
    def scroll(
        self, filter: Filter | None = None, batch_size: int = 1024, with_vectors: bool = False, fields: Sequence[str] | None = None
    ) -> Iterator[list[Record]]: ...
    def count(self, filter: Filter | None = None) -> int: ...
    # ``acorn=False``: search a filter without ACORN even where ``engine.acorn`` is on (the hybrid
    # prefix filter, whose documents lie around the query; see ``EngineConfig.hybrid_acorn``).
    def query(
        self, vector: np.ndarray, k: int, filter: Filter | None = None, with_vectors: bool = False, *, acorn: bool = True
    ) -> list[ScoredRecord]: ...
    def query_batch(
        self, vectors: np.ndarray, k: int, filters: Sequence[Filter | None], *, acorn: bool = True
    ) -> list[list[ScoredRecord]]: ...
    def put_blob(self, key: str, data: bytes) -> None: ...
    def get_blob(self, key: str) -> bytes | None: ...
    def delete_blob(self, key: str) -> None: ...
    def list_blobs(self) -> list[str]: ...
    def drop(self) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _vector(raw: Any) -> np.ndarray | None:
    if raw is None:
        return None
    if isinstance(raw, dict):  # named vectors: the index uses the unnamed one
        raw = raw.get("", next(iter(raw.values())))
    return np.asarray(raw, dtype=np.float32)


def _fast_id(raw: Any) -> PointId:
    # The engines return valid ids: an int (the common case) needs no validation, only the
    # UUID forms go through ``normalize_id`` for their canonical string.
    return raw if type(raw) is int else normalize_id(raw)


def to_record(r: Any, with_vectors: bool) -> Record:
    """A backend's point record (Edge or qdrant-client) as a :class:`Record`."""
    payload = r.payload
    return Record(id=_fast_id(r.id), payload=payload if type(payload) is dict else dict(payload or {}),
                  vector=_vector(r.vector) if with_vectors else None)


def to_scored(p: Any, with_vectors: bool) -> ScoredRecord:
    """A backend's scored point as a :class:`ScoredRecord`.

    The backend's payload dict is taken as is (both engines build a fresh dict per call), so no
    per-hit copy is made.
    """
    payload = p.payload
    return ScoredRecord(
        id=_fast_id(p.id), score=float(p.score), payload=payload if type(payload) is dict else dict(payload or {}),
        vector=_vector(p.vector) if with_vectors else None,
    )


def check_vectors(vectors: np.ndarray, dim: int, what: str = "vectors") -> np.ndarray:
    """Validate a 2-d batch of vectors of the collection's dimension; returns float32."""
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise InputError(f"The {what} are not numeric arrays ({exc}); pass a float array of shape (n, {dim}).") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InputError(f"The {what} have shape {arr.shape}; pass a 2-d array of shape (n, {dim}).")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"The {what} have dimension {arr.shape[1]} but the collection stores {dim}-d vectors; "
            f"embed with the collection's encoder or create a new collection."
        )
    if not np.all(np.isfinite(arr)):
        raise InputError(f"The {what} contain NaN or infinite values; clean them before adding.")
    return arr


def unit_rows(vectors: Any, dim: int, what: str) -> np.ndarray:
    """Validated ``(n, dim)`` float32 rows scaled to unit length (in float64: rows of 1e20 keep their direction).

    Raises:
        InputError: not a numeric array, a row of zeros, or NaN or infinite entries.
        DimensionMismatchError: the rows are not ``dim``-d.
    """
    try:
        with np.errstate(over="ignore"):
            arr = check_vectors(vectors, dim, what).astype(np.float64)
    except MMGRError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(f"The {what} are not a numeric array ({exc}); pass a float array of shape (n, {dim}).") from None
    if len(arr) == 0:
        return arr.astype(np.float32)
    scale = np.abs(arr).max(axis=1, keepdims=True)
    zero = scale[:, 0] == 0
    if zero.any():
        raise InputError(f"The {what} row #{int(np.argmax(zero))} is all zeros; it has no direction to search by.")
    arr = arr / scale
    return (arr / np.linalg.norm(arr, axis=1, keepdims=True)).astype(np.float32)


def chunked(seq: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """Yield ``(start, slice)`` pairs of at most ``size`` items."""
    for start in range(0, len(seq), size):
        yield start, seq[start : start + size]
